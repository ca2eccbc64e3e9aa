"""`python -m rmtllmf_core zoo {build,info,eval}`."""
from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser("zoo", help="build, describe or re-evaluate a model zoo")
    sub = p.add_subparsers(dest="zoo_command", metavar="ZOO_COMMAND", required=True)

    b = sub.add_parser("build", help="rebuild a zoo from nothing (deterministic)")
    b.add_argument("which", choices=["tiny", "clip"], help="the zoo to build: the embedded one, or a real CLIP zoo (see --model)")
    b.add_argument("--out", default=None, help="output directory (default: tiny: assets/tiny, the shipped zoo; "
                                                "clip: zoos/MODEL-PRETRAINED, e.g. zoos/vit-b-32-openai)")
    b.add_argument("--micro", action="store_true", help="tiny config, a few steps: a smoke build in seconds")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    b.add_argument("--pretrain-cache", default=None, metavar="DIR",
                   help="reuse/keep the pretrained base in DIR (keyed by recipe, config, torch version, threads)")
    b.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: reproducible, and robust on a busy shared CPU)")
    b.add_argument("--recipe", default=None, metavar="JSON",
                   help="experiments: JSON overrides of the recipe, e.g. '{\"finetune\": {\"lr\": 1e-4}}' (the card records the result)")
    b.set_defaults(func=_build)
    from .zoo_clip import add_clip_commands  # `zoo build clip` options and `zoo import` (issue 7)

    add_clip_commands(sub, b)

    i = sub.add_parser("info", help="print a zoo's card")
    i.add_argument("--zoo", default="tiny", help="'tiny', a zoo directory or its card.json")
    i.add_argument("--json", action="store_true", help="the whole card as JSON")
    i.add_argument("--probe", action="store_true", help="also a linear probe of the base's image features per task "
                                                         "(fitted on the train split; about 30 s on the tiny zoo)")
    i.set_defaults(func=_info)

    e = sub.add_parser("eval", help="recompute the card's accuracies from the shipped files")
    e.add_argument("--zoo", default="tiny", help="'tiny', a zoo directory or its card.json")
    e.add_argument("--n", type=int, default=None, help="first n test samples per task, compared with the card's check subset when it has that n "
                        "(default: as many as the card's accuracies were computed on: its n_eval, else the whole split)")
    e.add_argument("--pairs", action="store_true", help="also the 28 pairwise fusions")
    e.add_argument("--tolerance", type=float, default=0.005, help="allowed |recomputed - card| (default 0.005)")
    e.set_defaults(func=_eval)


def _build(args) -> int:
    if args.which == "clip":
        from .zoo_clip import run_build_clip

        return run_build_clip(args)
    from ..zoo.build import build

    overrides = None
    if args.recipe:
        try:
            overrides = json.loads(args.recipe)
        except json.JSONDecodeError as exc:
            from ..errors import InputError

            raise InputError("recipe", f"not valid JSON ({exc})") from None
    build(args.out, micro=args.micro, progress=not args.quiet, pretrain_cache=args.pretrain_cache, overrides=overrides,
          threads=args.threads, device=args.device)
    return 0


def _load(src):
    from ..zoo.loader import load_zoo

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
    from ..zoo.evaluation import base_probe

    overlap = zoo.head_overlap()
    probe = base_probe(zoo) if args.probe else {}
    print(f"{'task':16s} {'classes':>7s} {'fine-tuned':>10s} {'zero-shot':>9s} {'fused':>6s} {'head cos':>8s}"
          + (f" {'base probe':>10s}" if probe else ""))
    ta = acc.get("task_arithmetic", {})
    for t, info in zoo.tasks.items():
        print(f"{t:16s} {len(info.class_names):7d} {zoo.finetuned_accuracy.get(t, float('nan')):10.3f} "
              f"{zoo.zeroshot_accuracy.get(t, float('nan')):9.3f} {ta.get('accuracy', {}).get(t, float('nan')):6.3f} "
              f"{overlap.get(t, float('nan')):8.3f}" + (f" {probe[t]:10.3f}" if probe else ""))
    if ta:
        line = f"task arithmetic: lambda {ta.get('lambda')} (chosen on val)"
        if ta.get("normalized_avg") is not None:
            line += f", normalised {ta['normalized_avg']:.3f}"
        if acc.get("zeroshot_normalized_avg") is not None:
            line += f", base normalised {acc['zeroshot_normalized_avg']:.3f}"
        print(line)
    # a card may lack any of these (`zoo build clip --no-pairs`, an older card): print what is there
    if acc.get("pairs_normalized_avg") is not None:
        print(f"pairs: normalised avg {acc['pairs_normalized_avg']:.3f}, min {acc['pairs_normalized_min']:.3f} "
              f"({len(acc.get('pairs') or {})} pairs)")
    elif acc:
        print("pairs: not evaluated (built with --no-pairs)")
    cos = (c.get("cosine") or {}).get("max_offdiag")
    if cos is not None:
        print(f"task-vector cosine max {cos:.3f}")
    print("head cos: mean cosine between two classes' rows of a task's frozen zero-shot head")
    if probe:
        print("base probe: test accuracy of a logistic regression on the base's image features (what the base can see)")
    n_eval = _card_n_eval(c, zoo.task_names)
    if n_eval:
        print(f"accuracies on the first {_describe_n(n_eval)} test samples per task")
    return 0


def _card_n_eval(card, tasks) -> dict[str, int] | None:
    """task -> how many (first) test samples the card's accuracies were computed on; None = the whole split."""
    n_eval = (card.get("accuracy") or {}).get("n_eval") or {}
    out = {t: int(n_eval[t]["test"]) for t in tasks if isinstance(n_eval.get(t), dict) and "test" in n_eval[t]}
    return out or None


def _describe_n(n) -> str:
    if isinstance(n, dict):
        vals = sorted(set(n.values()))
        return str(vals[0]) if len(vals) == 1 else ", ".join(f"{t} {v}" for t, v in n.items())
    return str(n)


def _eval(args) -> int:
    from ..zoo.evaluation import evaluate_zoo

    zoo = _load(args.zoo)
    acc = zoo.card.get("accuracy", {})
    if args.n is None:
        # the card's accuracies: on the first n_eval test samples per task where it records them
        # (`zoo build clip`, default 1000), else on the whole test split (the tiny zoo)
        n = _card_n_eval(zoo.card, zoo.task_names)
        what = (f"the first {_describe_n(n)} test samples per task, as the card's accuracies" if n
                else "the whole test split, as the card's accuracies")
    else:
        n = args.n
        sub = acc.get("check_subset", {})
        what = (f"the first {n} test samples per task, against the card's check subset" if sub.get("n_per_task") == n
                else f"the first {n} test samples per task; the card has no figures for that n (its check subset is "
                     f"n={sub.get('n_per_task')}), nothing to compare")
    print(f"recomputing on {what}")
    r = evaluate_zoo(zoo, n, pairs=args.pairs)
    worst, compared = 0.0, 0
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
                compared += 1
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
                compared += 1
            print(f"  {k:32s} {v:.3f} / {ref if ref is not None else float('nan'):.3f}")
        if not r["pairs"] or not acc.get("pairs"):
            print("  (the card has no pairwise figures)" if r["pairs"] else "  (fewer than two tasks)")
    if not compared:
        print("nothing compared: the card has no figures for these samples")
        return 1
    print(f"max |recomputed - card| = {worst:.4f} over {compared} figures (tolerance {args.tolerance})")
    return 0 if worst <= args.tolerance else 1
