"""Engine speed on the embedded zoo: cold run, cache hit, and the full task-combination sweep.

    python benchmarks/bench_engine.py            # cold + hit (+ a timed slice of the sweep)
    python benchmarks/bench_engine.py --full     # the whole 247 x 3 x 2 sweep

Each measurement uses a fresh private cache folder, so nothing is reused from earlier runs.
Targets (issue 4): 8 tasks with R-MTLLMF (10 shots) cold < 3 s; cache hit < 50 ms;
full task-combination sweep < 15 min.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rmtllmf_core import pipeline, sweeps  # noqa: E402
from rmtllmf_core.cache import ResultCache  # noqa: E402
from rmtllmf_core.presets import preset_scenario  # noqa: E402
from rmtllmf_core.report import ATTACK_OF, CONDITIONS  # noqa: E402


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo", default="tiny")
    ap.add_argument("--full", action="store_true", help="run the whole task-combination sweep")
    args = ap.parse_args()

    _, load_s = timed(lambda: pipeline.get_engine(args.zoo))
    print(f"zoo load + flatten: {load_s:.2f} s")
    cache = ResultCache(tempfile.mkdtemp(prefix="bench-engine-"))
    base = preset_scenario("paper_worst_sum_rate", zoo=args.zoo)

    # warm the per-process memos that every later run shares (individual accuracies, lambda)
    warm, warm_s = timed(lambda: pipeline.run(base.replace(seed=999), cache=cache))
    print(f"first run in a fresh process (individual/zero-shot accuracies, lambda search): {warm_s:.2f} s")

    colds = []
    for seed in range(3):
        r, s = timed(lambda: pipeline.run(base.replace(seed=seed), cache=cache))
        colds.append(s)
    print(f"cold 8-task run with a new seed, R-MTLLMF 10 shots + clean control: median {statistics.median(colds):.2f} s "
          f"(stages of the last: {r['timing_s']})")
    moves = []
    for p_dbm in (-131.0, -133.0, -135.0):  # what a jammer-power slider does: same seed, new channel
        r, s = timed(lambda: pipeline.run(base.replace(**{"wireless.jammer_power_w": 10 ** ((p_dbm - 30) / 10)}),
                                          cache=cache))
        moves.append(s)
    print(f"cold run after a jammer-power move (clean-fusion control reused): median {statistics.median(moves):.2f} s "
          f"(stages: {r['timing_s']})")
    hits = []
    for _ in range(20):
        _, s = timed(lambda: pipeline.run(base.replace(seed=0), cache=cache))
        hits.append(s)
    print(f"cache hit: median {1000 * statistics.median(hits):.1f} ms, max {1000 * max(hits):.1f} ms")

    sizes = None if args.full else [2, 8]
    t = time.perf_counter()
    n = 0
    for name in CONDITIONS:
        rows = sweeps.tasks_sweep(preset_scenario(name, zoo=args.zoo),
                                  [(ATTACK_OF[name], d) for d in ("none", "rmtllmf")], sizes=sizes, cache=cache)
        n += len(rows)
    elapsed = time.perf_counter() - t
    label = "full" if args.full else "sizes 2 and 8 only"
    print(f"task-combination sweep ({label}): {n} runs in {elapsed:.0f} s ({elapsed / n:.2f} s per run)")
    if not args.full:
        print(f"  extrapolated to all 1482 runs: {1482 * elapsed / n / 60:.1f} min")


if __name__ == "__main__":
    main()
