"""Compare tiny-zoo recipes on one pretrained base: the fusion figures of each fine-tuning recipe.

    .venv/bin/python benchmarks/zoo_recipes.py --device cuda --pretext '{"caption_noise": 0.35}' \\
        --finetune '[{"lr": 3e-4}, {"lr": 1e-4}, {"lr": 1e-4, "steps": 600, "warmup": 60}]'

One process pretrains once (the recipe's `pretext` updated with `--pretext`), prints the base's
linear-probe accuracy per task (what it can see: the weak tasks' figure a pretext recipe should raise) and
generates the task data once, then fine-tunes and evaluates the zoo for each entry of `--finetune`
(overrides of the recipe's `finetune`, e.g. `steps_per_task`), printing one line per recipe: the base's
and task arithmetic's normalised accuracy, the gain, lambda, pairs (average / minimum), the mean
fine-tuned accuracy and per task fine-tuned / zero-shot / fused accuracy. `--seed N` redraws the model
and the task data (the pretext corpus follows the model seed). Nothing is written to
assets/. `--pretrain-cache DIR` reuses a pretrained base stored there (by `zoo build tiny
--pretrain-cache DIR` or an earlier run). On a GPU one recipe takes about 35 s after the first (~90 s
with data and pretraining; measured before the feature anchor); on one CPU thread about 9 minutes (4
with `"drift_weight": 0`) after about 11 of data and pretraining.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from where import print_header  # noqa: E402  (benchmarks/ is the script's own folder)

import torch  # noqa: E402

from rmtllmf_core.zoo import build  # noqa: E402
from rmtllmf_core.zoo.evaluation import encoder_probe  # noqa: E402
from rmtllmf_core.zoo.model import to_input  # noqa: E402

def _base_probe(visual, state, data) -> dict[str, float]:
    """Per task, the linear-probe accuracy (train -> test) of the pretrained base's image features: the
    figure a pretraining recipe should raise for the weak tasks without raising their zero-shot accuracy."""
    visual.load_state_dict({k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")})
    return {t: encoder_probe(visual, *((to_input(d[s][0]), torch.from_numpy(d[s][1])) for s in ("train", "test")))
            for t, d in data.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--pretext", default="{}", help="JSON overrides of the recipe's pretext section "
                                                     "(n, concept_fraction, caption_noise: a share or task -> share with '*' "
                                                     "for the rest, steps, batch, lr, ...)")
    ap.add_argument("--seed", type=int, default=None, help="the recipe's model and data seed (default: the recipe's, 0); "
                                                              "other seeds measure how much a figure owes to one draw")
    ap.add_argument("--finetune", default="[{}]", help="JSON list of overrides of the recipe's finetune section")
    ap.add_argument("--pretrain-cache", default=None, metavar="DIR",
                    help="reuse (or store) the pretrained base here, as `zoo build tiny --pretrain-cache` does")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()
    print_header(None)  # where it ran: torch build, CPU flags, threads (benchmarks/where.py)
    if args.seed is not None and args.seed < 0:
        ap.error(f"--seed: a whole number >= 0; got {args.seed}")
    torch.set_num_threads(1)
    rows, state, data = [], None, None
    for ft in json.loads(args.finetune):
        recipe = json.loads(json.dumps(build.RECIPE))
        recipe["pretext"].update(json.loads(args.pretext))
        if args.seed is not None:
            recipe["seed"] = recipe["data_seed"] = args.seed
        recipe["finetune"].update(ft)
        keep: dict = {}
        t0 = time.perf_counter()
        res = build.run(recipe, progress=False, log=lambda *a: None, device=args.device, pretrained_state=state, data=data,
                        pretrain_cache=args.pretrain_cache,
                        on_pretrained=lambda m: keep.update(model=m, state={k: v.detach().clone() for k, v in m.state_dict().items()}))
        if state is None:
            state, data = keep["state"], res["data"]
            probe = _base_probe(keep["model"].visual, state, data)
            print("base probe (what the pretrained base can see): " + ", ".join(f"{t} {v:.3f}" for t, v in probe.items()), flush=True)
        ta = res["task_arithmetic"]
        row = {"seed": recipe["seed"], "finetune": ft, "pretext": recipe["pretext"],
               "seconds": round(time.perf_counter() - t0, 1), "base_probe": probe,
               "base_normalized": res["zeroshot_normalized_avg"], "fused_normalized": ta["normalized_avg"],
               "gain": ta["normalized_avg"] - res["zeroshot_normalized_avg"], "lambda": ta["lambda"],
               "pairs_avg": res["pairs_normalized_avg"], "pairs_min": res["pairs_normalized_min"],
               "pairs_worst": min(res["pairs"], key=lambda k: res["pairs"][k]["normalized_avg"]),
               "finetuned_avg": sum(res["finetuned_accuracy"].values()) / len(res["finetuned_accuracy"]),
               "per_task_ft_zs_fused": {t: [res["finetuned_accuracy"][t], res["zeroshot_accuracy"][t], ta["accuracy"][t]]
                                        for t in res["finetuned_accuracy"]}}
        rows.append(row)
        print(f"seed {row['seed']} {json.dumps(ft):53s} base {row['base_normalized']:.3f} fused {row['fused_normalized']:.3f} "
              f"gain {row['gain']:+.3f} lambda {row['lambda']:.2f} pairs {row['pairs_avg']:.3f}/{row['pairs_min']:.3f} ({row['pairs_worst']}) "
              f"fine-tuned {row['finetuned_avg']:.3f} ({row['seconds']:.0f} s)", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
