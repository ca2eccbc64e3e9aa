"""Scenario: which users take part, where they are, their powers, the jammer, the receiver.

One drop of the uplink from the wireless engine (instant, no model): per-user SINR, rate, MSE and
SIC order, and how the jammer spends its power over its eigenmodes.
"""
from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from rmtllmf_core.errors import RmtllmfError
from studio import engine, frame, plots, state, ui
from studio.editor import Editor, users_follow_tasks
from studio.widgets import channel_controls, dbm, watts

frame.ensure()  # the app's frame around this page, even when Streamlit runs the file bare


presenter = state.presenter()
st.title("Scenario")
st.caption("Who transmits, from where, with what power; the jammer and the receiver. "
           "One drop of the uplink, computed at once by the wireless engine.")

ed = Editor("scenario")
scn = ed.base
w = scn.wireless
try:
    before = engine.uplink(w)
except RmtllmfError as exc:  # a scenario the engine refuses (rare: the Scenario already validated it)
    before = None
    ed.show_error(exc)

controls, view = st.columns([2, 3], gap="large")

with controls:
    all_tasks = list(dict.fromkeys([*state.default_scenario().tasks, *scn.tasks]))
    ed.multiselect("tasks", "Users (one task each)", options=all_tasks, format_func=ui.task_title,
                   help="Each user fine-tuned the base model on one task and sends its task vector.")

    st.subheader("Placement", divider="gray")
    if w.channel is not None:
        st.info("This scenario gives the channel matrix explicitly: there is no placement to edit.")
    else:
        modes = {"annulus": "random in an annulus", "table": "edit in a table"}
        mode = st.radio("Placement", list(modes), format_func=modes.get, horizontal=True,
                        index=0 if w.distances_m is None else 1, key=ed.key("placement"),
                        label_visibility="collapsed")
        users = before["users"] if before else []
        if mode == "annulus":
            if w.distances_m is not None:
                ed.change("wireless.distances_m", None)
                ed.change("wireless.angles_deg", None)
            c1, c2, c3 = st.columns(3)
            with c1:
                ed.number("wireless.d_min_m", "Inner radius (m)", step=10.0)
            with c2:
                ed.number("wireless.d_max_m", "Outer radius (m)", step=10.0)
            with c3:
                ed.number("wireless.seed", "Placement seed")
        else:
            distances = list(w.distances_m) if w.distances_m is not None else [u["distance_m"] for u in users]
            if w.angles_deg is not None:
                angles = list(w.angles_deg)
            else:
                angles = [round(math.degrees(math.atan2(u["y_m"], u["x_m"])), 2) for u in users]
            powers = list(w.tx_powers_w())
            shown = pd.DataFrame({
                "user": [ui.task_title(t) for t in scn.tasks],
                "distance (m)": [round(float(d), 2) for d in distances],
                "angle (deg)": [round(float(a), 2) for a in angles],
                "tx power (dBm)": [dbm(p) for p in powers],
            })
            edited = st.data_editor(
                shown, key=ed.key("placement.table"), hide_index=True, num_rows="fixed", width="stretch",
                disabled=["user"],
                column_config={"distance (m)": st.column_config.NumberColumn(format="%.1f"),
                               "angle (deg)": st.column_config.NumberColumn(format="%.1f"),
                               "tx power (dBm)": st.column_config.NumberColumn(format="%.2f")},
            )
            ed.slot("wireless.distances_m")
            ed.aliases["wireless.angles_deg"] = "wireless.distances_m"
            if w.distances_m is None or not edited[["distance (m)", "angle (deg)"]].equals(shown[["distance (m)", "angle (deg)"]]):
                ed.change("wireless.distances_m", [float(v) for v in edited["distance (m)"]])
                ed.change("wireless.angles_deg", [float(v) for v in edited["angle (deg)"]])
            if not edited["tx power (dBm)"].equals(shown["tx power (dBm)"]):
                new = [watts(v) if v is not None and not pd.isna(v) else 0.0 for v in edited["tx power (dBm)"]]
                ed.change("wireless.tx_power_w", new)
                ed.aliases["wireless.tx_power_w"] = "wireless.distances_m"

    st.subheader("Powers and attack", divider="gray")
    if isinstance(w.tx_power_w, list):
        st.number_input("Transmit power per user (dBm)", value=dbm(max(w.tx_power_w)), disabled=True,
                        key=ed.key("tx.disabled"), help="Set per user in the placement table.")
    else:
        ed.number("wireless.tx_power_w", "Transmit power per user (dBm)", shown=dbm(w.tx_power_w),
                  to_value=watts, use_bounds=False, step=1.0, format="%.2f", aliases=["wireless.tx_power_dbm"])
    channel_controls(ed, scn, columns=False)

    st.subheader("Receiver", divider="gray")
    ed.number("wireless.num_rx_antennas", "Receive antennas (N_R)")
    if not presenter:
        with st.expander("Noise and propagation (advanced)"):
            c1, c2 = st.columns(2)
            with c1:
                ktbnf_help = "Sets the noise only through k T B NF, when the thermal noise below is empty."
                ed.number("wireless.bandwidth_hz", "Bandwidth (MHz)", scale=1e6, step=0.1, format="%.3f", help=ktbnf_help)
                ed.number("wireless.noise_figure_db", "Noise figure (dB)", step=0.5, help=ktbnf_help)
                ed.number("wireless.noise_power_w", "Thermal noise per antenna (dBm)", shown=dbm(w.noise_power_w),
                          to_value=watts, use_bounds=False, step=1.0, format="%.2f", placeholder="k T B NF",
                          aliases=["wireless.noise_power_dbm"],
                          help="Leave empty for k T B NF at 290 K; a value overrides it.")
                ed.number("wireless.fading_seed", "Fading seed")
            with c2:
                ed.number("wireless.carrier_frequency_hz", "Carrier (GHz)", scale=1e9, step=0.1, format="%.3f")
                pathloss = ed.select("wireless.pathloss_model", "Path loss model")
                if pathloss == "log_distance":
                    ed.number("wireless.pathloss_exponent", "Path loss exponent", step=0.1)
                ed.number("wireless.shadowing_std_db", "Shadowing std (dB)", step=0.5)
                ed.select("wireless.radial_distribution", "Radial distribution",
                          format_func=lambda r: r.replace("_", " "))

