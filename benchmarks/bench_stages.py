"""Timing of the flat-vector stages: perturb (every model and scale) and merge (every method).

Synthetic task vectors on open_clip ViT layouts (no zoo needed): the embedded tiny zoo's shape
(width 128, 4 blocks, ~0.8 M parameters) and a ~1.9 M one. Single-threaded by default, since the
engine shares small machines.

    .venv/bin/python benchmarks/bench_stages.py [--threads 1] [--repeats 3] [--tasks 8]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from where import print_header  # noqa: E402  (benchmarks/ is the script's own folder)

from rmtllmf_core.science.fusion import METHODS, merge  # noqa: E402
from rmtllmf_core.science.perturb import MODELS, SCALES, noise_std, perturb  # noqa: E402
from rmtllmf_core.science.taskvec import ParamLayout  # noqa: E402


def vit_layout(width: int, layers: int, patch: int, image: int, embed_dim: int) -> ParamLayout:
    """open_clip VisionTransformer parameter names and shapes, in state-dict order."""
    grid = (image // patch) ** 2 + 1
    shapes = {
        "class_embedding": (width,), "positional_embedding": (grid, width), "proj": (width, embed_dim),
        "conv1.weight": (width, 3, patch, patch), "ln_pre.weight": (width,), "ln_pre.bias": (width,),
    }
    for i in range(layers):
        b = f"transformer.resblocks.{i}."
        shapes.update({
            b + "ln_1.weight": (width,), b + "ln_1.bias": (width,),
            b + "attn.in_proj_weight": (3 * width, width), b + "attn.in_proj_bias": (3 * width,),
            b + "attn.out_proj.weight": (width, width), b + "attn.out_proj.bias": (width,),
            b + "ln_2.weight": (width,), b + "ln_2.bias": (width,),
            b + "mlp.c_fc.weight": (4 * width, width), b + "mlp.c_fc.bias": (4 * width,),
            b + "mlp.c_proj.weight": (width, 4 * width), b + "mlp.c_proj.bias": (width,),
        })
    shapes.update({"ln_post.weight": (width,), "ln_post.bias": (width,)})
    return ParamLayout.from_state({n: torch.empty(s) for n, s in shapes.items()})


def timed(fn, repeats: int) -> str:
    """Median wall and CPU milliseconds (CPU time is the honest figure on a shared, busy machine)."""
    fn()  # warm-up (allocator, lazy caches such as layout.tensor_index)
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return f"{1e3 * statistics.median(wall):8.1f} ms wall {1e3 * statistics.median(cpu):8.1f} ms cpu"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tasks", type=int, default=8)
    args = ap.parse_args()
    print_header(None)  # where it ran: torch build, CPU flags, threads (benchmarks/where.py)
    torch.set_num_threads(args.threads)

    t = args.tasks
    rng = np.random.default_rng(0)
    mse = rng.uniform(0.01, 0.2, t)
    a = rng.normal(size=(t, t)) + 1j * rng.normal(size=(t, t))
    cov = a @ a.conj().T
    cov *= np.sqrt(np.outer(mse, mse) / np.outer(cov.diagonal().real, cov.diagonal().real))

    for label, layout in (
        ("tiny zoo shape (w128, 4 blocks)", vit_layout(128, 4, 8, 32, 128)),
        ("w192, 4 blocks, patch 16", vit_layout(192, 4, 16, 224, 512)),
    ):
        vectors = torch.randn(t, layout.numel, generator=torch.Generator().manual_seed(1)) * 1e-3
        print(f"\n{label}: T={t}, P={layout.numel:,}, threads={args.threads}, median of {args.repeats}")
        print(f"  MSE {np.round(mse, 3).tolist()} (SINR 1/mse - 1 for digital)")
        for scale in SCALES:
            ms = timed(lambda: noise_std(vectors, mse, layout, scale), args.repeats)
            print(f"  noise_std   {scale:<16} {ms}")
        for model in MODELS:
            for scale in (SCALES if model != "digital" else ("per_tensor",)):
                ms = timed(lambda: perturb(vectors, mse, layout=layout, model=model, scale=scale, seed=0,
                                           error_covariance=cov), args.repeats)
                extra = " (12 bits)" if model == "digital" else ""
                print(f"  perturb     {model + '/' + scale:<27} {ms}{extra}")
        for method in METHODS:
            ms = timed(lambda: merge(vectors, layout=layout, method=method, lambda_=0.35, seed=0), args.repeats)
            print(f"  merge       {method:<16} {ms}")


if __name__ == "__main__":
    main()
