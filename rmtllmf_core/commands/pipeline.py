"""Headless commands over the pipeline: `run`, `sweep` and `paper`."""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from ..errors import InputError
from ..validation import read_json_object

SWEEP_KINDS = ("snr", "gain", "tasks", "ablation", "resilience")


# `sweep` defaults per kind: the SNR and gain sweeps compare every part of R-MTLLMF
SWEEP_DEFENSES = {"snr": "none,freeze,realign,rmtllmf", "gain": "none,freeze,realign,rmtllmf",
                  "tasks": "none,rmtllmf", "ablation": "none,rmtllmf", "resilience": "none,rmtllmf"}
SNR_JAMMER_DBM = "-140,-130,-120,-110,-100"
GAINS_DB = "0,10,20,30,40"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run one scenario through the whole pipeline")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--scenario", help="scenario JSON file; what it leaves out is the default scenario's "
                     "('tasks': every zoo task)")
    src.add_argument("--preset", help="a named preset on every zoo task: " + ", ".join(_preset_names()))
    p.add_argument("--zoo", default="tiny", help="the zoo of --preset or of the default scenario (default: %(default)s)")
    p.add_argument("--set", action="append", default=[], metavar="DOTTED.KEY=VALUE",
                   help="change one field, decoded as the app decodes its links (repeatable), "
                   "e.g. --set seed=1 --set perturb.symbol_gain_db=20")
    p.add_argument("--json", action="store_true", help="print the whole result as JSON")
    p.add_argument("--no-cache", action="store_true", help="recompute even when the result is cached")
    p.set_defaults(func=cmd_run)

    s = sub.add_parser("sweep", help="run a sweep; writes CSV, JSON and an HTML figure")
    s.add_argument("--kind", required=True, choices=SWEEP_KINDS,
                   help="snr: accuracy and H0 rejection rate versus jammer power; gain: versus the reference "
                   "amplitude perturb.symbol_gain_db; tasks: versus the number of fused tasks; ablation; resilience: "
                   "none / AI / PHY / PHY+AI protection versus the airtime budget on the paper's channels")
    s_src = s.add_mutually_exclusive_group()
    s_src.add_argument("--scenario", help="base scenario JSON (default: the default scenario on the zoo's tasks)")
    s_src.add_argument("--preset", help="base: a named preset on every zoo task: " + ", ".join(_preset_names()))
    s.add_argument("--zoo", default="tiny", help="the zoo of --preset or of the default scenario (default: %(default)s)")
    s.add_argument("--set", action="append", default=[], metavar="DOTTED.KEY=VALUE",
                   help="change one field of the base (repeatable), e.g. --set perturb.symbol_gain_db=20")
    s.add_argument("--out", default="out/sweep", help="output folder (default: %(default)s)")
    s.add_argument("--attacks", default="none,worst_sum_rate,worst_strongest_user",
                   help="comma-separated; 'none' is the ideal channel (default: %(default)s)")
    s.add_argument("--defenses", default=None, help="comma-separated; see sweeps.DEFENSES (default: snr and gain "
                   f"{SWEEP_DEFENSES['snr']}, tasks {SWEEP_DEFENSES['tasks']})")
    s.add_argument("--jammer-dbm", default=None, help="snr: jammer powers (dBm), comma-separated (default "
                   f"{SNR_JAMMER_DBM}); gain: one power for every jammer (default: each attack's paper budget); "
                   "write --jammer-dbm=-140,-120")
    s.add_argument("--gains-db", default=GAINS_DB, help="gain: reference amplitudes perturb.symbol_gain_db (dB), "
                   "comma-separated; write --gains-db=-10,0 (default: %(default)s)")
    s.add_argument("--sizes", default=None, help="tasks: combination sizes, e.g. 2,4,8 (default 2..N)")
    s.add_argument("--shots", default="1,5,10,20", help="ablation: shots per class, comma-separated")
    s.add_argument("--airtime", default="1,2,4,8", help="resilience: airtime budgets (channel uses per parameter, "
                   "each >= 1), comma-separated (default: %(default)s)")
    s.add_argument("--workers", type=int, default=None,
                   help="worker processes, one torch thread each (default: the available cores; 1: in this process)")
    add_backend(s)
    s.set_defaults(func=cmd_sweep)

    c = sub.add_parser("calibrate", help="fit the error model's reference amplitude and the realignment budget "
                       "to two of the paper's numbers; writes rmtllmf_core/science/calibration.json")
    c.add_argument("--fit", default=",".join(_default_fit()),
                   help="one or two paper numbers, comma-separated: the first fits perturb.symbol_gain_db, the "
                   "second (an R-MTLLMF one) the realignment budget; names in rmtllmf_core/science/calibration.py "
                   "(default: %(default)s)")
    c.add_argument("--scale", default="absolute", help="perturb.scale the gain applies to (default: %(default)s)")
    c.add_argument("--seeds", default="0,1,2", help="seeds averaged over (default: %(default)s)")
    grid = _default_grid()
    c.add_argument("--steps", default=",".join(map(str, grid["steps"])),
                   help="realignment steps tried (default: %(default)s)")
    c.add_argument("--lrs", default=",".join(f"{v:g}" for v in grid["lrs"]),
                   help="realignment learning rates tried (default: %(default)s)")
    c.add_argument("--batch-sizes", default=",".join(map(str, grid["batch_sizes"])),
                   help="realignment batch sizes tried, samples per step (default: %(default)s)")
    c.add_argument("--precision", default="float32",
                   help="defense.realign_precision the budget is fitted with: float32 (the same numbers on every "
                   "CPU) or bfloat16 (faster only on CPUs with bf16 units; default: %(default)s)")
    c.add_argument("--zoo", default="tiny")
    c.add_argument("--out", default=None, help="where to write (default: rmtllmf_core/science/calibration.json)")
    c.add_argument("--dry-run", action="store_true", help="print the fit, write nothing")
    c.set_defaults(func=cmd_calibrate)

    t = sub.add_parser("ldpc-tables", help="simulate the coded link's BER and BLER tables (Sionna's 5G LDPC) for "
                       "every code setting of the resilience sweep; writes rmtllmf_core/ldpc_tables.json")
    t.add_argument("--out", default=None, help="where to write (default: the file the engine reads)")
    t.set_defaults(func=cmd_ldpc_tables)

    r = sub.add_parser("paper", help="reproduce every figure of the paper on the current zoo, with a report")
    r.add_argument("--zoo", default="tiny")
    r.add_argument("--out", default="out/paper")
    r.add_argument("--sizes", default=None, help="combination sizes for Fig. 2 (default 2..8: 247 combinations)")
    r.add_argument("--workers", type=int, default=None,
                   help="worker processes for the sweeps (default: the available cores; 1: in this process)")
    r.add_argument("--table-only", action="store_true",
                   help="only the paper-versus-ours table and the orderings over the seeds (15 runs), printed")
    add_backend(r)
    r.set_defaults(func=cmd_paper)


