"""One sweep on the local process pool and on a local Ray with the same CPUs, from fresh caches.

    python benchmarks/bench_ray.py [--workers 2] [--powers -150,-140,-130,-120]

Prints the wall time of each (Ray's start-up apart: a cluster is started once and serves many
sweeps), their ratio, and whether the rows are the same. The sweep: accuracy versus jammer power on
the paper_worst_sum_rate preset (8 tasks, R-MTLLMF), worst-case sum-rate and white jammers, with and
without defense.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from where import print_header  # noqa: E402  (benchmarks/ is the script's own folder)

from rmtllmf_core.studies import ray_backend, sweeps, work  # noqa: E402
from rmtllmf_core.cache import ResultCache  # noqa: E402
from rmtllmf_core.experiment.presets import preset_scenario  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--powers", default="-150,-140,-130,-120")
    args = ap.parse_args()
    print_header(None)  # where it ran: torch build, CPU flags, threads (benchmarks/where.py)
    powers = [float(p) for p in args.powers.split(",")]
    base = preset_scenario("paper_worst_sum_rate")
    pts = sweeps.snr_points(base, powers, ["worst_sum_rate", "white"], ["none", "rmtllmf"], control=False)
    print(f"{len(pts)} points, {args.workers} CPUs each way")

    t0 = time.perf_counter()
    pool = work.run_points(pts, cache=ResultCache(tempfile.mkdtemp()), workers=args.workers)
    pool_s = time.perf_counter() - t0
    print(f"local process pool: {pool_s:.1f} s")

    t0 = time.perf_counter()
    ray_backend.init(args.workers)
    init_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows = work.run_points(pts, cache=ResultCache(tempfile.mkdtemp()), workers=args.workers, backend="ray")
    ray_s = time.perf_counter() - t0
    import ray

    ray.shutdown()
    print(f"local Ray: {ray_s:.1f} s (+ {init_s:.1f} s to start it)")
    print(f"Ray / pool: {ray_s / pool_s:.2f} (target: within 1.15); same rows: {rows == pool}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