scn = ed.commit(fixup=users_follow_tasks)
try:
    up = engine.uplink(scn.wireless)
except RmtllmfError as exc:
    ed.show_error(exc)
    st.stop()

users = up["users"]
names = [ui.task_title(t) for t in scn.tasks]
table = pd.DataFrame({
    "#": list(range(1, len(names) + 1)),  # the placement map's marker numbers
    "user": names,
    "task": list(scn.tasks),
    "SIC order": [u["sic_rank"] + 1 for u in users],
    "distance (m)": [u.get("distance_m") for u in users],
    "tx power (dBm)": [dbm(u["tx_power_w"]) for u in users],
    "SINR (dB)": [u["sinr_db"] for u in users],
    "rate (bit/s/Hz)": [u["rate_bits_per_hz"] for u in users],
    "MSE": [u["mse"] for u in users],
})


@st.cache_resource(max_entries=64, show_spinner=False)
def placement_figure(x_m: tuple, y_m: tuple, names: tuple, mse: tuple, hover: tuple, target, ring_m, presenter: bool):
    """The users' placement, built once per drop and view for every session and rerun (building a plotly
    figure costs more than the uplink it shows). Read-only once built."""
    return plots.frozen(plots.placement_map(list(x_m), list(y_m), list(names), color_values=list(mse),
                                            hover=list(hover), highlight=target, ring_m=ring_m, presenter=presenter))


@st.cache_resource(max_entries=64, show_spinner=False)
def eigenmode_figure(eigen_w: tuple, budget_w: float, presenter: bool):
    return plots.frozen(plots.eigenmode_bars(list(eigen_w), budget_w=budget_w, presenter=presenter))


with view:
    warning = engine.channel_warning(scn.wireless)
    if warning:  # the channel alone leaves the task vectors as noise: say so before anything is fused
        st.warning(warning, icon=":material/warning:")
    # presenter mode's larger labels do not fit four abreast: two rows of two
    m1, m2, m3, m4 = [*st.columns(2), *st.columns(2)] if presenter else st.columns(4)
    m1.metric("Average MSE", f"{up['average_mse']:.4f}", help="mean over the users of exp(-rate)")
    m2.metric("Sum rate, b/s/Hz", f"{up['sum_rate_bits_per_hz']:.2f}", help="the users' sum rate in bit/s/Hz")
    m3.metric("Min SINR, dB", f"{min(u['sinr_db'] for u in users):.1f}", help="the weakest user's SINR after the "
              "receiver")
    budget = up["jammer_power_w"]
    m4.metric("Jammer, dBm", f"{dbm(up['jammer_trace_w']):.1f}" if up["jammer_trace_w"] > 0 else "none",
              help=f"the trace of its noise covariance; its budget is {dbm(budget) or 0} dBm")

    target = scn.wireless.target_user if scn.wireless.attack == "targeted" else None
    if "x_m" in users[0]:
        hover = [f"{i + 1}. {n}<br>SIC #{u['sic_rank'] + 1}, {u['distance_m']:.0f} m<br>SINR {u['sinr_db']:.1f} dB, MSE {u['mse']:.4f}"
                 for i, (n, u) in enumerate(zip(names, users))]
        ring = None if scn.wireless.distances_m is not None else (scn.wireless.d_min_m, scn.wireless.d_max_m)
        fig_map = placement_figure(tuple(u["x_m"] for u in users), tuple(u["y_m"] for u in users), tuple(names),
                                   tuple(u["mse"] for u in users), tuple(hover), target, ring, presenter)
        ui.chart(fig_map, "chart.placement")
    else:
        fig_map = None

    st.dataframe(
        table.drop(columns=["task"]), hide_index=True, width="stretch", key="table.users",
        # narrow number columns: all eight fit beside the controls at 1600 px, no sideways scrolling
        column_config={"#": st.column_config.NumberColumn(width=32),
                       "user": st.column_config.TextColumn(width="medium"),
                       "SIC order": st.column_config.NumberColumn("SIC", width=48,
                                                                  help="place in the receiver's decoding order"),
                       "distance (m)": st.column_config.NumberColumn("dist. (m)", format="%.0f", width=70),
                       "tx power (dBm)": st.column_config.NumberColumn("tx (dBm)", format="%.1f", width=70),
                       "SINR (dB)": st.column_config.NumberColumn(format="%.1f", width=75),
                       "rate (bit/s/Hz)": st.column_config.NumberColumn("rate (b/s/Hz)", format="%.2f", width=95),
                       "MSE": st.column_config.NumberColumn(format="%.4f", width=80)},
    )
    fig_eig = None
    if up["jammer_trace_w"] > 0:
        fig_eig = eigenmode_figure(tuple(up["jammer_eigen_w"]), budget, presenter)
        ui.chart(fig_eig, "chart.eigenmodes")
    else:
        st.caption("No jammer covariance in this scenario (attack 'none' or a zero budget).")
    figures = {"placement map": fig_map, "jammer eigenmodes": fig_eig}
    ui.export("scenario", tables={"users": table}, data={"scenario": scn.to_dict(), "wireless": up},
              figures={k: v for k, v in figures.items() if v is not None})
