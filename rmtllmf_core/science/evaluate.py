"""Evaluation: per-task accuracy, normalised accuracy, the weight-disentanglement error (paper
eq. 7-8) and the logit-ratio hypothesis test (paper eq. 9-12).

Every model here is a flat parameter vector [P] of the image encoder (see `taskvec.ParamLayout`).
An `Evaluator` is built once per (zoo, tasks, samples, split) and runs the zoo's *own* encoder
(`zoo.model.features`) with the flat vector's views as parameters: no copy of the model per call,
and one batched forward pass for all tasks under `torch.inference_mode`.

On a GPU (`compute_device`: $RMTLLMF_DEVICE) the evaluation images and heads live on the device, the
flat vector is copied there per call, and the forward pass runs under bf16 autocast; logits come
back to the CPU as float32. The perturbation and fusion stay on the CPU (seeded CPU generators), so
a GPU changes only the evaluation's and realignment's rounding, and the cache keeps their results apart.
"""
from __future__ import annotations

import contextlib
import math
import os
import threading
from functools import lru_cache
import weakref
from typing import Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F

from ..errors import InputError
from .taskvec import ParamLayout
from ..zoo.model import _pools_class_token, features  # noqa: F401 (the encoder's forward pass lives with the zoo)
from ..zoo.types import Zoo

Logits = Mapping[str, torch.Tensor]

# functional_call swaps a module's parameters for the duration of the call, so two threads (two
# app sessions) running the same encoder at once would see each other's weights: one lock per module.
_LOCKS: "weakref.WeakKeyDictionary[torch.nn.Module, threading.RLock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


DEVICE_ENV = "RMTLLMF_DEVICE"


def compute_device(name: str | None = None) -> torch.device:
    """The device of evaluation and realignment: `name`, else $RMTLLMF_DEVICE, else cpu.
    'auto' takes the first GPU when torch sees one."""
    name = (name if name is not None else os.environ.get(DEVICE_ENV, "cpu")).strip().lower() or "cpu"
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name != "cpu" and not name.startswith("cuda"):
        raise InputError(DEVICE_ENV, f"cpu, cuda, cuda:N or auto; got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(DEVICE_ENV, f"{name!r} requested but torch sees no GPU; use cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise InputError(DEVICE_ENV, f"cpu, cuda, cuda:N or auto; got {name!r}") from None


def device_tag(device: torch.device) -> str:
    """What a result computed on `device` is keyed by beside the scenario ('' on the CPU: the reference)."""
    return "" if device.type == "cpu" else f"{device.type}/amp_bf16"


def autocast(device: torch.device):
    """bf16 autocast on a GPU (the forward passes of evaluation and realignment); nothing on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def device_buffers(module: torch.nn.Module, device: torch.device) -> dict[str, torch.Tensor]:
    """The module's buffers on `device` (functional_call takes them with the parameters; the module
    itself stays where the zoo loaded it, on the CPU: no copy of the model on the device)."""
    if device.type == "cpu":
        return {}
    return {n: b.to(device) for n, b in module.named_buffers()}


def module_lock(module: torch.nn.Module) -> "threading.RLock | contextlib.nullcontext":
    """The lock that serialises every functional call on `module` (shared with `defense.realign`). None is
    needed where `features` computes the encoder's forward pass itself (a plain open_clip ViT,
    `_vit_features`: it swaps no parameters), so evaluations and realignments of one zoo can run side by
    side (`pipeline._branches`)."""
    if _pools_class_token(module):
        return contextlib.nullcontext()
    with _LOCKS_GUARD:
        lock = _LOCKS.get(module)
        if lock is None:
            lock = _LOCKS[module] = threading.RLock()
        return lock


def encode(encoder: torch.nn.Module, layout: ParamLayout, flat: torch.Tensor, images: torch.Tensor,
           batch_size: int | None = None, buffers: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Unit-norm image features [n, D] of `encoder` with parameters `flat` (no copy of the model),
    on the device of `flat` and `images` (with the encoder's `buffers` there: `device_buffers`)."""
    if flat.shape != (layout.numel,):
        raise InputError("flat", f"expected a flat parameter vector of shape [{layout.numel}], got {list(flat.shape)}")
    params = {**layout.unflatten(flat), **(buffers or {})}
    step = batch_size or max(len(images), 1)
    with module_lock(encoder), autocast(flat.device):
        feats = [features(encoder, params, images[i:i + step]).float() for i in range(0, len(images), step)]
    return F.normalize(torch.cat(feats), dim=-1)


