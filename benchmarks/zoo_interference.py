"""Where one task vector hurts another: a pair's victim accuracy with each parameter group of the
other task's vector added on its own.

    .venv/bin/python benchmarks/zoo_interference.py [--zoo tiny] [--pairs vehicles:house_numbers ...]

For each pair victim:other at the card's lambda for that pair (or --lam), prints the victim's test
accuracy with base + lam * tau_victim (alone), with tau_other added in full (both), and with only
one group of tau_other added (`taskvec.group_of`: the patch, positional and class embeddings,
ln_pre, each block, the head). A group whose line falls far below `alone` carries the interference;
the blocks' lines can each stay near `alone` while all of them together do not (the harm compounds).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from where import print_header  # noqa: E402  (benchmarks/ is the script's own folder)

import torch  # noqa: E402

from rmtllmf_core.science.taskvec import group_of  # noqa: E402
from rmtllmf_core.zoo import load_zoo  # noqa: E402
from rmtllmf_core.zoo.train import eval_tasks, set_state  # noqa: E402

DEFAULT_PAIRS = ("vehicles:house_numbers", "digits:house_numbers", "vehicles:textures")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zoo", default="tiny")
    ap.add_argument("--pairs", nargs="+", default=list(DEFAULT_PAIRS), help="victim:other task names")
    ap.add_argument("--lam", type=float, default=None, help="lambda (default: the card's for the pair)")
    args = ap.parse_args()
    print_header(None)  # where it ran: torch build, CPU flags, threads (benchmarks/where.py)
    torch.set_num_threads(1)
    zoo = load_zoo(args.zoo)
    visual = zoo.model.visual
    base = dict(zoo.base_state)
    groups = list(dict.fromkeys(group_of(k) for k in base))
    card_pairs = zoo.card.get("accuracy", {}).get("pairs", {})
    for pair in args.pairs:
        victim, _, other = pair.partition(":")
        for t in (victim, other):
            if t not in zoo.task_vectors:
                ap.error(f"--pairs: unknown task {t!r}; allowed: {', '.join(zoo.task_vectors)}")
        key = "+".join(t for t in zoo.task_vectors if t in (victim, other))
        lam = args.lam if args.lam is not None else card_pairs.get(key, {}).get("lambda", 1.0)
        test = zoo.split(victim, "test")
        tv_v, tv_o = dict(zoo.task_vectors[victim].items()), dict(zoo.task_vectors[other].items())

        def acc(deltas):
            return eval_tasks(visual, base, deltas, zoo.heads, lambda t: test, [victim])[victim]

        alone, both = acc([(lam, tv_v)]), acc([(lam, tv_v), (lam, tv_o)])
        only = {g: acc([(lam, tv_v), (lam, {k: v if group_of(k) == g else torch.zeros_like(v) for k, v in tv_o.items()})])
                for g in groups}
        print(f"{victim} with {other} (lambda {lam:g}): alone {alone:.3f}, both {both:.3f}; only one group of {other}'s "
              "vector: " + ", ".join(f"{g} {a:.3f}" for g, a in only.items()), flush=True)
    set_state(visual, base)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
