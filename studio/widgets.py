"""Scenario controls that more than one page shows (bound through an Editor)."""
from __future__ import annotations

import streamlit as st

from rmtllmf_core.experiment.scenario import Scenario
from rmtllmf_core.units import dbm_to_w, w_to_dbm

from . import ui
from .editor import Editor


def dbm(power_w):
    """W -> dBm rounded for display (None for no power)."""
    return None if power_w is None or power_w <= 0 else round(float(w_to_dbm(power_w)), 2)


def watts(power_dbm):
    return None if power_dbm is None else float(dbm_to_w(power_dbm))


def channel_controls(ed: Editor, scn: Scenario, *, columns: bool = True) -> str:
    """Attack, jammer budget (dBm) and, for a targeted attack, the target user; returns the attack."""
    w = scn.wireless
    c1, c2, c3 = st.columns(3) if columns else (st.container(), st.container(), st.container())
    with c1:
        attack = ed.select("wireless.attack", "Attack", format_func=lambda a: ui.ATTACK_LABELS.get(a, a))
    with c2:
        ed.number("wireless.jammer_power_w", "Jammer power budget (dBm)", shown=dbm(w.jammer_power_w),
                  to_value=lambda v: 0.0 if v is None else watts(v), use_bounds=False, step=1.0, format="%.2f",
                  placeholder="off", aliases=["wireless.jammer_power_dbm"])
    with c3:
        if attack == "targeted":
            q = len(scn.tasks)
            current = w.target_user if w.target_user is not None and w.target_user < q else 0
            ed.select("wireless.target_user", "Target user", options=list(range(q)), default=current,
                      format_func=lambda i: f"{i}: {ui.task_title(scn.tasks[i])}" if isinstance(i, int) and i < q else str(i))
    if attack != "none" and not w.jammer_power_w:
        st.caption("The jammer has no power yet: set its budget to see the attack.")
    if attack != "none":
        ed.toggle("wireless.receiver_knows_jammer", "The receiver knows the jammer's covariance",
                  help="On: the MMSE-SIC filters are designed for the true noise plus jamming (a sensing receiver). "
                       "Off: for thermal noise alone; each user's MSE is that of the mismatched filter.")
    return attack
