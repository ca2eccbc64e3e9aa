"""A real-size CLIP zoo on CPU: time and memory of import, load and one pipeline run, with a randomly
initialised open_clip ViT-B-32 (88 M image-encoder parameters; no download, no real data).

    .venv/bin/python benchmarks/bench_clip.py [--tasks 2] [--threads 1] [--finetune-steps 0] [--json out.json]

Stages, each timed with the process's resident memory after it and its peak (ru_maxrss):
1. synthetic data: `--tasks` ImageFolder datasets (3 classes, `--images-per-class` 64x64 PNGs);
2. checkpoints: the random ViT-B-32 as the "pretrained" file, each task's "fine-tuned" encoder = base
   + small noise (safetensors);
3. `zoo import` of those checkpoints (fp16 task vectors, heads, evaluation, card) -- the path a real
   zoo takes after fine-tuning; then the heads are replaced by the base encoder's class-mean pool
   features (a random text tower's heads can leave a task at 0 accuracy, which the engine cannot
   normalise by);
4. `load_zoo(dir)` (what the app and the engine do), in this process and again in a fresh one, whose
   peak (VmHWM) is the loader's own: the import before it has already set this process's peak. The
   fresh process also reports anonymous vs file-backed (memory-mapped, reclaimable) resident memory
   and the peak while every task vector is read once, one task at a time, in fp32;
5. the engine: `register_zoo` and one cold `pipeline.run` (paper_worst_sum_rate preset, heuristic lambda, `--samples` test images per
   task; realignment only with `--realign`, then `--realign-steps` steps) and a second one with another seed;
6. optionally `--finetune-steps` real fine-tuning iterations (batch `--batch`) to time one step.

tracemalloc does not see torch's allocator, so memory is the process RSS (/proc/self/statm) and its
peak (resource.getrusage); one fp32 copy of the ViT-B-32 image encoder is ~352 MB. The engine's peak
is measured from the loaded zoo: VmHWM is reset before `register_zoo` and read after the two runs, and
printed also as a number of fp32 encoder copies (issue 7: at most two).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from where import print_header  # noqa: E402  (benchmarks/ is the script's own folder)

import numpy as np  # noqa: E402
import torch  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # kB on Linux


def proc_status_mb() -> dict:
    """VmRSS, VmHWM (peak RSS), RssAnon and RssFile (mapped files, reclaimable) in MB, from /proc/self/status."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[k] = round(int(v.split()[0]) / 1e3)
    return out


class AnonPeak:
    """The peak of anonymous resident memory (RssAnon: what the process allocated, not memory-mapped
    files, whose pages the kernel can drop) sampled every `every_s` in a background thread: VmHWM
    also counts the memory-mapped fp16 task vectors as they are paged in."""

    def __init__(self, every_s: float = 0.01):
        import threading

        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)

    def _run(self, every_s):
        while not self._stop.is_set():
            self.peak = max(self.peak, proc_status_mb()["RssAnon"])
            self._stop.wait(every_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, proc_status_mb()["RssAnon"])


def _reset_peak() -> bool:
    """Reset this process's peak resident set (VmHWM) to its current one (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure_load(zoo_dir: str) -> dict:
    """Run in a fresh process: the loader's peak and resident memory, then a pass over the task vectors."""
    from rmtllmf_core.zoo.loader import load_zoo

    before = proc_status_mb()
    t0 = time.perf_counter()
    zoo = load_zoo(zoo_dir)
    s = time.perf_counter() - t0
    after = proc_status_mb()
    n = 0.0
    for t in zoo.task_names:  # what an engine reads: each task's tensors once, in fp32
        n += sum(float(v.float().square().sum()) for v in zoo.task_vectors[t].values())
    read = proc_status_mb()
    return {"s": round(s, 2), "before": before, "after": after, "after_reading_task_vectors": read,
            "load_peak_over_start_mb": after["VmHWM"] - before["VmRSS"],
            "read_peak_over_start_mb": read["VmHWM"] - before["VmRSS"], "check": n}


