"""`python -m rmtllmf_core paper`: every figure of the paper on the current zoo, and a report that
puts the paper's numbers beside ours and says which of the paper's orderings reproduce.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..science import calibration
from . import plots, sweeps
from ..experiment.pipeline import run
from ..experiment.presets import preset_scenario
from ..experiment.result import Condition
from .work import Work, execute, run_points

from ..science.calibration import PAPER_BASELINE, PAPER_NUMBERS

PAPER_MSE = {"paper_ideal": 0.013, "paper_worst_sum_rate": 0.21, "paper_worst_strongest_user": 0.16}
CONDITIONS = ("paper_ideal", "paper_worst_sum_rate", "paper_worst_strongest_user")
ATTACK_OF = {"paper_ideal": "none", "paper_worst_sum_rate": "worst_sum_rate",
             "paper_worst_strongest_user": "worst_strongest_user"}
SEEDS = calibration.DEFAULT_SEEDS
# PAPER-NOTES sec. 6: normalised average accuracy, 8 tasks, CLIP ViT-B/16 (the paper's Fig. 2 at N = 8)
PAPER_VALUES = {"baseline": PAPER_BASELINE, **{n.name: n.value for n in PAPER_NUMBERS.values()}}


def table_points(zoo: str, seeds=SEEDS) -> list[tuple[dict, object]]:
    """Per seed: R-MTLLMF on each channel (its attacked fusion is the no-protection number) and, on the
    ideal channel, freeze alone and realign alone (the ablation's two halves)."""
    points = []
    for seed in seeds:
        for name in CONDITIONS:
            sc = preset_scenario(name, zoo=zoo).replace(seed=int(seed))
            points.append(({"seed": int(seed), "condition": name, "defense": "rmtllmf"},
                           sweeps.with_defense(sc, "rmtllmf")))
        for d in ("freeze", "realign"):
            sc = preset_scenario("paper_ideal", zoo=zoo).replace(seed=int(seed))
            points.append(({"seed": int(seed), "condition": "paper_ideal", "defense": d},
                           sweeps.without_control(sweeps.with_defense(sc, d))))
    return points


# the rows of the paper-versus-ours table: (name, title, which run, which accuracy of it)
TABLE_ROWS = (
    ("baseline", "fusion without noise", ("paper_ideal", "rmtllmf"), Condition.CLEAN),
    *((n.name, n.title, (n.condition, "rmtllmf"), Condition.DEFENDED if n.defense == "rmtllmf" else Condition.ATTACKED)
      for n in PAPER_NUMBERS.values()),
    ("freeze_alone_ideal", "freeze alone, ideal channel", ("paper_ideal", "freeze"), Condition.DEFENDED),
    ("realign_alone_ideal", "realign alone, ideal channel", ("paper_ideal", "realign"), Condition.DEFENDED),
    ("clean_realigned", "control: R-MTLLMF's realignment on the clean fusion", ("paper_ideal", "rmtllmf"),
     Condition.CLEAN_REALIGNED),
)


def table_work(zoo: str, seeds=SEEDS) -> Work:
    """The runs behind the paper-versus-ours table, as one Work (what the About page hands the host)."""
    return Work.sweep(table_points(zoo, seeds))


def main_table(zoo: str, progress: Callable | None = None, seeds=SEEDS, **run_kw) -> list[dict]:
    """`table_from_rows` of `table_work`, run here."""
    return table_from_rows(execute(table_work(zoo, seeds), progress, **run_kw))


def table_from_rows(rows: Sequence[dict]) -> list[dict]:
    """Paper against ours, one row per number: ours per seed, mean and spread, each as normalised
    accuracy and as a share of our clean fusion (what is compared with the paper's share of its
    baseline), labelled fitted (by `calibrate`) or predicted. `rows`: `table_work`'s."""
    by = {(r["seed"], r["condition"], r["defense"]): r for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    column = {Condition.CLEAN: "avg_normalized_clean", Condition.ATTACKED: "avg_normalized_attacked",
              Condition.DEFENDED: "avg_normalized", Condition.CLEAN_REALIGNED: "avg_normalized_clean_realigned"}
    fitted = {f["name"] for f in (calibration.load().get("provenance") or {}).get("fitted", [])}
    table = []
    for name, title, (cond, defense), which in TABLE_ROWS:
        ours = [by[(s, cond, defense)][column[which]] for s in seeds]
        if any(v is None for v in ours):
            continue
        clean = [by[(s, cond, defense)]["avg_normalized_clean"] for s in seeds]
        share = [o / c for o, c in zip(ours, clean)]
        paper = PAPER_VALUES.get(name)
        table.append({
            "name": name, "title": title, "condition": cond, "defense": defense,
            "status": "baseline" if name == "baseline" else "fitted" if name in fitted
            else "predicted" if paper is not None else "ours only",
            "paper": paper, "paper_share": None if paper is None else paper / PAPER_BASELINE,
            "ours_per_seed": ours, "ours": float(np.mean(ours)), "ours_std": float(np.std(ours)),
            "share": float(np.mean(share)), "share_std": float(np.std(share)),
            "gap_points": None if paper is None else 100 * (float(np.mean(share)) - paper / PAPER_BASELINE),
            "mean_mse": by[(seeds[0], cond, defense)]["mean_mse"], "paper_mse": PAPER_MSE.get(cond),
            "seeds": seeds,
        })
    return table


def orderings(table: list[dict]) -> list[dict]:
    """The paper's six orderings (PAPER-NOTES sec. 6, with margins), each checked at every seed."""
    v = {r["name"]: r["ours_per_seed"] for r in table}
    titles = {r["name"]: r["title"] for r in table}
    n = len(table[0]["ours_per_seed"])
    checks = [
        # the paper's baseline bounds its repair (91.2 against 89.1); realignment is extra training, so
        # ours may pass the clean fusion by float noise, not by more than 2 points
        ("the clean fusion bounds R-MTLLMF on the ideal channel (clean >= R-MTLLMF ideal - 2 points)",
         lambda i: v["baseline"][i] >= v["rmtllmf_ideal"][i] - 0.02, ("baseline", "rmtllmf_ideal")),
        ("without protection the ideal channel already hurts (more than 15 points below clean)",
         lambda i: v["no_protection_ideal"][i] < v["baseline"][i] - 0.15, ("baseline", "no_protection_ideal")),
        ("R-MTLLMF repairs the ideal channel (more than 10 points above no protection)",
         lambda i: v["rmtllmf_ideal"][i] > v["no_protection_ideal"][i] + 0.10, ("rmtllmf_ideal", "no_protection_ideal")),
        ("R-MTLLMF repairs both worst cases (more than 10 points above no protection)",
         lambda i: all(v[f"rmtllmf_{w}"][i] > v[f"no_protection_{w}"][i] + 0.10
                       for w in ("worst_sum_rate", "worst_strongest_user")),
         ("rmtllmf_worst_sum_rate", "no_protection_worst_sum_rate", "rmtllmf_worst_strongest_user",
          "no_protection_worst_strongest_user")),
        ("the worst cases are worse than the ideal channel, with and without R-MTLLMF",
         lambda i: all(v[f"{d}_{w}"][i] < v[f"{d}_ideal"][i] for d in ("rmtllmf", "no_protection")
                       for w in ("worst_sum_rate", "worst_strongest_user")),
         ("no_protection_ideal", "no_protection_worst_sum_rate", "no_protection_worst_strongest_user",
          "rmtllmf_ideal", "rmtllmf_worst_sum_rate", "rmtllmf_worst_strongest_user")),
        ("freeze alone and realign alone each below both (ideal channel)",
         lambda i: max(v["freeze_alone_ideal"][i], v["realign_alone_ideal"][i]) < v["rmtllmf_ideal"][i],
         ("freeze_alone_ideal", "realign_alone_ideal", "rmtllmf_ideal")),
    ]
    out = []
    for title, holds, names in checks:
        passed = sum(bool(holds(i)) for i in range(n))
        numbers = "; ".join(f"{titles[k]} {100 * float(np.mean(v[k])):.1f}%" for k in names)
        out.append({"ordering": title, "seeds_passed": passed, "seeds": n, "holds": passed == n, "numbers": numbers})
    return out


def _off_diagonal_mean(matrix) -> float:
    m = np.asarray(matrix)
    return float(m[~np.eye(len(m), dtype=bool)].mean())


def fig2_points(zoo: str, sizes: Sequence[int] | None = None) -> list:
    """The paper's Fig. 2 sweep: every combination of tasks x each condition at its preset jammer
    power, with R-MTLLMF (247 x 3 = 741 points on eight tasks), as one list so a pool of workers
    shares each combination's lambda and clean fusion across the conditions (without the
    clean-realigned control, as every sweep: `sweeps.without_control`; `main_table` keeps it). The
    no-defense curve is each run's own attacked fusion (`fig2_rows`)."""
    points = []
    for name in CONDITIONS:
        points += sweeps.tasks_points(preset_scenario(name, zoo=zoo), [(ATTACK_OF[name], "rmtllmf")], sizes)
    return points


def fig2_rows(rows: Sequence[dict]) -> list[dict]:
    """`fig2_points`' rows and their no-defense twins: the defense never touches the received vectors,
    so a second run without it would recompute the same attacked fusion bit for bit (tested); reading
    it from the R-MTLLMF run saves 741 runs."""
    return [*rows, *sweeps.undefended_rows(rows)]


def reproduce_paper(zoo: str, out: Path, sizes: Sequence[int] | None = None,
                    progress: Callable | None = None, workers: int = 1, **backend) -> Path:
    """Every figure into `out`, and report.md; the sweeps run in `workers` processes, or on Ray
    (`backend`: work.run_points' backend, address)."""
    out.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda f, m: None)

    table = main_table(zoo, lambda f, m: say(0.1 * f, m), workers=workers, **backend)
    (out / "table.json").write_text(json.dumps(table, indent=1))

    base = preset_scenario("paper_ideal", zoo=zoo)
    worst = preset_scenario("paper_worst_sum_rate", zoo=zoo)
    # Fig. 2: every combination of tasks, each condition at its preset jammer power
    rows = fig2_rows(run_points(fig2_points(zoo, sizes), progress=lambda f, m: say(0.1 + 0.6 * f, f"Fig. 2 {m}"),
                                workers=workers, **backend))
    summary = sweeps.summarize_tasks(rows)
    plots.tasks_bands(summary).write_html(out / "fig2_tasks.html", include_plotlyjs=True)
    (out / "fig2_tasks.json").write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))

    # Fig. 3-4: cosine similarity, ideal and worst-case SR, with the receiver's correlated noise
    cos = {}
    for label, sc in (("ideal", base), ("worst", worst)):
        r = run(sc.replace(**{"perturb.model": "correlated"}))
        plots.cosine_heatmaps(r).write_html(out / f"fig34_cosine_{label}.html", include_plotlyjs=True)
        cos[label] = _off_diagonal_mean(r.cosine["received"])
    say(0.75, "Fig. 3-4")

    # Fig. 5: ablation (ideal channel)
    ablation = sweeps.ablation_sweep(base, progress=lambda f, m: say(0.75 + 0.15 * f, f"Fig. 5 {m}"), workers=workers,
                                     **backend)
    plots.ablation_bars(ablation).write_html(out / "fig5_ablation.html", include_plotlyjs=True)
    (out / "fig5_ablation.json").write_text(json.dumps(ablation, indent=1))

    # beyond the paper: accuracy versus jammer power
    snr = sweeps.snr_sweep(base, [-150, -140, -130, -120, -110, -100], ["white", "worst_sum_rate",
                           "worst_strongest_user"], ["none", "rmtllmf"], progress=lambda f, m: say(0.9 + 0.1 * f, m),
                           workers=workers, **backend)
    plots.snr_curves(snr).write_html(out / "snr.html", include_plotlyjs=True)
    (out / "snr.json").write_text(json.dumps(snr, indent=1))

    checks = orderings(table)
    alignment = {"ordering": "received vectors more aligned under worst-case SR (correlated noise) than ideal",
                 "holds": cos["worst"] > cos["ideal"],
                 "numbers": f"mean off-diagonal cosine {cos['worst']:.3f} vs {cos['ideal']:.3f}"}
    path = out / "report.md"
    path.write_text(render_markdown(zoo, base, table, summary, ablation, checks, alignment))
    return path


