"""The engine's per-process state: each zoo loaded once, with what is derived from it once (the
parameter layout, evaluators, memos of predictions and logits), and the default result cache.

Nothing here depends on a scenario's noise; `pipeline` computes runs on top of it.
"""
from __future__ import annotations

import base64
import collections
import hashlib
import statistics
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch

from .. import ENGINE_VERSION
from ..science import evaluate, fusion
from ..cache import ResultCache
from ..science.taskvec import ParamLayout
from ..zoo.types import Zoo

LOGITS_MEMO_SIZE = 256  # evaluated encoders kept in memory (8 tasks x 200 samples x 10 classes: 64 kB each)


def flat_digest(flat: torch.Tensor) -> str:
    """Content hash of a flat parameter vector (the memo key of what is evaluated on it)."""
    arr = flat.detach().float().contiguous().numpy()
    return hashlib.blake2b(arr, digest_size=20).hexdigest() + f":{arr.size}"


@dataclass(eq=False)
class Engine:
    """The zoo and what is derived from it once. Holds no full-precision copy of any encoder: the base
    encoder's tensors are the zoo's own (`base_tensor`) and task vectors stay as stored (fp16 for a
    big zoo), read one parameter tensor of several tasks at a time (`clean_slices`); flat encoders are
    built per run, at most two [P] float32 buffers at a time (see `compute`)."""
    zoo: Zoo
    layout: ParamLayout
    device: torch.device = torch.device("cpu")  # of evaluation and realignment (evaluate.compute_device)
    _evaluators: OrderedDict = field(default_factory=OrderedDict)
    _memo: OrderedDict = field(default_factory=OrderedDict)
    _logits: OrderedDict = field(default_factory=OrderedDict)
    lock: threading.RLock = field(default_factory=threading.RLock)  # one working encoder per engine

    @classmethod
    def from_zoo(cls, zoo: Zoo, device: str | None = None) -> "Engine":
        return cls(zoo=zoo, layout=ParamLayout.from_state(zoo.base_state), device=evaluate.compute_device(device))

    @property
    def fingerprint(self) -> str:
        """What results are keyed by besides the scenario: the zoo, and the device where not the CPU."""
        tag = evaluate.device_tag(self.device)
        return self.zoo.fingerprint + (f"@{tag}" if tag else "")

    def base_tensor(self, i: int) -> torch.Tensor:
        """Parameter tensor `i` of the base encoder, flat (the zoo's own storage, no copy)."""
        return self.zoo.base_state[self.layout.names[i]].detach().reshape(-1)

    @property
    def base_flat(self) -> torch.Tensor:
        """A new flat float32 copy of the base encoder (one [P] buffer: build it only where needed)."""
        out = torch.empty(self.layout.numel, dtype=torch.float32)
        for i, (a, b) in enumerate(zip(self.layout.offsets, self.layout.offsets[1:])):
            out[a:b].copy_(self.base_tensor(i))
        return out

    def clean_slices(self, tasks) -> "fusion.Slices":
        """tensor index -> [T, n_i] float32: that parameter of the clean task vectors of `tasks` (a fresh tensor)."""
        tasks, names, tv = tuple(tasks), self.layout.names, self.zoo.task_vectors
        return lambda i: tv.stacked(names[i], tasks).view(len(tasks), -1)

    def encoder_flat(self, slices: "fusion.Slices", plan: "fusion.MergePlan",
                     out: torch.Tensor | None = None, each: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
        """base + merge(slices) as a flat [P] float32 encoder (into `out` if given), one tensor at a time;
        `each(i, slice)` sees every slice on the way (for statistics gathered in the same pass)."""
        out = torch.empty(self.layout.numel, dtype=torch.float32) if out is None else out
        for i, (a, b) in enumerate(zip(self.layout.offsets, self.layout.offsets[1:])):
            x = slices(i)
            if each is not None:
                each(i, x)
            fusion.merge_slice(x, plan, i, out[a:b]).add_(self.base_tensor(i))
        return out

    def evaluator(self, samples: int, split: str = "test") -> "evaluate.Evaluator":
        """Every task's first `samples` of `split`; any subset of tasks is evaluated through it."""
        key = (samples, split)
        return _lru(self._evaluators, key, lambda: evaluate.Evaluator(self.zoo, self.zoo.task_names, samples,
                                                                      split=split, device=self.device), 8)

    def memo(self, key: tuple, compute: Callable[[], Any]) -> Any:
        """In-process memo of derived values (predictions, chosen lambdas), bounded for a long-lived server."""
        return _lru(self._memo, key, compute, 2048)

    def logits(self, flat: torch.Tensor, tasks, samples: int, *, cache: ResultCache | None = None,
               key: tuple | None = None, compute: Callable[[], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """task -> logits [n, C] of the encoder `flat` on the first `samples` test samples of `tasks`.

        Memoised in memory by content (the hash of `flat`, the tasks and `samples`), so two runs that
        evaluate the same encoder (the clean fusion of every seed and channel; the attacked fusion of
        the 'none' and 'R-MTLLMF' points of a sweep) evaluate it once. With `cache`, also persisted on
        disk (float32 bytes in JSON, exact). `key`/`compute` replace the content key and the encoder
        for values named by what produces them (the control: its encoder is the result of a realignment).
        """
        tasks = tuple(tasks)
        key = key if key is not None else ("logits", tasks, samples, flat_digest(flat))
        produce = compute if compute is not None else (lambda: self.evaluator(samples).logits(flat, tasks))

        def persisted():
            disk_key = None
            if cache is not None:
                disk_key = "memo/" + hashlib.sha256(
                    f"{ENGINE_VERSION}\n{self.fingerprint}\n{key!r}".encode()).hexdigest()
                stored = _unpack_logits(cache.get(disk_key), tasks, self.evaluator(samples))
                if stored is not None:
                    return stored
            value = produce()
            if disk_key is not None:
                cache.set(disk_key, _pack_logits(value))
            return value

        return _lru(self._logits, key, persisted, LOGITS_MEMO_SIZE)

    def individual(self, task: str, samples: int, cache: ResultCache | None = None) -> torch.Tensor:
        """Predictions of the individually fine-tuned encoder on its own task."""
        def finetuned():
            flat = self.base_flat
            stored = self.zoo.task_vectors.stored(task)
            for name, a, b in zip(self.layout.names, self.layout.offsets, self.layout.offsets[1:]):
                flat[a:b].add_(stored[name].reshape(-1))
            return flat
        return self.memo(("individual", task, samples), lambda: self.logits(
            finetuned(), [task], samples, cache=cache)[task].argmax(dim=1))

    def zeroshot(self, task: str, samples: int, cache: ResultCache | None = None) -> torch.Tensor:
        """Predictions of the base encoder (zero-shot heads) on a task."""
        return self.memo(("zeroshot", task, samples), lambda: self.logits(
            self.base_flat, [task], samples, cache=cache)[task].argmax(dim=1))


def _pack_logits(logits: Mapping[str, torch.Tensor]) -> dict:
    """JSON-safe, exact: each task's float32 logits as little-endian bytes in base64."""
    return {t: {"shape": list(z.shape), "f32": base64.b64encode(
        z.detach().float().contiguous().numpy().astype("<f4").tobytes()).decode()} for t, z in logits.items()}


def _unpack_logits(stored: Any, tasks: tuple[str, ...], ev: "evaluate.Evaluator") -> dict[str, torch.Tensor] | None:
    """The logits back, or None for anything that is not exactly what `_pack_logits` wrote for these tasks."""
    if not isinstance(stored, dict) or set(stored) != set(tasks):
        return None
    out = {}
    try:
        for t in tasks:
            n, c = (int(x) for x in stored[t]["shape"])
            want = (ev.slices[t].stop - ev.slices[t].start, ev.heads[t].shape[0])
            data = base64.b64decode(stored[t]["f32"], validate=True)
            if (n, c) != want or len(data) != 4 * n * c:
                return None
            out[t] = torch.from_numpy(np.frombuffer(data, dtype="<f4").astype(np.float32).reshape(n, c))
    except (KeyError, TypeError, ValueError):
        return None
    return out


_LRU_LOCK = threading.Lock()  # a run's side branches (pipeline._branches) share its engine's memos


def _lru(store: OrderedDict, key, compute, size: int):
    """store[key], computed (outside the lock: it may itself use a memo) and kept where missing; the
    oldest entries dropped beyond `size`. Two threads missing one key at once both compute it."""
    with _LRU_LOCK:
        if key in store:
            store.move_to_end(key)
            return store[key]
    value = compute()
    with _LRU_LOCK:
        store[key] = value
        store.move_to_end(key)
        while len(store) > size:
            store.popitem(last=False)
    return value


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def register_zoo(zoo: Zoo, device: str | None = None) -> Engine:
    """Make an already loaded zoo available by its name (tests, uploaded zoos); `device` as in
    `evaluate.compute_device` (default $RMTLLMF_DEVICE, else cpu)."""
    with _engines_lock:
        _engines[zoo.name] = Engine.from_zoo(zoo, device)
        return _engines[zoo.name]


def loaded(zoo_name: str) -> bool:
    """Whether this process has the zoo (a registered one, or a built-in one already loaded)."""
    with _engines_lock:
        return zoo_name in _engines


def result_fingerprint(zoo_name: str = "tiny") -> str:
    """What a zoo's results are keyed by (`Engine.fingerprint`), for a built-in zoo from its card alone: a
    cache lookup on a fresh server need not wait for the weights to load."""
    from ..zoo import BUILTIN, builtin_fingerprint

    with _engines_lock:
        engine = _engines.get(zoo_name)
    if engine is not None or zoo_name not in BUILTIN:
        return (engine or get_engine(zoo_name)).fingerprint
    tag = evaluate.device_tag(evaluate.compute_device())
    return builtin_fingerprint(zoo_name) + (f"@{tag}" if tag else "")


def get_engine(zoo_name: str = "tiny") -> Engine:
    """The engine of a zoo, loaded once per process."""
    with _engines_lock:
        if zoo_name not in _engines:
            from ..zoo import load_zoo

            _engines[zoo_name] = Engine.from_zoo(load_zoo(zoo_name))
        return _engines[zoo_name]


def get_zoo(zoo_name: str = "tiny") -> Zoo:
    return get_engine(zoo_name).zoo


_default_cache: ResultCache | None = None


def default_cache() -> ResultCache:
    global _default_cache
    if _default_cache is None:
        _default_cache = ResultCache()
    return _default_cache


# Wall seconds of this process's recent cold runs: what a page quotes before it starts more of them.
_recent_runs: collections.deque = collections.deque(maxlen=32)


def note_run_seconds(seconds: float) -> None:
    _recent_runs.append(float(seconds))


def typical_run_seconds() -> float | None:
    """The median of this process's recent cold runs (None before the first)."""
    return float(statistics.median(_recent_runs)) if _recent_runs else None