def measure_load_fresh(zoo_dir: Path, threads: int) -> dict:
    import subprocess

    r = subprocess.run([sys.executable, __file__, "--measure-load", str(zoo_dir), "--threads", str(threads)],
                       capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"--measure-load failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _class_mean_heads(out: Path, card: dict, model: str, base_file: Path, folders: dict) -> None:
    import torch.nn.functional as F
    from safetensors.torch import save_file

    from rmtllmf_core.zoo import datasets as D
    from rmtllmf_core.zoo.clip import load_base
    from rmtllmf_core.zoo.types import sha256_file

    m, _, _, _ = load_base(model, str(base_file), log=lambda *a: None)
    heads = {}
    with torch.inference_mode():
        for t, folder in folders.items():
            src = D.open_task(t, None, folder=folder, split_cfg=card["data"]["splits"])
            x, y = D.load_uint8(src, "pool", None, card["data"]["image_size"])
            f = F.normalize(m.visual(D.normalize_uint8(x)), dim=-1)
            heads[t] = F.normalize(torch.stack([f[y == c].mean(0) for c in range(len(src.class_names))]), dim=-1)
    save_file(heads, str(out / "heads.safetensors"))
    card["files"]["heads.safetensors"] = {"sha256": sha256_file(out / "heads.safetensors"),
                                          "bytes": (out / "heads.safetensors").stat().st_size}
    (out / "card.json").write_text(json.dumps(card, indent=1) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--tasks", type=int, default=2)
    ap.add_argument("--images-per-class", type=int, default=20)
    ap.add_argument("--samples", type=int, default=12, help="test images per task in the pipeline run (10 .. test split size)")
    ap.add_argument("--realign-steps", type=int, default=3)
    ap.add_argument("--method", default="task_arithmetic",
                    help="fusion method of the pipeline run (python -m rmtllmf_core methods), e.g. tsv_m, iso_cts")
    ap.add_argument("--finetune-steps", type=int, default=0)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="device of the import's evaluation and of --finetune-steps")
    ap.add_argument("--realign", action="store_true",
                    help="pipeline run with few-shot realignment (the preset's defense; off by default: on CPU with "
                         "ViT-B-32 it passed 9.5 GB of RSS for 2 tasks)")
    ap.add_argument("--max-rss-gb", type=float, default=12.0,
                    help="abort (printing the stage reached) when the process's RSS passes this (a shared machine)")
    ap.add_argument("--keep", default=None, help="work in this directory and keep it (default: a temporary one)")
    ap.add_argument("--reuse", action="store_true", help="with --keep: reuse the zoo a previous run built there "
                    "(skips data, checkpoints, import and the fresh-process load measurement)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--skip-pipeline", action="store_true", help="stop after the loader measurement")
    ap.add_argument("--measure-load", default=None, metavar="ZOO_DIR", help=argparse.SUPPRESS)  # the fresh process
    args = ap.parse_args()
    print_header(None)  # where it ran: torch build, CPU flags, threads (benchmarks/where.py)
    torch.set_num_threads(args.threads)
    if args.measure_load:
        print(json.dumps(measure_load(args.measure_load)))
        return 0
    from PIL import Image
    from safetensors.torch import save_file

    from rmtllmf_core.experiment import pipeline
    from rmtllmf_core.cache import ResultCache
    from rmtllmf_core.experiment.presets import preset_scenario
    from rmtllmf_core.zoo.clip import load_base
    from rmtllmf_core.zoo.importer import import_zoo
    from rmtllmf_core.zoo.loader import load_zoo

    reached = ["start"]

    def watchdog():
        while True:
            time.sleep(0.5)
            if rss_mb() > args.max_rss_gb * 1e3:
                print(f"ABORT: RSS {rss_mb():.0f} MB passed --max-rss-gb {args.max_rss_gb} during the stage after "
                      f"{reached[-1]!r}", flush=True)
                os._exit(3)

    import threading

    threading.Thread(target=watchdog, daemon=True).start()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-clip-"))
    work.mkdir(parents=True, exist_ok=True)
    fig: dict = {"model": args.model, "tasks": args.tasks, "realign": args.realign, "threads": args.threads, "device": args.device,
                 "load_avg": os.getloadavg()[0], "stages": {}}

    def stage(name, t0, **extra):
        reached.append(name)
        fig["stages"][name] = {"s": round(time.perf_counter() - t0, 2), "rss_mb": round(rss_mb()), "peak_mb": round(peak_mb()), **extra}
        print(f"{name:28s} {fig['stages'][name]['s']:8.2f} s   rss {fig['stages'][name]['rss_mb']:6d} MB   "
              f"peak {fig['stages'][name]['peak_mb']:6d} MB" + "".join(f"   {k} {v}" for k, v in extra.items()), flush=True)

    print(f"start: rss {rss_mb():.0f} MB, load average {fig['load_avg']:.2f}")
    out = work / "zoo"
    names = [f"task{i}" for i in range(args.tasks)]
    reuse = bool(args.reuse and args.keep and (out / "card.json").exists())
    if reuse:  # the zoo a previous --keep run of the same --tasks built: straight to the loader and the engine
        card = json.loads((out / "card.json").read_text())
        print(f"reusing the zoo in {out}")
    else:
        t0 = time.perf_counter()
        rng = np.random.default_rng(0)
        names = [f"task{i}" for i in range(args.tasks)]
        folders = {}
        for ti, t in enumerate(names):
            for c in range(3):
                d = work / "data" / t / f"class_{c}"
                d.mkdir(parents=True, exist_ok=True)
                for i in range(args.images_per_class):
                    a = (rng.random((64, 64, 3)) * 80).astype(np.uint8)
                    a[..., (c + ti) % 3] += 150
                    Image.fromarray(a).save(d / f"{i:03d}.png")
            folders[t] = str(work / "data" / t)
        stage("data", t0)

        t0 = time.perf_counter()
        torch.manual_seed(0)  # the same random ViT-B-32 every run
        m, name, _, _ = load_base(args.model, None, log=lambda *a: None)
        base_file = work / "base.safetensors"
        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(base_file))
        ckpts = {}
        g = torch.Generator().manual_seed(0)
        n_visual = sum(p.numel() for p in m.visual.parameters())
        for t in names:
            st = {k: (v + 1e-3 * v.abs().mean() * torch.randn(v.shape, generator=g)).contiguous()
                  for k, v in m.visual.state_dict().items()}
            ckpts[t] = work / f"ft-{t}.safetensors"
            save_file(st, str(ckpts[t]))
            del st
        del m
        stage("checkpoints", t0, visual_params=n_visual)

        t0 = time.perf_counter()
        card = import_zoo(out, ckpts, model=args.model, pretrained=str(base_file), datasets=[], folders=folders,
                          eval_samples=20, workers=0, pairs=False, lambda_grid=[0.3, 1.0], device=args.device,
                          progress=False, restart=True, log=lambda *a: None)
        stage("zoo import (+ evaluation)", t0, zoo_mb=round(card["total_bytes"] / 1e6),
              task_vectors_mb=round(card["files"]["task_vectors.safetensors"]["bytes"] / 1e6))

        # A random text tower gives arbitrary heads, and a task whose fine-tuned accuracy is 0 cannot be normalised
        # by the engine: replace the heads by the base encoder's class-mean features on the pool (then re-hash them).
        t0 = time.perf_counter()
        _class_mean_heads(out, card, args.model, base_file, folders)
        stage("class-mean heads", t0)
    t0 = time.perf_counter()
    try:
        zoo = load_zoo(out)
    except KeyError as exc:
        print(f"load_zoo cannot load a 'datasets' zoo yet ({exc!r}): the loader's data-kind dispatch is not wired")
        return 1
    stage("load_zoo", t0)
    n_visual = sum(int(v.numel()) for v in zoo.base_state.values())
    if reuse:
        fresh = None
    else:
        fresh = measure_load_fresh(out, args.threads)
    if fresh is not None:
        fig["load_fresh_process"] = fresh
        print(f"{'load_zoo (fresh process)':28s} {fresh['s']:8.2f} s   rss {fresh['after']['VmRSS']:6d} MB   "
              f"peak {fresh['after']['VmHWM']:6d} MB   (started at {fresh['before']['VmRSS']} MB: load peak "
              f"+{fresh['load_peak_over_start_mb']} MB; resident anon {fresh['after']['RssAnon']} MB, "
              f"mapped files {fresh['after']['RssFile']} MB)", flush=True)
        print(f"{'  + read task vectors fp32':28s} {'':8s}     rss {fresh['after_reading_task_vectors']['VmRSS']:6d} MB   "
              f"peak {fresh['after_reading_task_vectors']['VmHWM']:6d} MB   (+{fresh['read_peak_over_start_mb']} MB over the "
              f"start; anon {fresh['after_reading_task_vectors']['RssAnon']} MB)", flush=True)
    if args.skip_pipeline:
        del zoo
        fig["peak_mb"] = round(peak_mb())
        if args.json:
            Path(args.json).write_text(json.dumps(fig, indent=1) + "\n")
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
        return 0
    # The engine's own memory: the loaded zoo is the baseline; the peak resident set is reset just before
    # the engine is built (Linux: writing 5 to /proc/self/clear_refs resets VmHWM), so the peak after a
    # run is the engine's (its persistent state + the run), not the import's.
    import gc

    gc.collect()
    engine_base = proc_status_mb()
    reset = _reset_peak()
    t0 = time.perf_counter()
    pipeline.register_zoo(zoo, device=args.device)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    del zoo
    stage("engine (register_zoo)", t0)
    samples = min(args.samples, len(pipeline.get_zoo(card["name"]).split(names[0], "test")[1]))  # the split's size at most
    s = preset_scenario("paper_worst_sum_rate", tasks=tuple(names), zoo=card["name"])
    s = s.replace(**{"evaluation.samples_per_task": samples, "defense.realign_steps": args.realign_steps,
                     "defense.shots_per_class": 2, "fusion.lambda_mode": "heuristic", "fusion.method": args.method,
                     **({} if args.realign else {"defense.realign": False})})
    cache = ResultCache(work / "cache")
    try:
        with AnonPeak() as anon:
            t0 = time.perf_counter()
            r = pipeline.run(s, cache=cache, use_cache=False)
            stage("pipeline.run (cold)", t0, timing_s=r.timing_s)
            t0 = time.perf_counter()
            r = pipeline.run(s.replace(seed=1), cache=cache, use_cache=False)
            stage("pipeline.run (seed 1)", t0, timing_s=r.timing_s)
    finally:
        cache.close()
    after = proc_status_mb()
    copy_mb = n_visual * 4 / 1e6
    engine_peak = after["VmHWM"] - engine_base["VmRSS"]
    fig["engine_memory"] = {"baseline_rss_mb": engine_base["VmRSS"], "peak_rss_mb": after["VmHWM"],
                            "peak_over_baseline_mb": engine_peak, "fp32_encoder_copies": round(engine_peak / copy_mb, 2),
                            "held_after_runs_mb": after["VmRSS"] - engine_base["VmRSS"], "peak_was_reset": reset,
                            "anon_peak_over_baseline_mb": anon.peak - engine_base["RssAnon"],
                            "anon_fp32_encoder_copies": round((anon.peak - engine_base["RssAnon"]) / copy_mb, 2)}
    print(f"{'engine peak':28s} {'':8s}     +{engine_peak} MB over the loaded zoo ({engine_base['VmRSS']} MB resident) = "
          f"{engine_peak / copy_mb:.2f} fp32 encoder copies of {copy_mb:.0f} MB; held after the runs "
          f"+{after['VmRSS'] - engine_base['VmRSS']} MB" + ("" if reset else "  (peak NOT reset: includes earlier stages)"),
          flush=True)
    print(f"{'engine peak, anonymous':28s} {'':8s}     +{anon.peak - engine_base['RssAnon']} MB = "
          f"{fig['engine_memory']['anon_fp32_encoder_copies']:.2f} fp32 encoder copies (without the memory-mapped fp16 "
          f"task vectors' pages, which the kernel can drop)", flush=True)
    if args.device.startswith("cuda"):
        gpu = torch.cuda.max_memory_allocated() / 1e6
        fig["engine_memory"]["gpu_peak_allocated_mb"] = round(gpu)
        print(f"{'engine peak, GPU':28s} {'':8s}     {gpu:.0f} MB allocated = {gpu / copy_mb:.2f} fp32 encoder copies", flush=True)

    if args.finetune_steps:
        from rmtllmf_core.zoo import datasets as D
        from rmtllmf_core.zoo.clip import finetune

        m, _, _, _ = load_base(args.model, str(base_file), log=lambda *a: None)
        m.to(args.device)
        head = torch.nn.functional.normalize(torch.randn(3, m.text_projection.shape[1]), dim=1)
        src = D.open_task(names[0], None, folder=folders[names[0]])
        t0 = time.perf_counter()
        finetune(m.visual, head, 100.0, src, 224, D.OPENAI_MEAN, D.OPENAI_STD, steps=args.finetune_steps, batch=args.batch,
                 lr=1e-5, wd=0.1, warmup=1, clip_grad=1.0, augment=False, seed=0, device=args.device,
                 precision="amp_bf16" if args.device.startswith("cuda") else "fp32", progress=False)
        stage(f"fine-tune x{args.finetune_steps} (batch {args.batch})", t0,
              s_per_step=round((time.perf_counter() - t0) / args.finetune_steps, 2))
    fig["peak_mb"] = round(peak_mb())
    fig["copy_fp32_visual_mb"] = round(n_visual * 4 / 1e6)
    print(f"peak RSS {fig['peak_mb']} MB (one fp32 image encoder = {fig['copy_fp32_visual_mb']} MB); work dir {work}")
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=1) + "\n")
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
