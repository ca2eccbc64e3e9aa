"""Plot builders: pure functions from result rows to plotly figures (the app and the CLI share them)."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from ..experiment.result import Condition, Result

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
DASH = {"none": "dot", "rmtllmf": "solid", "freeze": "dash", "realign": "dashdot", "shrinkage": "longdash",
        "trim": "longdashdot"}


TEMPLATE = "plotly_white"


def themed(fig: go.Figure) -> go.Figure:
    """The figures' look, plotly's TEMPLATE. Setting a template on a figure validates all of it, about 7 ms a
    figure; a process whose plotly default already is that template (the app sets it once, `studio/ui.py`)
    gets the same figure, the template added unvalidated when it is serialised."""
    import plotly.io as pio

    if pio.templates.default != TEMPLATE:
        fig.update_layout(template=TEMPLATE)
    return fig


def _layout(fig: go.Figure, title: str, x: str, y: str) -> go.Figure:
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y,
                      legend=dict(orientation="h", y=-0.2), margin=dict(l=60, r=20, t=50, b=60))
    return themed(fig)


DEFENSE_LABELS = {"none": "no defense", "freeze": "freeze only", "realign": "realign only",
                  "rmtllmf": "R-MTLLMF (freeze + realign)", "shrinkage": "shrinkage", "trim": "trim"}
DEFENSE_COLORS = {"none": "#d62728", "freeze": "#8c564b", "realign": "#9467bd", "rmtllmf": "#1f77b4",
                  "shrinkage": "#17becf", "trim": "#e377c2"}
ATTACK_TITLES = {"none": "ideal channel (no jammer)", "white": "white noise",
                 "worst_sum_rate": "worst case: sum rate (P1)", "worst_strongest_user": "worst case: strongest user (P2)",
                 "targeted": "targeted user", "worst_max_user_numeric": "worst case: best user's rate (numeric)"}
ATTACK_SYMBOLS = {"none": "diamond", "white": "circle", "worst_sum_rate": "square",
                  "worst_strongest_user": "triangle-up", "targeted": "x", "worst_max_user_numeric": "star"}
CLEAN_COLOR, CONTROL_COLOR, MARK_COLOR = "#2ca02c", "#00441b", "#555555"
# one colour per condition in every figure of the app and the CLI: green the fusion without noise, red the
# received fusion without a defense, blue with R-MTLLMF (as DEFENSE_COLORS), greys the references
CONDITION_COLORS = {Condition.FINETUNED: "#7f7f7f", Condition.ZEROSHOT: "#c7c7c7", Condition.CLEAN: CLEAN_COLOR,
                    Condition.CLEAN_REALIGNED: CONTROL_COLOR, Condition.ATTACKED: DEFENSE_COLORS["none"],
                    Condition.DEFENDED: DEFENSE_COLORS["rmtllmf"]}


def _pct(v):
    return None if v is None else 100 * v


def _control(rows: Sequence[Mapping]) -> float | None:
    """The clean-realigned control of R-MTLLMF's recipe (else of any realigning defense)."""
    values = [(r["defense"] != "rmtllmf", r["avg_normalized_clean_realigned"]) for r in rows
              if r.get("avg_normalized_clean_realigned") is not None]
    return min(values)[1] if values else None


def _paper_channels(channels):
    if channels is not None:
        return list(channels)
    from .sweeps import PAPER_CHANNELS  # the science's own list (imports the engine: only when needed)

    return list(PAPER_CHANNELS)


