"""R-MTLLMF Studio core engine: scenario -> wireless -> perturb -> fuse -> defend -> evaluate.

The public face (docs/engine.md), loaded on first use so that `import rmtllmf_core` stays light:

    from rmtllmf_core import Scenario, preset_scenario, run
    result = run(preset_scenario("paper_worst_sum_rate").replace(seed=1))
    print(result.average_normalized)          # {"clean": ..., "attacked": ..., "defended": ...} as fractions

The tiers, each importing only the ones below it: the ground floor (errors, units, validation, cache),
zoo/, science/, experiment/, studies/, serve/, commands/ (tests/test_architecture.py holds the order).
"""
import os

# Idle OpenMP threads sleep instead of spinning. On a small shared host (the app's 2 cores, a
# server also running other sessions) spinning threads slow small torch ops by orders of
# magnitude. Only takes effect when this package is imported before torch, as the app and CLI do.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# ... but not at once: libgomp's threads spin this many rounds (microseconds) before they sleep. A realignment
# step is ~100 back-to-back small ops, and with no spin at all each op waited for a sleeping thread to wake:
# a cold 8-task R-MTLLMF run (100 steps) took 5.3 s passive against 2.9 s with this spin on 2 cores
# (benchmarks/bench_engine.py); an idle thread still sleeps within microseconds.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")


def _keep_freed_memory() -> None:
    """Let glibc keep freed tensor memory for reuse instead of handing it back to the kernel.

    By default glibc maps blocks of 128 KiB and up (a threshold that adapts, up to 32 MiB) and trims
    the heap's free top: each forward pass's activations, a few MB apiece, then come back as fresh
    zero-filled pages. On the tiny zoo one evaluation took ~100k page faults, 0.27 s of kernel time
    beside 0.6 s of compute (benchmarks/bench_zoo.py). A fixed 32 MiB threshold (larger blocks,
    whole encoders of a real CLIP, are still mapped and returned) and a 512 MiB trim threshold remove
    them. Left alone where the user tunes glibc's malloc, and off glibc.
    """
    if any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")):
        return
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt  # glibc's; absent on musl, macOS, Windows
    except (AttributeError, OSError, TypeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    mallopt(m_mmap_threshold, 32 << 20)
    mallopt(m_trim_threshold, 512 << 20)


_keep_freed_memory()

from .errors import AssetError, CapExceeded, InputError, RmtllmfError  # noqa: E402

ENGINE_VERSION = "0.9.0"

# name -> the module that defines it (imported on first access: PEP 562)
_PUBLIC = {
    "run": "rmtllmf_core.experiment.pipeline", "cached": "rmtllmf_core.experiment.pipeline",
    "Scenario": "rmtllmf_core.experiment.scenario", "Result": "rmtllmf_core.experiment.result",
    "PRESETS": "rmtllmf_core.experiment.presets", "preset_scenario": "rmtllmf_core.experiment.presets",
    "default_scenario": "rmtllmf_core.experiment.presets",
    "Condition": "rmtllmf_core.experiment.result",
    "Work": "rmtllmf_core.studies.work", "execute": "rmtllmf_core.studies.work", "Row": "rmtllmf_core.studies.work",
    "sweeps": "rmtllmf_core.studies", "leaderboard": "rmtllmf_core.studies", "report": "rmtllmf_core.studies",
    "arena": "rmtllmf_core.studies", "METHODS": "rmtllmf_core.science.methods",
    "DEFENSES": "rmtllmf_core.science.defenses", "STRATEGIES": "rmtllmf_core.science.jamming",
}

__all__ = ["AssetError", "CapExceeded", "ENGINE_VERSION", "InputError", "RmtllmfError", *_PUBLIC]


def __getattr__(name: str):
    import importlib

    if name not in _PUBLIC:
        raise AttributeError(f"module 'rmtllmf_core' has no attribute {name!r}")
    module = importlib.import_module(_PUBLIC[name])
    value = importlib.import_module(f"{_PUBLIC[name]}.{name}") if not hasattr(module, name) else getattr(module, name)
    globals()[name] = value
    return value
