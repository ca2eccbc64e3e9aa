"""Defenses on flat parameter vectors: R-MTLLMF's freeze and realign (paper Sec. III), and two
cheap ones beyond the paper, noise-aware shrinkage and magnitude trimming of received vectors.

Every function is pure: it takes flat tensors ([P] encoders, [T, P] task vectors) and returns new
ones; inputs are never modified. The cheap defenses and freeze also come slice by slice, in place
(`shrink_slice_`, `plan_trim` + `trim_slice_`, `freeze_`), for the engine, which streams task vectors
one parameter tensor ([T, n_i]) at a time; the whole-vector functions are the same loops.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterable, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F

from ..errors import InputError
from . import evaluate
from .evaluate import module_lock
from .taskvec import ParamLayout, group_of
from ..zoo.types import Zoo


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
    out = fused_flat.clone()
    return freeze_(out, layout.unflatten(base_flat), layout, groups)  # the base's bits where frozen


def freeze_(flat: torch.Tensor, base: Mapping[str, torch.Tensor], layout: ParamLayout,
            groups: Iterable[str]) -> torch.Tensor:
    """:func:`freeze` in place on `flat`, tensor by tensor, from the base encoder's tensors `base`
    (name -> tensor, e.g. `zoo.base_state`): no [P] mask, no [P] base copy."""
    groups = tuple(groups)
    unknown = [g for g in groups if g not in layout.groups()]
    if unknown:
        raise InputError("defense.freeze_groups", f"unknown group(s) {unknown}; this encoder has {list(layout.groups())}")
    wanted = set(groups)
    for name, a, b in zip(layout.names, layout.offsets, layout.offsets[1:]):
        if group_of(name) in wanted:
            flat[a:b].copy_(base[name].reshape(-1))
    return flat


def frozen_tensors(layout: ParamLayout, groups: Iterable[str]) -> tuple[bool, ...]:
    """Per tensor: whether freezing `groups` reloads it (freeze works on whole tensors)."""
    wanted = set(groups)
    return tuple(group_of(n) in wanted for n in layout.names)


# ---------------------------------------------------------------- shrink (ours)

def shrink(received: torch.Tensor, noise_std: torch.Tensor | float, layout: ParamLayout) -> torch.Tensor:
    """Linear MMSE estimate of each clean task vector from its noisy version, tensor by tensor.

    Model per tensor k of vector t: received = tau + noise, the entries of tau zero-mean with power
    s (unknown) and the noise independent of tau with known variance n (the mean of `noise_std`^2
    over the tensor's entries). The LMMSE estimate is g * received with the Wiener gain
    g = s / (s + n), s estimated as max(mean(received^2) - n, 0). A tensor with no noise keeps
    g = 1; a tensor that looks like pure noise (s = 0) is zeroed, the prior mean.
    `noise_std` broadcasts to [T, P] (e.g. [T, 1] for one std per vector, as `perturb.tensor_noise_std` gives per tensor).
    """
    rows = received.dim() == 1
    received_2d = received.unsqueeze(0) if rows else received
    _check_flat("received", received_2d, layout, rows=True)
    std = torch.as_tensor(noise_std, dtype=torch.float64)
    try:
        fits = torch.broadcast_shapes(std.shape, received_2d.shape) == received_2d.shape
    except RuntimeError:
        fits = False
    if not fits:
        raise InputError("noise_std", f"shape {list(std.shape)} does not broadcast to {list(received_2d.shape)}")
    if (std < 0).any() or not torch.isfinite(std).all():
        raise InputError("noise_std", "must be finite and >= 0")
    t, n_tensors = received_2d.shape[0], len(layout.names)
    constant_rows = std.dim() == 0 or std.shape[-1] == 1      # one std per vector: no per-element pass
    std = std.expand(received_2d.shape)                          # a view, no copy
    # per-tensor statistics in float64, one row at a time (a [T, P] float64 copy can be gigabytes)
    power = torch.empty(t, n_tensors, dtype=torch.float64)
    noise = torch.empty(t, n_tensors, dtype=torch.float64)
    for i in range(t):
        power[i] = layout.per_tensor_mean_square(received_2d[i].double())
        noise[i] = std[i, 0].square() if constant_rows else layout.per_tensor_mean_square(std[i])
    out = received_2d.clone()
    for i, (a, b) in enumerate(zip(layout.offsets, layout.offsets[1:])):
        _shrink_gain_(out[:, a:b], power[:, i], noise[:, i])
    return out[0] if rows else out


def shrink_slice_(x: torch.Tensor, noise_var: torch.Tensor) -> torch.Tensor:
    """:func:`shrink` of one tensor of every row, in place: `x` [T, n_i], `noise_var` [T] the noise
    variance of each row's entries of that tensor (float64; e.g. the square of `perturb.tensor_noise_std`)."""
    if x.shape[1] == 0:
        return x
    power = torch.linalg.vector_norm(x, dim=1, dtype=torch.float64).square() / x.shape[1]
    return _shrink_gain_(x, power, noise_var.to(torch.float64))


def _shrink_gain_(x: torch.Tensor, power: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    signal = (power - noise).clamp_min(0.0)
    total = signal + noise
    gain = torch.where(total > 0, signal / total.where(total > 0, torch.ones_like(total)), torch.ones_like(total))
    return x.mul_(gain.to(x.dtype).unsqueeze(1))


# ---------------------------------------------------------------- trim (ours)

def trim(received: torch.Tensor, keep_fraction: float) -> torch.Tensor:
    """Keep the ceil(keep_fraction * P) largest-magnitude entries of each vector (row), zero the rest.

    Noise spreads evenly over all entries while a task vector's energy sits in few, so trimming drops
    mostly noise (TIES' trim step, applied per received vector). Ties at the cut keep exactly k
    entries: the first ones in flat order. The whole-vector form of :func:`plan_trim` + :func:`trim_slice_`.
    """
    _check_keep(keep_fraction)
    rows = received.dim() == 1
    vec = received.unsqueeze(0) if rows else received
    if vec.dim() != 2:
        raise InputError("received", f"expected [T, P] or [P], got {list(received.shape)}")
    out = vec.clone()
    plan = plan_trim(lambda i: vec, 1, vec.shape[0], vec.shape[1], keep_fraction)
    if plan is not None:
        trim_slice_(out, plan, 0)
    return out[0] if rows else out


def _check_keep(keep_fraction) -> None:
    if not 0.0 < keep_fraction <= 1.0:
        raise InputError("defense.trim_keep_fraction", f"must lie in (0, 1], got {keep_fraction}")


@dataclass(frozen=True, eq=False)
class TrimPlan:
    threshold: torch.Tensor  # [T, 1]: the k-th largest magnitude of each row
    quota: torch.Tensor      # [T, n_slices]: entries equal to the threshold kept in each slice (the first ones)
    ties: torch.Tensor       # [T, n_slices]: entries equal to the threshold in each slice


def plan_trim(slices, n_slices: int, n_rows: int, n_params: int, keep_fraction: float) -> Optional[TrimPlan]:
    """The per-row cut of :func:`trim` over a source of slices (`slices(i)` -> [T, n_i], i < n_slices;
    three passes: a magnitude histogram, the bucket of the k-th largest, the ties at the cut).
    None when every entry is kept."""
    from .fusion import kth_largest_sliced

    _check_keep(keep_fraction)
    k = min(n_params, max(1, math.ceil(keep_fraction * n_params - 1e-9)))  # the epsilon keeps 0.5 * 10 at 5, not 6
    if k == n_params:
        return None
    threshold, greater = kth_largest_sliced(slices, n_slices, n_rows, k)
    ties = torch.zeros(n_rows, n_slices, dtype=torch.int64)
    for i in range(n_slices):
        ties[:, i] = (slices(i).abs() == threshold).sum(1)
    before = ties.cumsum(1) - ties
    quota = ((k - greater).unsqueeze(1) - before).clamp(min=0)
    return TrimPlan(threshold=threshold, quota=torch.minimum(quota, ties), ties=ties)


def trim_slice_(x: torch.Tensor, plan: TrimPlan, i: int) -> torch.Tensor:
    """:func:`trim` of slice `i` ([T, n_i]) of every row, in place (dropped entries become +0.0)."""
    mags = x.abs()
    keep = mags > plan.threshold
    tied = mags == plan.threshold
    for r in range(x.shape[0]):
        q = int(plan.quota[r, i])
        if q == int(plan.ties[r, i]):
            keep[r] |= tied[r]
        elif q > 0:
            keep[r, tied[r].nonzero()[:q, 0]] = True
    return x.masked_fill_(~keep, 0.0)


# ---------------------------------------------------------------- realign (R-MTLLMF)

@lru_cache(maxsize=16)
def few_shot_set(zoo: Zoo, tasks: tuple[str, ...], shots_per_class: int):
    """The episodic memory: the first `shots_per_class` samples of each class of each task's `pool`
    split (fixed, so k-shot sets are nested across k), concatenated.

    Returns (images [N, ...], labels within the task [N], task index [N], class offset [T]
    of each task's columns in the concatenated heads, heads [sum C, D]).
    """
    with torch.inference_mode(False):  # the cached tensors must be usable by autograd later
        return _few_shot_set(zoo, tasks, shots_per_class)


def _few_shot_set(zoo: Zoo, tasks: tuple[str, ...], shots_per_class: int):
    images, labels, task_index, offsets, heads = [], [], [], [], []
    offset = 0
    for i, t in enumerate(tasks):
        head = zoo.heads[t]
        # the first shots x classes samples hold every class's first shots where classes interleave (the
        # procedural tasks), and nothing more is generated or read; else the whole split
        x, y = zoo.split(t, "pool", min(zoo.split_size(t, "pool"), shots_per_class * head.shape[0]))
        if int(torch.bincount(y, minlength=head.shape[0]).min()) < shots_per_class:
            x, y = zoo.split(t, "pool", None)
        for c in range(head.shape[0]):
            idx = (y == c).nonzero().squeeze(1)[:shots_per_class]
            if len(idx) < shots_per_class:
                raise InputError("defense.shots_per_class",
                                 f"task {t!r} has only {len(idx)} pool samples of class {c}; at most that many shots")
            images.append(x[idx])
            labels.append(torch.full((shots_per_class,), c, dtype=torch.long))
            task_index.append(torch.full((shots_per_class,), i, dtype=torch.long))
        offsets.append(offset)
        offset += head.shape[0]
        heads.append(head)
    # clones: tensors the zoo made under inference_mode cannot take part in autograd
    return (torch.cat(images).float().clone(), torch.cat(labels), torch.cat(task_index),
            torch.tensor(offsets), torch.cat(heads).float().clone())


PRECISIONS = ("float32", "bfloat16")


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise InputError("defense.realign_precision", f"one of {', '.join(PRECISIONS)}; got {precision!r}")


@contextlib.contextmanager
def mixed_precision(device: torch.device, precision: str):
    """The realignment's arithmetic: "bfloat16" runs the forward pass under bf16 autocast (matmuls in
    bf16 with float32 accumulation; weights, gradients, AdamW's moments, the loss and the softmax stay
    float32: mixed precision as in AMP training); "float32" is plain. On a CPU with bf16 units
    (AVX512-BF16 or AMX) the tiny zoo's matmuls run 4x faster and a realignment step 1.8x
    (benchmarks/bench_engine.py); without them bf16 is emulated and slower. Attention takes torch's
    math kernel there: the CPU flash kernel's bf16 backward costs 7x its float32 one on these shapes.
    Entered once per step: leaving autocast drops its cache of bf16 weight copies, which the
    optimiser's in-place update has made stale."""
    check_precision(precision)
    if precision == "float32":
        yield
        return
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.autocast(device.type, dtype=torch.bfloat16))
        if device.type == "cpu":
            from torch.nn.attention import SDPBackend, sdpa_kernel

            stack.enter_context(sdpa_kernel(SDPBackend.MATH))
        yield


@dataclass(frozen=True)
class Budget:
    """What a realignment spends: `shots_per_class` samples per class, `steps` AdamW steps from `lr`
    (cosine to 0), in `precision`, `batch_size` samples a step. `Budget.of(scenario.defense)` reads
    the schema's fields, which the schema has validated; a budget built by hand is checked here once."""
    shots_per_class: int
    steps: int
    lr: float
    precision: str = "float32"
    batch_size: int = 32
    weight_decay: float = 0.01

    def __post_init__(self):
        for name, value in (("defense.shots_per_class", self.shots_per_class), ("defense.realign_steps", self.steps),
                            ("defense.realign_batch_size", self.batch_size)):
            if not isinstance(value, int) or value < 1:
                raise InputError(name, f"an integer >= 1, got {value!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError("defense.realign_lr", f"must be > 0, got {self.lr}")
        check_precision(self.precision)

    @classmethod
    def of(cls, defense_config) -> "Budget":
        """The budget a scenario's `defense` section names."""
        d = defense_config
        return cls(shots_per_class=d.shots_per_class, steps=d.realign_steps, lr=d.realign_lr,
                   precision=d.realign_precision, batch_size=d.realign_batch_size)


def realign(zoo: Zoo, flat: torch.Tensor, layout: ParamLayout, tasks: Sequence[str], budget: Budget, *,
            frozen_mask: torch.Tensor, seed: int, progress: Callable[[float], None] | None = None,
            inplace: bool = False, device: torch.device | str = "cpu") -> torch.Tensor:
    """Few-shot realignment (R-MTLLMF): fine-tune the fused encoder `flat` on `budget.shots_per_class`
    samples per class of every task's pool split, with each task's frozen head, and return the new
    flat encoder. Entries where `frozen_mask` is True come back bit for bit.

    - loss: cross-entropy of `logit_scale * <f(x), head_t[c]>` over the classes of x's own task t
      (one batched forward for samples of all tasks; the other tasks' columns are masked out);
    - optimiser: AdamW (betas 0.9/0.999, `weight_decay` 0.01) on the trainable entries only: the
      frozen entries are not optimisation variables at all, so neither gradients, moments nor weight
      decay can move them; torch's fused AdamW kernel where the build has one (`_adamw`);
    - schedule: cosine decay from `lr` at the first step towards 0 at the last, no warm-up: the
      start is a trained model and the budget is a few dozen steps, where a warm-up would waste most;
    - batches: `batch_size` samples drawn without replacement from a fresh seeded permutation each
      epoch (`seed` -> torch.Generator), so the result is a deterministic function of the inputs
      (for a fixed torch build and thread count). Cost grows with steps x batch_size (a tiny-zoo step on one
      thread: 19.7 ms for 16 samples, 34.9 ms for 32, `benchmarks/bench_zoo.py --threads 1 --batch-sizes
      16,32`); the calibrated 100 steps of 16 make two epochs of a 10-shot, 8-task, 10-class set;
    - model: the zoo's own encoder through `evaluate.features` (no copy of the model),
      with one trainable leaf per parameter tensor (`_trainable_tensors`): gradients land per tensor,
      so backward never scatters slices into a [P]-sized flat gradient (the same numbers, bit for
      bit, as optimising one flat vector of the trainable entries; a quarter less CPU time).
    - arithmetic: `precision` (`mixed_precision`), the same on every device.
    `progress(fraction)` is called after each step. With `inplace=True` (a float32 `flat` the caller
    owns and gives up) the result is written into `flat` itself: no [P] copy of the input.
    On a GPU `device` the trainable tensors, the optimiser and the few-shot set live there; the batch
    order still comes from the CPU generator, so it is the same on every device. The result comes back
    into a CPU float32 vector (`flat` when inplace).

    Memory, in fp32 encoder copies besides `flat`: the trainable leaves (1), their gradients (1) and
    AdamW's two moments (2) are inherent to the optimiser; the working copy of `flat` (1) is saved by
    `inplace`; plus the activations of one batch.
    """
    _check_flat("flat", flat, layout)
    tasks = zoo.check_tasks(tasks)
    if frozen_mask.shape != (layout.numel,) or frozen_mask.dtype != torch.bool:
        raise InputError("frozen_mask", f"expected a bool tensor of shape [{layout.numel}]")

    if frozen_mask.all():  # nothing to train
        if progress is not None:
            progress(1.0)
        return flat.detach().clone()

    device = torch.device(device)
    steps, lr, precision = budget.steps, budget.lr, budget.precision
    images, labels, task_index, offsets, heads = few_shot_set(zoo, tasks, budget.shots_per_class)  # cached
    targets = (labels + offsets[task_index]).to(device)         # column of the true class in `heads`
    column_task = torch.repeat_interleave(torch.arange(len(tasks)), torch.tensor([zoo.heads[t].shape[0] for t in tasks]))
    images, task_index, heads, column_task = (v.to(device) for v in (images, task_index, heads, column_task))
    buffers = evaluate.device_buffers(zoo.encoder, device)
    scale = float(zoo.logit_scale)
    n = len(labels)
    batch = min(budget.batch_size, n)
    gen = torch.Generator().manual_seed(int(seed))

    with torch.inference_mode(False), torch.enable_grad():
        # frozen entries come from here, untouched
        on_device = device.type != "cpu"
        fixed = (flat.detach().to(device, torch.float32) if on_device
                 else flat.detach() if inplace and flat.dtype == torch.float32 else flat.detach().float().clone())
        tensors = _trainable_tensors(layout, fixed, frozen_mask)
        leaves = [leaf for _, _, leaf, _ in tensors if leaf is not None]
        opt = _adamw(leaves, lr=lr, weight_decay=budget.weight_decay)
        # the parameters as functional_call takes them: constant across steps (the leaves are updated in
        # place) except for partly frozen tensors, rebuilt per step from their leaf (out of place)
        params = {name: view if leaf is None else leaf for name, view, leaf, part in tensors if part is None}
        partial = [(name, view, leaf, part) for name, view, leaf, part in tensors if part is not None]
        params.update(buffers)
        order, cursor = torch.randperm(n, generator=gen), 0
        with module_lock(zoo.encoder):
            for step in range(steps):
                if cursor + batch > n:                          # a new epoch: a fresh seeded permutation
                    order, cursor = torch.randperm(n, generator=gen), 0
                idx = order[cursor:cursor + batch].to(device)
                cursor += batch
                for group in opt.param_groups:
                    group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * step / steps))
                for name, view, leaf, part in partial:
                    params[name] = view.reshape(-1).index_put((part,), leaf).view(view.shape)  # out of place
                with mixed_precision(device, precision):
                    feats = evaluate.features(zoo.encoder, params, images[idx])
                feats = F.normalize(feats.float(), dim=-1)
                logits = scale * feats @ heads.T
                logits = logits.masked_fill(column_task[None, :] != task_index[idx, None], float("-inf"))
                loss = F.cross_entropy(logits, targets[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if progress is not None:
                    progress((step + 1) / steps)
        out = fixed  # our own copy: the trained entries are written into it (no further [P] clone)
        for (name, view, leaf, part), (a, b) in zip(tensors, zip(layout.offsets, layout.offsets[1:])):
            if leaf is not None:
                if part is None:
                    out[a:b] = leaf.detach().reshape(-1)
                else:
                    out[a:b][part] = leaf.detach()
        if on_device:
            out = flat.copy_(out) if inplace and flat.dtype == torch.float32 else out.cpu()
    return out.to(flat.dtype)


def _adamw(leaves: list[torch.Tensor], **kw) -> torch.optim.AdamW:
    """AdamW with the fused kernel: one pass over each tensor per step instead of a dozen elementwise ops
    (on the tiny zoo the optimiser steps take a third of their former time, ~5% of a realignment; on the
    CPU since torch 2.4). The same update up to float rounding; the per-tensor loop where the build has
    no fused kernel."""
    try:
        return torch.optim.AdamW(leaves, fused=True, **kw)
    except (RuntimeError, ValueError):  # e.g. torch 2.3 on the CPU
        return torch.optim.AdamW(leaves, **kw)


def _trainable_tensors(layout: ParamLayout, fixed: torch.Tensor, frozen_mask: torch.Tensor):
    """Per parameter tensor: (name, view of `fixed`, trainable leaf or None, index of trainable entries or None).

    A wholly frozen tensor is a constant view (no gradient at all); a wholly trainable one is one
    leaf of its own (gradients per tensor: backward never builds [P]-sized zeros to scatter slices
    of one flat vector into, which cost more than the whole forward pass on the tiny zoo); a partly
    frozen one trains only its unfrozen entries, put into a copy of the view (out of place).
    """
    out = []
    frozen_mask = frozen_mask.to(fixed.device)
    for name, view, (a, b) in zip(layout.names, layout.unflatten(fixed).values(), zip(layout.offsets, layout.offsets[1:])):
        frozen = frozen_mask[a:b]
        if bool(frozen.all()):
            out.append((name, view, None, None))
        elif not bool(frozen.any()):
            out.append((name, view, view.detach().clone().requires_grad_(True), None))
        else:
            part = (~frozen).nonzero().squeeze(1)
            out.append((name, view, view.detach().reshape(-1)[part].clone().requires_grad_(True), part))
    return out
