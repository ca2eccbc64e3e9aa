"""Speed of the embedded zoo on this machine: fused-encoder evaluation and few-shot realignment.

    .venv/bin/python benchmarks/bench_zoo.py [--zoo tiny] [--repeats 7] [--threads N]

Prints (and with --json writes) the load time, the evaluation time of one fused encoder on
200 test images per task x 8 tasks, and the time of few-shot realignment (10 pool samples per
class of all 8 tasks, embeddings frozen as in R-MTLLMF, the scenario's default steps, batch and rate;
`--batch-sizes` adds other batches).
Both go through the engine's own code, as a run does: task arithmetic into a flat encoder
(`Engine.encoder_flat`), `evaluate.Evaluator.logits` (one functional forward in batches of 256),
`defense.realign`. Each repeat fuses anew, so the evaluation pays what it pays in a run (memory
freed by the fusion, caches cold). Targets (issue 3): evaluation < 0.5 s, realignment < 2 s on
the 2-core CPU. The machine's load average is printed too: other processes on a shared CPU
inflate these times.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from where import print_header  # noqa: E402  (benchmarks/ is the script's own folder)

from rmtllmf_core import ENGINE_VERSION  # noqa: E402  (before torch, as the app and CLI import it)
import torch  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo", default="tiny")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batch-sizes", default=None,
                    help="also time the realignment at these samples per step, comma-separated (default: the "
                    "scenario's alone)")
    ap.add_argument("--json", default=None, help="write the figures to this JSON file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print_header(None)  # where it ran: torch build, CPU flags, threads (benchmarks/where.py)
    from rmtllmf_core.science import defense, fusion
    from rmtllmf_core.experiment.pipeline import Engine
    from rmtllmf_core.experiment.scenario import DefenseConfig
    from rmtllmf_core.zoo import load_zoo

    t0 = time.perf_counter()
    zoo = load_zoo(args.zoo)
    engine = Engine.from_zoo(zoo, "cpu")
    t_load = time.perf_counter() - t0
    names = zoo.task_names
    t0 = time.perf_counter()
    ev = engine.evaluator(200)
    t_data = time.perf_counter() - t0
    lam = zoo.card.get("accuracy", {}).get("task_arithmetic", {}).get("lambda", 0.3)
    slices = engine.clean_slices(names)

    def fuse() -> torch.Tensor:
        plan = fusion.plan_merge(slices, fusion.RECIPES["task_arithmetic"], layout=engine.layout,
                                 n_tasks=len(names), lambda_=lam)
        return engine.encoder_flat(slices, plan)

    fuse_times, eval_times = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        flat = fuse()
        fuse_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        accs = ev.accuracy(flat)
        eval_times.append(time.perf_counter() - t0)
        del flat

    # few-shot realignment as R-MTLLMF runs it: 10 shots per class of every task, embeddings frozen
    d = DefenseConfig(freeze=True, realign=True)
    frozen = engine.layout.mask(d.freeze_groups)
    budget = defense.Budget.of(d)

    def realign_seconds(b: defense.Budget) -> list[float]:
        times = []
        for r in range(max(1, args.repeats // 2)):
            flat = fuse()
            t0 = time.perf_counter()
            defense.realign(zoo, flat, engine.layout, names, b, frozen_mask=frozen, seed=r, inplace=True)
            times.append(time.perf_counter() - t0)
            del flat
        return times

    realign_times = realign_seconds(budget)
    per_batch = {}
    for size in (int(v) for v in (args.batch_sizes.split(",") if args.batch_sizes else ())):
        per_batch[size] = statistics.median(realign_seconds(dataclasses.replace(budget, batch_size=size)))

    fig = {
        "zoo": zoo.name, "engine_version": ENGINE_VERSION, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "load_s": round(t_load, 3), "data_s": round(t_data, 3),
        "fuse_s_median": round(statistics.median(fuse_times), 4),
        "eval_200x8_s_median": round(statistics.median(eval_times), 3), "eval_200x8_s_min": round(min(eval_times), 3),
        "realign_10shot_x8_s_median": round(statistics.median(realign_times), 3),
        "realign_10shot_x8_s_min": round(min(realign_times), 3), "realign_steps": d.realign_steps,
        "realign_batch_size": d.realign_batch_size,
        "realign_ms_per_step_by_batch": {b: round(1000 * t / d.realign_steps, 1) for b, t in per_batch.items()},
        "fused_accuracy_200": {t: round(a, 3) for t, a in accs.items()}, "lambda": lam,
    }
    print(f"zoo {fig['zoo']} (engine {ENGINE_VERSION}): load {fig['load_s']:.2f}s (+ data {fig['data_s']:.2f}s), threads {fig['threads']}, "
          f"load average {fig['load_average_1min']:.1f}")
    print(f"fused-encoder evaluation, 200 test images x 8 tasks: median {fig['eval_200x8_s_median']:.3f}s, "
          f"min {fig['eval_200x8_s_min']:.3f}s (target < 0.5 s)")
    print(f"few-shot realignment, 10/class x 8 tasks, {d.realign_steps} AdamW steps of {d.realign_batch_size}: median "
          f"{fig['realign_10shot_x8_s_median']:.3f}s, min {fig['realign_10shot_x8_s_min']:.3f}s (target < 2 s)")
    for b, ms in fig["realign_ms_per_step_by_batch"].items():
        print(f"  at {b} samples a step: {ms:.1f} ms a step (median of {max(1, args.repeats // 2)})")
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
