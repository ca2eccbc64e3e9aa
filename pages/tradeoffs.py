"""Trade-offs: accuracy versus jammer power for no defense, freeze, realign and R-MTLLMF against the
clean fusion and the clean-realigned control, with the paper's three channel conditions marked and
the hypothesis test's rejection rate against the MSE; accuracy versus the error model's reference
amplitude; accuracy versus the number of fused tasks with its spread (the paper's Fig. 2).

Every sweep starts from the session's scenario and is the engine's own (`rmtllmf_core.studies.sweeps`);
each point is one engine run that lands in the disk cache, so a sweep can be left and resumed.
"""
from __future__ import annotations

from math import comb

import numpy as np
import pandas as pd
import streamlit as st

from rmtllmf_core.studies import plots as result_plots
from rmtllmf_core.studies import sweeps
from rmtllmf_core.errors import RmtllmfError
from rmtllmf_core.experiment.scenario import Scenario
from rmtllmf_core.science.wireless import ATTACKS
from studio import engine, fields, frame, plots, state, ui
from studio.editor import Editor
from studio.sweep_ui import run_sweep
from studio.widgets import channel_controls, dbm

frame.ensure()  # the app's frame around this page, even when Streamlit runs the file bare

presenter = state.presenter()
st.title("Trade-offs")
st.caption("How much accuracy each defense keeps as the jammer grows, as the transmitter's reference amplitude "
           "changes, and as more tasks share one fused model. Every point is a full engine run on the scenario "
           "below; finished points stay in the disk cache.")

ed = Editor("tradeoffs")
base = ed.base
with st.expander("Base scenario (the channel; the rest is set on the Scenario and Fusion pages)",
                 expanded=not presenter):
    channel_controls(ed, base)
base = ed.commit()
DEFENSE_LABELS = {"none": "no defense", "rmtllmf": "R-MTLLMF (freeze + realign)", "freeze": "freeze only",
                  "realign": "realign only", "shrinkage": "shrinkage", "trim": "trim"}
ATTACK_CHOICES = [a for a in ATTACKS if a != "targeted" or base.wireless.target_user is not None]
SNR_DEFENSES = ["none", "freeze", "realign", "rmtllmf"]  # the paper's comparison: each part of R-MTLLMF alone
PAPER_MARKS = ", ".join(f"{c['short']} at {c['jammer_power_dbm']:g} dBm" for c in sweeps.PAPER_CHANNELS
                        if c["jammer_power_dbm"] is not None)


def _sweep_chart(fig, key: str):
    fig = plots.style(fig, presenter=presenter, height=720)
    fig.update_layout(title=None, margin=dict(t=60))  # the section's header is the title
    ui.chart(fig, key)
    return fig


def _table(rows):
    return pd.DataFrame(rows).drop(columns=["key"], errors="ignore")


@st.fragment
def snr_section(base: Scenario) -> None:
    st.header("Accuracy versus jammer power", divider="gray")
    c1, c2, c3 = st.columns([2, 2, 2])
    with c1:
        lo, hi = st.slider("Jammer power range (dBm)", -170, -60, (-140, -120), step=5, key="snr.range",
                           help="Each power is one run per channel and defense; widen the range for the whole "
                                f"curve (the paper's jammers: {PAPER_MARKS}).")
        step = st.select_slider("Step (dB)", [5, 10, 20], value=5, key="snr.step")  # a curve of 5 points, not 2
    with c2:
        attacks = st.multiselect("Channels", ATTACK_CHOICES, default=["none", "worst_sum_rate"],
                                 format_func=lambda a: ui.ATTACK_LABELS.get(a, a), key="snr.attacks",
                                 help="'none' is the paper's ideal channel (no jammer): one run per defense, "
                                      "drawn at the left edge of each panel.")
    with c3:
        defenses = st.multiselect("Defenses", list(sweeps.DEFENSES), default=SNR_DEFENSES,
                                  format_func=lambda d: DEFENSE_LABELS.get(d, d), key="snr.defenses")
    powers = [float(p) for p in np.arange(lo, hi + 0.5 * step, step)]
    try:  # the channel alone is instant: draw it before any accuracy run
        channel = sweeps.channel_sweep(base, powers, attacks, uplink=engine.uplink)
    except RmtllmfError as exc:
        st.error(str(exc))
        return
    if channel:
        fig_mse = plots.mse_curves(channel, labels=ui.ATTACK_LABELS, presenter=presenter)
        ui.chart(fig_mse, "chart.snr_mse")
    try:
        work = sweeps.snr_work(base, powers, attacks, defenses)
    except RmtllmfError as exc:
        st.error(str(exc))
        return
    rows = run_sweep("snr", work,
                     label="Accuracy versus jammer power")
    if not rows:
        return
    fig = _sweep_chart(result_plots.snr_curves(rows, labels=ui.ATTACK_LABELS), "chart.snr")
    st.caption("Top: average normalised accuracy with each defense; the green lines are the clean fusion and the "
               "clean fusion realigned the same way (the control: what realignment gains without any noise). "
               f"Dotted: the paper's worst-case jammer budgets ({PAPER_MARKS}); the grey band, the ideal channel. "
               "Bottom: the share of test samples on which the hypothesis test rejects H0 (\"the noise does not "
               "alter the prediction\") for each model against the clean fusion, versus the users' mean MSE.")
    table = _table(rows)
    if not presenter:
        with st.expander("Points (table)"):
            st.dataframe(table, hide_index=True, width="stretch")
    ui.export("snr-sweep", tables={"points": table}, data=rows, figures={"accuracy vs jammer power": fig})


