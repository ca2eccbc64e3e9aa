"""Whole-[T, P] reference forms of the engine's streaming functions, for the tests only: each is a
few lines over the same code the engine runs slice by slice (fusion's per-tensor Grams and masks,
perturb's per-tensor error std), expanded to the whole stack so a test can compare closed forms."""
from __future__ import annotations

import math

import torch

from rmtllmf_core.science.fusion import _stack_slices, kth_largest_sliced, layer_gram_sliced, layer_weights_from_gram
from rmtllmf_core.science.perturb import (SCALES, _check_choice, _check_mse, _tensor_sizes,
    reference_squares, tensor_noise_std)
from rmtllmf_core.science.taskvec import ParamLayout, check_stack


def layer_gram(vectors: torch.Tensor, layout: ParamLayout) -> torch.Tensor:
    """[L, T, T] float64 Gram matrices of the task vectors restricted to each layer."""
    return layer_gram_sliced(_stack_slices(vectors, layout), layout, vectors.shape[0])


def layer_weights(vectors: torch.Tensor, layout: ParamLayout) -> torch.Tensor:
    """[T, L] layer-aware weights w_tl (float64) of the module docstring; L as in :func:`layer_ids`."""
    return layer_weights_from_gram(layer_gram(vectors, layout))


def magnitude_mask(vectors: torch.Tensor, density: float) -> torch.Tensor:
    """Bool [T, P]: per row, the round(density * P) entries of largest magnitude (ties at the threshold kept)."""
    n = vectors.shape[1]
    k = min(n, max(1, int(math.floor(density * n + 0.5))))
    mags = vectors.abs()
    if k == n:
        return torch.ones_like(mags, dtype=torch.bool)
    return mags >= kth_largest(mags, k)


def kth_largest(mags: torch.Tensor, k: int) -> torch.Tensor:
    """[T, 1] exact k-th largest of each row of a non-negative float32 [T, n] (1 <= k <= n)."""
    return kth_largest_sliced(lambda i: mags, 1, mags.shape[0], k, absolute=False)[0]


def elect_signs(vectors: torch.Tensor) -> torch.Tensor:
    """Bool [T, P]: entries whose sign is the elected one (sign of the column sum; zeros never agree)."""
    elected = torch.sign(vectors.sum(0, keepdim=True))
    return vectors * elected > 0


def noise_std(clean: torch.Tensor, mse, layout: ParamLayout, scale: str, gain_db: float = 0.0) -> torch.Tensor:
    """Per-element std of the Gaussian error model: ``sqrt(mse_q * 10^(-gain_db/10)) * scale_q``.

    ``absolute``: scale 1, returns [T, 1]. ``per_vector``: rms of the whole tau_q, returns [T, 1].
    ``per_tensor``: rms of the tensor of tau_q the element belongs to; ``peak``: that tensor's largest
    magnitude; both return [T, P]. The result broadcasts against ``clean``. :func:`noise_std_per_tensor`
    is the same without the [T, P] expansion (what the slice-wise stages use).
    """
    std = noise_std_per_tensor(clean, mse, layout, scale, gain_db)
    if scale in ("absolute", "per_vector"):
        return std[:, :1].contiguous() if std.shape[1] else torch.zeros(std.shape[0], 1)
    return torch.repeat_interleave(std, _tensor_sizes(layout), dim=1)


def noise_std_per_tensor(clean: torch.Tensor, mse, layout: ParamLayout, scale: str, gain_db: float = 0.0) -> torch.Tensor:
    """[T, n_tensors] float32: the error std of every element of tensor i of tau_q (see :func:`noise_std`)."""
    clean = check_stack(clean, layout, "perturb.clean")
    mse = _check_mse(mse, clean.shape[0])
    scale = _check_choice(scale, SCALES, "perturb.scale")
    power = reference_squares(clean, layout, scale) if scale != "absolute" else None
    return tensor_noise_std(power, mse, layout, scale, gain_db)
