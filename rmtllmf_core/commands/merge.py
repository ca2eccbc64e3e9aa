"""`methods` (the merge methods' records) and `leaderboard` (which merge survives a jammer)."""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from ..errors import InputError
from .pipeline import add_backend

MSE_AWARE_CHOICES = {"off": (False,), "on": (True,), "both": (False, True)}


def register(sub: argparse._SubParsersAction) -> None:
    w = sub.add_parser("warm", help="fill the result cache for a demo: the guided story, the About page's table "
                       "and (with --leaderboard) the leaderboard; afterwards the app answers them at once")
    w.add_argument("--zoo", default="tiny", help="the zoo (default: %(default)s)")
    w.add_argument("--leaderboard", action="store_true", help="also every leaderboard entry (54 runs more)")
    w.add_argument("--workers", type=int, default=None,
                   help="worker processes, one torch thread each (default: the available cores)")
    add_backend(w)
    w.set_defaults(func=cmd_warm)

    m = sub.add_parser("methods", help="list the merge methods: title, reference, parameters (defaults and bounds)")
    m.add_argument("--json", action="store_true", help="print the records as JSON")
    m.set_defaults(func=cmd_methods)

    b = sub.add_parser("leaderboard", help="every merge method x the paper's channels x {no defense, R-MTLLMF}; "
                       "writes leaderboard.csv, one JSON per entry, leaderboard.md and an HTML heatmap")
    b.add_argument("--out", default="out/leaderboard", help="output folder (default: %(default)s)")
    b.add_argument("--zoo", default="tiny", help="the zoo (default: %(default)s)")
    b.add_argument("--methods", default=None, help="comma-separated (default: every method)")
    b.add_argument("--attacks", default="none,worst_sum_rate,worst_strongest_user",
                   help="comma-separated channels at their paper presets (default: %(default)s)")
    b.add_argument("--mse-aware", default="both", choices=list(MSE_AWARE_CHOICES),
                   help="plain fusion, MSE-aware fusion, or both (default: %(default)s)")
    b.add_argument("--seeds", default="0", help="comma-separated seeds, averaged (default: %(default)s)")
    b.add_argument("--workers", type=int, default=None,
                   help="worker processes, one torch thread each (default: the available cores)")
    add_backend(b)
    b.set_defaults(func=cmd_leaderboard)


def method_rows() -> list[dict]:
    """The records with each parameter's default, bounds and help from the schema."""
    from ..science.methods import METHOD_RECORDS
    from ..experiment.scenario import FusionConfig

    fields = FusionConfig.model_fields
    rows = []
    for m in METHOD_RECORDS:
        params = []
        for param in m.params:
            name = param.name
            f = fields[name]
            bounds = {k: getattr(c, k) for c in f.metadata for k in ("ge", "gt", "le", "lt") if hasattr(c, k)}
            params.append({"name": f"fusion.{name}", "label": param.label, "default": f.default, "bounds": bounds,
                           "help": f.description or ""})
        rows.append({"name": m.name, "title": m.title, "reference": m.reference, "what": m.help,
                     "parameters": params, "lambda_grid": list(m.lambda_grid), "paper_lambda": m.paper_lambda,
                     "published": [p.__dict__ for p in m.published]})
    return rows


def cmd_methods(args) -> int:
    rows = method_rows()
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
        return 0
    for r in rows:
        print(f"{r['name']:<16} {r['title']}: {r['what']}")
        print(f"{'':<16} {r['reference']}")
        for p in r["parameters"]:
            bounds = ", ".join(f"{k} {v:g}" for k, v in p["bounds"].items())
            print(f"{'':<16} {p['name']} = {p['default']} ({bounds}): {p['help']}")
        lam = f"paper's {r['paper_lambda']:g}" if r["paper_lambda"] is not None else "1/sqrt(N)"
        if r["lambda_grid"]:
            print(f"{'':<16} lambda: heuristic {lam}; validation grid {', '.join(f'{v:g}' for v in r['lambda_grid'])}")
        else:
            print(f"{'':<16} lambda: 1/N (the mean)")
        for p in r["published"]:
            print(f"{'':<16} published clean: {p['value']:g}% {p['metric']} ({p['model']}; {p['source']})")
    print("Every method also takes --set fusion.mse_aware=true: each received vector weighted by its estimated SNR.")
    return 0


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def markdown(rows: list[dict], lines: list[str]) -> str:
    head = "| method | MSE-aware | channel | defense | normalised (%) | absolute (%) | clean (%) | drop (points) |"
    out = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['method']} | {'yes' if r['mse_aware'] else 'no'} | {r['attack']} | {r['defense']} | "
                   f"{100 * r['average_normalized']:.1f} | {100 * r['average_absolute']:.1f} | "
                   f"{100 * r['clean_normalized']:.1f} | {100 * r['drop_from_clean']:+.1f} |")
    return "\n".join(["# Leaderboard", "", *lines, "", *out, ""])