def _sweep_figure(rows: Sequence[Mapping], *, x: str, panels: Sequence[str], x_title: str, title: str,
                  rejection_x: str, rejection_title: str, labels: Mapping[str, str] | None,
                  ideal_at: float | None = None, marks=(), rejection: bool = True):
    """Accuracy (%) versus `x`, one panel per attack in `panels` and one line per defense, the clean
    fusion and the clean-realigned control as reference lines; `ideal_at`: where the ideal channel's
    points (attack 'none', no x of their own) stand; `marks`: (panel, x, text) vertical lines. Below,
    across the panels, the H0 rejection rate of every point versus `rejection_x`."""
    from plotly.subplots import make_subplots

    titles = {**ATTACK_TITLES, **(labels or {})}
    n = max(1, len(panels))
    has_rejection = rejection and any(r.get("rejection_rate") is not None for r in rows)
    specs = [[{} for _ in range(n)]] + ([[{"colspan": n}] + [None] * (n - 1)] if has_rejection else [])
    fig = make_subplots(rows=len(specs), cols=n, specs=specs, shared_yaxes=True, vertical_spacing=0.2,
                        horizontal_spacing=0.04, row_heights=[0.6, 0.4] if has_rejection else None,
                        subplot_titles=[titles.get(a, a) for a in panels] + (
                            [rejection_title] if has_rejection else []))
    defenses = list(dict.fromkeys(r["defense"] for r in rows))
    ideal = {r["defense"]: r for r in rows if r["attack"] == "none"}
    xs = sorted({r[x] for r in rows if r.get(x) is not None})
    span = [ideal_at if ideal and ideal_at is not None else (xs[0] if xs else 0.0), xs[-1] if xs else 0.0]
    clean = next((r["avg_normalized_clean"] for r in rows), None)
    control = _control(rows)
    for col, attack in enumerate(panels, start=1):
        first = col == 1
        for defense in defenses:
            color = DEFENSE_COLORS.get(defense, PALETTE[defenses.index(defense) % len(PALETTE)])
            dash = DASH.get(defense, "solid")
            pts = sorted((r[x], _pct(r["avg_normalized"]), r["mean_mse"], _pct(r.get("rejection_rate")))
                         for r in rows if r["attack"] == attack and r["defense"] == defense and r.get(x) is not None)
            name = DEFENSE_LABELS.get(defense, defense)
            if pts:
                fig.add_trace(go.Scatter(
                    x=[p[0] for p in pts], y=[p[1] for p in pts], customdata=[[p[2], p[3]] for p in pts],
                    mode="lines+markers", name=name, legendgroup=defense, showlegend=first,
                    line=dict(color=color, dash=dash), marker=dict(symbol=ATTACK_SYMBOLS.get(attack, "circle")),
                    hovertemplate=f"{name}<br>{x_title} %{{x}}<br>accuracy %{{y:.1f}}%<br>mean MSE "
                                  "%{customdata[0]:.4f}<br>H0 rejected %{customdata[1]:.1f}%<extra></extra>"),
                    row=1, col=col)
            if defense in ideal and ideal_at is not None and attack != "none":
                r = ideal[defense]
                fig.add_trace(go.Scatter(
                    x=[ideal_at], y=[_pct(r["avg_normalized"])], mode="markers", name=name, legendgroup=defense,
                    showlegend=first and not pts, marker=dict(color=color, symbol="diamond", size=10),
                    hovertemplate=f"{name}, ideal channel (no jammer): %{{y:.1f}}%<extra></extra>"), row=1, col=col)
        for value, label, color, dash in ((clean, "clean fusion (no noise)", CLEAN_COLOR, "solid"),
                                          (control, "clean fusion + realign (control)", CONTROL_COLOR, "dash")):
            if value is not None:
                fig.add_trace(go.Scatter(
                    x=span, y=[_pct(value)] * 2, mode="lines", name=label, legendgroup=label, showlegend=first,
                    line=dict(color=color, dash=dash, width=2), hovertemplate=f"{label}: %{{y:.1f}}%<extra></extra>"),
                    row=1, col=col)
        if ideal and ideal_at is not None and attack != "none":
            fig.add_vrect(x0=ideal_at - 2.5, x1=ideal_at + 2.5, fillcolor="#BBBBBB", opacity=0.25, line_width=0,
                          annotation_text="paper: ideal", annotation_position="top", row=1, col=col)
        for panel, at, text in marks:
            if panel == attack:
                fig.add_vline(x=at, line=dict(color=MARK_COLOR, dash="dot", width=1.5), annotation_text=text,
                              annotation_position="top left", annotation_textangle=-90, annotation_font_size=11,
                              row=1, col=col)
        fig.update_xaxes(title_text=x_title, row=1, col=col)
        if ideal and ideal_at is not None and attack != "none" and xs:
            ticks = [ideal_at] + xs
            fig.update_xaxes(tickvals=ticks, ticktext=["no jammer"] + [f"{v:g}" for v in xs], row=1, col=col)
    # a fixed, stated range: one point of noise must not look dramatic (normalised accuracy may pass 100%)
    top = max([105.0] + [_pct(r[k]) + 5 for r in rows for k in ("avg_normalized", "avg_normalized_clean")
                         if r.get(k) is not None])
    fig.update_yaxes(title_text="avg normalised accuracy (%)", range=[0, top], row=1, col=1)
    if has_rejection:
        for defense in defenses:
            color = DEFENSE_COLORS.get(defense, PALETTE[defenses.index(defense) % len(PALETTE)])
            for attack in dict.fromkeys(r["attack"] for r in rows):
                by_x: dict = {}  # one point per x (the ideal channel of an SNR sweep: one point for every power)
                for r in rows:
                    if (r["attack"], r["defense"]) == (attack, defense) and r.get("rejection_rate") is not None \
                            and r.get(rejection_x) is not None:
                        by_x.setdefault(r[rejection_x], r)
                if not by_x:
                    continue
                pts = [(v, _pct(r["rejection_rate"]), r.get(x) if len(by_x) > 1 else None, r["mean_mse"])
                       for v, r in sorted(by_x.items())]
                name = DEFENSE_LABELS.get(defense, defense)
                fig.add_trace(go.Scatter(
                    x=[p[0] for p in pts], y=[p[1] for p in pts], customdata=[[p[2], p[3]] for p in pts],
                    mode="lines+markers", name=name, legendgroup=defense, showlegend=False,
                    line=dict(color=color, dash=DASH.get(defense, "solid"), width=1.5),
                    marker=dict(symbol=ATTACK_SYMBOLS.get(attack, "circle"), size=8),
                    hovertemplate=f"{name}, {titles.get(attack, attack)}<br>{x_title} %{{customdata[0]}}<br>mean MSE "
                                  "%{customdata[1]:.4f}<br>H0 rejected %{y:.1f}%<extra></extra>"), row=2, col=1)
        attacks = list(dict.fromkeys(r["attack"] for r in rows))
        for attack in attacks if len(attacks) > 1 else ():  # the marker of each channel, once in the legend
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=titles.get(attack, attack),
                                     legendgroup="channel", marker=dict(symbol=ATTACK_SYMBOLS.get(attack, "circle"),
                                                                        color=MARK_COLOR, size=8)), row=2, col=1)
        fig.update_yaxes(title_text="H0 rejected (% of samples)", rangemode="tozero", row=2, col=1)
        fig.update_xaxes(title_text=("mean MSE over the users (log)" if rejection_x == "mean_mse" else x_title),
                         type="log" if rejection_x == "mean_mse" else None, row=2, col=1)
    themed(fig).update_layout(title=title, height=720 if has_rejection else 440,
                      legend=dict(orientation="h", y=-0.12, yanchor="top"),
                      margin=dict(l=60, r=20, t=100 if any("<br>" in titles.get(a, a) for a in panels) else 70, b=60))
    return fig


