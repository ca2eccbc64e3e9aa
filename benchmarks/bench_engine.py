"""Engine speed on the embedded zoo: cold run, cache hit, and the full task-combination sweep.

    python benchmarks/bench_engine.py            # cold + hit (+ a timed slice of the sweep)
    python benchmarks/bench_engine.py --full     # the whole 247 x 3 sweep (R-MTLLMF; no defense is read from it)
    python benchmarks/bench_engine.py --workers 1   # the sweep in this process (default: one worker per core)

Each measurement uses a fresh private cache folder, so nothing is reused from earlier runs: the task
data's disk cache ($RMTLLMF_CACHE_DIR) is a fresh folder too, so the first run generates the images it
reads, as a newcomer's does.
Targets (issue 4): 8 tasks with R-MTLLMF (10 shots) cold < 3 s; cache hit < 50 ms;
full task-combination sweep < 15 min; issue 21: the full `paper` run < 20 min on 2 workers.

What a "cold" run computes: the run itself is not in the result cache and its noise seed is new,
so the uplink, the perturbation, the fusions, the realignment of the defended encoder and the
evaluation of the attacked and defended encoders are computed. What it reuses from the same process
(or, in a new process, from the disk cache), because none of it depends on the noise: the chosen
lambda, the clean fusion's logits, the individual and zero-shot predictions, and the clean-realigned
control (see rmtllmf_core.experiment.pipeline.compute). The first run in a fresh process and cache computes
all of those; it is timed on its own line. CPU seconds are printed beside wall seconds: on a shared
machine the CPU figure is the honest one.

The sweep is the paper's Fig. 2 (`report.fig2_points`): like every sweep's points, they skip the
clean-realigned control, which no sweep row reads (one realignment and evaluation less per
combination); the single runs above keep it, as the app's do. Its no-defense curve is read from
the same runs (`report.fig2_rows`), so the sweep is 741 runs. The realignment's arithmetic is the
calibrated one (`defense.realign_precision`); `--precision float32` times the plain one.
"""
from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

# a private disk cache, task data included: a newcomer's first run generates the tiny zoo's images too
os.environ["RMTLLMF_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-engine-data-")
atexit.register(shutil.rmtree, os.environ["RMTLLMF_CACHE_DIR"], True)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from where import print_header  # noqa: E402  (benchmarks/ is the script's own folder)

from rmtllmf_core.serve import jobs  # noqa: E402  (before torch: sets the OpenMP wait policy)
from rmtllmf_core.experiment import pipeline
from rmtllmf_core.studies import work
from rmtllmf_core.cache import ResultCache  # noqa: E402
from rmtllmf_core.experiment.presets import preset_scenario  # noqa: E402
from rmtllmf_core.studies.report import fig2_points  # noqa: E402

import torch  # noqa: E402


