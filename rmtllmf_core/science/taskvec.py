"""Flat task-vector arithmetic: one layout maps an encoder's state dict to a 1-D vector and back.

Every stage after the channel (perturb, fuse, defend) works on flat float32 tensors of shape
[P] or [T, P]; only evaluation loads a flat vector back into the working encoder.
Parameter names follow open_clip's VisionTransformer (conv1, class_embedding,
positional_embedding, ln_pre, transformer.resblocks.{i}.*, ln_post, proj).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
import torch

# The groups R-MTLLMF's freeze reloads from the base model (paper Sec. III).
EMBEDDING_GROUPS = ("patch_embedding", "positional_embedding", "class_embedding")

_BLOCK = re.compile(r"(?:^|\.)resblocks\.(\d+)\.")


def group_of(name: str) -> str:
    """The coarse group of a parameter: an embedding, a transformer block, or the pre/post norms."""
    if name.startswith("conv1."):
        return "patch_embedding"
    if name == "positional_embedding":
        return "positional_embedding"
    if name == "class_embedding":
        return "class_embedding"
    block = _BLOCK.search(name)
    if block:
        return f"block{int(block.group(1))}"
    if name.startswith("ln_pre."):
        return "ln_pre"
    return "head"  # ln_post, proj, and anything after the last block


@dataclass(frozen=True)
class ParamLayout:
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]  # len(names) + 1 boundaries into the flat vector

    @classmethod
    def from_state(cls, state: Mapping[str, torch.Tensor]) -> "ParamLayout":
        names = tuple(state)
        shapes = tuple(tuple(state[n].shape) for n in names)
        sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
        return cls(names, shapes, tuple(int(x) for x in np.concatenate([[0], np.cumsum(sizes)])))

    @property
    def numel(self) -> int:
        return self.offsets[-1]

    def slice(self, name: str) -> slice:
        i = self.names.index(name)
        return slice(self.offsets[i], self.offsets[i + 1])

    def flatten(self, state: Mapping[str, torch.Tensor]) -> torch.Tensor:
        missing = [n for n in self.names if n not in state]
        if missing:
            raise KeyError(f"state dict lacks {missing[:3]}")
        out = torch.empty(self.numel, dtype=torch.float32)  # written in place: no list of copies + cat
        for n, a, b in zip(self.names, self.offsets, self.offsets[1:]):
            out[a:b].copy_(state[n].detach().reshape(-1))
        return out

    def unflatten(self, vec: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views into `vec` (no copy), shaped like the state dict."""
        return {n: vec[a:b].view(s) for n, s, a, b in zip(self.names, self.shapes, self.offsets, self.offsets[1:])}

    def groups(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(group_of(n) for n in self.names))

    def mask(self, groups: Iterable[str]) -> torch.Tensor:
        """Boolean [P]: True on every parameter in one of `groups`."""
        wanted = set(groups)
        out = torch.zeros(self.numel, dtype=torch.bool)
        for n, a, b in zip(self.names, self.offsets, self.offsets[1:]):
            if group_of(n) in wanted:
                out[a:b] = True
        return out

    @property
    def tensor_index(self) -> torch.Tensor:
        """Int32 [P]: which tensor each flat element belongs to (built on each call, not cached: 350 MB for
        ViT-B/32; the engine's stages loop over tensors instead)."""
        sizes = torch.tensor(np.diff(self.offsets))
        return torch.repeat_interleave(torch.arange(len(self.names), dtype=torch.int32), sizes)

    @property
    def block_index(self) -> torch.Tensor:
        """Int32 [P] (built on each call): transformer block of each element, -1 before the first block,
        n_blocks after the last."""
        idx = []
        for n in self.names:
            g = group_of(n)
            idx.append(int(g[5:]) if g.startswith("block") else (-1 if g != "head" else 10**6))
        blocks = [i for i in idx if 0 <= i < 10**6]
        last = (max(blocks) + 1) if blocks else 0
        idx = [last if i == 10**6 else i for i in idx]
        return torch.repeat_interleave(torch.tensor(idx, dtype=torch.int32), torch.tensor(np.diff(self.offsets)))

    def per_tensor_mean_square(self, vec: torch.Tensor) -> torch.Tensor:
        """[..., n_tensors] float64 mean of squares of each tensor of `vec` ([..., P]); 0 for an empty tensor.

        A loop over views with a float64 norm: faster than a scatter over P and more accurate.
        """
        out = torch.zeros(*vec.shape[:-1], len(self.names), dtype=torch.float64)
        for i, (a, b) in enumerate(zip(self.offsets, self.offsets[1:])):
            if b > a:
                out[..., i] = torch.linalg.vector_norm(vec[..., a:b], dim=-1, dtype=torch.float64).square() / (b - a)
        return out

    def expand_per_tensor(self, values: torch.Tensor) -> torch.Tensor:
        """[..., n_tensors] -> [..., P], each tensor's value repeated over its elements."""
        return values.index_select(-1, self.tensor_index)  # the index is built for the call, not kept