def snr_curves(rows: Sequence[Mapping], *, channels: Sequence[Mapping] | None = None,
               labels: Mapping[str, str] | None = None, rejection: bool = True) -> go.Figure:
    """Average normalised accuracy versus jammer power (dBm): one panel per jammer attack, one line per
    defense, the clean fusion and the clean-realigned control as reference lines; the ideal channel
    (attack 'none', no jammer) as diamonds at the left edge; the paper's jammer budgets of its
    worst-case conditions (`channels`, default `sweeps.PAPER_CHANNELS`) as dotted vertical lines.
    Below: the hypothesis test's H0 rejection rate of each point against the mean MSE."""
    panels = [a for a in dict.fromkeys(r["attack"] for r in rows) if a != "none"] or ["none"]
    xs = sorted({r["jammer_power_dbm"] for r in rows if r.get("jammer_power_dbm") is not None})
    step = min((b - a for a, b in zip(xs, xs[1:])), default=10.0)
    marks = [(c["attack"], c["jammer_power_dbm"], f"paper {c.get('short', c['title'])}: {c['jammer_power_dbm']:g} "
              "dBm") for c in _paper_channels(channels) if c.get("jammer_power_dbm") is not None]
    return _sweep_figure(rows, x="jammer_power_dbm", panels=panels, x_title="jammer power (dBm)",
                         title="Accuracy versus jammer power", rejection_x="mean_mse",
                         rejection_title="H0 rejection rate versus the users' mean MSE", labels=labels,
                         ideal_at=(xs[0] - max(step, 5.0)) if xs else None, marks=marks, rejection=rejection)


