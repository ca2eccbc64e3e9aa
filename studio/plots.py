"""Plot builders of the app: pure functions from plain data (lists, dicts) to plotly figures.

The result plots (accuracy, cosine, sweeps, ablation) are the engine's own builders in
`rmtllmf_core.studies.plots`, shared with the CLI report; here are the Scenario page's two (placement,
jammer eigenmodes) and `style`, which gives every figure the app's look (`presenter=True`: the
larger fonts and heights used on a projector). No Streamlit here and no engine calls.
"""
from __future__ import annotations

import math
from typing import Sequence

import plotly.graph_objects as go

from rmtllmf_core.experiment.result import Condition
from rmtllmf_core.studies import plots as result_plots

CONDITION_LABELS = {
    Condition.FINETUNED: "individual fine-tuning",
    Condition.ZEROSHOT: "base model (zero-shot)",
    Condition.CLEAN: "clean fusion",
    Condition.CLEAN_REALIGNED: "clean fusion + realign (control)",
    Condition.ATTACKED: "attacked, no defense",
    Condition.DEFENDED: "attacked + defense",
}


class Frozen(go.Figure):
    """A finished figure that many sessions show (`frozen`). st.plotly_chart turns a figure into its plotly
    dict on every call, a deep copy of data, layout and template: a tenth of the server's time on a
    cached Fusion page (py-spy). This one makes that dict once and hands out shallow copies of it
    (Streamlit and plotly.io only read it). Not to be edited after `frozen`."""

    _spec: dict | None = None

    def to_dict(self) -> dict:
        if self._spec is None:
            self._spec = super().to_dict()
        return dict(self._spec)


def frozen(fig: go.Figure) -> Frozen:
    """`fig` as a `Frozen` figure, its dict made now (for a figure cached and shown to every session)."""
    out = Frozen(fig)
    out.to_dict()
    return out


def side_by_side(fig: go.Figure) -> go.Figure:
    """Subplots in one row sharing their y labels: show them on the first only."""
    for name in fig.layout:
        if name.startswith("yaxis") and name != "yaxis":
            fig.layout[name].showticklabels = False
    return fig


def style(fig: go.Figure, *, presenter: bool = False, height: int = 380) -> go.Figure:
    """Shared look: compact margins, legend on top; bigger text and plots in presenter mode."""
    fig.update_layout(
        height=int(height * (1.45 if presenter else 1.0)),
        font=dict(size=20 if presenter else 13),
        margin=dict(l=10, r=10, t=50, b=10),
        legend=dict(orientation="v", yanchor="top", y=1, xanchor="left", x=1.02),  # never over an axis
    )
    result_plots.themed(fig)
    # the small margins above need axis titles to push the plot in (presenter mode's larger text was cut)
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    return fig