def _preset_names() -> list[str]:
    from ..experiment.presets import PRESETS

    return list(PRESETS)


def _default_fit() -> tuple[str, ...]:
    from ..science.calibration import DEFAULT_FIT

    return DEFAULT_FIT


def _default_grid() -> dict:
    from ..science.calibration import DEFAULT_BATCH_SIZES, DEFAULT_LRS, DEFAULT_STEPS

    return {"steps": DEFAULT_STEPS, "lrs": DEFAULT_LRS, "batch_sizes": DEFAULT_BATCH_SIZES}


def load_fitted(path: str | None, zoo: str = "tiny", preset: str | None = None, changes=()):
    """`load_scenario`, then the sample counts the user did not give fitted to the zoo's splits
    (`pipeline.fit_to_zoo`), and a note for each change (the caller says them)."""
    from ..experiment.pipeline import fit_to_zoo

    scenario = load_scenario(path, zoo=zoo, preset=preset, changes=changes)
    explicit = set(_parse_sets(changes)) if changes else set()
    if path is not None and preset is None:
        explicit |= _dotted_keys(read_json_object(path))
    return fit_to_zoo(scenario, explicit)


def _dotted_keys(data: dict, prefix: str = "") -> set[str]:
    """Every key of a scenario file as a dotted path ('evaluation', 'evaluation.samples_per_task', ...)."""
    out = set()
    for k, v in data.items():
        out.add(prefix + k)
        if isinstance(v, dict):
            out |= _dotted_keys(v, f"{prefix}{k}.")
    return out


