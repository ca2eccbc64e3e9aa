"""Fuse: one generalised task arithmetic; every method is a recipe of four switches (PAPER-NOTES sec. 4).

For task vectors ``tau_t`` (rows of a flat float32 ``[T, P]`` stack) the merged task vector is

    merged = scale * sum_t  agree_t * keep_t * (w_t * tau_t)        (then theta = theta_base + merged)

with, as in mergekit's generalised task arithmetic:

1. **weighting** ``w_t`` (per task, per layer): ``uniform`` (1) or ``layer_aware`` (below);
2. **sparsify** ``keep_t``: ``none``; ``magnitude`` (TIES trim: per vector, keep the
   ``density`` fraction of entries of largest magnitude); ``random`` (DARE: drop each entry with
   probability ``drop_rate``, rescale survivors by ``1 / (1 - drop_rate)``, so the expectation is
   unchanged); ``consensus`` (TALL masks: task t "claims" an entry where
   ``|tau_t| >= tall_mask_lambda * |sum_s tau_s - tau_t|``; entries claimed by fewer than
   ``consensus_min_tasks`` tasks are zeroed for everyone: Consensus Merging, Wang et al. 2024);
3. **sign election** ``agree_t``: ``none`` or ``ties`` (per entry, the sign of the summed trimmed
   vectors wins; only entries of that sign are summed: the TIES "disjoint" merge);
4. **scale**: ``lambda`` (``lambda_``) or ``mean`` (``1 / T``, ignoring ``lambda_``);
5. **spectral** (per 2-D weight matrix, :mod:`spectral`): ``none`` (the sum above), ``tsv`` (TSV-M),
   ``iso`` (Iso-C) or ``iso_cts`` (Iso-CTS). Every other tensor (biases, norms, embeddings of
   another rank) gets the tasks' *mean*, as the papers do; lambda then scales both.

And one switch for every method, **MSE-aware fusion** (``user_weights``): each received vector is
weighted by the base station's trust in it (:func:`mse_aware_weights`) before any of the above.

| method            | sparsify  | sign | weighting   | scale  |
|-------------------|-----------|------|-------------|--------|
| task_arithmetic   | none      | none | uniform     | lambda |
| ties              | magnitude | ties | uniform     | lambda |
| dare              | random    | none | uniform     | lambda |
| consensus         | consensus | none | uniform     | lambda |
| layer_aware       | none      | none | layer_aware | lambda |
| average           | none      | none | uniform     | mean   |
| tsv_m             | none      | none | uniform     | lambda | spectral tsv
| iso_c             | none      | none | uniform     | lambda | spectral iso
| iso_cts           | none      | none | uniform     | lambda | spectral iso_cts

Choices of ours, and why:

- TIES merges with the disjoint *sum*, not the paper's disjoint mean (mergekit's
  ``normalize=False``), so that one lambda means the same for every method and lambda is chosen
  the same way (fixed, heuristic, or on validation data); with density 1 and no sign conflict TIES
  is then exactly task arithmetic. The result is linear in lambda for every method (the pipeline
  uses ``merge(lambda) = lambda * merge(1)`` when it searches ``LAMBDA_GRID``).
- Magnitude trim keeps ``round(density * P)`` entries per vector (at least one); entries tied with
  the threshold magnitude are all kept.
- ``consensus_min_tasks`` is capped at the number of fused tasks, so fusing fewer tasks than k
  still keeps the entries every task claims instead of returning nothing.
- **Layer-aware weighting (LATA, Chen et al. 2025, adapted to vision).** LATA weights each layer of
  an LLM task vector by how little it aligns with the *instruction-following* vector (the part
  every instruct fine-tune shares), amplifying task-specific layers and attenuating shared ones.
  A vision encoder fine-tuned on separate tasks has no instruction model, so the shared component
  is estimated from the other tasks: for task t and layer l (the stem: embeddings + ln_pre; each
  transformer block; the head: ln_post + proj),
  ``c_tl = cos(tau_tl, sum_{s != t} tau_sl)``, ``r_tl = 1 - max(c_tl, 0)`` (aligned layers are
  attenuated, orthogonal or conflicting ones kept whole), and ``w_tl = r_tl * g_t`` with ``g_t``
  chosen so that each task vector keeps its norm (``sum_l w_tl^2 |tau_tl|^2 = |tau_t|^2``: energy
  moves from shared to task-specific layers, so lambda keeps its meaning), then capped at
  ``LAYER_WEIGHT_MAX`` so a tiny orthogonal layer is not blown up. A single task, or mutually
  orthogonal tasks, give ``w = 1``: task arithmetic. Under the channel this acts as a mild
  defense against *correlated* noise (a shared error component raises ``c_tl``), while independent
  noise leaves the weights near 1.
- **Slice by slice.** Every switch is column-local (one column = one parameter across tasks)
  except two per-row statistics: the magnitude threshold of the TIES trim and the layer-aware
  weights. :func:`plan_merge` computes those in a first pass over the tensors (a 2^15-bucket
  histogram of each row's magnitudes, then the one bucket that holds the k-th largest; per-layer
  Gram matrices), and :func:`merge_slice` merges one parameter tensor (``[T, n_i]`` -> ``[n_i]``),
  so a caller streaming task vectors never holds a ``[T, P]`` stack; :func:`merge_recipe` is the
  same loop over an in-memory stack. DARE draws its drop mask per tensor from a generator seeded by
  ``(seed, tensor index)``, so the result does not depend on the order tensors are visited.
- ``heuristic_lambda(N) = 1 / sqrt(N)``: for N near-orthogonal task vectors of similar norm the
  sum has norm ~ sqrt(N) times one vector, so 1/sqrt(N) keeps the merged update at the size of a
  single fine-tune (lambda = 1 for one task). It gives 0.35 at 8 tasks, inside the 0.3-0.4 the
  task-arithmetic paper (Ilharco et al. 2023) finds on validation data for 8 ViT tasks, and
  0.71 at 2 tasks, where larger values are known to work better.
"""
from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from . import spectral as _spectral
from ..errors import InputError
from .methods import LAMBDA_MAX, METHOD_NAMES, METHOD_RECORDS, TA_GRID
from .taskvec import check_seed, check_stack, stream_seed
from .taskvec import ParamLayout, group_of

