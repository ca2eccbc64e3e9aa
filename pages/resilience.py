"""Resilience: physical-layer protection beside R-MTLLMF. What a receiver that does not know the
jammer loses, and accuracy versus airtime for no protection, AI (R-MTLLMF), PHY (repetition or a
coded link, Sionna's 5G LDPC) and both (rmtllmf_core/science/phy.py, sweeps.resilience_*).
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from rmtllmf_core.studies import sweeps
from rmtllmf_core.studies import plots as result_plots
from rmtllmf_core.errors import RmtllmfError
from rmtllmf_core.experiment.presets import preset_scenario
from studio import engine, frame, plots, state, ui
from studio.sweep_ui import run_sweep

frame.ensure()  # the app's frame around this page, even when Streamlit runs the file bare

presenter = state.presenter()
zoo = state.scenario().zoo
LABELS = {p: name for p, (name, _, _) in result_plots.PROTECTION_STYLE.items()}

st.title("Resilience")
st.caption("The paper ends by saying that repair on the AI side alone cannot beat a worst-case jammer. Here the base "
           "station also buys protection with airtime: repeating every symbol, or a coded digital link "
           "(quantised parameters, 5G NR LDPC on QAM, simulated with Sionna), with and without R-MTLLMF.")

st.header("What the receiver knows", divider="gray")
st.caption("A sensing receiver designs its MMSE-SIC filters for the true noise plus jamming; a blind one for thermal "
           "noise alone, and then meets the jammer (wireless.receiver_knows_jammer). Each user's MSE, at the paper's "
           "jammer budgets.")
cols = st.columns(2)
for col, preset in zip(cols, ("paper_worst_sum_rate", "paper_worst_strongest_user")):
    scn = preset_scenario(preset, zoo=zoo)
    sensed = engine.uplink(scn.wireless)
    blind = engine.uplink(scn.wireless.model_copy(update={"receiver_knows_jammer": False}))
    with col:
        st.markdown(f"**{ui.ATTACK_LABELS.get(scn.wireless.attack)}**: average MSE {sensed['average_mse']:.3f} "
                    f"sensed, {blind['average_mse']:.3f} blind")
        fig = result_plots.user_mse_bars({"receiver knows the jammer": sensed, "receiver designed for thermal noise":
                                          blind}, labels=[ui.task_title(t) for t in scn.tasks])
        fig = plots.style(fig, presenter=presenter, height=340)
        fig.update_layout(title=None, legend=dict(orientation="h", x=0, y=1.02, xanchor="left", yanchor="bottom"))
        ui.chart(fig, f"chart.resilience.blind.{preset}")

st.header("Protection versus airtime", divider="gray")
try:
    work = sweeps.resilience_work(zoo)
except RmtllmfError as exc:
    st.error(str(exc))
    st.stop()
st.caption(f"{len(sweeps.PHY_OPTIONS)} physical-layer options on each of the paper's three channels, each run with "
           "R-MTLLMF (its fusion before the defense is the option without AI). The airtime budget counts channel "
           "uses per parameter (x one analogue symbol); per budget, PHY is the best option that fits it without "
           "R-MTLLMF and PHY + AI the best with it. The coded links' bit- and block-error tables ship with "
           "the app (Sionna's 5G LDPC, simulated once); a failed codeword reaches the fusion with its errors.")
rows = run_sweep("resilience", work, label="Protection versus airtime",
                 button="Run the resilience sweep")
if rows:
    table = sweeps.resilience_table(rows)
    fig = plots.style(result_plots.resilience_curves(table), presenter=presenter, height=420)
    ui.chart(fig, "chart.resilience")
    frame_ = pd.DataFrame(table)
    shown = frame_.assign(protection=frame_["protection"].map(LABELS), attack=frame_["attack"].map(ui.ATTACK_LABELS),
                          average_normalized=100 * frame_["average_normalized"])
    if not presenter:
        st.dataframe(shown[["attack", "airtime_factor", "protection", "average_normalized", "setting", "airtime_used"]]
                     .rename(columns={"average_normalized": "accuracy (%)", "airtime_factor": "airtime budget",
                                      "airtime_used": "airtime used"}),
                     hide_index=True, width="stretch",
                     column_config={"accuracy (%)": st.column_config.NumberColumn(format="%.1f")})
    tables = engine.ldpc_tables()
    ber = bler = None
    if tables:
        ber = plots.style(result_plots.ber_curves(tables, "ber"), presenter=presenter, height=360)
        bler = plots.style(result_plots.ber_curves(tables, "bler"), presenter=presenter, height=360)
        c1, c2 = st.columns(2)
        with c1:
            ui.chart(ber, "chart.resilience.ber")
        with c2:
            ui.chart(bler, "chart.resilience.bler")
        st.caption("Each code's bit and codeword error rates after decoding on an AWGN channel at the SINR the "
                   "MMSE-SIC receiver gives a user. Dotted: where the simulation saw no error in its 2,000 "
                   "codewords, the 95% upper bound it can vouch for (about 3 in 2,000 codewords), which the "
                   "engine uses instead of zero. A failed codeword reaches the fusion with its errors "
                   "(perturb.coded_errors: codeword).")
    ui.export("resilience", tables={"resilience": frame_, "options": pd.DataFrame(rows)}, data=table,
              figures={"protection vs airtime": fig,
                       **({"coded BER": ber, "coded BLER": bler} if ber is not None else {})})