def load_scenario(path: str | None, zoo: str = "tiny", preset: str | None = None, changes=()):
    """A scenario from a JSON file or a preset, then `--set` changes. What a file leaves out is the
    default scenario's (the schema's defaults are the default scenario), and a missing 'tasks' means
    every task of the zoo."""
    from ..experiment.codec import from_query
    from ..experiment.presets import default_scenario, preset_scenario, with_zoo_tasks
    from ..experiment.scenario import Scenario

    if preset is not None:
        base = preset_scenario(preset, zoo=zoo)
    elif path is not None:
        base = Scenario.parse(with_zoo_tasks(read_json_object(path), zoo))
    else:
        base = default_scenario(zoo)
    if not changes:
        return base
    sets = _parse_sets(changes)
    if any(k in sets for k in ("wireless.bandwidth_hz", "wireless.noise_figure_db")) and not any(
            k in sets for k in ("wireless.noise_power_w", "wireless.noise_power_dbm")):
        # asked on the command line: k T B NF, as in a file (WirelessConfig's rule). Not in the links'
        # decoder: a link must reopen exactly what it was made from, whatever its noise power.
        sets["wireless.noise_power_w"] = "null"
    return from_query(sets, base)


def _parse_sets(items) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError("set", f"expects DOTTED.KEY=VALUE (e.g. seed=1); got {item!r}")
        out[key.strip()] = value
    return out


