"""Headless commands over the pipeline: `run`, `sweep` and `paper`."""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from .errors import InputError
from .validation import read_json_object

SWEEP_KINDS = ("snr", "tasks", "ablation")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run one scenario through the whole pipeline")
    p.add_argument("--scenario", required=True, help="scenario JSON file ('tasks' defaults to every zoo task)")
    p.add_argument("--json", action="store_true", help="print the whole result as JSON")
    p.add_argument("--no-cache", action="store_true", help="recompute even when the result is cached")
    p.set_defaults(func=cmd_run)

    s = sub.add_parser("sweep", help="run a sweep; writes CSV, JSON and an HTML figure")
    s.add_argument("--kind", required=True, choices=SWEEP_KINDS)
    s.add_argument("--scenario", help="base scenario JSON (default: the paper preset on the zoo's tasks)")
    s.add_argument("--out", default="out/sweep", help="output folder (default: %(default)s)")
    s.add_argument("--attacks", default="none,worst_sum_rate,worst_strongest_user", help="comma-separated")
    s.add_argument("--defenses", default="none,rmtllmf", help="comma-separated; see sweeps.DEFENSES")
    s.add_argument("--jammer-dbm", default="-140,-130,-120,-110,-100", help="snr: jammer powers (dBm), comma-separated; write --jammer-dbm=-140,-120")
    s.add_argument("--sizes", default=None, help="tasks: combination sizes, e.g. 2,4,8 (default 2..N)")
    s.add_argument("--shots", default="1,5,10,20", help="ablation: shots per class, comma-separated")
    s.add_argument("--workers", type=int, default=None,
                   help="worker processes, one torch thread each (default: the available cores; 1: in this process)")
    s.set_defaults(func=cmd_sweep)

    r = sub.add_parser("paper", help="reproduce every figure of the paper on the current zoo, with a report")
    r.add_argument("--zoo", default="tiny")
    r.add_argument("--out", default="out/paper")
    r.add_argument("--sizes", default=None, help="combination sizes for Fig. 2 (default 2..8: 247 combinations)")
    r.add_argument("--workers", type=int, default=None,
                   help="worker processes for the sweeps (default: the available cores; 1: in this process)")
    r.set_defaults(func=cmd_paper)


def load_scenario(path: str | None, zoo: str = "tiny"):
    """A scenario from a JSON file; missing 'tasks' means every task of the zoo."""
    from .presets import default_scenario
    from .scenario import Scenario

    if path is None:
        return default_scenario(zoo)
    data = read_json_object(path)
    if "tasks" not in data:
        data = {**default_scenario(data.get("zoo", zoo)).to_dict(), **data}
    return Scenario.parse(data)


def _floats(text: str, field: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(field, f"a comma-separated list of numbers; got {text!r}") from None


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _tqdm_progress(total_label: str):
    from tqdm import tqdm

    bar = tqdm(total=1000, desc=total_label, unit="‰", file=sys.stderr, leave=True)

    def progress(fraction: float, message: str) -> None:
        bar.n = int(1000 * fraction)
        bar.set_postfix_str(message)
        bar.refresh()

    return bar, progress


def cmd_run(args) -> int:
    from .pipeline import run

    scenario = load_scenario(args.scenario)
    bar, progress = _tqdm_progress("run")
    result = run(scenario, progress=progress, use_cache=not args.no_cache)
    bar.close()
    if args.json:
        json.dump(result, sys.stdout, indent=1)
        print()
        return 0
    print(format_result(result))
    return 0


def format_result(result: dict) -> str:
    lines = [f"zoo {result['zoo']['name']}  lambda {result['lambda']:.2f}  key {result['key'][:12]}"]
    conds = [c for c in ("finetuned", "zeroshot", "clean", "clean_realigned", "attacked", "defended")
             if c in result["accuracy"]]
    lines.append(f"{'task':<16}" + "".join(f"{c:>16}" for c in conds))
    for t in result["accuracy"]["clean"]:
        lines.append(f"{t:<16}" + "".join(f"{100 * result['accuracy'][c][t]:>15.1f}%" for c in conds))
    lines.append(f"{'avg normalised':<16}" + "".join(f"{100 * result['average_normalized'][c]:>15.1f}%" for c in conds))
    users = result["wireless"]["users"]
    lines.append("mean MSE {:.4f}   WDE attacked {:.3f} defended {:.3f}   H0 rejected attacked {:.1%} defended {:.1%}".format(
        sum(u["mse"] for u in users) / len(users), result["wde"]["attacked"], result["wde"]["defended"],
        result["rejection_rate"]["attacked"], result["rejection_rate"]["defended"]))
    return "\n".join(lines)


def write_rows(rows: list[dict], out: Path, stem: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(rows, indent=1))
    if rows:
        with open(out / f"{stem}.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def _workers(value: int | None) -> int:
    from .sweeps import available_cores

    if value is None:
        return available_cores()
    if value < 1:
        raise InputError("workers", f"at least 1, got {value}")
    return value


def cmd_sweep(args) -> int:
    from . import plots, sweeps

    base = load_scenario(args.scenario)
    out = Path(args.out)
    workers = _workers(args.workers)
    bar, progress = _tqdm_progress(f"sweep {args.kind}")
    if args.kind == "snr":
        rows = sweeps.snr_sweep(base, _floats(args.jammer_dbm, "jammer-dbm"), _names(args.attacks),
                                _names(args.defenses), progress=progress, workers=workers)
        fig = plots.snr_curves(rows)
    elif args.kind == "tasks":
        sizes = [int(x) for x in _floats(args.sizes, "sizes")] if args.sizes else None
        conditions = [(a, d) for a in _names(args.attacks) for d in _names(args.defenses)]
        rows = sweeps.tasks_sweep(base, conditions, sizes=sizes, progress=progress, workers=workers)
        write_rows(sweeps.summarize_tasks(rows), out, "tasks_summary")
        fig = plots.tasks_bands(sweeps.summarize_tasks(rows))
    else:
        rows = sweeps.ablation_sweep(base, [int(x) for x in _floats(args.shots, "shots")], progress=progress,
                                     workers=workers)
        fig = plots.ablation_bars(rows)
    bar.close()
    write_rows(rows, out, args.kind)
    fig.write_html(out / f"{args.kind}.html", include_plotlyjs=True)
    print(f"wrote {len(rows)} points to {out}/{args.kind}.csv, .json and .html")
    return 0


def cmd_paper(args) -> int:
    from .report import reproduce_paper

    sizes = [int(x) for x in _floats(args.sizes, "sizes")] if args.sizes else None
    path = reproduce_paper(args.zoo, Path(args.out), sizes=sizes, workers=_workers(args.workers))
    print(f"report: {path}")
    return 0