@st.fragment
def gain_section(base: Scenario) -> None:
    st.header("Accuracy versus the reference amplitude", divider="gray")
    st.caption("The error on each received parameter has variance MSE x scale² x 10^(-gain/10): the reference "
               "amplitude (perturb.symbol_gain_db) is the gain the transmitter applies before the parameters "
               f"become symbols. Here at the scenario's error scale ({base.perturb.scale}).")
    c1, c2, c3 = st.columns([2, 2, 2])
    with c1:
        gain_bounds = fields.bounds(Scenario, "perturb.symbol_gain_db")  # the schema's range, not a copy
        lo, hi = st.slider("Reference amplitude range (dB)", int(gain_bounds["min_value"]), int(gain_bounds["max_value"]),
                           (10, 30), step=5, key="gain.range")
        step = st.select_slider("Step (dB)", [5, 10, 15, 20], value=10, key="gain.step")
    with c2:
        attacks = st.multiselect("Channels", ATTACK_CHOICES, default=["none", "worst_sum_rate"],
                                 format_func=lambda a: ui.ATTACK_LABELS.get(a, a), key="gain.attacks")
        paper_budget = st.toggle("Each jammer at its paper budget", value=True, key="gain.paper_budget",
                                 help=f"The paper's conditions: {PAPER_MARKS}. Off: every jammer at this page's "
                                      f"budget ({dbm(base.wireless.jammer_power_w) or 'no'} dBm).")
    with c3:
        defenses = st.multiselect("Defenses", list(sweeps.DEFENSES), default=["none", "rmtllmf"],
                                  format_func=lambda d: DEFENSE_LABELS.get(d, d), key="gain.defenses")
    gains = [float(g) for g in np.arange(lo, hi + 0.5 * step, step)]
    jammer_dbm = None if paper_budget else (dbm(base.wireless.jammer_power_w) or -300.0)
    try:
        work = sweeps.gain_work(base, gains, attacks, defenses, jammer_dbm=jammer_dbm)
    except RmtllmfError as exc:
        st.error(str(exc))
        return
    rows = run_sweep("gain", work, label="Accuracy versus the reference amplitude")
    if not rows:
        return
    fitted = sweeps.fitted_gain_db()
    fig = _sweep_chart(result_plots.gain_curves(rows, fitted_db=fitted, labels=ui.ATTACK_LABELS), "chart.gain")
    st.caption("A larger gain means a smaller error for the same MSE."
               + (f" Dotted: the calibrated value ({fitted:g} dB), fitted to the paper's numbers." if fitted is not None
                  else ""))
    table = _table(rows)
    if not presenter:
        with st.expander("Points (table)"):
            st.dataframe(table, hide_index=True, width="stretch")
    ui.export("gain-sweep", tables={"points": table}, data=rows, figures={"accuracy vs reference amplitude": fig})


TASKS_SAMPLE = 2  # combinations per size by default: the curve's shape from a few dozen runs


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
    every = sum(comb(q, n) for n in sizes)
    full = st.toggle(f"Every combination ({every} per condition)", value=False, key="tasks.full",
                     help=f"Off: a fixed sample of at most {TASKS_SAMPLE} combinations per size (the same for every "
                          "condition: the curve's shape from a few dozen runs). On: all of them, the paper's Fig. 2.")
    per_size = None if full else TASKS_SAMPLE
    shown = sum(min(comb(q, n), TASKS_SAMPLE) for n in sizes) if per_size else every
    st.caption(f"{'Every combination' if full else f'A sample of {shown} of the {every} combinations'} of the "
               f"{q} users' tasks per condition, fused from the same uplink drop at "
               f"{dbm(base.wireless.jammer_power_w) or 'no'} dBm of jammer power. The band spans the best and worst "
               "combination.")
    try:
        work = sweeps.tasks_work(base, conditions, sizes=sizes, per_size=per_size)
    except RmtllmfError as exc:
        st.error(str(exc))
        return
    rows = run_sweep("tasks", work, label="Accuracy versus number of tasks")
    if not rows:
        return
    summary = sweeps.summarize_tasks(rows)
    fig = plots.style(result_plots.tasks_bands(summary), presenter=presenter, height=440)
    ui.chart(fig, "chart.tasks")
    table = pd.DataFrame(summary)
    if not presenter:
        with st.expander("Summary per size (table)"):
            st.dataframe(table, hide_index=True, width="stretch")
    ui.export("tasks-sweep", tables={"summary": table, "combinations": _table(rows)},
              data={"rows": rows, "summary": summary}, figures={"accuracy vs tasks": fig})


snr_section(base)
gain_section(base)
tasks_section(base)
