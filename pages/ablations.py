"""Ablations: R-MTLLMF's two parts alone and together (freeze only, realign only, both, neither),
over the number of shots per class used to realign (the paper's Fig. 5).
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from rmtllmf_core.studies import plots as result_plots
from rmtllmf_core.studies import sweeps
from rmtllmf_core.errors import RmtllmfError
from rmtllmf_core.experiment.scenario import Scenario
from studio import fields, frame, plots, state, ui
from studio.editor import Editor
from studio.sweep_ui import run_sweep
from studio.widgets import channel_controls

frame.ensure()  # the app's frame around this page, even when Streamlit runs the file bare

presenter = state.presenter()
st.title("Ablations")
st.caption("Which part of R-MTLLMF does the work: freezing the embeddings, realigning on a few samples "
           "per class, both, or neither; and how many shots realignment needs. Each bar is an engine run "
           "on the scenario below (cached on disk).")

ed = Editor("ablations")
with st.expander("Base scenario (the channel; the rest is set on the Scenario and Fusion pages)",
                 expanded=not presenter):
    channel_controls(ed, ed.base)
base = ed.commit()

low, high = (int(v) for v in (fields.bounds(Scenario, "defense.shots_per_class")["min_value"],
                              fields.bounds(Scenario, "defense.shots_per_class")["max_value"]))


@st.fragment
def ablation_section(base: Scenario) -> None:
    shots = st.multiselect("Shots per class", list(range(low, high + 1)),
                           default=[k for k in (1, 5, 10, 20) if low <= k <= high], key="ablation.shots")
    shots = sorted(shots)
    if not shots:
        st.info("Pick at least one number of shots.")
        return
    try:
        work = sweeps.ablation_work(base, shots)
    except RmtllmfError as exc:
        st.error(str(exc))
        return
    rows = run_sweep("ablation", work, label="Ablation")
    if not rows:
        return
    fig = plots.style(result_plots.ablation_bars(rows), presenter=presenter, height=440)
    ui.chart(fig, "chart.ablation")
    table = pd.DataFrame(rows).drop(columns=["key"], errors="ignore")
    table["avg_normalized"] = 100 * table["avg_normalized"]
    if "avg_normalized_clean" in table:
        table["avg_normalized_clean"] = 100 * table["avg_normalized_clean"]
    st.caption("'neither' and 'freeze' do not realign, so the number of shots does not change them. "
               "Accuracy is the average normalised accuracy of the attacked model with that defense.")
    if not presenter:
        with st.expander("Points (table)"):
            st.dataframe(table.rename(columns={"avg_normalized": "accuracy (%)", "avg_normalized_clean": "clean fusion (%)"}),
                         hide_index=True, width="stretch")
    ui.export("ablation", tables={"points": pd.DataFrame(rows).drop(columns=["key"], errors="ignore")}, data=rows,
              figures={"ablation": fig})


ablation_section(base)
