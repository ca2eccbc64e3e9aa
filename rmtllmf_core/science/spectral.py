"""The singular-value merges, on one weight matrix at a time: ``X`` is ``[T, m, n]``, the T task
matrices of one 2-D parameter tensor; each function returns the merged ``[m, n]`` before the
scaling lambda. Written from the papers (and read against FusionBench's implementations):

- **TSV-M** (Gargiulo et al., "Task Singular Vectors: Reducing Task Interference in Model Merging",
  CVPR 2025): keep each task matrix's top ``k = max(1, r // T)`` singular triples
  (``r = min(m, n)``), stack the left vectors ``[U_1k ... U_Tk]`` and the right ones, replace each
  stack by its nearest matrix with orthonormal columns (its polar factor: ``P Q^T`` of its SVD
  ``P S Q^T``), and recombine with the kept singular values. Task matrices whose row and column
  spaces are mutually orthogonal, each within the rank budget, come back as their plain sum.
- **Iso-C** (Marczak et al., "No Task Left Behind: Isotropic Model Merging with Common and
  Task-Specific Subspaces", ICML 2025): the sum of the task matrices with all its singular values
  replaced by their mean (a flat spectrum: every direction of the common subspace equally loud).
- **Iso-CTS** (same paper): the top ``k_c`` singular directions of the sum (``k_c = r - T s`` with
  ``s = round((r - int(0.8 r)) / T)`` per task) plus, for each task, the top ``s`` directions of what
  the common subspace leaves of it (``X_t - U_c U_c^T X_t``), orthonormalised as in TSV-M and given
  one flat singular value, the mean of the stacked ones.

Exact zero singular values are dropped before stacking (their vectors are arbitrary and would only
perturb the polar factor). All three are homogeneous of degree one (``f(c X) = c f(X)`` for c > 0),
so lambda scales them as it scales task arithmetic. Float64 below 2^20 entries, else float32.
"""
from __future__ import annotations

import torch

COMMON_SPACE_FRACTION = 0.8  # Iso-CTS: the share of the rank given to the common subspace (the paper's)


def _svd(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.linalg.svd(x, full_matrices=False)


def polar(a: torch.Tensor) -> torch.Tensor:
    """The nearest matrix to ``a`` with orthonormal columns (or rows, when wide): ``P Q^T`` of ``a = P S Q^T``."""
    p, _, qh = _svd(a)
    return p @ qh


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x[0].numel() < (1 << 20) else torch.float32


def _nonzero(s: torch.Tensor) -> torch.Tensor:
    return s > (s[:1] * 1e-12 if s.numel() else s)


def tsv_m(x: torch.Tensor) -> torch.Tensor:
    """TSV-M of ``x`` ([T, m, n]) -> [m, n] (module docstring)."""
    t, m, n = x.shape
    dt = _work_dtype(x)
    k = max(1, min(m, n) // t)
    us, ss, vhs = [], [], []
    for xt in x.to(dt):
        u, s, vh = _svd(xt)
        keep = _nonzero(s[:k])
        us.append(u[:, :k][:, keep])
        ss.append(s[:k][keep])
        vhs.append(vh[:k][keep])
    s_cat = torch.cat(ss)
    if s_cat.numel() == 0:
        return torch.zeros(m, n, dtype=x.dtype)
    u_cat, vh_cat = polar(torch.cat(us, 1)), polar(torch.cat(vhs, 0))
    return ((u_cat * s_cat) @ vh_cat).to(x.dtype)


def iso_c(x: torch.Tensor) -> torch.Tensor:
    """Iso-C of ``x`` ([T, m, n]) -> [m, n]: the sum's singular values flattened to their mean."""
    total = x.to(_work_dtype(x)).sum(0)
    u, s, vh = _svd(total)
    return (s.mean() * (u @ vh)).to(x.dtype)


def iso_cts_sizes(r: int, t: int, common_fraction: float = COMMON_SPACE_FRACTION) -> tuple[int, int]:
    """(k_c, s): the common subspace's size and each task's, with ``k_c + t s = r``."""
    s = round((r - int(r * common_fraction)) / t)
    if t * s > r:
        s = r // t
    return r - t * s, s


def iso_cts(x: torch.Tensor, common_fraction: float = COMMON_SPACE_FRACTION) -> torch.Tensor:
    """Iso-CTS of ``x`` ([T, m, n]) -> [m, n] (module docstring)."""
    t, m, n = x.shape
    xd = x.to(_work_dtype(x))
    kc, s = iso_cts_sizes(min(m, n), t, common_fraction)
    u, sv, vh = _svd(xd.sum(0))
    uc, sc, vhc = u[:, :kc], sv[:kc], vh[:kc]
    us, ss, vhs = [], [], []
    if s > 0:
        for xt in xd:
            ut, st, vht = _svd(xt - uc @ (uc.T @ xt))  # what the common subspace leaves of task t
            keep = _nonzero(st[:s])
            us.append(ut[:, :s][:, keep])
            ss.append(st[:s][keep])
            vhs.append(vht[:s][keep])
    s_cat = torch.cat([*ss, sc])
    if s_cat.numel() == 0 or float(s_cat.max()) == 0.0:
        return torch.zeros(m, n, dtype=x.dtype)
    u_cat, vh_cat = polar(torch.cat([*us, uc], 1)), polar(torch.cat([*vhs, vhc], 0))
    return (s_cat.mean() * (u_cat @ vh_cat)).to(x.dtype)


MERGES = {"tsv": tsv_m, "iso": iso_c, "iso_cts": iso_cts}
