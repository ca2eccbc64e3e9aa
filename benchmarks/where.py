"""Where a benchmark ran: the first lines every benchmark prints, so that a figure is never quoted
without its machine (speeds differ between machines of the same kind: bf16 matmuls run at twice the
float32 speed on a CPU with AVX512-BF16 or AMX and at half of it on one without).

    python benchmarks/where.py      # the header alone, with a one-second matmul probe per dtype
"""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path

CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma")


def cpu() -> tuple[str, list[str]]:
    """The CPU's model name and which of CPU_FLAGS it has (from /proc/cpuinfo; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown", []
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                 "unknown")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return model, [f for f in CPU_FLAGS if f in flags]


def matmul_gflops(dtype_name: str, n: int = 1024, seconds: float = 0.5) -> float:
    """One thread's matmul speed at n x n in `dtype_name` (float32 or bfloat16), GFLOP/s."""
    import torch

    dtype = getattr(torch, dtype_name)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        a @ b
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            count += 1
        return 2 * n ** 3 * count / (time.perf_counter() - start) / 1e9
    finally:
        torch.set_num_threads(threads)


def header(precision: str | None = None, probe: bool = True) -> list[str]:
    """The lines: torch build, CPU and its bf16/AMX flags, cores and torch threads, the arithmetic of
    the realignment (`precision`), and one thread's float32 / bf16 matmul speed (`probe`)."""
    import torch

    model, flags = cpu()
    lines = [f"where: torch {torch.__version__} ({'CUDA build' if torch.version.cuda else 'CPU build'}, "
             f"kernels {torch.backends.cpu.get_cpu_capability()}), python {platform.python_version()}",
             f"where: CPU {model}; flags {', '.join(flags) or 'none of ' + ', '.join(CPU_FLAGS)}; "
             f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()} cores, "
             f"{torch.get_num_threads()} torch threads"]
    if precision:
        lines.append(f"where: realignment arithmetic {precision}")
    if probe:
        lines.append(f"where: 1024x1024 matmul, one thread: float32 {matmul_gflops('float32'):.0f} GFLOP/s, "
                     f"bfloat16 {matmul_gflops('bfloat16'):.0f} GFLOP/s")
    return lines


def print_header(precision: str | None = None, probe: bool = True) -> None:
    for line in header(precision, probe):
        print(line, flush=True)


if __name__ == "__main__":
    print_header()