def gain_curves(rows: Sequence[Mapping], *, fitted_db: float | None = None, labels: Mapping[str, str] | None = None,
                rejection: bool = True) -> go.Figure:
    """Average normalised accuracy versus the reference amplitude `perturb.symbol_gain_db` (dB), one
    panel per channel (attack at its jammer power), one line per defense, the clean fusion and the
    control as reference lines, `fitted_db` (the calibrated gain) as a dotted vertical line. Below:
    the H0 rejection rate versus the gain."""
    panels = list(dict.fromkeys(r["attack"] for r in rows))
    power = {r["attack"]: r.get("jammer_power_dbm") for r in rows}
    titles = {**ATTACK_TITLES, **(labels or {})}
    named = {a: titles.get(a, a) + (f"<br>jammer {power[a]:g} dBm" if power.get(a) is not None else "")
             for a in panels}
    marks = [(a, fitted_db, f"calibrated: {fitted_db:g} dB") for a in panels] if fitted_db is not None else []
    return _sweep_figure(rows, x="symbol_gain_db", panels=panels, x_title="reference amplitude (dB)",
                         title="Accuracy versus the reference amplitude (perturb.symbol_gain_db)",
                         rejection_x="symbol_gain_db",
                         rejection_title="H0 rejection rate versus the reference amplitude",
                         labels=named, marks=marks, rejection=rejection)


def tasks_bands(summary: Sequence[Mapping]) -> go.Figure:
    """Mean over every task combination of each size, with a +-1 std band (paper Fig. 2)."""
    fig = go.Figure()
    conds = list(dict.fromkeys((r["attack"], r["defense"]) for r in summary))
    top = max([105.0] + [100 * (r["mean"] + r["std"]) + 5 for r in summary])
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
        fig.add_trace(go.Scatter(x=x, y=mean, mode="lines+markers",
                                 name=f"{ATTACK_TITLES.get(attack, attack)}, {DEFENSE_LABELS.get(defense, defense)}",
                                 line=dict(color=color, dash=DASH.get(defense, "solid"))))
    fig.update_yaxes(range=[0, top])
    if top > 105:  # say why a mean may pass 100%
        fig.add_annotation(text="above 100%: the fused model beats an individual model on some tasks", x=1, y=1,
                           xref="paper", yref="paper", xanchor="right", yanchor="bottom", showarrow=False,
                           font=dict(size=11, color=MARK_COLOR))
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


