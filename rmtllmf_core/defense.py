"""Defenses on flat parameter vectors: R-MTLLMF's freeze and realign (paper Sec. III), and two
cheap ones beyond the paper, noise-aware shrinkage and magnitude trimming of received vectors.

Every function is pure: it takes flat tensors ([P] encoders, [T, P] task vectors) and returns new
ones; inputs are never modified.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

from .errors import InputError
from .evaluate import module_lock
from .taskvec import ParamLayout
from .zoo.types import Zoo


def _check_flat(name: str, vec: torch.Tensor, layout: ParamLayout, rows: bool = False) -> None:
    want = ("T", layout.numel) if rows else (layout.numel,)
    ok = vec.dim() == len(want) and vec.shape[-1] == layout.numel
    if not ok:
        raise InputError(name, f"expected shape {list(want)}, got {list(vec.shape)}")


# ---------------------------------------------------------------- freeze

def freeze(fused_flat: torch.Tensor, base_flat: torch.Tensor, layout: ParamLayout,
           groups: Iterable[str]) -> torch.Tensor:
    """The fused encoder with the parameters of `groups` (default R-MTLLMF: the patch, positional and
    class embeddings, `taskvec.EMBEDDING_GROUPS`) reloaded from the base encoder, bit for bit."""
    _check_flat("fused_flat", fused_flat, layout)
    _check_flat("base_flat", base_flat, layout)
    groups = tuple(groups)
    unknown = [g for g in groups if g not in layout.groups()]
    if unknown:
        raise InputError("defense.freeze_groups", f"unknown group(s) {unknown}; this encoder has {list(layout.groups())}")
    mask = layout.mask(groups)
    return torch.where(mask, base_flat, fused_flat)  # a new tensor; the base's bits where frozen