def stack(layout: ParamLayout, vectors: Mapping[str, Mapping[str, torch.Tensor]], tasks: Iterable[str]) -> torch.Tensor:
    """[T, P] flat task vectors in the order of `tasks`."""
    tasks = tuple(tasks)
    out = torch.empty(len(tasks), layout.numel, dtype=torch.float32)  # rows written in place: no 2x P while stacking
    for row, t in zip(out, tasks):
        for n, a, b in zip(layout.names, layout.offsets, layout.offsets[1:]):
            row[a:b].copy_(vectors[t][n].detach().reshape(-1))
    return out


def cosine_matrix(vectors: torch.Tensor, chunk: int = 1 << 15) -> np.ndarray:
    """[T, T] cosine similarity between the rows of [T, P] (0 where a row is zero).

    The Gram matrix is accumulated in float64 over column chunks of `chunk` entries (a [T, chunk]
    float64 copy stays in cache; a whole [T, P] float64 copy cost 6x the time on the tiny zoo),
    then divided by the row norms from its diagonal.
    """
    if vectors.dim() != 2:
        raise ValueError(f"expected [T, P], got {list(vectors.shape)}")
    gram = torch.zeros(vectors.shape[0], vectors.shape[0], dtype=torch.float64)
    return cosine_from_gram(gram_add(gram, vectors, chunk))


def gram_add(gram: torch.Tensor, vectors: torch.Tensor, chunk: int = 1 << 15) -> torch.Tensor:
    """gram += vectors @ vectors.T in float64, over column chunks of `chunk` entries (in place; returns gram)."""
    for a in range(0, vectors.shape[1], chunk):
        block = vectors[:, a:a + chunk].double()
        gram += block @ block.T
    return gram


def cosine_from_gram(gram: torch.Tensor) -> np.ndarray:
    """[T, T] cosine similarities from a Gram matrix (0 where a row is zero)."""
    norms = gram.diagonal().clamp_min(0.0).sqrt()
    return (gram / (norms[:, None] * norms[None, :]).clamp_min(1e-300)).clamp(-1, 1).numpy()


# ---------------------------------------------------------------- seeding

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def stream_seed(seed: int, *keys: int) -> int:
    """A seed in [0, 2^63) for the stream named by (seed, *keys), e.g. (seed, user, tensor): splitmix64
    chained over the keys, so neighbouring keys give unrelated streams."""
    h = _splitmix64(int(seed) & _MASK64)
    for k in keys:
        h = _splitmix64(h ^ (int(k) & _MASK64))
    return h >> 1


def check_seed(seed) -> int:
    """A run's seed as an int in [0, 2^63) (InputError on `seed`)."""
    import numbers

    from ..errors import InputError

    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) < 2**63:
        raise InputError("seed", f"must be an integer in [0, 2^63); got {seed!r}")
    return int(seed)


def check_stack(vectors, layout: "ParamLayout", field: str) -> torch.Tensor:
    """A [T, P] stack of task vectors for `layout`, as float32; refused by `field` (the stack's dotted name,
    e.g. "fusion.vectors") or, for the layout, its section's ".layout"."""
    from ..errors import InputError

    if not isinstance(layout, ParamLayout):
        raise InputError(field.rsplit(".", 1)[0] + ".layout", f"must be a ParamLayout; got {type(layout).__name__}")
    if not isinstance(vectors, torch.Tensor) or vectors.ndim != 2 or not vectors.is_floating_point():
        raise InputError(field, "must be a floating [T, P] tensor of task vectors")
    if vectors.shape[0] < 1 or vectors.shape[1] != layout.numel:
        raise InputError(field, f"shape {tuple(vectors.shape)} does not match [T >= 1, {layout.numel}]")
    vectors = vectors.detach().to(torch.float32)
    # Row sums catch any NaN/inf at a twentieth of the cost of an elementwise isfinite mask.
    if not torch.isfinite(vectors.sum(1)).all():
        raise InputError(field, "contains NaN or infinite entries (or values beyond float32 range)")
    return vectors