# why a prediction may miss the paper by more than 10 points of share (the report says it beside the table)
GAP_REASONS = {
    "no_protection_ideal": "the gain is fitted so that R-MTLLMF under the worst-case jammer keeps the paper's share; "
                           "the same noise hurts this zoo's unprotected fusion less than it hurts a ViT-B/16 "
                           "(docs/calibration.md).",
    "no_protection_worst_sum_rate": "chance on 10-class tasks is a floor (10% absolute, more once normalised); the "
                                    "paper's datasets have up to 397 classes.",
    "no_protection_worst_strongest_user": "the same floor; and the strongest-user jammer cannot raise the MSE to the "
                                          "paper's 0.16 under this receiver (docs/noise-models.md).",
    "rmtllmf_worst_strongest_user": "the strongest-user jammer cannot raise the MSE to the paper's 0.16 under this "
                                    "receiver (docs/noise-models.md).",
}


def gap_notes(table: list[dict]) -> list[str]:
    """Markdown list items: each prediction more than 10 points of share from the paper's, and why."""
    return [f"- *{r['title']}* misses the paper's share by {r['gap_points']:+.1f} points: {GAP_REASONS[r['name']]}"
            for r in table if r["status"] == "predicted" and r["gap_points"] is not None
            and abs(r["gap_points"]) > 10 and r["name"] in GAP_REASONS]