# tensor index -> [T, n_i] float32 slice of the task vectors (a view or a freshly computed tensor; the
# fusion functions never modify what they are handed). A source may be called more than once per
# tensor: methods with a global per-row statistic (TIES' magnitude threshold, the layer-aware
# weights) make a first pass for it.
Slices = Callable[[int], torch.Tensor]

METHODS = METHOD_NAMES  # the records: methods.py
SPARSIFY = ("none", "magnitude", "random", "consensus")
SIGN = ("none", "ties")
WEIGHTING = ("uniform", "layer_aware")
SCALE = ("lambda", "mean")
SPECTRAL = ("none", *_spectral.MERGES)

# Values the pipeline tries for task arithmetic when lambda_mode == "validation" (each method's: its record).
LAMBDA_GRID = TA_GRID
LAYER_WEIGHT_MAX = 2.0


@dataclass(frozen=True)
class Recipe:
    sparsify: str = "none"
    sign: str = "none"
    weighting: str = "uniform"
    scale: str = "lambda"
    spectral: str = "none"

    def __post_init__(self):
        for field, value, allowed in (("sparsify", self.sparsify, SPARSIFY), ("sign", self.sign, SIGN),
                                      ("weighting", self.weighting, WEIGHTING), ("scale", self.scale, SCALE),
                                      ("spectral", self.spectral, SPECTRAL)):
            if value not in allowed:
                raise InputError(f"fusion.recipe.{field}", f"must be one of {', '.join(allowed)}; got {value!r}")
        if self.spectral != "none" and (self.sparsify != "none" or self.sign != "none"):
            raise InputError("fusion.recipe.spectral", "a singular-value merge replaces the sum: it takes no "
                                                       "sparsify or sign election")


