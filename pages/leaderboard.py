"""Leaderboard: which merge method survives a jammer. Every method on the paper's three channels,
without defense and with R-MTLLMF, plain or MSE-aware fusion (rmtllmf_core/studies/leaderboard.py).
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from rmtllmf_core.studies import leaderboard
from rmtllmf_core.studies import plots as result_plots
from rmtllmf_core.errors import RmtllmfError
from rmtllmf_core.science.methods import METHODS
from studio import frame, plots, state, ui
from studio.sweep_ui import run_sweep

frame.ensure()  # the app's frame around this page, even when Streamlit runs the file bare

presenter = state.presenter()
zoo = state.scenario().zoo
TITLES = {m: METHODS[m].title for m in METHODS}
ATTACK_LABELS = {a: ui.ATTACK_LABELS.get(a, a) for a in leaderboard.ATTACKS}

st.title("Leaderboard")
st.caption("Which merge survives a jammer: every merge method fuses the task vectors received on the paper's three "
           "channels (at their presets), without defense and with R-MTLLMF. One engine run per method and channel "
           "gives both (the attacked fusion comes before any defense); every run lands in the disk cache.")

weighting = st.segmented_control("Fusion weighting", ["plain", "MSE-aware", "both"], default="plain",
                                 key="leaderboard.weighting",
                                 help="MSE-aware: the base station weights each received vector by its estimated SNR "
                                      "(fusion.mse_aware), with every method.") or "plain"
aware = {"plain": (False,), "MSE-aware": (True,), "both": (False, True)}[weighting]
try:
    work = leaderboard.work(zoo, mse_aware=aware)
except RmtllmfError as exc:
    st.error(str(exc))
    st.stop()

rows = run_sweep("leaderboard", work,
                 label="Computing the leaderboard", button="Compute the leaderboard")
if rows:
    try:
        table = leaderboard.table(work)
    except RmtllmfError as exc:
        st.error(str(exc))
        st.stop()
    shown = [r for r in table if r["mse_aware"] == (weighting == "MSE-aware")] if weighting != "both" else table
    first = [r for r in table if not r["mse_aware"]] or table
    fig = plots.style(result_plots.leaderboard_heatmap(first if weighting == "both" else shown, TITLES),
                      presenter=presenter, height=120 + 42 * len(METHODS))
    fig.update_layout(xaxis_title=None, yaxis_title=None,
                      margin=dict(t=150 if presenter else 110))  # the two-line condition labels sit above the cells
    fig.update_xaxes(tickfont=dict(size=15 if presenter else 12))
    ui.chart(fig, "chart.leaderboard.heatmap")
    st.caption("Average normalised accuracy (fused / individually fine-tuned, mean over tasks). P1: the worst-case "
               "sum-rate jammer; P2: the worst-case strongest-user jammer, each at the paper's budget. Methods sorted "
               "by their accuracy under the two jammers with R-MTLLMF." + (" Plain fusion; the table below has both."
                                                                  if weighting == "both" else ""))
    st.markdown("**What the numbers say**")
    st.markdown("\n".join(f"- {line}" for line in leaderboard.reading(table, TITLES)))

    attack = st.segmented_control("Channel", list(leaderboard.ATTACKS), default="worst_sum_rate",
                                  format_func=ATTACK_LABELS.get, key="leaderboard.attack") or "worst_sum_rate"
    bars = plots.style(result_plots.leaderboard_bars(first if weighting == "both" else shown, attack, TITLES),
                       presenter=presenter, height=420)
    ui.chart(bars, "chart.leaderboard.bars")

    percent = ("average_normalized", "average_absolute", "clean_normalized", "drop_from_clean")
    frame_ = pd.DataFrame(shown).assign(**{c: (lambda c: lambda f: 100 * f[c])(c) for c in percent}).rename(columns={"average_normalized": "normalised (%)", "average_absolute": "absolute (%)",
                                                 "clean_normalized": "clean fusion (%)", "drop_from_clean": "drop (points)"})
    frame_.insert(0, "method", frame_.pop("method").map(TITLES))
    frame_["attack"] = frame_["attack"].map(ATTACK_LABELS)
    frame_["defense"] = frame_["defense"].map({"none": "no defense", "rmtllmf": "R-MTLLMF"})
    main_cols = ["method", "attack", "defense", "mse_aware", "normalised (%)", "absolute (%)", "clean fusion (%)",
                 "drop (points)", "lambda"]
    if not presenter:
        st.markdown("**All entries** (click a column to sort)")
        st.dataframe(frame_[main_cols], hide_index=True, width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="%.1f")
                                    for c in ("normalised (%)", "absolute (%)", "clean fusion (%)", "drop (points)")}
                     | {"lambda": st.column_config.NumberColumn(format="%.2f")})
        with st.expander("Methods: references and published clean numbers"):
            st.dataframe(pd.DataFrame([{"method": m.title, "what it does": m.help, "reference": m.reference,
                                        "published clean": "; ".join(f"{p.value:g}% {p.metric} ({p.model})"
                                                                     for p in m.published) or "none found"}
                                       for m in METHODS.values()]), hide_index=True, width="stretch")
    ui.export("leaderboard", tables={"leaderboard": pd.DataFrame(shown)},
              data={"rows": shown, "reading": leaderboard.reading(table, TITLES)},
              figures={"heatmap": fig, "bars": bars})