def table_markdown(table: list[dict]) -> list[str]:
    """The paper-versus-ours table as markdown lines (the report's and docs/calibration.md's)."""
    pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}"
    lines = ["| number | status | paper (% / share of baseline) | ours (% mean ± sd over seeds) | ours share of clean "
             "| gap (points of share) |", "|---|---|---|---|---|---|"]
    for r in table:
        paper = "-" if r["paper"] is None else f"{pct(r['paper'])} / {pct(r['paper_share'])}"
        gap = "-" if r["gap_points"] is None or r["status"] == "baseline" else f"{r['gap_points']:+.1f}"
        lines.append(f"| {r['title']} | {r['status']} | {paper} | {pct(r['ours'])} ± {pct(r['ours_std'])} | "
                     f"{pct(r['share'])} | {gap} |")
    return lines


def orderings_markdown(checks: list[dict]) -> list[str]:
    lines = ["| ordering | holds | seeds | numbers (mean) |", "|---|---|---|---|"]
    lines += [f"| {c['ordering']} | {'yes' if c['holds'] else '**no**'} | {c.get('seeds_passed', '-')}"
              f"{'/' + str(c['seeds']) if 'seeds' in c else ''} | {c['numbers']} |" for c in checks]
    return lines


def render_markdown(zoo, base, table, summary, ablation, checks, alignment) -> str:
    pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"
    cal = calibration.load()
    prov = cal.get("provenance") or {}
    fitted = ", ".join(f"{f['name']} ({100 * f['paper']:.1f} / {100 * f['paper_baseline']:.1f})"
                       for f in prov.get("fitted", [])) or "nothing (uncalibrated)"
    lines = [
        f"# The paper's figures on zoo `{zoo}`", "",
        "Paper: CLIP ViT-B/16 on eight real datasets. Ours: the zoo named above, noise model "
        f"`{base.perturb.model}` with `{base.perturb.scale}` scaling at a reference amplitude of "
        f"{base.perturb.symbol_gain_db} dB, lambda mode `{base.fusion.lambda_mode}`, "
        f"{base.defense.shots_per_class} shots per class, {base.defense.realign_steps} realignment steps of "
        f"{base.defense.realign_batch_size} samples at lr "
        f"{base.defense.realign_lr:g}.", "",
        f"Fitted by `{prov.get('command', 'calibrate')}` on {fitted}, over seeds {prov.get('seeds', '-')}: the "
        "reference amplitude and the realignment budget. Every other row is a prediction. Numbers are "
        "compared as shares of each side's clean fusion.", "",
        f"## Normalised average accuracy, all tasks fused (seeds {table[0]['seeds']})", "",
        *table_markdown(table), "",
        "The paper's worst-case rows without protection are given as 4-6% (shown as 5%); ours cannot fall much "
        "below chance on 10-class tasks (10% absolute, more once normalised).",
        *gap_notes(table),
        "", "## Orderings from the paper", "", *orderings_markdown(checks + [alignment]),
    ]
    if not alignment["holds"]:
        lines += ["", "Why the alignment ordering fails here: with perfect cancellation the MMSE-SIC receiver's "
                  "errors are uncorrelated across users (its cross-user error covariance is diagonal, as for any "
                  "MMSE decision-feedback receiver), so the `correlated` noise model draws independent noise and "
                  "noise only makes received vectors more orthogonal. The paper's Fig. 4 alignment (0.48-0.52) "
                  "needs an error component shared by every user (the same realisation added to every vector, "
                  "with about half the error's power), which this receiver does not produce; we report it rather "
                  "than tune it in."]
    lines += ["", "## Fig. 2: accuracy versus number of tasks (mean ± std over combinations)", "",
              "| attack | defense | N | mean | std | combinations |", "|---|---|---|---|---|---|"]
    lines += [f"| {s['attack']} | {s['defense']} | {s['n_tasks']} | {pct(s['mean'])} | {pct(s['std'])} | "
              f"{s['combinations']} |" for s in summary]
    lines += ["", "## Fig. 5: ablation", "", "| variant | shots | ours |", "|---|---|---|"]
    lines += [f"| {r['variant']} | {r['shots'] if r['shots'] is not None else '-'} | {pct(r['avg_normalized'])} |"
              for r in ablation]
    lines += ["", "Figures: fig2_tasks.html, fig34_cosine_ideal.html, fig34_cosine_worst.html, fig5_ablation.html, "
              "snr.html (open in a browser; they work offline)."]
    return "\n".join(lines) + "\n"