RECIPES = {m.name: Recipe(**m.switches) for m in METHOD_RECORDS}


def heuristic_lambda(n_tasks: int) -> float:
    """The per-N lambda: 1/sqrt(N) (see the module docstring), in (0, 1]."""
    if isinstance(n_tasks, bool) or not isinstance(n_tasks, numbers.Integral) or n_tasks < 1:
        raise InputError("tasks", f"need at least one task to fuse; got {n_tasks!r}")
    return METHOD_RECORDS[0].heuristic_lambda(int(n_tasks))


# ----------------------------------------------------------------------------------- validation

def _check_number(value, field: str, lo: float, hi: float, lo_open=False, hi_open=False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InputError(field, f"must be a number; got {value!r}")
    bad = value < lo or value > hi or (lo_open and value == lo) or (hi_open and value == hi)
    if bad:
        raise InputError(field, f"must be in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}; got {value}")
    return float(value)


# ----------------------------------------------------------------------------------- building blocks

@functools.lru_cache(maxsize=4)
def _tensor_layers(layout: ParamLayout) -> tuple[tuple[int, ...], int]:
    """Compact layer id of each tensor (stem, block 0, ..., head; only those present), and their count."""
    blocks = []
    for name in layout.names:
        group = group_of(name)
        blocks.append(int(group[5:]) if group.startswith("block") else (-1 if group != "head" else math.inf))
    present = sorted(set(blocks))
    rank = {b: i for i, b in enumerate(present)}
    return tuple(rank[b] for b in blocks), len(present)


@functools.lru_cache(maxsize=4)
def _element_layers(layout: ParamLayout) -> torch.Tensor:
    ids, _ = _tensor_layers(layout)
    return torch.repeat_interleave(torch.tensor(ids, dtype=torch.int64), torch.tensor(np.diff(layout.offsets)))


def layer_ids(layout: ParamLayout) -> tuple[torch.Tensor, int]:
    """Long [P] compact layer id of each element (stem, block 0, ..., head; only those present), and their count.

    The order of ``layout.block_index``; cached per layout (a layout is an immutable value).
    """
    return _element_layers(layout), _tensor_layers(layout)[1]


def layer_gram_sliced(slices: Slices, layout: ParamLayout, n_tasks: int) -> torch.Tensor:
    """[L, T, T] float64 Gram matrices of the task vectors restricted to each layer, from a source of
    per-tensor slices."""
    tensor_layer, n_layers = _tensor_layers(layout)
    grams = [torch.zeros(n_tasks, n_tasks, dtype=torch.float64) for _ in range(n_layers)]
    # A loop over tensors (not parameters): each product one small GEMM.
    for i, (layer, a, b) in enumerate(zip(tensor_layer, layout.offsets, layout.offsets[1:])):
        if b > a:
            part = slices(i)
            grams[layer] += (part @ part.T).to(torch.float64)
    return torch.stack(grams)


def _stack_slices(vectors: torch.Tensor, layout: ParamLayout) -> Slices:
    offsets = layout.offsets
    return lambda i: vectors[:, offsets[i]:offsets[i + 1]]


def layer_weights_from_gram(gram: torch.Tensor) -> torch.Tensor:
    """[T, L] layer-aware weights w_tl (float64) of the module docstring, from the [L, T, T] per-layer
    Gram matrices (`layer_gram_sliced`); L as in :func:`layer_ids`."""
    own = gram.diagonal(dim1=1, dim2=2)  # |tau_tl|^2, [L, T]
    with_sum = gram.sum(2)  # <tau_tl, S_l>
    total = gram.sum((1, 2)).unsqueeze(1)  # |S_l|^2
    rest_dot = with_sum - own  # <tau_tl, S_l - tau_tl>
    rest_sq = (total - 2 * with_sum + own).clamp_min(0.0)  # |S_l - tau_tl|^2
    denom = (own * rest_sq).sqrt()
    cos = torch.where(denom > 0, rest_dot / denom.clamp_min(1e-300), torch.zeros_like(denom)).clamp(-1.0, 1.0)
    keep = (1.0 - cos.clamp_min(0.0)).T  # r_tl, [T, L]
    energy = own.T  # [T, L]
    kept = (keep.square() * energy).sum(1, keepdim=True)
    gain = torch.where(kept > 0, (energy.sum(1, keepdim=True) / kept.clamp_min(1e-300)).sqrt(), torch.ones_like(kept))
    weights = (keep * gain).clamp_max(LAYER_WEIGHT_MAX)
    # Rows with no energy at all (a zero task vector) get weight 1: nothing to redistribute.
    return torch.where(energy.sum(1, keepdim=True) > 0, weights, torch.ones_like(weights))


_BUCKETS = 1 << 15


def kth_largest_sliced(slices: Slices, n_slices: int, n_rows: int, k, *, absolute: bool = True
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact k-th largest |entry| of each row of the concatenation of ``slices(0 .. n_slices-1)``
    ([T, n_i] each), and how many entries of the row are strictly larger: ([T, 1] float32, [T] int64).

    ``k``: an int or one per row (1 <= k <= row length). A radix select in two passes: the bit
    pattern of a non-negative float orders like the float, so a histogram of the top 16 bits (the
    sign bit is 0) finds the bucket holding the k-th largest, and the second pass collects only that
    bucket's entries for a top-k (~3x faster than topk on a million entries, and never a [T, P] copy).
    With ``absolute=False`` the slices must already be non-negative.
    """
    ks = torch.as_tensor(k, dtype=torch.int64).expand(n_rows).tolist()
    counts = torch.zeros(n_rows * _BUCKETS, dtype=torch.int64)
    row_base = (torch.arange(n_rows, dtype=torch.int32) * _BUCKETS).unsqueeze(1)
    for i in range(n_slices):
        top = _top_bits(slices(i), absolute)
        if top.shape[1]:
            counts += torch.bincount((top + row_base).reshape(-1), minlength=n_rows * _BUCKETS)
    counts = counts.view(n_rows, _BUCKETS)
    at_or_above = counts.flip(1).cumsum(1)  # [r, j]: entries of row r in buckets >= 2^15 - 1 - j
    bucket, above = [], []
    for r in range(n_rows):
        j = int(torch.searchsorted(at_or_above[r], torch.tensor([ks[r]]))[0])
        b = _BUCKETS - 1 - j
        bucket.append(b)
        above.append(int(at_or_above[r, j]) - int(counts[r, b]))
    inside: list[list[torch.Tensor]] = [[] for _ in range(n_rows)]
    for i in range(n_slices):
        part = slices(i)
        mags = part.abs() if absolute else part
        top = _top_bits(mags, False)
        for r in range(n_rows):
            inside[r].append(mags[r][top[r] == bucket[r]])
    value = torch.empty(n_rows, 1, dtype=torch.float32)
    greater = torch.empty(n_rows, dtype=torch.int64)
    for r in range(n_rows):
        pool = torch.cat(inside[r])
        kth = pool.topk(ks[r] - above[r], sorted=False).values.min()
        value[r, 0] = kth
        greater[r] = above[r] + int((pool > kth).sum())
    return value, greater


def _top_bits(x: torch.Tensor, absolute: bool) -> torch.Tensor:
    mags = x.abs() if absolute else x.contiguous()
    return mags.view(torch.int32) >> 16  # values in [0, 2^15) for non-negative floats


def tall_masks(vectors: torch.Tensor, tall_mask_lambda: float) -> torch.Tensor:
    """Bool [T, P]: TALL mask of each task, |tau_t| >= lambda * |sum_s tau_s - tau_t|."""
    rest = vectors.sum(0, keepdim=True) - vectors  # the other tasks' sum; in place from here on
    return vectors.abs() >= rest.abs_().mul_(tall_mask_lambda)


def consensus_mask(vectors: torch.Tensor, tall_mask_lambda: float, min_tasks: int) -> torch.Tensor:
    """Bool [P]: entries claimed by at least min(min_tasks, T) tasks' TALL masks."""
    k = min(int(min_tasks), vectors.shape[0])
    return tall_masks(vectors, tall_mask_lambda).sum(0) >= k


# ----------------------------------------------------------------------------------- merging

@dataclass(frozen=True)
class Options:
    """A recipe's knobs beside lambda: TIES' `density`, DARE's `drop_rate`, consensus' `min_tasks` and
    `tall_mask_lambda`. `Options.of(scenario.fusion)` reads the schema's section; checked here once."""
    density: float = 0.2
    drop_rate: float = 0.9
    consensus_min_tasks: int = 2
    tall_mask_lambda: float = 0.4

    def __post_init__(self):
        _check_number(self.density, "fusion.density", 0.0, 1.0, lo_open=True)
        _check_number(self.drop_rate, "fusion.drop_rate", 0.0, 1.0, hi_open=True)
        _check_number(self.tall_mask_lambda, "fusion.tall_mask_lambda", 0.0, 10.0, lo_open=True)
        m = self.consensus_min_tasks
        if isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 1:
            raise InputError("fusion.consensus_min_tasks", f"must be an integer >= 1; got {m!r}")

    @classmethod
    def of(cls, fusion_config) -> "Options":
        f = fusion_config
        return cls(density=f.density, drop_rate=f.drop_rate, consensus_min_tasks=f.consensus_min_tasks,
                   tall_mask_lambda=f.tall_mask_lambda)


@dataclass(frozen=True, eq=False)
class MergePlan:
    """What :func:`merge_slice` needs besides the slice: the recipe, the final scale (DARE's rescale
    included), the per-row statistics of the first pass, and the options."""
    recipe: Recipe
    n_tasks: int
    scale: float
    threshold: Optional[torch.Tensor]  # [T, 1] magnitude-trim threshold (entries >= it are kept)
    weights: Optional[torch.Tensor]    # [T, n_tensors] float32 layer-aware weights
    drop_rate: float
    tall_mask_lambda: float
    min_tasks: int
    seed: int
    shapes: tuple[tuple[int, ...], ...] = ()      # each tensor's shape (the singular-value merges' matrices)
    user_weights: Optional[torch.Tensor] = None   # [T] float32 MSE-aware weights (None: all 1)


def plan_merge(
    slices: Slices,
    recipe: Recipe,
    *,
    layout: ParamLayout,
    n_tasks: int,
    lambda_: float,
    options: Options = Options(),
    seed: int = 0,
    user_weights=None,
) -> MergePlan:
    """Make the first pass over ``slices`` if the recipe needs one.
    ``user_weights``: one non-negative weight per task vector (MSE-aware fusion), or None."""
    if not isinstance(recipe, Recipe):
        raise InputError("fusion.method", f"must be a method name or a Recipe; got {type(recipe).__name__}")
    if not isinstance(layout, ParamLayout):
        raise InputError("fusion.layout", f"must be a ParamLayout; got {type(layout).__name__}")
    lambda_ = _check_number(lambda_, "fusion.lambda", 0.0, LAMBDA_MAX)
    if not isinstance(options, Options):
        raise InputError("fusion", f"options must be a fusion.Options; got {type(options).__name__}")
    density, drop_rate = float(options.density), float(options.drop_rate)
    seed = check_seed(seed)

    if user_weights is not None:
        user_weights = torch.as_tensor(user_weights, dtype=torch.float32).reshape(-1)
        if user_weights.numel() != n_tasks or not bool(torch.isfinite(user_weights).all()) \
                or bool((user_weights < 0).any()):
            raise InputError("fusion.mse_aware", f"needs one finite weight >= 0 per fused task ({n_tasks}); "
                                                 f"got {user_weights.tolist()}")
        unweighted = slices
        slices = lambda i: unweighted(i) * user_weights.unsqueeze(1)  # noqa: E731  (the first pass sees them too)
    scale = 1.0 / n_tasks if recipe.scale == "mean" else lambda_
    threshold = weights = None
    n_tensors = len(layout.names)
    if scale != 0.0:
        if recipe.sparsify == "magnitude":
            n = layout.numel
            k = min(n, max(1, int(math.floor(density * n + 0.5))))
            if k < n:
                threshold = kth_largest_sliced(slices, n_tensors, n_tasks, k)[0]
        if recipe.weighting == "layer_aware":
            w = layer_weights_from_gram(layer_gram_sliced(slices, layout, n_tasks)).to(torch.float32)
            weights = w[:, list(_tensor_layers(layout)[0])].contiguous()  # [T, n_tensors]
    drop = recipe.sparsify == "random" and drop_rate > 0.0
    if drop:
        scale = scale / (1.0 - drop_rate)  # DARE's 1/(1-p) rescale, applied to the sum
    return MergePlan(recipe=recipe, n_tasks=n_tasks, scale=scale, threshold=threshold, weights=weights,
                     drop_rate=drop_rate if drop else 0.0, tall_mask_lambda=float(options.tall_mask_lambda),
                     min_tasks=int(options.consensus_min_tasks), seed=int(seed), shapes=tuple(layout.shapes),
                     user_weights=user_weights)


def merge_slice(x: torch.Tensor, plan: MergePlan, tensor: int, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Merged tensor ``tensor`` ([n_i] float32, into ``out`` if given) from its task slices ``x`` ([T, n_i],
    not modified): the recipe's masks, weights, sign election and scale, column by column."""
    n = x.shape[1]
    out = torch.empty(n, dtype=torch.float32) if out is None else out
    if n == 0:
        return out
    if plan.scale == 0.0:
        return out.zero_()
    r = plan.recipe
    if plan.user_weights is not None:
        x = x * plan.user_weights.unsqueeze(1)  # the base station's trust in each received vector, first
    if r.spectral != "none":
        return _merge_spectral(x, plan, tensor, out)
    # Masks that look at the task vectors themselves come before weighting (TALL masks and trimming
    # judge each task's own entries; weights only decide how much each task contributes).
    cons = consensus_mask(x, plan.tall_mask_lambda, plan.min_tasks) if r.sparsify == "consensus" else None
    keep = x.abs() >= plan.threshold if plan.threshold is not None else None
    w = plan.weights[:, tensor] if plan.weights is not None else None
    if keep is None and plan.drop_rate == 0.0 and r.sign == "none":
        if w is None:
            torch.sum(x, 0, out=out)
        else:
            torch.mv(x.T, w, out=out)  # no weighted [T, n] copy
    else:
        v = x * w.unsqueeze(1) if w is not None else x
        if keep is not None:
            v = v * keep
        if plan.drop_rate > 0.0:
            gen = torch.Generator(device="cpu").manual_seed(stream_seed(plan.seed, tensor))
            v = v * (torch.rand(v.shape, generator=gen) >= plan.drop_rate)
        if r.sign == "ties":
            # Disjoint sum in two passes: the positive and the negative mass of each entry; the elected
            # sign is that of their sum, and only that side is kept (the same as masking by the elected signs).
            positive, negative = v.clamp_min(0.0).sum(0), v.clamp_max(0.0).sum(0)
            total = positive + negative
            out.copy_(torch.where(total > 0, positive, torch.where(total < 0, negative, torch.zeros_like(total))))
        else:
            torch.sum(v, 0, out=out)
    if cons is not None:
        out.mul_(cons)
    return out.mul_(plan.scale)


def _merge_spectral(x: torch.Tensor, plan: MergePlan, tensor: int, out: torch.Tensor) -> torch.Tensor:
    """A singular-value merge of one tensor: its task matrices if it is a weight matrix (2-D, both
    sides above 1), else the tasks' mean (as the papers treat biases, norms and the rest)."""
    if plan.weights is not None:
        x = x * plan.weights[:, tensor].unsqueeze(1)
    shape = plan.shapes[tensor] if plan.shapes else ()
    if len(shape) == 2 and min(shape) > 1:
        merged = _spectral.MERGES[plan.recipe.spectral](x.reshape(x.shape[0], *shape))
        out.copy_(merged.reshape(-1))
    else:
        torch.mean(x, 0, out=out)
    return out.mul_(plan.scale)


def mse_aware_weights(received_power, noise_variance) -> torch.Tensor:
    """[T] MSE-aware fusion weights from what the base station knows of each received vector.

    The estimator: the received vector r_q = tau_q + n_q has mean square p_q (measured) and the noise
    a known mean variance v_q per entry (from the user's MSE through the error model), so the
    signal's mean square is estimated as max(p_q - v_q, 0) and its SNR as snr_q = max(p_q - v_q, 0) / v_q.
    Each vector is weighted by its Wiener gain g_q = snr_q / (1 + snr_q) (1 for a noiseless link),
    normalised to mean 1 over the fused users, so lambda keeps its meaning and a channel that treats
    every user alike changes nothing."""
    p = torch.as_tensor(received_power, dtype=torch.float64).reshape(-1)
    v = torch.as_tensor(noise_variance, dtype=torch.float64).reshape(-1)
    if p.shape != v.shape or not bool(torch.isfinite(p).all() and torch.isfinite(v).all()) or bool((v < 0).any()):
        raise InputError("fusion.mse_aware", "needs finite received powers and noise variances >= 0, one per user")
    signal = (p - v).clamp_min(0.0)
    gain = torch.where(v > 0, signal / (signal + v).clamp_min(1e-300), torch.ones_like(v))
    total = float(gain.sum())
    if total <= 0.0:  # every vector judged pure noise: trust them alike rather than fuse nothing
        return torch.ones_like(gain, dtype=torch.float32)
    return (gain * (len(gain) / total)).to(torch.float32)


def merge_into(slices: Slices, plan: MergePlan, layout: ParamLayout, out: torch.Tensor) -> torch.Tensor:
    """The merged task vector [P] written into ``out``, one tensor at a time."""
    for i, (a, b) in enumerate(zip(layout.offsets, layout.offsets[1:])):
        merge_slice(slices(i), plan, i, out[a:b])
    return out


def merge_recipe(
    vectors: torch.Tensor,
    recipe: Recipe,
    *,
    layout: ParamLayout,
    lambda_: float,
    seed: int = 0,
    user_weights=None,
    **options,
) -> torch.Tensor:
    """The generalised task arithmetic for any combination of switches (e.g. DARE + TIES), on an
    in-memory [T, P] stack: :func:`plan_merge` + :func:`merge_into` over its tensor slices.
    `options`: the fields of :class:`Options` by name (density=..., drop_rate=...)."""
    if not isinstance(recipe, Recipe):
        raise InputError("fusion.method", f"must be a method name or a Recipe; got {type(recipe).__name__}")
    unknown = sorted(set(options) - set(Options.__dataclass_fields__))
    if unknown:
        raise InputError("fusion", f"unknown option(s) {unknown}; known: {', '.join(Options.__dataclass_fields__)}")
    v = check_stack(vectors, layout, "fusion.vectors")
    slices = _stack_slices(v, layout)
    plan = plan_merge(slices, recipe, layout=layout, n_tasks=v.shape[0], lambda_=lambda_, options=Options(**options),
                      seed=seed, user_weights=user_weights)
    return merge_into(slices, plan, layout, torch.empty(v.shape[1], dtype=torch.float32))


def merge(vectors: torch.Tensor, *, method: str, **options) -> torch.Tensor:
    """Merged task vector [P] (float32) of the [T, P] task vectors by a named method; the caller adds
    it to the base. `options` are :func:`merge_recipe`'s (layout, lambda_, density, drop_rate, ...)."""
    if not isinstance(method, str) or method not in RECIPES:
        raise InputError("fusion.method", f"must be one of {', '.join(METHODS)}; got {method!r}")
    return merge_recipe(vectors, RECIPES[method], **options)
