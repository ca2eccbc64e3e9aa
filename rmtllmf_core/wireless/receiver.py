"""MMSE-SIC receiver, batched over draws: (..., N_R, Q) channels -> per-user SINR, rate, MSE.

Everything runs in *noise-normalised, whitened* coordinates: with C_z = s2 (I + C) (C the jammer
covariance over s2) and any W with W^H W = (I + C)^{-1}, the effective channel is
A = W G / ... with G = H diag(sqrt(p / s2)), so the noise is white and unit-power. Rates and MMSE
filters do not depend on the choice of W.

SIC (PAPER-NOTES sec. 1): users decoded in ascending p_q ||h_q||^2; user q sees those decoded after
it as interference. Let M = I_Q + A^H A with columns in *reverse* decoding order (strongest first)
and M = R^H R its upper Cholesky factor. Then the interference of the user in reversed position
i is exactly the users before it, and
    1 + SINR_i = R_ii^2,   R_i = 2 log R_ii,   MSE_i = 1 / R_ii^2 = exp(-R_i),
(posterior precision of s_i given y and the already decoded s_{>i}), so sum_i R_i = log det M =
log det(I + C_z^{-1} H P H^H): the chain rule holds by construction. No inverse is formed.
"""
from __future__ import annotations

import numpy as np


def hermitian(x):
    """Conjugate transpose of the last two axes, C-contiguous (batched matmul and the
    row-by-row solves run several times faster on contiguous operands)."""
    return np.conj(np.swapaxes(x, -1, -2), order="C")


def sic_order(channel, tx_power_w):
    """Decoding order (weakest p||h||^2 first) and each user's rank in it (0 = decoded first)."""
    strength = np.asarray(tx_power_w) * np.sum(np.abs(channel) ** 2, axis=-2)  # (..., Q)
    order = np.argsort(strength, axis=-1, kind="stable")
    rank = np.argsort(order, axis=-1, kind="stable")
    return order, rank


def _gather_columns(x, idx):
    """x[..., :, idx] per batch element (idx (..., Q))."""
    return np.take_along_axis(x, idx[..., None, :], axis=-1)


def _gather_users(x, idx):
    return np.take_along_axis(x, idx, axis=-1)


def sic_mmse(a, rank, *, with_filters: bool = False):
    """Per-user rate (nats) and MSE, in INPUT order, from the whitened channel a (..., N, Q).

    `rank[..., q]` is user q's SIC rank (0 = decoded first). With `with_filters` also returns the
    feed-forward filters F (..., Q, N) (rows = MMSE-SIC filters in whitened coordinates, input
    order) and the cross-user error covariance E[e e^H] (..., Q, Q), e = s_hat - s, computed from
    the filters as in the notes (not assumed): its diagonal equals the MSEs.
    """
    q = a.shape[-1]
    rev = np.argsort(-rank, axis=-1, kind="stable")  # reversed decoding order: decoded-last first
    a_rev = _gather_columns(a, rev)
    gram = hermitian(a_rev) @ a_rev
    m = gram + np.eye(q)
    lower = np.linalg.cholesky(m)  # M = L L^H, R = L^H
    diag = np.real(np.diagonal(lower, axis1=-2, axis2=-1))
    rate_rev = 2.0 * np.log(diag)
    inv_rev = np.argsort(rev, axis=-1, kind="stable")
    rate = _gather_users(rate_rev, inv_rev)
    mse = np.exp(-rate)
    if not with_filters:
        return rate, mse
    # e = s - s_hat = D^{-1} R (s - m), s_hat = (I - D^{-1} R) s + F y with F = D^{-1} R^{-H} A^H
    # (decision feedback of already decoded users, perfect cancellation).
    upper = hermitian(lower)
    f_rev = np.linalg.solve(lower, hermitian(a_rev)) / diag[..., :, None]  # D^{-1} L^{-1} A^H
    fb_rev = upper / diag[..., :, None]  # D^{-1} R
    # error e = s_hat - s = (F A - D^{-1} R) s + F n ; unit-power independent symbols and noise
    sym_rev = f_rev @ a_rev - fb_rev
    cov_rev = sym_rev @ hermitian(sym_rev) + f_rev @ hermitian(f_rev)
    filters = np.take_along_axis(f_rev, inv_rev[..., :, None], axis=-2)
    cov = np.take_along_axis(np.take_along_axis(cov_rev, inv_rev[..., :, None], axis=-2), inv_rev[..., None, :], axis=-1)
    return rate, mse, filters, cov


def linear_mmse_error_covariance(a):
    """Error covariance (I + A^H A)^{-1} of a joint linear MMSE receiver without SIC (input order).

    For comparison only: under SIC with perfect cancellation the errors of different users are
    uncorrelated (orthogonality principle: e_q is orthogonal to y and to every earlier-decoded
    symbol, hence to every earlier error), so `sic_mmse`'s covariance is diagonal; without SIC the
    users share the residual interference and noise and their errors correlate.
    """
    q = a.shape[-1]
    m = hermitian(a) @ a + np.eye(q)
    lower = np.linalg.cholesky(m)
    inv_lower = np.linalg.solve(lower, np.broadcast_to(np.eye(q), m.shape))
    return hermitian(inv_lower) @ inv_lower
