"""Speed of the wireless engine (issue 2 targets, on the 2-core reference machine):
- the paper preset (Q = 8, N_R = 16) with every attack over 1,000 fading draws: < 0.5 s in all;
- a single draw with all closed-form attacks: < 20 ms in all.

    .venv/bin/python benchmarks/bench_wireless.py [--repeat 5] [--json out.json]

Prints the best of `--repeat` runs (least disturbed by other load) and the median.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rmtllmf_core.wireless import ATTACKS, evaluate_uplink, monte_carlo, preset  # noqa: E402

CLOSED_FORM = [a for a in ATTACKS if a != "worst_max_user_numeric"]


def timed(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    configs = {a: preset("paper", attack=a, target_user=0) for a in ATTACKS}
    for cfg in configs.values():  # warm up imports and BLAS
        evaluate_uplink(cfg)
        monte_carlo(cfg, 10)

    figures = {}
    print(f"paper preset, Q=8, N_R=16, {args.draws} fading draws per attack (best / median of {args.repeat}):")
    total_best = total_median = 0.0
    for attack, cfg in configs.items():
        best, median = timed(lambda: monte_carlo(cfg, args.draws), args.repeat)
        figures[f"mc_{attack}_s"] = best
        total_best += best
        total_median += median
        print(f"  {attack:<24} {best * 1e3:8.1f} ms  (median {median * 1e3:.1f} ms)")
    print(f"  {'all attacks':<24} {total_best * 1e3:8.1f} ms  (median {total_median * 1e3:.1f} ms)   target < 500 ms")
    figures["mc_all_attacks_s"] = total_best

    def single_closed_form():
        for attack in CLOSED_FORM:
            evaluate_uplink(configs[attack])

    best, median = timed(single_closed_form, max(args.repeat, 20))
    print(f"single draw, all closed-form attacks: {best * 1e3:.2f} ms  (median {median * 1e3:.2f} ms)   target < 20 ms")
    figures["single_closed_form_s"] = best
    best, median = timed(lambda: evaluate_uplink(configs["worst_max_user_numeric"]), max(args.repeat, 20))
    print(f"single draw, worst_max_user_numeric: {best * 1e3:.2f} ms  (median {median * 1e3:.2f} ms)")
    figures["single_numeric_s"] = best

    ok = figures["mc_all_attacks_s"] < 0.5 and figures["single_closed_form_s"] < 0.02
    print("targets met" if ok else "targets NOT met on this run")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
