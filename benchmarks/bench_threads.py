"""What the second core buys on the embedded zoo, and whether the thread count moves a result.

    .venv/bin/python benchmarks/bench_threads.py [--zoo tiny] [--threads 1,2,4] [--no-numbers]

Speed: the R-MTLLMF work of two cold 8-task runs (freeze, realignment at the scenario's budget,
evaluation of the defended encoder on 200 test images per task), done
- one after the other, with torch on 1, 2, ... threads (intra-op parallelism: each product split
  over the threads);
- side by side in two Python threads, torch on one thread each (the two runs are independent).
The plain open_clip ViT forward (`zoo.model._vit_features`) swaps no parameters, so the two need no
lock (`evaluate.module_lock` is free for it): what a run's side branches rely on (`pipeline._branches`).

Numbers: the accuracies of whole runs (three presets, one seed each; every condition, every task)
computed in fresh processes and caches at each `--threads` count, compared with the one-thread run.
Floating-point sums may depend on the thread count, so encoder weights can differ in their last
bits; this says whether the accuracies a user sees do.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from where import print_header  # noqa: E402  (benchmarks/ is the script's own folder)

from rmtllmf_core.serve import jobs  # noqa: E402,F401  (before torch: sets the OpenMP wait policy)
import torch  # noqa: E402

NUMBER_RUNS = (("paper_worst_sum_rate", 0), ("paper_ideal", 1), ("paper_worst_strongest_user", 2))


def accuracies(zoo: str, preset: str, seed: int) -> dict[str, float]:
    """Every accuracy of one run (fresh cache), flattened: 'condition.task' -> fraction."""
    from rmtllmf_core.cache import ResultCache
    from rmtllmf_core.experiment import pipeline
    from rmtllmf_core.experiment.presets import preset_scenario

    result = pipeline.run(preset_scenario(preset, zoo=zoo).replace(seed=seed),
                          cache=ResultCache(tempfile.mkdtemp(prefix="bench-threads-")))
    return {f"{cond}.{task}": acc for cond, by_task in result.to_json()["accuracy"].items()
            for task, acc in by_task.items()}


def speed(zoo_name: str, counts: list[int]) -> None:
    from rmtllmf_core.experiment.pipeline import Engine
    from rmtllmf_core.experiment.scenario import DefenseConfig
    from rmtllmf_core.science import defense, evaluate, fusion
    from rmtllmf_core.zoo import load_zoo

    zoo = load_zoo(zoo_name)
    engine = Engine.from_zoo(zoo, "cpu")
    names = zoo.task_names
    slices = engine.clean_slices(names)
    plan = fusion.plan_merge(slices, fusion.RECIPES["task_arithmetic"], layout=engine.layout, n_tasks=len(names),
                             lambda_=0.3)
    d = DefenseConfig(freeze=True, realign=True)
    frozen, budget = engine.layout.mask(d.freeze_groups), defense.Budget.of(d)
    fused = engine.encoder_flat(slices, plan)
    ev = engine.evaluator(200)

    def defend(seed: int) -> None:
        ev.logits(defense.realign(zoo, fused.clone(), engine.layout, names, budget, frozen_mask=frozen, seed=seed))

    defend(0)  # first-use costs (few-shot set, kernels) out of the timings
    for n in counts:
        torch.set_num_threads(n)
        t, c = time.perf_counter(), time.process_time()
        defend(1), defend(2)
        print(f"two runs' realignment + evaluation, one after the other, {n} torch thread(s): "
              f"{time.perf_counter() - t:.2f} s ({time.process_time() - c:.2f} s cpu)")
    torch.set_num_threads(1)
    if not evaluate._pools_class_token(zoo.encoder):
        print("side by side: skipped (this encoder's forward swaps parameters into the module: one at a time)")
        return
    t, c = time.perf_counter(), time.process_time()
    threads = [threading.Thread(target=defend, args=(s,)) for s in (1, 2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    print(f"two runs side by side in two Python threads, 1 torch thread each: {time.perf_counter() - t:.2f} s "
          f"({time.process_time() - c:.2f} s cpu)")


def numbers(zoo: str, counts: list[int]) -> None:
    reference = counts[0]
    same, total = 0, 0
    for preset, seed in NUMBER_RUNS:
        got = {}
        for n in counts:
            out = subprocess.run([sys.executable, __file__, "--zoo", zoo, "--one", preset, str(seed), str(n)],
                                 capture_output=True, text=True, check=True)
            got[n] = json.loads(out.stdout.strip().splitlines()[-1])
        for n in counts[1:]:
            differ = {k: (v, got[n].get(k)) for k, v in got[reference].items() if got[n].get(k) != v}
            same += len(got[reference]) - len(differ)
            total += len(got[reference])
            print(f"{preset}, seed {seed}: {n} threads against {reference}: {len(got[reference]) - len(differ)} of "
                  f"{len(got[reference])} accuracies identical" + (f"; differ: {differ}" if differ else ""))
    print(f"accuracies identical across thread counts {counts}: {same} of {total}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo", default="tiny")
    ap.add_argument("--threads", default=None, help="thread counts, comma-separated (default: 1 to the cores, and 4)")
    ap.add_argument("--no-numbers", action="store_true", help="the speed part only")
    ap.add_argument("--one", nargs=3, metavar=("PRESET", "SEED", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:  # a child of `numbers`: one run at one thread count, its accuracies as one JSON line
        torch.set_num_threads(int(args.one[2]))
        print(json.dumps(accuracies(args.zoo, args.one[0], int(args.one[1]))))
        return 0
    cores = jobs.available_cores()
    counts = ([int(v) for v in args.threads.split(",")] if args.threads
              else sorted({*range(1, cores + 1), 4}))
    print_header(None)
    print(f"cores: {cores} ({os.cpu_count()} in the machine)")
    speed(args.zoo, [n for n in counts if n <= cores])
    if not args.no_numbers:
        numbers(args.zoo, counts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
