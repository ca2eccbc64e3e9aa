"""The engine's speed side by side with an earlier commit's, in one run on one machine: each side's
`bench_engine.py --no-sweep` in turn, in fresh processes, alternating (so that a machine's slow minute
hits both sides alike), with each side's own defaults (its own calibration and precision).

    .venv/bin/python benchmarks/bench_against.py fc98d4e [--rounds 2] [--precision bfloat16]

`--precision` applies to the earlier commit only: e.g. the bfloat16 default an earlier calibration had.
The earlier commit is checked out into a temporary git worktree and run with this interpreter.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from where import print_header  # noqa: E402  (benchmarks/ is the script's own folder)

ROOT = Path(__file__).resolve().parents[1]
FIGURES = {  # what bench_engine prints -> our label
    "first": r"first run in a fresh process and cache .*?: ([\d.]+) s",
    "cold": r"cold 8-task run with a new seed.*?median ([\d.]+) s",
    "move": r"cold run after a jammer-power move: median ([\d.]+) s",
}


def bench(tree: Path, extra: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-against-cache-") as cache:  # an earlier bench_engine kept
        env = {**os.environ, "RMTLLMF_CACHE_DIR": cache}                   # the task data's disk cache
        out = subprocess.run([sys.executable, str(tree / "benchmarks" / "bench_engine.py"), "--no-sweep", *extra],
                             cwd=tree, capture_output=True, text=True, check=True, env=env).stdout
    return {k: float(re.search(p, out).group(1)) for k, p in FIGURES.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rev", help="the earlier commit (any git revision)")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each side, alternating (default 2)")
    ap.add_argument("--precision", choices=("float32", "bfloat16"), default=None,
                    help="the earlier commit's realignment arithmetic (default: its own default)")
    args = ap.parse_args()
    print_header(None)
    with tempfile.TemporaryDirectory(prefix="bench-against-") as tmp:
        old = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(old), args.rev], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            runs = {"then": [], "now": []}
            for _ in range(args.rounds):
                runs["then"].append(bench(old, ["--precision", args.precision] if args.precision else []))
                runs["now"].append(bench(ROOT, []))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=False)
    label = {"then": f"{args.rev}" + (f" ({args.precision})" if args.precision else ""), "now": "this tree"}
    for key, title in (("cold", "cold 8-task run, new seed"), ("move", "cold run after a jammer move"),
                       ("first", "first run in a fresh process")):
        then = statistics.median(r[key] for r in runs["then"])
        now = statistics.median(r[key] for r in runs["now"])
        print(f"{title:32s} {label['then']}: {then:5.2f} s   {label['now']}: {now:5.2f} s   "
              f"ratio {now / then:.2f}  (median of {args.rounds} runs each)")


if __name__ == "__main__":
    main()