def cmd_leaderboard(args) -> int:
    from ..studies import leaderboard, plots
    from ..experiment import pipeline
    from ..science.methods import METHODS
    from ..studies.work import execute
    from .pipeline import _tqdm_progress, _workers, backend_kw

    try:
        seeds = [int(s) for s in _names(args.seeds)]
    except ValueError:
        raise InputError("seeds", f"comma-separated integers; got {args.seeds!r}") from None
    w = leaderboard.work(args.zoo, methods=_names(args.methods) if args.methods else tuple(METHODS),
                         attacks=_names(args.attacks), mse_aware=MSE_AWARE_CHOICES[args.mse_aware], seeds=seeds)
    workers = _workers(args.workers)
    print(f"{len(w.points)} runs, {w.missing()} not cached yet", file=sys.stderr)
    bar, progress = _tqdm_progress("leaderboard")
    execute(w, progress, workers=workers, **backend_kw(args))
    bar.close()
    rows = leaderboard.table(w)
    engine = pipeline.get_engine(args.zoo)
    out = Path(args.out)
    (out / "entries").mkdir(parents=True, exist_ok=True)
    with open(out / "leaderboard.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for entry in leaderboard.entries(rows, engine.fingerprint, engine.zoo.name):
        name = entry["method"] + ("+mse_aware" if entry["mse_aware"] else "")
        (out / "entries" / f"{name}.json").write_text(json.dumps(entry, indent=1))
    titles = {m: METHODS[m].title for m in METHODS}
    lines = leaderboard.reading(rows, titles)
    (out / "leaderboard.md").write_text(markdown(rows, lines))
    plain = [r for r in rows if not r["mse_aware"]] or rows
    plots.leaderboard_heatmap(plain, titles).write_html(out / "leaderboard.html", include_plotlyjs=True)
    print("\n".join(lines))
    print(f"wrote {len(rows)} rows to {out}/leaderboard.csv, leaderboard.md, leaderboard.html and entries/")
    return 0


def cmd_warm(args) -> int:
    """The story's runs (the presets, seed 0), the About table's (three seeds), the default scenario and,
    asked for, the leaderboard: one Work, so cached points are skipped and the rest run on workers."""
    import time

    from ..studies import leaderboard, story
    from ..experiment.presets import default_scenario
    from ..studies.report import table_points
    from ..studies.work import Work, execute
    from .pipeline import _tqdm_progress, _workers, backend_kw

    points = [({"part": "story"}, s) for s in story.scenarios(args.zoo)]
    points += [({"part": "about"}, s) for _, s in table_points(args.zoo)]
    points += [({"part": "default"}, default_scenario(args.zoo))]
    if args.leaderboard:
        points += [({"part": "leaderboard"}, s) for _, s in leaderboard.points(args.zoo, mse_aware=(False, True))]
    seen, unique = set(), []
    for row, s in points:  # one run per scenario, whichever part asked first
        if s.key not in seen:
            seen.add(s.key)
            unique.append((row, s))
    w = Work.sweep(unique)
    missing = w.missing()
    print(f"{len(unique)} runs, {missing} not cached yet", file=sys.stderr)
    start = time.perf_counter()
    bar, progress = _tqdm_progress("warm")
    execute(w, progress, workers=_workers(args.workers), **backend_kw(args))
    bar.close()
    print(f"warm: {len(unique)} runs in the cache ({missing} computed in {time.perf_counter() - start:.0f} s)")
    return 0
