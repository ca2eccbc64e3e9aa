"""What a loaded zoo is: the contract between the zoo loaders and the engine.

Every zoo (the embedded tiny one, real CLIP ones) loads into a `Zoo`. The engine only uses
what is here: the base image encoder, the clean task vectors, the frozen heads and the data.

Task vectors are held as stored (fp16 in a zoo's files, memory-mapped for big ones) and handed out in
float32 on demand: `zoo.task_vectors[t][name]` converts one tensor when asked, so a real CLIP zoo
(88 M parameters per ViT-B/32 task vector) never holds an fp32 copy of every task at once. See
`TaskVectors` for the streaming accessors (`flatten_into`, `stacked`, `iter_fp32`).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import torch


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (zoo files can be gigabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

SPLITS = ("train", "val", "test", "pool")  # pool = the episodic memory for few-shot realignment


@dataclass(frozen=True)
class TaskInfo:
    name: str                       # short id, e.g. "digits"
    title: str                      # human name, e.g. "Digits (MNIST-like)"
    description: str                # one sentence on what the task shows
    class_names: tuple[str, ...]


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype == torch.float32 or not t.is_floating_point() else t.float()


class TaskVector(Mapping[str, torch.Tensor]):
    """One task's vector: parameter name -> float32 tensor, converted from the stored tensor at each access.

    A stored fp16 tensor gives a new fp32 tensor each time (read it once and keep it while needed); a
    stored fp32 tensor is returned as is. Treat the tensors as read-only: a stored one may be a
    copy-on-write view of the zoo's file (an in-place change would alter this process's zoo, never the file).
    """

    __slots__ = ("_stored", "_names")

    def __init__(self, stored: Mapping[str, torch.Tensor], names: Sequence[str] | None = None):
        self._stored = stored
        if names is None:
            self._names = tuple(stored)
        else:  # the zoo's parameter order, then anything else the stored mapping holds
            known = set(names)
            self._names = tuple(n for n in names if n in stored) + tuple(n for n in stored if n not in known)

    def __getitem__(self, name: str) -> torch.Tensor:
        return _f32(self._stored[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._stored

    def __repr__(self) -> str:
        return f"TaskVector({len(self)} tensors, stored {self.dtype})"

    @property
    def stored(self) -> Mapping[str, torch.Tensor]:
        """The tensors as stored (fp16 for a zoo loaded from files; possibly memory-mapped): no copy."""
        return self._stored

    @property
    def dtype(self) -> torch.dtype | None:
        return next((t.dtype for t in self._stored.values()), None)

    def numel(self) -> int:
        return sum(int(t.numel()) for t in self._stored.values())

    def materialize(self) -> dict[str, torch.Tensor]:
        """A plain dict of float32 tensors (one full-precision copy of this task's vector)."""
        return {n: self[n] for n in self._names}


class TaskVectors(Mapping[str, TaskVector]):
    """task -> `TaskVector` (parameter name -> float32 on demand), over the tensors as stored.

    Keeps the plain-mapping contract (`zoo.task_vectors[t][name]`, `.items()`, `set(zoo.task_vectors[t])`)
    and adds accessors that never build a [T, P] fp32 stack unless asked to:

    - `flatten_into(t, out)`: write task t, in float32, into a flat buffer (`ParamLayout` order);
    - `stacked(name, tasks)`: one parameter of several tasks, [T, *shape] float32;
    - `iter_fp32(tasks)`: each task's vector as a plain fp32 dict, one task alive at a time;
    - `stored(t)`: the stored (fp16, possibly memory-mapped) tensors, no copy.
    """

    def __init__(self, stored: Mapping[str, Mapping[str, torch.Tensor]], names: Sequence[str] | None = None):
        self._stored = {t: (v.stored if isinstance(v, TaskVector) else v) for t, v in stored.items()}
        self._names = tuple(names) if names is not None else None
        self._views = {t: TaskVector(v, self._names or tuple(v)) for t, v in self._stored.items()}

    def __getitem__(self, task: str) -> TaskVector:
        return self._views[task]

    def __iter__(self) -> Iterator[str]:
        return iter(self._views)

    def __len__(self) -> int:
        return len(self._views)

    def __repr__(self) -> str:
        dt = next((v.dtype for v in self._views.values()), None)
        return f"TaskVectors({list(self._views)}, stored {dt}, {self.stored_bytes() / 1e6:.1f} MB)"

    def stored(self, task: str) -> Mapping[str, torch.Tensor]:
        return self._stored[task]

    def stored_bytes(self) -> int:
        return sum(int(t.numel()) * t.element_size() for v in self._stored.values() for t in v.values())

    def flatten_into(self, task: str, out: torch.Tensor, names: Sequence[str] | None = None) -> torch.Tensor:
        """Write task `task`'s vector into `out` (1-D float32, numel = P) tensor by tensor, in the order of
        `names` (default: the zoo's parameter order, that of `zoo.base_state` and `ParamLayout.from_state`);
        converts from the stored dtype in place: no fp32 copy besides `out`. Returns `out`."""
        names = tuple(names) if names is not None else self._views[task]._names
        src = self._stored[task]
        if out.dim() != 1:
            raise ValueError(f"out must be 1-D, got shape {tuple(out.shape)}")
        total = sum(int(src[n].numel()) for n in names)
        if out.numel() != total:
            raise ValueError(f"out has {out.numel()} elements, task {task!r} has {total}")
        a = 0
        for n in names:
            t = src[n]
            b = a + int(t.numel())
            out[a:b].copy_(t.reshape(-1))
            a = b
        return out

    def stacked(self, name: str, tasks: Iterable[str] | None = None) -> torch.Tensor:
        """[T, *shape] float32: parameter `name` of each of `tasks` (default all), nothing else converted."""
        tasks = tuple(tasks) if tasks is not None else tuple(self._views)
        first = self._stored[tasks[0]][name]
        out = torch.empty((len(tasks), *first.shape), dtype=torch.float32)
        for i, t in enumerate(tasks):
            out[i].copy_(self._stored[t][name])
        return out

    def iter_fp32(self, tasks: Iterable[str] | None = None) -> Iterator[tuple[str, dict[str, torch.Tensor]]]:
        """(task, {name: fp32 tensor}) for each task in turn; drop each before taking the next to keep
        one full-precision task vector alive at a time."""
        for t in (tuple(tasks) if tasks is not None else tuple(self._views)):
            yield t, self._views[t].materialize()


@dataclass(frozen=True, eq=False)
class Zoo:
    name: str
    fingerprint: str                                  # changes whenever any shipped byte changes
    card: Mapping                                     # the zoo card (JSON data)
    model: torch.nn.Module                            # open_clip CLIP model holding the *base* weights, eval mode
    base_state: Mapping[str, torch.Tensor]            # image encoder (model.visual) parameters, float32, read-only
                                                      # (for a big zoo: copy-on-write views of its weights file)
    # task -> same keys as base_state, float32 on access (see TaskVectors; a plain mapping is wrapped in one)
    task_vectors: TaskVectors
    heads: Mapping[str, torch.Tensor]                 # task -> [classes, embed_dim], rows unit norm, frozen
    logit_scale: float                                # multiplies cosine similarities into logits
    tasks: Mapping[str, TaskInfo]
    finetuned_accuracy: Mapping[str, float]           # individual fine-tuning accuracy on the test split
    zeroshot_accuracy: Mapping[str, float]            # base model accuracy on the test split
    # (task, split, n) -> (images [n, 3, H, W] float32 preprocessed for the encoder, labels [n] int64);
    # n=None gives the whole split; the first n are always the same n samples (deterministic).
    data: Callable[[str, str, int | None], tuple[torch.Tensor, torch.Tensor]] = field(repr=False)

    def __post_init__(self):
        if not isinstance(self.task_vectors, TaskVectors):
            object.__setattr__(self, "task_vectors", TaskVectors(self.task_vectors, tuple(self.base_state)))

    @property
    def encoder(self) -> torch.nn.Module:
        return self.model.visual

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(self.tasks)

    def split(self, task: str, split: str, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data(task, split, n)

    def check_tasks(self, tasks: Sequence[str]) -> tuple[str, ...]:
        """`tasks` as a tuple, refused (InputError on `tasks`) when empty or naming a task this zoo lacks."""
        from ..errors import InputError

        tasks = tuple(tasks)
        if not tasks:
            raise InputError("tasks", "at least one task")
        unknown = [t for t in tasks if t not in self.heads]
        if unknown:
            raise InputError("tasks", f"unknown task(s) {unknown}; the zoo has {list(self.task_names)}")
        return tasks

    def split_size(self, task: str, split: str) -> int:
        """How many samples a task's split holds (without loading them, where the data source can say)."""
        size = getattr(self.data, "size", None)
        return int(size(task, split)) if callable(size) else int(len(self.data(task, split, None)[1]))

    def head_overlap(self) -> dict[str, float]:
        """Per task, the mean cosine between two different class rows of its frozen head. Near 1 the
        classes' text embeddings are almost collinear (on the tiny zoo the weakest tasks have the most
        collinear heads, though what holds them back is their features: `zoo info --probe`)."""
        return head_overlap(self.heads)


def head_overlap(heads: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """`Zoo.head_overlap` of any heads (task -> [classes, dim])."""
    out = {}
    for t, h in heads.items():
        h = torch.nn.functional.normalize(h.float(), dim=-1)
        C = len(h)
        out[t] = float(((h @ h.T).sum() - C) / (C * (C - 1))) if C > 1 else float("nan")
    return out