def cosine_heatmaps(result: Result, titles: Sequence[str] = ("clean", "received", "defended"), *,
                    minus_clean: bool = False, task_titles: Mapping[str, str] | None = None) -> go.Figure:
    """Cosine similarity of clean, received and defended task vectors side by side (paper Fig. 3-4).
    `minus_clean`: the received and defended panels show their difference from the clean cosines
    (when the three look alike), on a symmetric scale of their own. Values sit in the cells only for
    up to four tasks; beyond, on hover (a number per cell is unreadable)."""
    from plotly.subplots import make_subplots

    tasks = [short_title((task_titles or {}).get(t, t)) for t in result.tasks]
    clean = np.asarray(result.cosine["clean"], dtype=float)
    panels = []
    for name in titles:
        z = np.asarray(result.cosine[name], dtype=float)
        if minus_clean and name != "clean":
            panels.append((f"{name} minus clean", z - clean))
        else:
            panels.append((f"{name} task vectors", z))
    spread = max([float(np.abs(z).max()) for t, z in panels if "minus" in t] + [1e-3])
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[t for t, _ in panels], horizontal_spacing=0.06)
    for i, (title, z) in enumerate(panels, start=1):
        diff = "minus" in title
        lim = spread if diff else 1.0
        fig.add_trace(go.Heatmap(z=z.tolist(), x=tasks, y=tasks, zmin=-lim, zmax=lim, colorscale="RdBu",
                                 reversescale=True, showscale=i == len(panels),  # the clean panel: -1..1
                                 hovertemplate="%{y} vs %{x}: %{z:.3f}<extra>" + title + "</extra>",
                                 **({"text": [[f"{v:.2f}" for v in row] for row in z], "texttemplate": "%{text}"}
                                    if len(tasks) <= 4 else {})),
                      row=1, col=i)
        fig.update_yaxes(autorange="reversed", row=1, col=i)
    themed(fig).update_layout(margin=dict(l=60, r=20, t=50, b=60))
    return fig


def short_title(title: str) -> str:
    """An axis label from a task's title: "House numbers (SVHN-like)" -> "House numbers" (the whole
    title goes on hover)."""
    return title.split(" (")[0]


def accuracy_bars(result: Result, conditions: Sequence[str] = (Condition.FINETUNED, Condition.CLEAN,
                                                               Condition.ATTACKED, Condition.DEFENDED),
                  task_titles: Mapping[str, str] | None = None, labels: Mapping[str, str] | None = None) -> go.Figure:
    """Accuracy per task for each condition, side by side; tasks by their titles (`task_titles`), conditions
    by `labels` where given (e.g. "jammed, no defense" where the scenario has a jammer)."""
    task_titles = task_titles or {}
    labels = {Condition.FINETUNED: "individual fine-tuning", Condition.ZEROSHOT: "base (zero-shot)",
              Condition.CLEAN: "clean fusion", Condition.CLEAN_REALIGNED: "clean fusion + realign",
              Condition.ATTACKED: "attacked, no defense", Condition.DEFENDED: "attacked + defense",
              **(labels or {})}
    fig = go.Figure()
    for i, cond in enumerate(c for c in conditions if c in result.accuracy):
        acc = result.accuracy[cond]
        fig.add_trace(go.Bar(x=[short_title(task_titles.get(t, t)) for t in acc], y=[100 * v for v in acc.values()],
                             name=labels.get(cond, cond),
                             marker_color=CONDITION_COLORS.get(cond, PALETTE[i % len(PALETTE)]),
                             customdata=[task_titles.get(t, t) for t in acc],
                             hovertemplate="%{customdata}: %{y:.1f}%<extra></extra>"))
    fig.update_layout(barmode="group", yaxis_range=[0, 100])
    return _layout(fig, "Accuracy per task", "task", "accuracy (%)")


