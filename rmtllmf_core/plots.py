"""Plot builders: pure functions from result rows to plotly figures (the app and the CLI share them)."""
from __future__ import annotations

from typing import Mapping, Sequence

import plotly.graph_objects as go

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
DASH = {"none": "dot", "rmtllmf": "solid", "freeze": "dash", "realign": "dashdot", "shrinkage": "longdash",
        "trim": "longdashdot"}


def _layout(fig: go.Figure, title: str, x: str, y: str) -> go.Figure:
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, template="plotly_white",
                      legend=dict(orientation="h", y=-0.2), margin=dict(l=60, r=20, t=50, b=60))
    return fig


def snr_curves(rows: Sequence[Mapping]) -> go.Figure:
    """Average normalised accuracy versus jammer power, one line per (attack, defense)."""
    fig = go.Figure()
    attacks = list(dict.fromkeys(r["attack"] for r in rows))
    for (attack, defense) in dict.fromkeys((r["attack"], r["defense"]) for r in rows):
        pts = sorted((r["jammer_power_dbm"], 100 * r["avg_normalized"], r["mean_mse"]) for r in rows
                     if r["attack"] == attack and r["defense"] == defense)
        fig.add_trace(go.Scatter(
            x=[p[0] for p in pts], y=[p[1] for p in pts], customdata=[p[2] for p in pts],
            mode="lines+markers", name=f"{attack} / {defense}",
            line=dict(color=PALETTE[attacks.index(attack) % len(PALETTE)], dash=DASH.get(defense, "solid")),
            hovertemplate="P_J %{x} dBm<br>accuracy %{y:.1f}%<br>mean MSE %{customdata:.4f}<extra></extra>"))
    return _layout(fig, "Accuracy versus jammer power", "jammer power (dBm)", "avg normalised accuracy (%)")


def tasks_bands(summary: Sequence[Mapping]) -> go.Figure:
    """Mean over every task combination of each size, with a +-1 std band (paper Fig. 2)."""
    fig = go.Figure()
    conds = list(dict.fromkeys((r["attack"], r["defense"]) for r in summary))
    for i, (attack, defense) in enumerate(conds):
        pts = sorted((r["n_tasks"], 100 * r["mean"], 100 * r["std"]) for r in summary
                     if (r["attack"], r["defense"]) == (attack, defense))
        x = [p[0] for p in pts]
        mean = [p[1] for p in pts]
        hi = [m + s for _, m, s in pts]
        lo = [m - s for _, m, s in pts]
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(x=x + x[::-1], y=hi + lo[::-1], fill="toself", fillcolor=color, opacity=0.15,
                                 line=dict(width=0), hoverinfo="skip", showlegend=False))
        fig.add_trace(go.Scatter(x=x, y=mean, mode="lines+markers", name=f"{attack} / {defense}",
                                 line=dict(color=color, dash=DASH.get(defense, "solid"))))
    return _layout(fig, "Accuracy versus number of fused tasks", "number of tasks", "avg normalised accuracy (%)")


def ablation_bars(rows: Sequence[Mapping]) -> go.Figure:
    """Freeze only, realign only, both, neither, over shots per class (paper Fig. 5)."""
    fig = go.Figure()
    shots = sorted({r["shots"] for r in rows if r["shots"] is not None})
    for i, variant in enumerate(dict.fromkeys(r["variant"] for r in rows)):
        vals = {r["shots"]: 100 * r["avg_normalized"] for r in rows if r["variant"] == variant}
        y = [vals.get(k, vals.get(None)) for k in shots]  # variants without realignment do not use shots
        fig.add_trace(go.Bar(x=[str(k) for k in shots], y=y, name=variant, marker_color=PALETTE[i % len(PALETTE)]))
    fig.update_layout(barmode="group")
    return _layout(fig, "Ablation: R-MTLLMF's parts and shots per class", "shots per class",
                   "avg normalised accuracy (%)")


def cosine_heatmaps(result: Mapping, titles: Sequence[str] = ("clean", "received", "defended")) -> go.Figure:
    """Cosine similarity of clean, received and defended task vectors side by side (paper Fig. 3-4)."""
    from plotly.subplots import make_subplots

    tasks = list(result["tasks"])
    fig = make_subplots(rows=1, cols=len(titles), subplot_titles=[f"{t} task vectors" for t in titles],
                        horizontal_spacing=0.06)
    for i, name in enumerate(titles, start=1):
        z = result["cosine"][name]
        fig.add_trace(go.Heatmap(z=z, x=tasks, y=tasks, zmin=-1, zmax=1, colorscale="RdBu", reversescale=True,
                                 text=[[f"{v:.2f}" for v in row] for row in z], texttemplate="%{text}",
                                 showscale=(i == len(titles)), hovertemplate="%{y} vs %{x}: %{z:.3f}<extra></extra>"),
                      row=1, col=i)
        fig.update_yaxes(autorange="reversed", row=1, col=i)
    fig.update_layout(template="plotly_white", margin=dict(l=60, r=20, t=50, b=60))
    return fig


def accuracy_bars(result: Mapping, conditions: Sequence[str] = ("finetuned", "clean", "attacked", "defended")
                  ) -> go.Figure:
    """Accuracy per task for each condition, side by side."""
    labels = {"finetuned": "individual fine-tuning", "zeroshot": "base (zero-shot)", "clean": "clean fusion",
              "clean_realigned": "clean fusion + realign", "attacked": "attacked, no defense",
              "defended": "attacked + defense"}
    fig = go.Figure()
    for i, cond in enumerate(c for c in conditions if c in result["accuracy"]):
        acc = result["accuracy"][cond]
        fig.add_trace(go.Bar(x=list(acc), y=[100 * v for v in acc.values()], name=labels.get(cond, cond),
                             marker_color=PALETTE[i % len(PALETTE)],
                             hovertemplate="%{x}: %{y:.1f}%<extra></extra>"))
    fig.update_layout(barmode="group", yaxis_range=[0, 100])
    return _layout(fig, "Accuracy per task", "task", "accuracy (%)")