class Evaluator:
    """Fixed evaluation data for some tasks of a zoo, and fast accuracy of any flat encoder on it.

    Holds the first `samples_per_task` samples of `split` of every task, concatenated (task blocks
    are contiguous, in the order of `tasks`), their labels, and each task's frozen head. Logits of
    sample x of task t are `logit_scale * <f(x), head_t[c]>` with f(x) the unit-norm feature.
    `batch_size` caps the images per forward pass (None: all at once). The default 256 is faster than
    one big batch on CPU (activations stay in cache: 8 x 200 images through the tiny zoo's encoder
    took 1.1 s in chunks of 100-400 against 2.1 s in one, one contended core).
    """

    def __init__(self, zoo: Zoo, tasks: Sequence[str], samples_per_task: int, split: str = "test",
                 *, batch_size: int | None = 256, device: torch.device | str = "cpu"):
        tasks = list(zoo.check_tasks(tasks))
        if len(set(tasks)) != len(tasks):
            raise InputError("tasks", "each task at most once")
        if samples_per_task < 1:
            raise InputError("evaluation.samples_per_task", "at least 1")
        self.zoo = zoo
        self.device = torch.device(device)
        self.tasks = tuple(tasks)
        self.split = split
        self.batch_size = batch_size
        self.layout = ParamLayout.from_state(zoo.base_state)
        self.logit_scale = float(zoo.logit_scale)
        images, labels, self.slices = [], {}, {}
        start = 0
        for t in tasks:
            x, y = zoo.split(t, split, samples_per_task)
            images.append(x.float())
            labels[t] = y.long()
            self.slices[t] = slice(start, start + len(y))
            start += len(y)
        self.images = torch.cat(images).to(self.device)
        self.labels: dict[str, torch.Tensor] = labels
        self.task_index = torch.repeat_interleave(torch.arange(len(tasks)), torch.tensor([len(labels[t]) for t in tasks]))
        self.heads = {t: zoo.heads[t].float().to(self.device) for t in tasks}
        self.buffers = device_buffers(zoo.encoder, self.device)

    def _subset(self, tasks: Iterable[str] | None) -> tuple[str, ...]:
        if tasks is None:
            return self.tasks
        tasks = tuple(tasks)
        unknown = [t for t in tasks if t not in self.slices]
        if unknown:
            raise InputError("tasks", f"{unknown} not in this evaluator's tasks {list(self.tasks)}")
        return tasks

    @torch.inference_mode()
    def logits(self, flat: torch.Tensor, tasks: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """task -> logits [n, C] of the encoder `flat` on that task's samples, each with its own head.

        One forward pass over the samples of all requested tasks (default: all), then each task's head
        on its own block of features.
        """
        tasks = self._subset(tasks)
        if tasks == self.tasks:
            images, blocks = self.images, self.slices
        else:  # only the requested tasks' samples go through the encoder
            images = torch.cat([self.images[self.slices[t]] for t in tasks])
            sizes = [self.slices[t].stop - self.slices[t].start for t in tasks]
            bounds = [0, *torch.tensor(sizes).cumsum(0).tolist()]
            blocks = {t: slice(a, b) for t, a, b in zip(tasks, bounds, bounds[1:])}
        feats = encode(self.zoo.encoder, self.layout, flat.detach().to(self.device, torch.float32), images,
                       self.batch_size, self.buffers)
        return {t: (self.logit_scale * feats[blocks[t]] @ self.heads[t].T).cpu() for t in tasks}

    def predictions(self, flat: torch.Tensor, tasks: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """task -> predicted class [n] (argmax of the logits)."""
        return {t: z.argmax(dim=1) for t, z in self.logits(flat, tasks).items()}

    def accuracy_from_predictions(self, predictions: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """task -> fraction of this evaluator's samples of that task whose prediction is the label."""
        return {t: float((p == self.labels[t]).float().mean()) for t, p in predictions.items()}

    def accuracy(self, flat: torch.Tensor, tasks: Iterable[str] | None = None) -> dict[str, float]:
        """task -> accuracy of the encoder `flat` on that task (a fraction in [0, 1])."""
        return self.accuracy_from_predictions(self.predictions(flat, tasks))


def normalized(acc: Mapping[str, float], reference: Mapping[str, float]) -> dict[str, float]:
    """task -> acc / reference (the paper's normalised accuracy: divided by the individually
    fine-tuned accuracy). A task missing from, or zero in, `reference` is an error."""
    out = {}
    for t, a in acc.items():
        ref = reference.get(t)
        if ref is None or not ref > 0:
            raise InputError("reference", f"task {t!r} needs a positive reference accuracy, got {ref}")
        out[t] = float(a) / float(ref)
    return out


def average(values: Mapping[str, float]) -> float:
    """Plain mean over tasks (every task weighs the same, as in the paper's average)."""
    if not values:
        raise InputError("values", "at least one task")
    return float(sum(values.values()) / len(values))


# ---------------------------------------------------------------- weight disentanglement (eq. 7-8)

def disagreement(reference: Mapping[str, torch.Tensor], predictions: Mapping[str, torch.Tensor]) -> float:
    """Mean over tasks of the fraction of that task's samples where the two predictions differ.

    This is the paper's WDE xi (eq. 7) with the indicator distance (eq. 8), *divided by the number
    of tasks N*: eq. 7 sums the per-task expectations, which grows with N; the mean lies in [0, 1]
    and compares across N. Multiply by N for the paper's sum.
    """
    if not reference:
        raise InputError("reference", "at least one task")
    missing = [t for t in reference if t not in predictions]
    if missing:
        raise InputError("predictions", f"lacks task(s) {missing}")
    rates = []
    for t, ref in reference.items():
        pred = predictions[t]
        if pred.shape != ref.shape:
            raise InputError("predictions", f"task {t!r}: shape {list(pred.shape)} != {list(ref.shape)}")
        rates.append(float((pred != ref).float().mean()) if ref.numel() else 0.0)
    return sum(rates) / len(rates)


def weight_disentanglement_error(evaluator: Evaluator, base_flat: torch.Tensor, task_flats: torch.Tensor,
                                 lambda_individual: float | Sequence[float] | torch.Tensor,
                                 fused_flat: torch.Tensor) -> float:
    """WDE (eq. 7-8), normalised to [0, 1]: the mean over tasks i of the rate at which
    f(x; base + lambda_i tau_i) and f(x; fused) disagree on x from task i (see `disagreement`).

    `task_flats` [T, P] are the task vectors tau_i in the order of `evaluator.tasks`;
    `lambda_individual` is one scaling for all or one per task (1.0: the individually fine-tuned models).
    0 when the fused model predicts like each individual one on its own task.
    """
    tasks = evaluator.tasks
    if task_flats.dim() != 2 or task_flats.shape[0] != len(tasks):
        raise InputError("task_flats", f"expected [{len(tasks)}, P] (one row per evaluator task), got {list(task_flats.shape)}")
    lam = torch.as_tensor(lambda_individual, dtype=task_flats.dtype).reshape(-1)
    if lam.numel() == 1:
        lam = lam.expand(len(tasks))
    if lam.numel() != len(tasks):
        raise InputError("lambda_individual", f"one value or one per task ({len(tasks)}), got {lam.numel()}")
    individual = {}
    for i, t in enumerate(tasks):  # each individual model only on its own task's samples
        individual.update(evaluator.predictions(base_flat + lam[i] * task_flats[i], [t]))
    return disagreement(individual, evaluator.predictions(fused_flat))


# ---------------------------------------------------------------- hypothesis test (eq. 9-12)

def _paired(undisturbed: Logits | torch.Tensor, disturbed: Logits | torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Matching float64 [n, C] blocks, one per task for dicts (classes may differ across tasks)."""
    if isinstance(undisturbed, torch.Tensor) != isinstance(disturbed, torch.Tensor):
        raise InputError("logits", "give both as tensors or both as task -> tensor dicts")
    if isinstance(undisturbed, torch.Tensor):
        undisturbed, disturbed = {"": undisturbed}, {"": disturbed}
    if set(undisturbed) != set(disturbed):
        raise InputError("logits_disturbed", f"tasks {sorted(disturbed)} != {sorted(undisturbed)}")
    pairs = []
    for t in undisturbed:
        z_u, z_d = undisturbed[t], disturbed[t]
        if z_u.shape != z_d.shape or z_u.dim() != 2:
            raise InputError("logits_disturbed", f"task {t!r}: expected two [n, C] tensors of one shape, "
                             f"got {list(z_u.shape)} and {list(z_d.shape)}")
        if z_u.shape[1] < 2:
            raise InputError("logits", "the test needs at least 2 classes")
        pairs.append((z_u.double(), z_d.double()))
    return pairs


def _centred(z_u: torch.Tensor, z_d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centred undisturbed logits, the centred disturbance dz, and the undisturbed top-1 margin."""
    cu = z_u - z_u.mean(dim=1, keepdim=True)
    dz = (z_d - z_d.mean(dim=1, keepdim=True)) - cu
    top2 = cu.topk(2, dim=1).values
    return cu, dz, top2[:, 0] - top2[:, 1]


def logit_deviation(z_u: torch.Tensor, z_d: torch.Tensor) -> torch.Tensor:
    """|R(x) - 1| per sample [n], R the logit ratio of eq. 9-10 extended to logit vectors.

    For one logit, |z_u/z_d - 1| = |z_d - z_u| / |z_d|, which to first order (eq. 10) is
    |J dtheta| / |z_u|. For C logits we use the vector form ||dz|| / ||z_u|| on *centred* logits
    (each row minus its mean): softmax and argmax ignore a common shift, and CLIP logits carry a
    large one that would otherwise hide every change. A zero undisturbed row gives inf (0 if dz = 0).
    """
    cu, dz, _ = _centred(z_u.double(), z_d.double())
    num, den = dz.norm(dim=1), cu.norm(dim=1)
    return torch.where(num == 0, torch.zeros_like(num), num / den)


@lru_cache(maxsize=256)
def chi2_quantile(p: float, dof: int) -> float:
    """The p-quantile of chi-square with `dof` degrees of freedom, by bisection on its CDF
    gammainc(dof/2, x/2) in float64 (torch only: scipy.stats costs seconds to import)."""
    half = torch.tensor(dof / 2.0, dtype=torch.float64)
    lo, hi = 0.0, float(dof) + 10.0 * math.sqrt(2.0 * dof) + 50.0  # far beyond any p < 1 - 1e-12
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if float(torch.special.gammainc(half, torch.tensor(mid / 2.0, dtype=torch.float64))) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * hi:
            break
    return 0.5 * (lo + hi)


def _null_quantile(classes: int, significance: float) -> float:
    """sqrt(q / (C - 1)), q the (1 - alpha) quantile of chi-square with C - 1 degrees of freedom."""
    return math.sqrt(chi2_quantile(1.0 - significance, classes - 1) / (classes - 1))


def rejection_threshold(z_u: torch.Tensor, significance: float) -> torch.Tensor:
    """The per-sample threshold T(x) on |R(x) - 1| (derivation in `rejection_rate`)."""
    cu, _, margin = _centred(z_u.double(), z_u.double())
    return margin / (math.sqrt(2.0) * cu.norm(dim=1)) * _null_quantile(z_u.shape[1], significance)


def rejections(z_u: torch.Tensor, z_d: torch.Tensor, significance: float) -> torch.Tensor:
    """Boolean [n]: H0 rejected for each sample, i.e. |R(x) - 1| > T(x), written without divisions
    (ties and zero rows are safe) as ||dz(x)|| > m(x) / sqrt(2) * sqrt(q_{1-alpha} / (C - 1))."""
    _, dz, margin = _centred(z_u.double(), z_d.double())
    return dz.norm(dim=1) > margin / math.sqrt(2.0) * _null_quantile(z_u.shape[1], significance)


def rejection_rate(logits_undisturbed: Logits | torch.Tensor, logits_disturbed: Logits | torch.Tensor,
                   significance: float) -> float:
    """Fraction of samples for which H0, "the noise does not significantly alter the prediction", is
    rejected at level alpha = `significance`: |R(x) - 1| > T(x) (paper eq. 9-12), pooled over all
    samples of all tasks. Inputs: two [n, C] tensors, or two task -> [n, C] dicts (same tasks).

    Statistic: |R(x) - 1| = ||dz(x)|| / ||z_u(x)|| on centred logits (`logit_deviation`).

    Null model (the Gaussian first-order model of eq. 10-11): the disturbance dz = J dtheta is
    i.i.d. N(0, sigma^2) per logit, so after centring ||dz||^2 / sigma^2 ~ chi-square(C - 1).
    The smallest centred disturbance that can change the prediction has norm m(x) / sqrt(2), m the
    undisturbed top-1 margin. H0 is "sigma(x) <= sigma_0(x)", the level at which the expected
    disturbance norm, sqrt(C - 1) sigma, reaches that distance: sigma_0 = m / sqrt(2 (C - 1)),
    noise that on average stays inside the decision region. The level-alpha test of this H0 rejects
    when ||dz||^2 / sigma_0^2 exceeds the chi-square(C - 1) quantile q_{1-alpha}, which on the ratio
    statistic is the threshold
        T(x) = m(x) / (sqrt(2) ||z_u(x)||) * sqrt(q_{1-alpha} / (C - 1)),
    i.e. the prediction-flipping distance in ratio units times a factor from alpha (for C = 2 the
    factor is the z-score z_{1-alpha/2} of the paper's T = z_beta * sd). At the H0 boundary the
    test rejects a fraction alpha of samples; a larger alpha rejects more.

    Why not the paper's literal T = z_beta * sqrt(Var|R - 1|) with the variance of eq. 11: that
    variance scales with the sum MSE of the very noise under test, so the rejection rate would sit
    near alpha whatever the noise, contradicting eq. 12. Here T depends only on the undisturbed
    logits and alpha, so the rate is exactly 0 for identical models (and for a common shift of all
    logits) and grows monotonically with the size of the disturbance. It is not a flip count: with
    few classes and small alpha a sample can flip without being rejected, and vice versa.
    """
    if not 0.0 < significance < 0.5:
        raise InputError("evaluation.significance", f"must lie in (0, 0.5), got {significance}")
    rejected = total = 0
    for z_u, z_d in _paired(logits_undisturbed, logits_disturbed):
        rejected += int(rejections(z_u, z_d, significance).sum())
        total += z_u.shape[0]
    if total == 0:
        raise InputError("logits_undisturbed", "no samples")
    return rejected / total