def channel_bars(results: Mapping[str, Result]) -> go.Figure:
    """Average normalised accuracy (%) on each channel (name -> its R-MTLLMF run): without a defense and
    with R-MTLLMF, beside the fusion without noise (a line: it does not depend on the channel)."""
    names = list(results)
    fig = go.Figure()
    for cond, label in ((Condition.ATTACKED, "no defense"), (Condition.DEFENDED, "R-MTLLMF")):
        y = [100 * results[n].average_normalized[cond] for n in names]
        fig.add_trace(go.Bar(x=names, y=y, name=label, marker_color=CONDITION_COLORS[cond], text=[f"{v:.1f}" for v in y],
                             textposition="outside", hovertemplate="%{x}, " + label + ": %{y:.1f}%<extra></extra>"))
    clean = 100 * float(np.mean([results[n].average_normalized[Condition.CLEAN] for n in names]))
    fig.add_trace(go.Scatter(x=names, y=[clean] * len(names), mode="lines", name=f"fusion without noise ({clean:.1f}%)",
                             line=dict(color=CLEAN_COLOR, dash="dash", width=2), hoverinfo="skip"))
    fig.update_layout(barmode="group", yaxis_range=[0, 110])
    fig.update_xaxes(tickangle=0)
    return _layout(fig, "Average normalised accuracy by channel", "", "normalised accuracy (%)")


LEADERBOARD_SHORT = {"none": "ideal", "worst_sum_rate": "P1 jammer", "worst_strongest_user": "P2 jammer"}


def _leaderboard_order(rows: Sequence[Mapping]) -> list[str]:
    """Methods from the best to the worst under the jammers with R-MTLLMF (the question asked)."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    score = {m: sum(r["average_normalized"] for r in rows if r["method"] == m and r["attack"] != "none"
                    and r["defense"] == "rmtllmf") for m in methods}
    return sorted(methods, key=lambda m: -score[m])


def leaderboard_heatmap(rows: Sequence[Mapping], titles: Mapping[str, str] | None = None) -> go.Figure:
    """Methods x conditions (clean, then each channel without defense and with R-MTLLMF): average
    normalised accuracy (%). Rows: one weighting (the caller filters)."""
    titles = titles or {}
    methods = _leaderboard_order(rows)
    attacks = list(dict.fromkeys(r["attack"] for r in rows))
    cols = [(Condition.CLEAN, None)] + [(a, d) for a in attacks for d in ("none", "rmtllmf")]
    names = ["clean<br>fusion"] + [f"{LEADERBOARD_SHORT.get(a, a)}<br>{'no defense' if d == 'none' else 'R-MTLLMF'}"
                                   for a, d in cols[1:]]

    def value(m, a, d):  # rows hold fractions; the figure shows percent
        if a == Condition.CLEAN:
            v = next((r["clean_normalized"] for r in rows if r["method"] == m), None)
        else:
            v = next((r["average_normalized"] for r in rows if (r["method"], r["attack"], r["defense"]) == (m, a, d)),
                     None)
        return None if v is None else 100 * v

    z = [[value(m, a, d) for a, d in cols] for m in methods]
    fig = go.Figure(go.Heatmap(z=z, x=names, y=[titles.get(m, m) for m in methods], zmin=0, zmax=100,
                               colorscale="RdYlGn", colorbar=dict(title="%"),
                               text=[[("" if v is None else f"{v:.1f}") for v in row] for row in z],
                               texttemplate="%{text}", hovertemplate="%{y}, %{x}: %{z:.1f}%<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(side="top", tickangle=0)  # two-line labels above the cells: never clipped below
    fig = _layout(fig, "Average normalised accuracy (%) by method and condition", "", "")
    fig.update_layout(margin=dict(t=110, b=20))
    return fig


def leaderboard_bars(rows: Sequence[Mapping], attack: str, titles: Mapping[str, str] | None = None) -> go.Figure:
    """Per method: clean fusion, jammed without defense and with R-MTLLMF on one channel (%)."""
    titles = titles or {}
    methods = _leaderboard_order(rows)
    pick = {(r["method"], r["defense"]): r for r in rows if r["attack"] == attack}
    x = [titles.get(m, m) for m in methods]
    fig = go.Figure()
    for name, color, get in (("clean fusion", CLEAN_COLOR, lambda m: pick.get((m, "none"), {}).get("clean_normalized")),
                             ("jammed, no defense", DEFENSE_COLORS["none"],
                              lambda m: pick.get((m, "none"), {}).get("average_normalized")),
                             ("jammed + R-MTLLMF", DEFENSE_COLORS["rmtllmf"],
                              lambda m: pick.get((m, "rmtllmf"), {}).get("average_normalized"))):
        fig.add_trace(go.Bar(x=x, y=[None if get(m) is None else 100 * get(m) for m in methods], name=name,
                             marker_color=color, hovertemplate="%{x}: %{y:.1f}%<extra>" + name + "</extra>"))
    fig.update_layout(barmode="group", yaxis_range=[0, 105])
    return _layout(fig, f"Clean, jammed and defended: {ATTACK_TITLES.get(attack, attack)}", "merge method",
                   "avg normalised accuracy (%)")


def user_mse_bars(channels: Mapping[str, Result | Mapping], labels: Sequence[str] | None = None) -> go.Figure:
    """Each user's MSE after the receiver, one bar group per channel (e.g. ideal against jammed); a
    channel is a Result or an uplink's plain data (`evaluate_uplink(...).to_dict()`)."""
    fig = go.Figure()
    colors = (CLEAN_COLOR, DEFENSE_COLORS["none"], "#ff7f0e", "#9467bd")
    for i, (name, r) in enumerate(channels.items()):
        users = r["users"] if isinstance(r, Mapping) else r.users
        x = list(labels) if labels is not None else [f"user {q}" for q in range(len(users))]
        fig.add_trace(go.Bar(x=x, y=[u["mse"] for u in users], name=name, marker_color=colors[i % len(colors)],
                             hovertemplate="%{x}: MSE %{y:.3f}<extra>" + name + "</extra>"))
    fig.update_layout(barmode="group", yaxis_range=[0, 1])
    return _layout(fig, "Each user's MSE after the receiver (1 = the task vector is noise)", "user (its task)", "MSE")