def _floats(text: str, field: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(field, f"a comma-separated list of numbers; got {text!r}") from None


def _ints(text: str, field: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(field, f"a comma-separated list of integers; got {text!r}") from None


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
    from ..experiment.pipeline import run

    scenario, notes = load_fitted(args.scenario, zoo=args.zoo, preset=args.preset, changes=args.set)
    bar, progress = _tqdm_progress("run")
    result = run(scenario, progress=progress, use_cache=not args.no_cache)
    bar.close()
    for note in notes:
        result = result.with_warning(note)
    if args.json:
        json.dump(result.to_json(), sys.stdout, indent=1)
        print()
        return 0
    print(format_result(result))
    return 0


def format_result(result) -> str:
    lines = [f"zoo {result.zoo.name}  lambda {result.lam:.2f}  key {result.key[:12]}"]
    from ..experiment.result import Condition

    conds = [c for c in Condition if c in result.accuracy]
    lines.append(f"{'task':<16}" + "".join(f"{c:>16}" for c in conds))
    for t in result.accuracy[Condition.CLEAN]:
        lines.append(f"{t:<16}" + "".join(f"{100 * result.accuracy[c][t]:>15.1f}%" for c in conds))
    lines.append(f"{'avg normalised':<16}" + "".join(f"{100 * result.average_normalized[c]:>15.1f}%" for c in conds))
    lines.append("mean MSE {:.4f}   WDE attacked {:.3f} defended {:.3f}   H0 rejected attacked {:.1%} defended {:.1%}".format(
        result.mean_mse, result.wde[Condition.ATTACKED], result.wde[Condition.DEFENDED],
        result.rejection_rate[Condition.ATTACKED], result.rejection_rate[Condition.DEFENDED]))
    lines += [f"warning: {w}" for w in result.warnings]  # an unusable channel, a failed cache write
    return "\n".join(lines)


def provenance(row: dict) -> dict:
    """The columns that say what produced a row: the engine's version and, where the row has no scenario
    of its own (an aggregate), the command line."""
    from .. import ENGINE_VERSION

    extra = {"engine_version": row.get("engine_version", ENGINE_VERSION)}
    if "scenario" not in row:
        extra["command"] = "python -m rmtllmf_core " + " ".join(sys.argv[1:])
    return extra


def write_rows(rows: list[dict], out: Path, stem: str) -> None:
    """`stem`.json and `stem`.csv (accuracies as fractions; every row with `provenance`)."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [{**r, **provenance(r)} for r in rows]
    (out / f"{stem}.json").write_text(json.dumps(rows, indent=1))
    if rows:
        with open(out / f"{stem}.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def add_backend(p: argparse.ArgumentParser) -> None:
    """--backend and --address (sweep, paper, leaderboard, warm)."""
    p.add_argument("--backend", default="local", choices=["local", "ray"],
                   help="local: worker processes of this machine; ray: Ray tasks (docs/cluster.md) (default: %(default)s)")
    p.add_argument("--address", default=None, help="ray: 'local' (default: a Ray of --workers CPUs started here), "
                   "'auto' (the cluster this machine is part of) or HOST:PORT of a head")
    p.add_argument("--gpus-per-point", type=float, default=0.0,
                   help="ray: the fraction of a GPU each point asks for (evaluation and realignment on it)")


def backend_kw(args) -> dict:
    if args.backend != "ray" and (args.address is not None or args.gpus_per_point):
        raise InputError("backend", "--address and --gpus-per-point need --backend ray")
    return {"backend": args.backend, "address": args.address, "gpus_per_point": args.gpus_per_point}


def _workers(value: int | None) -> int:
    from ..serve.jobs import available_cores

    if value is None:
        return available_cores()
    if value < 1:
        raise InputError("workers", f"at least 1, got {value}")
    return value


def cmd_sweep(args) -> int:
    from ..studies import plots, sweeps

    base, notes = load_fitted(args.scenario, zoo=args.zoo, preset=args.preset, changes=args.set)
    for note in notes:  # on lines of their own, before any progress bar
        print(f"note: {note}", file=sys.stderr)
    out = Path(args.out)
    workers = _workers(args.workers)
    run_kw = backend_kw(args)
    defenses = _names(args.defenses if args.defenses is not None else SWEEP_DEFENSES[args.kind])
    for name in defenses:  # a bad name is one line before any progress bar
        sweeps.with_defense(base, name)
    if args.kind == "snr":
        powers = _floats(args.jammer_dbm or SNR_JAMMER_DBM, "jammer-dbm")
        sweeps.snr_points(base, powers, _names(args.attacks), defenses)  # bad values: one line, no bar
    elif args.kind == "gain":
        gains = _floats(args.gains_db, "gains-db")
        powers = _floats(args.jammer_dbm, "jammer-dbm") if args.jammer_dbm is not None else [None]
        if len(powers) != 1:
            raise InputError("jammer-dbm", f"gain: one jammer power for every attack, or none for each "
                             f"attack's paper budget; got {args.jammer_dbm!r}")
        sweeps.gain_points(base, gains, _names(args.attacks), defenses, jammer_dbm=powers[0])
    if args.kind == "resilience":
        return _resilience(args, base, out, workers, run_kw)
    bar, progress = _tqdm_progress(f"sweep {args.kind}")
    if args.kind == "snr":
        rows = sweeps.snr_sweep(base, powers, _names(args.attacks), defenses, progress=progress, workers=workers, **run_kw)
        fig = plots.snr_curves(rows)
    elif args.kind == "gain":
        rows = sweeps.gain_sweep(base, gains, _names(args.attacks), defenses, jammer_dbm=powers[0],
                                 progress=progress, workers=workers, **run_kw)
        fig = plots.gain_curves(rows, fitted_db=sweeps.fitted_gain_db())
    elif args.kind == "tasks":
        sizes = [int(x) for x in _floats(args.sizes, "sizes")] if args.sizes else None
        conditions = [(a, d) for a in _names(args.attacks) for d in defenses]
        rows = sweeps.tasks_sweep(base, conditions, sizes=sizes, progress=progress, workers=workers, **run_kw)
        write_rows(sweeps.summarize_tasks(rows), out, "tasks_summary")
        fig = plots.tasks_bands(sweeps.summarize_tasks(rows))
    else:
        rows = sweeps.ablation_sweep(base, [int(x) for x in _floats(args.shots, "shots")], progress=progress,
                                     workers=workers, **run_kw)
        fig = plots.ablation_bars(rows)
    bar.close()
    write_rows(rows, out, args.kind)
    fig.write_html(out / f"{args.kind}.html", include_plotlyjs=True)
    print(f"wrote {len(rows)} points to {out}/{args.kind}.csv, .json and .html")
    if args.kind in ("snr", "gain"):
        print(format_sweep(rows, args.kind))
    return 0


def _resilience(args, base, out: Path, workers: int, run_kw: dict) -> int:
    from ..studies import plots, sweeps
    from ..studies.work import execute

    from ..science import phy

    budgets = _floats(args.airtime, "airtime")
    sweeps.resilience_table([], budgets)  # a bad budget: one line before any run
    work = sweeps.resilience_work(base.zoo, _names(args.attacks))
    from ..experiment.pipeline import default_cache

    for option in sweeps.PHY_OPTIONS:  # each code's table once, here, before the workers need it (shipped: at once)
        if option["perturb.model"] == "coded":
            phy.ber_table(option["perturb.code_rate"], option["perturb.qam_bits"],
                          cache=run_kw.get("cache") or default_cache())
    bar, progress = _tqdm_progress("sweep resilience")
    options = execute(work, progress, workers=workers, **run_kw)
    bar.close()
    table = sweeps.resilience_table(options, budgets)
    write_rows(options, out, "resilience_options")
    write_rows(table, out, "resilience")
    plots.resilience_curves(table).write_html(out / "resilience.html", include_plotlyjs=True)
    print(f"wrote {len(table)} rows to {out}/resilience.csv (and each option's runs to resilience_options.csv)")
    head = f"{'attack':<22}{'airtime':>8}" + "".join(f"{p:>9}" for p in ("none", "ai", "phy", "phy+ai")) + "   best PHY+AI"
    lines = [head]
    for attack in dict.fromkeys(r["attack"] for r in table):
        for budget in budgets:
            got = {r["protection"]: r for r in table if r["attack"] == attack and r["airtime_factor"] == budget}
            lines.append(f"{attack:<22}{budget:>8g}" + "".join(f"{100 * got[p]['average_normalized']:>8.1f}%"
                                                               for p in ("none", "ai", "phy", "phy+ai"))
                         + f"   {got['phy+ai']['setting']}")
    print("\n".join(lines))
    return 0


def format_sweep(rows: list[dict], kind: str) -> str:
    """The SNR or gain sweep as a table: average normalised accuracy (%) per defense, and the H0
    rejection rate without defense, per attack and x value."""
    x = "jammer_power_dbm" if kind == "snr" else "symbol_gain_db"
    defenses = list(dict.fromkeys(r["defense"] for r in rows))
    head = f"{'attack':<22}{x:>17}{'mean MSE':>10}" + "".join(f"{d:>10}" for d in defenses) + f"{'H0 rej.':>9}"
    lines = [head]
    for attack in dict.fromkeys(r["attack"] for r in rows):
        mine = [r for r in rows if r["attack"] == attack]
        for value in dict.fromkeys(r[x] for r in mine):
            at = {r["defense"]: r for r in mine if r[x] == value}
            first = next(iter(at.values()))
            shown = "-" if value is None else f"{value:g}"
            lines.append(f"{attack:<22}{shown:>17}{first['mean_mse']:>10.4f}"
                         + "".join(f"{100 * at[d]['avg_normalized']:>9.1f}%" if d in at else f"{'':>10}" for d in defenses)
                         + f"{100 * first['rejection_rate_attacked']:>8.1f}%")
    clean = rows[0]["avg_normalized_clean"] if rows else None
    control = next((r["avg_normalized_clean_realigned"] for r in rows
                    if r["defense"] == "rmtllmf" and r["avg_normalized_clean_realigned"] is not None),
                   next((r["avg_normalized_clean_realigned"] for r in rows
                         if r["avg_normalized_clean_realigned"] is not None), None))
    if clean is not None:
        lines.append(f"clean fusion {100 * clean:.1f}%" + (f"   clean fusion + realign (control) {100 * control:.1f}%"
                                                        if control is not None else ""))
    return "\n".join(lines)


def cmd_ldpc_tables(args) -> int:
    from ..science import phy
    from ..studies import sweeps

    settings = list(dict.fromkeys((o["perturb.code_rate"], o["perturb.qam_bits"]) for o in sweeps.PHY_OPTIONS
                                  if o["perturb.model"] == "coded"))
    out = Path(args.out) if args.out else phy.SHIPPED_TABLES
    phy.write_tables(settings, out, say=print)
    print(f"wrote {out}")
    return 0


def cmd_calibrate(args) -> int:
    from ..studies import calibrate
    from ..science import calibration

    record = calibrate.fit(
        _names(args.fit), zoo=args.zoo, scale=args.scale, seeds=_ints(args.seeds, "seeds"),
        steps=_ints(args.steps, "steps"), lrs=_floats(args.lrs, "lrs"),
        batch_sizes=_ints(args.batch_sizes, "batch_sizes"), precision=args.precision,
        say=lambda line: print(line, flush=True))
    v = record["values"]
    print(f"fitted: perturb.scale={v['scale']} perturb.symbol_gain_db={v['symbol_gain_db']} "
          f"defense.realign_steps={v['realign_steps']} defense.realign_batch_size={v['realign_batch_size']} "
          f"defense.realign_lr={v['realign_lr']:g} "
          f"defense.realign_precision={v['realign_precision']}")
    for f in record["provenance"]["fitted"]:
        print(f"  on {f['name']}: paper {100 * f['paper']:.1f} / {100 * f['paper_baseline']:.1f} = "
              f"{100 * f['target_share']:.1f}% of clean; ours {100 * f['ours_mean']:.1f}% +- {100 * f['ours_std']:.1f}")
    if args.dry_run:
        return 0
    path = calibration.write(record, Path(args.out) if args.out else calibration.CALIBRATION_FILE)
    print(f"wrote {path}")
    return 0


def cmd_paper(args) -> int:
    from ..studies.report import main_table, orderings, orderings_markdown, reproduce_paper, table_markdown

    run_kw = {"workers": _workers(args.workers), **backend_kw(args)}
    if args.table_only:
        bar, progress = _tqdm_progress("paper table")
        table = main_table(args.zoo, progress, **run_kw)
        bar.close()
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "table.json").write_text(json.dumps(table, indent=1))
        print("\n".join(table_markdown(table) + [""] + orderings_markdown(orderings(table))))
        return 0

    sizes = [int(x) for x in _floats(args.sizes, "sizes")] if args.sizes else None
    from ..studies.ray_backend import session

    with session(args.backend, run_kw["workers"], args.address):  # one Ray for all the paper's sweeps
        path = reproduce_paper(args.zoo, Path(args.out), sizes=sizes, **run_kw)
    print(f"report: {path}")
    return 0
