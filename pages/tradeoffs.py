"""Trade-offs: accuracy versus jammer power for each attack and defense, and accuracy versus the
number of fused tasks with its spread over task combinations (the paper's Fig. 2).

Both sweeps start from the session's scenario; each point is one engine run that lands in the
disk cache, so a sweep can be left and resumed.
"""
from __future__ import annotations

from math import comb

import numpy as np
import pandas as pd
import streamlit as st

from rmtllmf_core import plots as result_plots
from rmtllmf_core import sweeps
from rmtllmf_core.errors import RmtllmfError
from rmtllmf_core.scenario import Scenario
from rmtllmf_core.units import dbm_to_w
from rmtllmf_core.wireless import ATTACKS
from studio import engine, frame, plots, state, ui
from studio.editor import Editor
from studio.sweep_ui import run_sweep
from studio.widgets import channel_controls, dbm

frame.ensure()  # the app's frame around this page, even when Streamlit runs the file bare

presenter = state.presenter()
st.title("Trade-offs")
st.caption("How much accuracy each defense keeps as the jammer grows, and as more tasks share one fused model. "
           "Every point is a full engine run on the scenario below; finished points stay in the disk cache.")

ed = Editor("tradeoffs")
base = ed.base
with st.expander("Base scenario (the channel; the rest is set on the Scenario and Fusion pages)",
                 expanded=not presenter):
    channel_controls(ed, base)
base = ed.commit()
DEFENSE_LABELS = {"none": "no defense", "rmtllmf": "R-MTLLMF (freeze + realign)", "freeze": "freeze only",
                  "realign": "realign only", "shrinkage": "shrinkage", "trim": "trim"}
ATTACK_CHOICES = [a for a in ATTACKS if a != "targeted" or base.wireless.target_user is not None]


@st.fragment
def snr_section(base: Scenario) -> None:
    st.header("Accuracy versus jammer power", divider="gray")
    c1, c2, c3 = st.columns([2, 2, 2])
    with c1:
        lo, hi = st.slider("Jammer power range (dBm)", -170, -60, (-150, -100), step=5, key="snr.range")
        step = st.select_slider("Step (dB)", [5, 10, 20], value=10, key="snr.step")
    with c2:
        attacks = st.multiselect("Attacks", ATTACK_CHOICES, default=["white", "worst_sum_rate", "worst_strongest_user"],
                                 format_func=lambda a: ui.ATTACK_LABELS.get(a, a), key="snr.attacks")
    with c3:
        defenses = st.multiselect("Defenses", list(sweeps.DEFENSES), default=["none", "rmtllmf"],
                                  format_func=lambda d: DEFENSE_LABELS.get(d, d), key="snr.defenses")
    powers = [float(p) for p in np.arange(lo, hi + 0.5 * step, step)]
    try:  # the channel alone is instant: draw it before any accuracy run
        channel = [{"attack": a, "jammer_power_dbm": p, "average_mse": engine.uplink(base.replace(**{
            "wireless.attack": a, "wireless.jammer_power_w": float(dbm_to_w(p))}).wireless)["average_mse"]}
            for a in attacks for p in powers]
    except RmtllmfError as exc:
        st.error(str(exc))
        return
    if channel:
        fig_mse = plots.mse_curves(channel, labels=ui.ATTACK_LABELS, presenter=presenter)
        ui.chart(fig_mse, "chart.snr_mse")
    spec = {"powers": powers, "attacks": attacks, "defenses": defenses}
    try:
        points = sweeps.snr_points(base, powers, attacks, defenses)
    except RmtllmfError as exc:
        st.error(str(exc))
        return
    rows = run_sweep("snr", base, spec, points, sweeps.snr_sweep, (base, powers, attacks, defenses),
                     label="Accuracy versus jammer power")
    if not rows:
        return
    fig = plots.style(result_plots.snr_curves(rows), presenter=presenter, height=440)
    ui.chart(fig, "chart.snr")
    table = pd.DataFrame(rows).drop(columns=["key"], errors="ignore")
    if not presenter:
        with st.expander("Points (table)"):
            st.dataframe(table, hide_index=True, width="stretch")
    ui.export("snr-sweep", tables={"points": table}, data=rows, figures={"accuracy vs jammer power": fig})


@st.fragment
def tasks_section(base: Scenario) -> None:
    st.header("Accuracy versus number of tasks", divider="gray")
    q = len(base.tasks)
    if q < 2:
        st.info("Choose at least two users on the Scenario page.")
        return
    c1, c2, c3 = st.columns([2, 2, 2])
    with c1:
        lo, hi = st.slider("Numbers of fused tasks", 1, q, (2, q), key="tasks.sizes") if q > 2 else (2, 2)
    with c2:
        attacks = st.multiselect("Attacks", ATTACK_CHOICES, default=[base.wireless.attack],
                                 format_func=lambda a: ui.ATTACK_LABELS.get(a, a), key="tasks.attacks")
    with c3:
        defenses = st.multiselect("Defenses", list(sweeps.DEFENSES), default=["none", "rmtllmf"],
                                  format_func=lambda d: DEFENSE_LABELS.get(d, d), key="tasks.defenses")
    sizes = list(range(lo, hi + 1))
    conditions = [(a, d) for a in attacks for d in defenses]
    st.caption(f"Every combination of the {q} users' tasks of each size ({sum(comb(q, n) for n in sizes)} per "
               f"condition), fused from the same uplink drop at {dbm(base.wireless.jammer_power_w) or 'no'} dBm "
               "of jammer power. The band spans the best and worst combination.")
    spec = {"sizes": sizes, "conditions": conditions}
    try:
        points = sweeps.tasks_points(base, conditions, sizes)
    except RmtllmfError as exc:
        st.error(str(exc))
        return
    rows = run_sweep("tasks", base, spec, points, sweeps.tasks_sweep, (base, conditions), {"sizes": sizes},
                     label="Accuracy versus number of tasks")
    if not rows:
        return
    summary = sweeps.summarize_tasks(rows)
    fig = plots.style(result_plots.tasks_bands(summary), presenter=presenter, height=440)
    ui.chart(fig, "chart.tasks")
    table = pd.DataFrame(summary)
    if not presenter:
        with st.expander("Summary per size (table)"):
            st.dataframe(table, hide_index=True, width="stretch")
    ui.export("tasks-sweep", tables={"summary": table, "combinations": pd.DataFrame(rows).drop(columns=["key"], errors="ignore")},
              data={"rows": rows, "summary": summary}, figures={"accuracy vs tasks": fig})


snr_section(base)
tasks_section(base)
