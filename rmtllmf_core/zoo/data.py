"""Task data at load time: procedural splits, generated chunk by chunk as far as they are read, and
cached (memory + disk).

The disk cache lives in `$RMTLLMF_CACHE_DIR` or `$XDG_CACHE_HOME/rmtllmf` or `~/.cache/rmtllmf`,
one `.npy` per (generator version, generator source digest, task, seed, split, chunk); it is only an accelerator: a
missing, unreadable or wrong-shaped cache file is regenerated, never trusted blindly (`.npy`
read with allow_pickle=False).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from . import tasks as T
from .model import MEAN, STD
from .types import SPLITS


def cache_dir() -> Path:
    if os.environ.get("RMTLLMF_CACHE_DIR"):
        return Path(os.environ["RMTLLMF_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rmtllmf"


_GENERATOR_DIGEST: str | None = None


def generator_digest() -> str:
    """Digest of the generator source: any edit to it invalidates the disk caches (task data here,
    the pretrained base in build, whose concept pictures the generators draw) by itself."""
    global _GENERATOR_DIGEST
    if _GENERATOR_DIGEST is None:
        h = hashlib.sha256()
        for mod in ("tasks.py", "render.py"):
            h.update((Path(__file__).with_name(mod)).read_bytes())
        _GENERATOR_DIGEST = h.hexdigest()[:16]
    return _GENERATOR_DIGEST


def _cached_generate(task: str, seed: int, split: str, start: int, stop: int, use_disk: bool) -> np.ndarray:
    """Samples start..stop-1 of a split (`start` a multiple of `tasks.CHUNK`), chunk by chunk: one `.npy`
    per chunk, so a split that grows reads the chunks it had and generates only the new ones."""
    return np.concatenate([_cached_chunk(task, seed, split, first, min(stop, first + T.CHUNK), use_disk)
                           for first in range(start, stop, T.CHUNK)])


def _cached_chunk(task: str, seed: int, split: str, first: int, stop: int, use_disk: bool) -> np.ndarray:
    n = stop - first
    key = hashlib.sha256(f"{T.GENERATOR_VERSION}|{generator_digest()}|{task}|{seed}|{split}|{first}|{n}".encode()).hexdigest()[:24]
    path = cache_dir() / "zoo-data" / f"{task}-{split}-{key}.npy"
    if use_disk and path.is_file():
        try:
            arr = np.load(path, allow_pickle=False)
            if arr.shape == (n, 32, 32, 3) and arr.dtype == np.uint8:
                return arr
        except (OSError, ValueError):
            pass
    imgs, _ = T.generate(task, seed, split, stop, start=first)
    if use_disk:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                np.save(f, imgs, allow_pickle=False)
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only home is fine: we just regenerate next time
    return imgs


class ProceduralData:
    """zoo.data(task, split, n) for procedurally generated tasks.

    Labels are interleaved (sample i has class i % C), so the first k*C samples of a split hold
    exactly k per class (e.g. `pool` with n = 10*C gives the paper's k = 10 episodic memory).
    """

    def __init__(self, task_names, seed: int, per_class: Mapping[str, int], image_size: int = 32,
                 mean: torch.Tensor = MEAN, std: torch.Tensor = STD, use_disk_cache: bool = True):
        self.task_names = tuple(task_names)
        self.seed = int(seed)
        self.per_class = dict(per_class)
        self.image_size = int(image_size)
        self.mean, self.std = mean.view(1, 3, 1, 1), std.view(1, 3, 1, 1)
        self.use_disk = use_disk_cache
        self._mem: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}
        self._lock = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}

    def size(self, task: str, split: str) -> int:
        return self.per_class[split] * len(T.TASKS[task].class_names)

    def _prefix(self, task: str, split: str, want: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first `want` samples or more: a split is generated in whole chunks as far as a caller
        has asked (a cold run reads 50 of the 200 validation samples a task and 200 of 400 test
        ones), and grows by its missing chunks. One lock per split: two splits generate side by side."""
        with self._lock:
            lock = self._locks.setdefault((task, split), threading.Lock())
        with lock:
            x, y = self._mem.get((task, split), (None, None))
            have = 0 if y is None else len(y)
            if y is None or have < want:
                stop = min(self.size(task, split), -(-max(want, 1) // T.CHUNK) * T.CHUNK)
                imgs = _cached_generate(task, self.seed, split, have, stop, self.use_disk)
                new = torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div_(255.0)
                if self.image_size != new.shape[-1]:
                    new = F.interpolate(new, size=(self.image_size, self.image_size), mode="bilinear",
                                        align_corners=False)
                new = ((new - self.mean) / self.std).contiguous()
                x = new if x is None else torch.cat([x, new])
                y = torch.arange(stop, dtype=torch.int64) % len(T.TASKS[task].class_names)
                self._mem[(task, split)] = (x, y)
            return x, y

    def __call__(self, task: str, split: str, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if task not in self.task_names:
            raise InputError("task", f"unknown task {task!r}; this zoo has {', '.join(self.task_names)}")
        if split not in SPLITS:
            raise InputError("split", f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
        size = self.size(task, split)
        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= size):
            raise InputError("n", f"must be an integer in [0, {size}] for {task}/{split}, got {n!r}")
        want = size if n is None else int(n)
        x, y = self._prefix(task, split, want)
        return x[:want].clone(), y[:want].clone()
