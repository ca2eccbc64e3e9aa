"""Receiver-side denoisers of received task vectors, one parameter tensor of one user at a time, at a
noise level the base station knows (each user's MSE through the error model: `perturb.tensor_noise_std`).

- **spectral** (Gavish and Donoho): a received matrix Y = X + sigma Z ([m, n], Z with i.i.d. unit
  entries) is rescaled by sigma sqrt(max(m, n)), its singular values y shrunk, and scaled back.
  `frobenius`: the shrinker that is optimal in Frobenius norm for a known noise level (Gavish and
  Donoho, "Optimal Shrinkage of Singular Values", IEEE Trans. IT 2017),
  eta(y) = sqrt((y^2 - beta - 1)^2 - 4 beta) / y above the bulk edge 1 + sqrt(beta), else 0
  (beta = min(m, n) / max(m, n)); `hard`: keep the singular values above lambda*(beta), 4 / sqrt(3)
  for square matrices ("The Optimal Hard Threshold for Singular Values is 4/sqrt(3)", 2014).
  A tensor of more than two axes is read as [shape[0], rest] (a convolution's output channels);
  vectors (biases, LayerNorm) get the scalar Wiener gain instead.
- **norm** (norm calibration, after DisTaC: task-vector norms decide whether a merge works): each
  tensor rescaled so that its energy is the unbiased estimate of the clean energy,
  ||y||^2 - n sigma^2, measured on what was received: what shrinkage took away comes back as scale.
- **drop**: the received tensor discarded (zeros: the fused model keeps the base weights there); with
  a gate on the users' MSE (`defense.receiver_min_mse`), the jammed users' vectors are left out.
- **destripe**: a jammer whose waveform repeats with the transmission's row period puts the same
  error on every row of a matrix (rank one, 1 e^T), which no shrinker removes (it is a strong
  spike). The row mean of a received matrix carries it whole; under white noise alone its energy
  is about n sigma^2 / m plus the clean row mean's. The row mean is removed where its energy exceeds
  STRIPE_DETECTION times the white-noise expectation.

Every function is pure (new tensors); float64 inside, the input's dtype out.
"""
from __future__ import annotations

import math

import torch

SHRINKERS = ("frobenius", "hard")
STRIPE_DETECTION = 9.0  # the row mean's energy over its white-noise expectation that counts as a stripe


def hard_threshold(beta: float) -> float:
    """lambda*(beta): the optimal hard threshold on singular values normalised by sigma sqrt(max(m, n))."""
    return math.sqrt(2 * (beta + 1) + 8 * beta / ((beta + 1) + math.sqrt(beta * beta + 14 * beta + 1)))


def shrink_singular_values(y: torch.Tensor, beta: float, shrinker: str) -> torch.Tensor:
    """The shrunk normalised singular values (see the module docstring)."""
    if shrinker == "hard":
        return torch.where(y > hard_threshold(beta), y, torch.zeros_like(y))
    edge = 1.0 + math.sqrt(beta)
    inner = ((y * y - beta - 1.0) ** 2 - 4.0 * beta).clamp_min(0.0)
    return torch.where(y > edge, inner.sqrt() / y.clamp_min(1e-300), torch.zeros_like(y))


def predicted_spike_loss(x: torch.Tensor | float, beta: float) -> torch.Tensor:
    """The asymptotic Frobenius loss, in normalised units squared, of the optimal shrinker on one
    planted singular value x: x^2 (1 - c^2 c~^2) above the detection threshold beta^(1/4) (c, c~: the
    cosines between the planted and the observed singular vectors), x^2 below it (the spike is lost)."""
    x = torch.as_tensor(x, dtype=torch.float64)
    x2, x4 = x * x, x ** 4
    c2 = (x4 - beta) / (x4 + beta * x2)
    ct2 = (x4 - beta) / (x4 + x2)
    return torch.where(x > beta ** 0.25, x2 * (1 - c2 * ct2), x2)


def as_matrix(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor | None:
    """A flat tensor of `shape` as the matrix a shrinker sees ([shape[0], rest]); None for vectors."""
    if len(shape) < 2 or min(shape[0], x.numel() // max(shape[0], 1)) < 2:
        return None
    return x.reshape(shape[0], -1)


def svd_shrink(y: torch.Tensor, sigma: float, shrinker: str = "frobenius") -> torch.Tensor:
    """Gavish-Donoho shrinkage of the matrix `y` ([m, n]) at the known noise std `sigma` per entry."""
    if not sigma > 0:
        return y.clone()
    a = y.double()
    m, n = a.shape
    big, small = max(m, n), min(m, n)
    scale = sigma * math.sqrt(big)
    u, s, vh = torch.linalg.svd(a, full_matrices=False)
    eta = shrink_singular_values(s / scale, small / big, shrinker) * scale
    return ((u * eta) @ vh).to(y.dtype)


def wiener_gain(energy: float, n: int, sigma: float) -> float:
    """The scalar LMMSE gain of a tensor of `n` entries with measured `energy` and noise std `sigma`."""
    noise = n * sigma * sigma
    signal = max(energy - noise, 0.0)
    return 1.0 if signal + noise <= 0 else signal / (signal + noise)


def denoise_tensor(x: torch.Tensor, shape: tuple[int, ...], sigma: float, *, spectral: str | None = None,
                   norm: bool = False, destripe: bool = False, drop: bool = False) -> torch.Tensor:
    """One user's received tensor (flat, of `shape`) through the receiver's denoisers, in order:
    drop (the vector discarded: zeros, the base model's weights for it), destripe, spectral
    (`spectral`: a SHRINKERS name, or None), norm. Returns a new flat tensor."""
    out = x.detach().to(torch.float64).clone()
    if drop:
        return out.zero_().to(x.dtype)
    if not sigma > 0:
        return out.to(x.dtype)
    n = out.numel()
    if destripe:
        mat = as_matrix(out, shape)
        if mat is not None:
            mean = mat.mean(dim=0, keepdim=True)        # the row-periodic part, with the clean row mean
            expected = mat.shape[1] * sigma * sigma / mat.shape[0]
            if float(mean.square().sum()) > STRIPE_DETECTION * expected:
                mat -= mean
    received_energy = float(out.square().sum())
    if spectral is not None:
        mat = as_matrix(out, shape)
        if mat is not None:
            mat.copy_(svd_shrink(mat, sigma, spectral))
        else:
            out.mul_(wiener_gain(float(out.square().sum()), n, sigma))
    if norm:
        clean_energy = max(received_energy - n * sigma * sigma, 0.0)
        now = float(out.square().sum())
        out.mul_(math.sqrt(clean_energy / now) if now > 0 else 0.0)
    return out.to(x.dtype)
