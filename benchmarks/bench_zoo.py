"""Speed of the embedded zoo on this machine: fused-encoder evaluation and few-shot realignment.

    .venv/bin/python benchmarks/bench_zoo.py [--zoo tiny] [--repeats 5] [--threads N]

Prints (and with --json writes) the load time, the evaluation time of one fused encoder on
200 test images per task x 8 tasks, and the time of few-shot realignment (10 pool samples per
class of all 8 tasks, 25 AdamW steps of 64 samples, embeddings frozen as in R-MTLLMF).
Targets (issue 3): evaluation < 0.5 s, realignment < 2 s on the 2-core CPU. The machine's load
average is printed too: other processes on a shared CPU inflate these times.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo", default="tiny")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--json", default=None, help="write the figures to this JSON file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from rmtllmf_core.zoo import load_zoo
    from rmtllmf_core.zoo.train import set_state

    t0 = time.perf_counter()
    zoo = load_zoo(args.zoo)
    t_load = time.perf_counter() - t0
    names = zoo.task_names
    t0 = time.perf_counter()
    test = {t: zoo.split(t, "test", 200) for t in names}
    pool = {t: zoo.split(t, "pool", 10 * len(zoo.tasks[t].class_names)) for t in names}
    t_data = time.perf_counter() - t0
    lam = zoo.card.get("accuracy", {}).get("task_arithmetic", {}).get("lambda", 0.3)
    visual = zoo.encoder

    def fuse():
        set_state(visual, zoo.base_state, [(lam, zoo.task_vectors[t]) for t in names])

    @torch.inference_mode()
    def evaluate():
        accs = {}
        for t in names:
            x, y = test[t]
            f = F.normalize(visual(x), dim=-1)
            accs[t] = float(((f @ zoo.heads[t].T).argmax(-1) == y).float().mean())
        return accs

    fuse_times, eval_times = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        fuse()
        fuse_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        accs = evaluate()
        eval_times.append(time.perf_counter() - t0)

    # few-shot realignment: k = 10 per class of every task, frozen embeddings, AdamW
    xs = torch.cat([pool[t][0] for t in names])
    ys = torch.cat([pool[t][1] for t in names])
    task_of = torch.cat([torch.full((len(pool[t][1]),), i) for i, t in enumerate(names)])
    frozen = ("conv1.weight", "positional_embedding", "class_embedding")
    realign_times = []
    for r in range(max(1, args.repeats // 2)):
        fuse()
        params = [p for n, p in visual.named_parameters() if n not in frozen]
        for n, p in visual.named_parameters():
            p.requires_grad_(n not in frozen)
        g = torch.Generator().manual_seed(r)
        t0 = time.perf_counter()
        opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
        visual.train()
        for _ in range(args.steps):
            idx = torch.randperm(len(xs), generator=g)[:64]
            f = F.normalize(visual(xs[idx]), dim=-1)
            loss = 0.0
            for i, t in enumerate(names):
                m = task_of[idx] == i
                if m.any():
                    loss = loss + F.cross_entropy(zoo.logit_scale * f[m] @ zoo.heads[t].T, ys[idx][m], reduction="sum")
            loss = loss / len(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        visual.eval()
        realign_times.append(time.perf_counter() - t0)
    for p in visual.parameters():
        p.requires_grad_(False)
    set_state(visual, zoo.base_state)

    fig = {
        "zoo": zoo.name, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "load_s": round(t_load, 3), "data_s": round(t_data, 3),
        "fuse_s_median": round(statistics.median(fuse_times), 4),
        "eval_200x8_s_median": round(statistics.median(eval_times), 3), "eval_200x8_s_min": round(min(eval_times), 3),
        "realign_10shot_x8_s_median": round(statistics.median(realign_times), 3),
        "realign_10shot_x8_s_min": round(min(realign_times), 3), "realign_steps": args.steps,
        "fused_accuracy_200": {t: round(a, 3) for t, a in accs.items()}, "lambda": lam,
    }
    print(f"zoo {fig['zoo']}: load {fig['load_s']:.2f}s (+ data {fig['data_s']:.2f}s), threads {fig['threads']}, "
          f"load average {fig['load_average_1min']:.1f}")
    print(f"fused-encoder evaluation, 200 test images x 8 tasks: median {fig['eval_200x8_s_median']:.3f}s, "
          f"min {fig['eval_200x8_s_min']:.3f}s (target < 0.5 s)")
    print(f"few-shot realignment, 10/class x 8 tasks, {args.steps} AdamW steps of 64: median "
          f"{fig['realign_10shot_x8_s_median']:.3f}s, min {fig['realign_10shot_x8_s_min']:.3f}s (target < 2 s)")
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
