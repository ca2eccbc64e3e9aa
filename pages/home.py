"""Home: the point on the first screen. The paper's three channels (ideal, worst-case sum rate,
worst-case strongest user) read from the result cache: what the channel and the jammer cost the fused
model, what R-MTLLMF gives back, and the ways in (the Story, the Fusion page, the Scenario page).

The runs are the Story's (`python -m rmtllmf_core warm` computes them; a server whose cache lacks them
computes them on its first start, and this page fills in when they land).
"""
from __future__ import annotations

import streamlit as st

from rmtllmf_core.studies import plots as result_plots
from rmtllmf_core.studies import story
from studio import engine, frame, plots, state, ui

frame.ensure()  # the app's frame around this page, even when Streamlit runs the file bare

presenter = state.presenter()
zoo = state.scenario().zoo
CHANNELS = {"Ideal channel": story.STEPS[0], "Worst case:<br>sum rate (P1)": story.HEADLINE,
            "Worst case:<br>strongest user (P2)": story.STEPS[-1]}

if presenter:
    st.markdown("#### R-MTLLMF Studio")
else:
    st.title("R-MTLLMF Studio")
    st.caption("Edge users each fine-tune the same small CLIP-style model on their own task and send the change, "
               "their task vector, over a jammed MIMO uplink; the base station fuses them into one multi-task model. "
               "R-MTLLMF (arXiv 2411.18220) defends the fusion by reloading the base model's embeddings and "
               "realigning it on a few samples per class.")


def _stored() -> dict:
    return {name: engine.stored(story.scenario(step, zoo)) for name, step in CHANNELS.items()}


def _point(results: dict | None) -> None:
    """`results`: the channels' runs read by the page; None while polling (each poll reads them again)."""
    results = results if results is not None else _stored()
    ideal, p1 = results["Ideal channel"], results["Worst case:<br>sum rate (P1)"]
    if ideal is None or p1 is None:  # the headline needs these two; the third channel joins the chart later
        ready = (ideal is not None) + (p1 is not None)
        st.info("The headline runs (the paper's three channels, with and without R-MTLLMF) are being computed on "
                f"this server's first start ({ready} of the first 2 ready); they appear here when ready. The other "
                "pages work meanwhile.", icon=":material/hourglass_top:")
        return
    results = {name: r for name, r in results.items() if r is not None}
    if len(results) == len(CHANNELS) and not _ready:  # all landed: one last rerun of the page stops the polling
        st.rerun()
    n = story.numbers(story.HEADLINE, p1, ideal)
    cols = st.columns(3)
    cols[0].metric("Fusion without noise", f"{n['clean']:.1f}%", help="average normalised accuracy: each task's "
                   "accuracy over its own fine-tuned model's, averaged over the tasks")
    cols[1].metric("Jammed (P1), no defense", f"{n['attacked']:.1f}%", delta=f"{-n['drop']:+.1f} pts")
    cols[2].metric("Jammed (P1) + R-MTLLMF", f"{n['defended']:.1f}%", delta=f"{n['repair']:+.1f} pts")
    text, chart = st.columns([2, 3], gap="medium") if presenter else (st.container(), st.container())
    with text:
        st.markdown(story.narrative(story.HEADLINE, p1, ideal))
        b1, b2, b3 = st.columns(3) if not presenter else (st.container(), st.container(), st.container())
        if b1.button("Tell the story", icon=":material/auto_stories:", type="primary", width="stretch",
                     key="home.story"):
            st.switch_page("pages/story.py")
        if b2.button("Explore the worst case", icon=":material/tune:", width="stretch", key="home.explore"):
            state.set_scenario(story.scenario(story.HEADLINE, zoo), from_outside=True)
            st.switch_page("pages/fusion.py")
        if b3.button("Set up your own scenario", icon=":material/cell_tower:", width="stretch", key="home.scenario"):
            st.switch_page("pages/scenario.py")
    with chart:
        ui.chart(headline_figure(tuple((name, r.key) for name, r in results.items()), presenter, results),
                 "chart.home")


@st.cache_resource(max_entries=16, show_spinner=False)
def headline_figure(keys: tuple, presenter: bool, _results: dict):
    """The channels' bars, built once per (runs, view) for every session: building and styling the figure
    cost two thirds of the server's time on this page, the landing page of every visitor. Read-only."""
    fig = plots.style(result_plots.channel_bars(_results), presenter=presenter, height=260 if presenter else 360)
    if presenter:  # no title (the metrics say it), the legend above the bars
        fig.update_layout(title=None, margin=dict(t=10), legend=dict(orientation="h", y=1.02, yanchor="bottom",
                                                                     x=0, xanchor="left", font=dict(size=16)))
    return plots.frozen(fig)


_first = _stored()
_ready = all(r is not None for r in _first.values())
# polls the cache until the first start's runs land; once they have, the page's own read serves it
st.fragment(_point, run_every=None if _ready else 3.0)(_first if _ready else None)