def placement_map(
    x_m: Sequence[float],
    y_m: Sequence[float],
    labels: Sequence[str],
    *,
    color_values: Sequence[float] | None = None,
    color_title: str = "MSE",
    color_range: tuple[float, float] | None = (0.0, 1.0),
    hover: Sequence[str] | None = None,
    highlight: int | None = None,
    ring_m: tuple[float, float] | None = None,
    presenter: bool = False,
) -> go.Figure:
    """Top view: the base station at the origin, one marker per user (coloured by e.g. MSE on the fixed
    scale `color_range`, so that one colour means one MSE in every scenario), numbered 1..Q as the page's
    table is (eight task titles beside their markers piled up); titles on hover."""
    fig = go.Figure()
    if ring_m is not None:
        for radius in ring_m:
            t = [2 * math.pi * i / 120 for i in range(121)]
            fig.add_trace(go.Scatter(
                x=[radius * math.cos(a) for a in t], y=[radius * math.sin(a) for a in t],
                mode="lines", line=dict(color="#CCCCCC", dash="dot", width=1),
                hoverinfo="skip", showlegend=False,
            ))
    fig.add_trace(go.Scatter(
        x=[0.0], y=[0.0], mode="markers+text", name="base station", text=["BS"], textposition="top center",
        marker=dict(symbol="triangle-up", size=18, color="black"),
        hovertemplate="base station<extra></extra>",
    ))
    marker = dict(size=16, line=dict(width=1, color="white"))
    if color_values is not None:
        marker.update(color=list(color_values), colorscale="RdYlGn_r", showscale=True,
                      colorbar=dict(title=color_title, thickness=12))
        if color_range is not None:
            marker.update(cmin=color_range[0], cmax=color_range[1])
    fig.add_trace(go.Scatter(
        x=list(x_m), y=list(y_m), mode="markers+text", name="users", text=[str(i + 1) for i in range(len(x_m))],
        textposition="top right", textfont=dict(color="black", size=13), marker=marker,
        hovertext=list(hover) if hover is not None else list(labels), hoverinfo="text",
    ))
    if highlight is not None and 0 <= highlight < len(x_m):
        fig.add_trace(go.Scatter(
            x=[x_m[highlight]], y=[y_m[highlight]], mode="markers", name="jammer's target",
            marker=dict(size=28, color="rgba(0,0,0,0)", line=dict(width=3, color="#E45756")),
            hoverinfo="skip",
        ))
    fig.update_xaxes(title="x (m)", zeroline=False)
    fig.update_yaxes(title="y (m)", zeroline=False, scaleanchor="x", scaleratio=1)
    fig.update_layout(title="Placement")
    style(fig, presenter=presenter, height=460)
    fig.update_layout(legend=dict(x=0.01, y=0.99, xanchor="left", yanchor="top", bgcolor="rgba(255,255,255,0.7)"))
    return fig  # the legend inside: the colour bar has the right-hand side


def eigenmode_bars(powers_w: Sequence[float], *, budget_w: float | None = None, presenter: bool = False) -> go.Figure:
    """The jammer's power per eigenmode, as a share of its budget when the budget is known."""
    powers = [float(p) for p in powers_w]
    total = budget_w if budget_w and budget_w > 0 else (sum(powers) or 1.0)
    share = [100.0 * p / total for p in powers]
    fig = go.Figure(go.Bar(
        x=[str(i + 1) for i in range(len(powers))], y=share, marker_color="#E45756",
        customdata=powers, hovertemplate="mode %{x}: %{y:.1f}% (%{customdata:.3g} W)<extra></extra>",
    ))
    fig.update_xaxes(title="eigenmode (strongest signal first)")
    fig.update_yaxes(title="share of jammer power (%)", rangemode="tozero")
    fig.update_layout(title="Jammer power per eigenmode", showlegend=False)
    return style(fig, presenter=presenter, height=320)


def mse_curves(rows: Sequence[dict], *, labels: dict[str, str] | None = None, presenter: bool = False) -> go.Figure:
    """Average MSE over the users versus jammer power, one line per attack (log scale)."""
    fig = go.Figure()
    for attack in dict.fromkeys(r["attack"] for r in rows):
        pts = sorted((r["jammer_power_dbm"], r["average_mse"]) for r in rows if r["attack"] == attack)
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers",
                                 name=(labels or {}).get(attack, attack),
                                 hovertemplate="P_J %{x} dBm: average MSE %{y:.4f}<extra></extra>"))
    fig.update_xaxes(title="jammer power (dBm)")
    # 1-2-5 ticks written out in full (a span within one decade still reads; plotly's own "D2" writes 0.2 as "2")
    ticks = [m * 10.0 ** e for e in range(-6, 2) for m in (1, 2, 5)]
    fig.update_yaxes(title="average MSE", type="log", tickvals=ticks, ticktext=[f"{v:g}" for v in ticks])
    fig.update_layout(title="The channel: average MSE versus jammer power (one drop)")
    return style(fig, presenter=presenter, height=380)


def figure_html(fig: go.Figure) -> bytes:
    """A self-contained HTML file of a figure (plotly.js embedded: opens offline)."""
    return fig.to_html(include_plotlyjs=True, full_html=True).encode()
