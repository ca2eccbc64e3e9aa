"""Physical-layer protection: how long each code setting's BER table takes to simulate (Sionna, once
per setting), and a cold pipeline run on the coded link once its table is cached.

    python benchmarks/bench_phy.py [--codes 1/2:4,3/4:6]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from where import print_header  # noqa: E402  (benchmarks/ is the script's own folder)

from rmtllmf_core.science import phy  # noqa: E402
from rmtllmf_core.experiment import pipeline
from rmtllmf_core.cache import ResultCache  # noqa: E402
from rmtllmf_core.experiment.presets import preset_scenario  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--codes", default="5/6:8,3/4:8,3/4:6,1/2:6,1/2:4", help="rate:bits per QAM symbol, comma-separated")
    args = ap.parse_args()
    print_header(None)  # where it ran: torch build, CPU flags, threads (benchmarks/where.py)
    cache = ResultCache(tempfile.mkdtemp())
    codes = [(c.split(":")[0], int(c.split(":")[1])) for c in args.codes.split(",")]
    for rate, q in codes:
        t = time.perf_counter()
        table = phy.ber_table(rate, q, cache=cache)
        waterfall = next((s for s, b in zip(table["sinr_db"], table["ber"]) if b == 0), None)
        print(f"LDPC {rate}, {2 ** q}-QAM: table in {time.perf_counter() - t:.1f} s; error-free from {waterfall} dB; "
              f"airtime x{phy.airtime_factor('coded', 1, 12, rate, q):.2f} at 12 bits per parameter")
    rate, q = codes[-1]
    s = preset_scenario("paper_worst_sum_rate").replace(**{"perturb.model": "coded", "perturb.code_rate": rate,
                                                           "perturb.qam_bits": q, "seed": 5})
    pipeline.run(s.replace(seed=99), cache=cache)  # the process's first run loads the memos
    t = time.perf_counter()
    r = pipeline.run(s, cache=cache)
    print(f"cold 8-task R-MTLLMF run on the coded link (LDPC {rate}, {2 ** q}-QAM, worst-case sum rate): "
          f"{time.perf_counter() - t:.2f} s; normalised accuracy {100 * r.average_normalized['attacked']:.1f}% without "
          f"defense, {100 * r.average_normalized['defended']:.1f}% with R-MTLLMF")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