def _children_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo", default="tiny")
    ap.add_argument("--full", action="store_true", help="run the whole task-combination sweep")
    ap.add_argument("--workers", type=int, default=jobs.available_cores(),
                    help="sweep worker processes (default: the available cores, %(default)s here)")
    ap.add_argument("--no-sweep", action="store_true", help="only the single-run figures")
    ap.add_argument("--every", type=int, default=8, help="without --full: time every N-th combination (default 8)")
    ap.add_argument("--precision", choices=("float32", "bfloat16"), default=None,
                    help="defense.realign_precision for every run (default: the calibrated one)")
    args = ap.parse_args()
    print_header(args.precision or None)  # where it ran: torch build, CPU flags, threads (benchmarks/where.py)

    print(f"torch threads in this process: {torch.get_num_threads()}; cores: {jobs.available_cores()}")
    _, load_s, _ = timed(lambda: pipeline.get_engine(args.zoo))
    print(f"zoo load + flatten: {load_s:.2f} s")
    cache = ResultCache(tempfile.mkdtemp(prefix="bench-engine-"))
    precision = {"defense.realign_precision": args.precision} if args.precision else {}
    base = preset_scenario("paper_worst_sum_rate", zoo=args.zoo).replace(**precision)
    print(f"realignment arithmetic: {base.defense.realign_precision}")

    # the first run fills the memos that every later run shares (individual accuracies, lambda, clean
    # fusion, control), in memory and in the (fresh) disk cache
    warm, warm_s, warm_c = timed(lambda: pipeline.run(base.replace(seed=999), cache=cache))
    print(f"first run in a fresh process and cache (individual/zero-shot, lambda search, clean fusion, "
          f"control): {warm_s:.2f} s ({warm_c:.2f} s cpu)")

    colds, cpus = [], []
    for seed in range(3):
        r, s, c = timed(lambda: pipeline.run(base.replace(seed=seed), cache=cache))
        colds.append(s)
        cpus.append(c)
    print(f"cold 8-task run with a new seed, R-MTLLMF 10 shots (control reused): median {statistics.median(colds):.2f} s "
          f"({statistics.median(cpus):.2f} s cpu) (stages of the last: {r.timing_s})")
    moves, cpus = [], []
    for p_dbm in (-131.0, -133.0, -135.0):  # what a jammer-power slider does: same seed, new channel
        r, s, c = timed(lambda: pipeline.run(base.replace(**{"wireless.jammer_power_w": 10 ** ((p_dbm - 30) / 10)}),
                                             cache=cache))
        moves.append(s)
        cpus.append(c)
    print(f"cold run after a jammer-power move: median {statistics.median(moves):.2f} s "
          f"({statistics.median(cpus):.2f} s cpu) (stages: {r.timing_s})")
    hits = []
    for _ in range(20):
        _, s, _ = timed(lambda: pipeline.run(base.replace(seed=0), cache=cache))
        hits.append(s)
    print(f"cache hit: median {1000 * statistics.median(hits):.1f} ms, max {1000 * max(hits):.1f} ms")
    if args.no_sweep:
        return

    # the sweep starts from a fresh cache and fresh workers: nothing above is reused
    sweep_cache = ResultCache(tempfile.mkdtemp(prefix="bench-engine-sweep-"))
    points = [(row, s.replace(**precision)) for row, s in fig2_points(args.zoo)]
    if not args.full:  # a representative slice: every N-th combination (all sizes; N=8: mean size 4.03 vs 4.11)
        combos = list(dict.fromkeys(row["tasks"] for row, _ in points))
        keep = set(combos[::args.every])
        points = [p for p in points if p[0]["tasks"] in keep]
    t, c0, k0 = time.perf_counter(), time.process_time(), _children_cpu()
    rows = work.run_points(points, cache=sweep_cache, workers=args.workers)
    elapsed = time.perf_counter() - t
    cpu = time.process_time() - c0 + _children_cpu() - k0  # this process and its (joined) workers
    n = len(rows)
    size = sum(len(r["tasks"].split("+")) for r in rows) / n
    label = "full" if args.full else f"every {args.every}th combination, {n // 3} of 247"
    print(f"task-combination sweep ({label}, mean {size:.2f} tasks; {args.workers} worker(s)): {n} runs in "
          f"{elapsed:.0f} s wall ({elapsed / n:.2f} s per run), {cpu:.0f} s cpu in all ({cpu / n:.2f} s per run)")
    if not args.full:
        print(f"  extrapolated to all 741 runs (mean 4.11 tasks): {741 * elapsed / n / 60:.1f} min wall; "
              f"{741 * cpu / n / 60:.1f} min cpu, i.e. {741 * cpu / n / 60 / max(args.workers, 1):.1f} min "
              f"on {args.workers} otherwise idle core(s)")
    elif args.workers > 1:
        print(f"  on {args.workers} otherwise idle cores the cpu figure gives {cpu / args.workers / 60:.1f} min")

if __name__ == "__main__":
    main()