PROTECTION_STYLE = {"none": ("no protection", DEFENSE_COLORS["none"], "dot"),
                    "ai": ("AI: R-MTLLMF", DEFENSE_COLORS["rmtllmf"], "dash"),
                    "phy": ("PHY: best protection in the budget", "#ff7f0e", "dashdot"),
                    "phy+ai": ("PHY + AI", "#2ca02c", "solid")}


def resilience_curves(table: Sequence[Mapping]) -> go.Figure:
    """Accuracy versus airtime budget for none / AI / PHY / PHY+AI, one panel per channel."""
    from plotly.subplots import make_subplots

    attacks = list(dict.fromkeys(r["attack"] for r in table))
    fig = make_subplots(rows=1, cols=len(attacks), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[ATTACK_TITLES.get(a, a) for a in attacks])
    for i, attack in enumerate(attacks, start=1):
        for protection, (name, color, dash) in PROTECTION_STYLE.items():
            pts = sorted((r["airtime_factor"], 100 * r["average_normalized"], r["setting"]) for r in table
                         if r["attack"] == attack and r["protection"] == protection)
            fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers", name=name,
                                     legendgroup=protection, showlegend=i == 1, line=dict(color=color, dash=dash),
                                     customdata=[p[2] for p in pts],
                                     hovertemplate="airtime x%{x}: %{y:.1f}% (%{customdata})<extra>" + name + "</extra>"),
                          row=1, col=i)
        fig.update_xaxes(type="log", tickvals=[1, 2, 4, 8], title_text="airtime budget (x)", row=1, col=i)
    fig.update_yaxes(range=[0, 105], title_text="avg normalised accuracy (%)", row=1, col=1)
    themed(fig).update_layout(margin=dict(l=60, r=20, t=70, b=60), legend=dict(orientation="h", y=-0.25),
                      title="Protection versus airtime")
    return fig


