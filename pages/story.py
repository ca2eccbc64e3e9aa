"""The guided story: five steps for a demo, one click each, answered from the result cache once
warmed (`python -m rmtllmf_core warm`). Every sentence's numbers come from the step's own run
(rmtllmf_core/studies/story.py).
"""
from __future__ import annotations

import streamlit as st

from rmtllmf_core.studies import plots as result_plots
from rmtllmf_core.studies import story
from rmtllmf_core.errors import RmtllmfError
from studio import engine, frame, plots, state, ui

frame.ensure()  # the app's frame around this page, even when Streamlit runs the file bare

presenter = state.presenter()
zoo = state.scenario().zoo
KEY = "story.step"
TITLES = {s.key: s.title for s in story.STEPS}
METRICS = {"clean": "Clean fusion", "attacked": "Jammed, no defense", "defended": "Jammed + R-MTLLMF"}
# the chart's conditions under the metrics' names (every step that shows them has a jammer)
TRACE_NAMES = {"attacked": "jammed, no defense", "defended": "jammed + R-MTLLMF"}


def _go(delta: int) -> None:
    keys = list(story.STEP_KEYS)
    current = st.session_state.get(KEY) or keys[0]
    st.session_state[KEY] = keys[max(0, min(len(keys) - 1, keys.index(current) + delta))]


SHORT = {s.key: f"{i}. {s.key.capitalize()}" for i, s in enumerate(story.STEPS, 1)}  # a projector's step bar

if presenter:  # a projector's 720 rows: the step bar, the numbers, the sentence and the chart on one screen
    st.markdown("#### The story in five steps")
else:
    st.title("The story in five steps")
    st.caption("A guided tour for a demo: each step is one run of the engine on the paper's presets, read from the "
               "disk cache once warmed (`python -m rmtllmf_core warm`). The numbers in every sentence are this "
               "zoo's own.")
st.session_state.setdefault(KEY, story.STEP_KEYS[0])
nav = st.columns([6, 1, 1] if presenter else [8, 1, 1], vertical_alignment="bottom")
with nav[0]:
    key = st.segmented_control("Step", story.STEP_KEYS, format_func=(SHORT if presenter else TITLES).get, key=KEY,
                               label_visibility="collapsed") or story.STEP_KEYS[0]
index = story.STEP_KEYS.index(key)
nav[1].button("Back", icon=":material/arrow_back:", on_click=_go, args=(-1,), disabled=index == 0,
              key="story.back", width="stretch")
nav[2].button("Next", icon=":material/arrow_forward:", on_click=_go, args=(1,), type="primary",
              disabled=index == len(story.STEPS) - 1, key="story.next", width="stretch")

step = story.step(key)
try:
    scn = story.scenario(step, zoo)
    # on a projector the finished status goes: the step's chart stays above the fold
    res, _ = engine.run(scn, label=f"Computing step {index + 1}", keep_status=not presenter)
    # every later step reads the ideal channel too (what thermal noise alone costs, its MSE)
    ideal = engine.run(story.scenario(story.STEPS[0], zoo), label="Computing the ideal channel",
                       keep_status=not presenter)[0] if index > 0 else None
except RmtllmfError as exc:
    st.error(str(exc), icon=":material/error:")
    st.stop()

n = story.numbers(step, res, ideal)
shown = [c for c in ("clean", "attacked", "defended") if c in step.show]
cols = st.columns(len(shown) + (1 if step.channel else 0))
for col, cond in zip(cols, shown):
    delta = None
    if cond == "attacked":
        delta = f"{-n['drop']:+.1f} pts vs clean"
    elif cond == "defended":
        delta = f"{n['repair']:+.1f} pts vs no defense"
    col.metric(METRICS[cond], f"{n[cond]:.1f}%", delta=delta)
if step.channel:
    cols[-1].metric("Average MSE", f"{n['mse']:.3f}", delta=f"{n['mse'] - n['ideal_mse']:+.3f} vs ideal",
                    delta_color="inverse")
if presenter:  # the sentence beside the chart: the step bar, the numbers, both above a projector's fold
    text_col, chart_col = st.columns([2, 3], gap="medium")
else:
    text_col = chart_col = st.container()
with text_col:
    if not presenter:
        st.markdown(f"### {step.title}")
    st.markdown(story.narrative(step, res, ideal))
NOTE = ("The big numbers: normalised accuracy (each task's accuracy over its own fine-tuned model's, averaged); "
        "the chart: each task's accuracy itself.")

# a projector's chart names the tasks short ("Digits", not "Digits (MNIST-like)")
labels = [ui.task_title(t).split(" (")[0] if presenter else ui.task_title(t) for t in res.tasks]
if step.channel:
    fig = result_plots.user_mse_bars({"ideal channel": ideal, "with the jammer": res}, labels=labels)
else:
    fig = result_plots.accuracy_bars(res, list(step.show), task_titles=dict(zip(res.tasks, labels)),
                                     labels=TRACE_NAMES)
fig = plots.style(fig, presenter=presenter, height=250 if presenter else 400)
fig.update_xaxes(title=None)
if presenter:  # no title (the step bar says it), the legend above the bars: below, it ran into the task names
    fig.update_layout(title=None, legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0, xanchor="left",
                                              entrywidth=0.5, entrywidthmode="fraction", font=dict(size=16)),
                      margin=dict(t=10))
with chart_col:
    ui.chart(fig, f"chart.story.{key}")
    if not step.channel:
        st.caption(NOTE)


def _explore() -> None:
    state.set_scenario(scn, from_outside=True)


if st.button("Explore this step on the Fusion page", icon=":material/tune:", key="story.explore", on_click=_explore):
    st.switch_page("pages/fusion.py")
