"""`python -m rmtllmf_core zoo {build,info,eval}`."""
from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser("zoo", help="build, describe or re-evaluate a model zoo")
    sub = p.add_subparsers(dest="zoo_command", metavar="ZOO_COMMAND", required=True)

    b = sub.add_parser("build", help="rebuild a zoo from nothing (deterministic)")
    b.add_argument("which", choices=["tiny", "clip"], help="the zoo to build: the embedded one, or a real CLIP zoo (see --model)")
    b.add_argument("--out", default=None, help="output directory (default: assets/tiny, the shipped zoo)")
    b.add_argument("--micro", action="store_true", help="tiny config, a few steps: a smoke build in seconds")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    b.add_argument("--pretrain-cache", default=None, metavar="DIR",
                   help="reuse/keep the pretrained base in DIR (keyed by recipe, config, torch version, threads)")
    b.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: reproducible, and robust on a busy shared CPU)")
    b.add_argument("--recipe", default=None, metavar="JSON",
                   help="experiments: JSON overrides of the recipe, e.g. '{\"finetune\": {\"lr\": 1e-4}}' (the card records the result)")
    b.set_defaults(func=_build)
    from .clip_cli import add_clip_commands  # `zoo build clip` options and `zoo import` (issue 7)

    add_clip_commands(sub, b)

    i = sub.add_parser("info", help="print a zoo's card")
    i.add_argument("--zoo", default="tiny", help="'tiny', a zoo directory or its card.json")
    i.add_argument("--json", action="store_true", help="the whole card as JSON")
    i.set_defaults(func=_info)

    e = sub.add_parser("eval", help="recompute the card's accuracies from the shipped files")
    e.add_argument("--zoo", default="tiny", help="'tiny', a zoo directory or its card.json")
    e.add_argument("--n", type=int, default=None, help="first n test samples per task (default: all)")
    e.add_argument("--pairs", action="store_true", help="also the 28 pairwise fusions")
    e.add_argument("--tolerance", type=float, default=0.005, help="allowed |recomputed - card| (default 0.005)")
    e.set_defaults(func=_eval)


def _build(args) -> int:
    if args.which == "clip":
        from .clip_cli import run_build_clip

        return run_build_clip(args)
    import torch

    from .build import build

    overrides = None
    if args.recipe:
        try:
            overrides = json.loads(args.recipe)
        except json.JSONDecodeError as exc:
            from ..errors import InputError

            raise InputError("recipe", f"not valid JSON ({exc})") from None
    build(args.out, micro=args.micro, progress=not args.quiet, pretrain_cache=args.pretrain_cache, overrides=overrides,
          threads=args.threads)
    return 0


def _load(src):
    from .loader import load_zoo

    return load_zoo(src)


def _info(args) -> int:
    zoo = _load(args.zoo)
    c = zoo.card
    if args.json:
        print(json.dumps(c, indent=1))
        return 0
    acc = c.get("accuracy", {})
    m = c.get("model", {})
    print(f"zoo {zoo.name}  fingerprint {zoo.fingerprint}")
    if m:
        print(f"model {m.get('open_clip_name')}  params {m.get('parameters')}  logit_scale {zoo.logit_scale:.2f}")
    if "total_bytes" in c:
        print(f"files {len(c['files'])}, {c['total_bytes'] / 1e6:.1f} MB; built in {c['build']['wall_time_s']:.0f} s")
    print(f"{'task':16s} {'classes':>7s} {'fine-tuned':>10s} {'zero-shot':>9s} {'fused':>6s}")
    ta = acc.get("task_arithmetic", {})
    for t, info in zoo.tasks.items():
        print(f"{t:16s} {len(info.class_names):7d} {zoo.finetuned_accuracy.get(t, float('nan')):10.3f} "
              f"{zoo.zeroshot_accuracy.get(t, float('nan')):9.3f} {ta.get('accuracy', {}).get(t, float('nan')):6.3f}")
    if ta:
        print(f"task arithmetic: lambda {ta['lambda']} (chosen on val), normalised {ta['normalized_avg']:.3f}, "
              f"base normalised {acc['zeroshot_normalized_avg']:.3f}")
        print(f"pairs: normalised avg {acc['pairs_normalized_avg']:.3f}, min {acc['pairs_normalized_min']:.3f}; "
              f"task-vector cosine max {c['cosine']['max_offdiag']:.3f}")
    return 0


def _eval(args) -> int:
    from .evaluation import evaluate_zoo

    zoo = _load(args.zoo)
    r = evaluate_zoo(zoo, args.n, pairs=args.pairs)
    acc = zoo.card.get("accuracy", {})
    worst = 0.0
    print(f"{'task':16s} {'fine-tuned':>17s} {'zero-shot':>17s} {'fused':>17s}   (recomputed / card)")
    for t in zoo.task_names:
        cells = []
        for key, card_key in (("finetuned", "finetuned"), ("zeroshot", "zeroshot"), ("task_arithmetic", None)):
            got = r.get(key, {}).get(t)
            ref = (acc.get(card_key, {}) if card_key else acc.get("task_arithmetic", {}).get("accuracy", {})).get(t)
            if args.n is not None:
                sub = acc.get("check_subset", {})
                ref = sub.get(key, {}).get(t) if sub.get("n_per_task") == args.n else None
            if got is not None and ref is not None:
                worst = max(worst, abs(got - ref))
            cells.append(f"{got if got is not None else float('nan'):.3f} / " + (f"{ref:.3f}" if ref is not None else "  -  "))
        print(f"{t:16s} " + " ".join(f"{c:>17s}" for c in cells))
    if "task_arithmetic_normalized_avg" in r:
        print(f"task arithmetic normalised {r['task_arithmetic_normalized_avg']:.3f} "
              f"(lambda {r['lambda']}), base normalised {r['zeroshot_normalized_avg']:.3f}")
    if args.pairs:
        for k, v in r["pairs"].items():
            ref = acc.get("pairs", {}).get(k, {}).get("normalized_avg")
            if ref is not None and args.n is None:
                worst = max(worst, abs(v - ref))
            print(f"  {k:32s} {v:.3f} / {ref if ref is not None else float('nan'):.3f}")
    print(f"max |recomputed - card| = {worst:.4f} (tolerance {args.tolerance})")
    return 0 if worst <= args.tolerance else 1
