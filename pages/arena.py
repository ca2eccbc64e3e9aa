"""Arena: every defense against the non-adaptive worst-case jammers and against a jammer that knows it,
at the same power (rmtllmf_core/studies/arena.py); each cell opens the Fusion page on its scenario.
"""
from __future__ import annotations

from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from rmtllmf_core.errors import RmtllmfError
from rmtllmf_core.science import defenses as defense_records
from rmtllmf_core.science.jamming import STRATEGIES
from rmtllmf_core.studies import arena
from rmtllmf_core.studies import plots as result_plots
from studio import codec, frame, plots, state, ui
from studio.sweep_ui import run_sweep

frame.ensure()  # the app's frame around this page, even when Streamlit runs the file bare

presenter = state.presenter()
zoo = state.scenario().zoo

st.title("Defense arena")
st.caption("A defense is only as good as the strongest jammer that knows it." + ("" if presenter else
           " Each defense faces the paper's worst-case jammers as they are (white in time, the same power on every "
           "symbol) and the strongest of a few jammers of the same average power that know the transmission schedule "
           "and the defense, never the data. Average normalised accuracy of the defended model, mean over seeds; "
           "P1: the worst-case sum-rate jammer, P2: the worst-case strongest-user jammer."))

seeds = st.segmented_control("Seeds", ["0", "0-2"], default="0-2", key="arena.seeds",
                             help="The arena's table averages seeds 0, 1 and 2; one seed is a third of the runs.")
seed_list = (0,) if seeds == "0" else (0, 1, 2)
try:
    work = arena.arena_work(zoo, seed_list)
except RmtllmfError as exc:
    st.error(str(exc))
    st.stop()

rows = run_sweep("arena", work, label="Computing the arena", button="Compute the arena")
if rows:
    cells = arena.arena_cells(rows)
    titles = {c["defense"]: defense_records.title(c["defense"]) for c in cells}
    # presenter mode: the records' names (short) on the rows, so the cells keep the width of a projector
    shown = {d: (d.replace("rmtllmf", "R-MTLLMF").replace("gate+", "jammed only: ").replace("+", " + ")
                 if presenter else t) for d, t in titles.items()}
    fig = plots.style(result_plots.arena_heatmap(cells, shown, short=presenter), presenter=presenter,
                      height=140 + 48 * len(titles))
    fig.update_layout(xaxis_title=None, yaxis_title=None, margin=dict(t=150 if presenter else 110))
    if presenter:  # the long title ran under the toolbar at 1280 px
        fig.update_layout(title_text="Defended accuracy (%)")
    ui.chart(fig, "chart.arena.heatmap")
    st.markdown("**What the numbers say**")
    st.markdown("\n".join(f"- {line}" for line in arena.reading(cells)))

    default = state.default_scenario(zoo)

    def link(attack: str, defense: str, strategy: str) -> str:
        scn = arena.scenario(attack, defense, strategy, seed_list[0], zoo)
        return "fusion?" + urlencode(codec.to_query(scn, default))

    table = pd.DataFrame([{
        "channel": ui.ATTACK_LABELS.get(c["attack"], c["attack"]), "defense": titles.get(c["defense"], c["defense"]),
        "non-adaptive (%)": 100 * c["non_adaptive"], "adaptive (%)": 100 * c["adaptive"],
        "gap (points)": 100 * c["gap"], "strongest jammer": STRATEGIES[c["adaptive_strategy"]].title,
        "open non-adaptive": link(c["attack"], c["defense"], arena.NON_ADAPTIVE),
        "open adaptive": link(c["attack"], c["defense"], c["adaptive_strategy"]),
    } for c in cells])
    st.markdown("**Every cell** (the links open the Fusion page on that scenario, seed "
                f"{seed_list[0]})")
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        **{c: st.column_config.NumberColumn(format="%.1f") for c in ("non-adaptive (%)", "adaptive (%)",
                                                                      "gap (points)")},
        "open non-adaptive": st.column_config.LinkColumn(display_text="Fusion page"),
        "open adaptive": st.column_config.LinkColumn(display_text="Fusion page")})
    if not presenter:
        with st.expander("The defenses and the jammers: what each knows"):
            st.dataframe(pd.DataFrame([{"defense": d.title, "what the base station knows": d.knows,
                                        "reference": d.reference} for d in defense_records.DEFENSE_RECORDS]),
                         hide_index=True, width="stretch")
            st.dataframe(pd.DataFrame([{"jammer": s.title, "knows, beyond the channel": s.knows,
                                        "in time": s.structure, "over the parameters": s.allocation}
                                       for s in STRATEGIES.values()]), hide_index=True, width="stretch")
    ui.export("arena", tables={"arena": pd.DataFrame(arena.arena_rows(rows))},
              data={"cells": cells, "reading": arena.reading(cells)}, figures={"heatmap": fig})