def ber_curves(tables: Mapping[str, Mapping], which: str = "ber") -> go.Figure:
    """Coded bit (`which` "ber") or block ("bler") error rate versus SINR, one curve per code setting,
    log scale: the measured points solid with markers; where the simulation saw no error, the 95% upper
    bound it resolved (`phy.resolved_curve`), dotted: the engine never takes such a point as error-free."""
    from ..science.phy import resolved_curve

    fig = go.Figure()
    for i, (name, t) in enumerate(tables.items()):
        x, measured = list(t["sinr_db"]), list(t[which])
        curve = resolved_curve(t, which)
        last = max((j for j, b in enumerate(measured) if b > 0), default=-1)
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(x=x[:last + 1], y=measured[:last + 1], mode="lines+markers", name=name,
                                 legendgroup=name, line=dict(color=color)))
        if last + 1 < len(x):   # from the last point with errors to the bound, then flat
            fig.add_trace(go.Scatter(x=x[max(last, 0):last + 3], y=curve[max(last, 0):last + 3].tolist(), mode="lines",
                                     name=f"{name}: bound, no error seen", legendgroup=name, showlegend=False,
                                     line=dict(color=color, dash="dot")))
    fig.update_yaxes(type="log", exponentformat="power", range=[-7, 0.1])
    title = "Bit errors after LDPC decoding" if which == "ber" else "Codeword errors after LDPC decoding"
    return _layout(fig, title, "SINR (dB)", "BER" if which == "ber" else "BLER")


ARENA_ATTACKS = {"none": "ideal channel", "worst_sum_rate": "worst-case sum rate (P1)",
                 "worst_strongest_user": "worst-case strongest user (P2)"}


def arena_heatmap(cells: Sequence[Mapping], titles: Mapping[str, str] | None = None, short: bool = False) -> go.Figure:
    """Defenses x (attack, non-adaptive | adaptive): the defended model's average normalised accuracy (%),
    the adaptive cell beside the non-adaptive one; hover names the strongest strategy and the gap."""
    titles = titles or {}
    defenses = list(dict.fromkeys(c["defense"] for c in cells))
    attacks = list(dict.fromkeys(c["attack"] for c in cells))
    cols = [(a, adaptive) for a in attacks for adaptive in ((False,) if a == "none" else (False, True))]
    # short two-line labels above the cells (P1, P2: the paper's worst-case sum-rate and strongest-user jammers)
    names = ["ideal<br>no jammer" if a == "none" else
             f"{LEADERBOARD_SHORT.get(a, a).split()[0] if short else LEADERBOARD_SHORT.get(a, a)}<br>"
             f"{('knows it' if short else 'knows the defense') if ad else 'as is'}" for a, ad in cols]
    by = {(c["attack"], c["defense"]): c for c in cells}

    def value(d, a, adaptive):
        c = by.get((a, d))
        return None if c is None else 100 * (c["adaptive"] if adaptive else c["non_adaptive"])

    def hover(d, a, adaptive):
        c = by.get((a, d))
        if c is None:
            return ""
        if not adaptive:
            return f"{ARENA_ATTACKS.get(a, a)}: white jammer (non-adaptive)" if a != "none" else "no jammer"
        return (f"{ARENA_ATTACKS.get(a, a)}: the strongest jammer that knows the defense, {c['adaptive_strategy']}; "
                f"{100 * c['gap']:.1f} points below the jammer as is")

    z = [[value(d, a, ad) for a, ad in cols] for d in defenses]
    fig = go.Figure(go.Heatmap(
        z=z, x=names, y=[titles.get(d, d) for d in defenses], zmin=0, zmax=100, colorscale="RdYlGn",
        colorbar=dict(title="%"), text=[[("" if v is None else f"{v:.1f}") for v in row] for row in z],
        customdata=[[hover(d, a, ad) for a, ad in cols] for d in defenses], texttemplate="%{text}",
        hovertemplate="%{y}, %{x}: %{z:.1f}%<br>%{customdata}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(side="top", tickangle=0)
    fig = _layout(fig, "Defended accuracy (%, normalised) against jammers that ignore or know the defense", "", "")
    fig.update_layout(margin=dict(t=110, b=20))
    return fig
