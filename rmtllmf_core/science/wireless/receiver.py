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


# Above this signal-to-noise scale (max diagonal of A^H A) the Cholesky factor of I + A^H A would
# lose more than ~1e-8 relative accuracy in its smallest pivots (>= 1): use QR instead.
_GRAM_SCALE_LIMIT = 1e8


def gram_cholesky(a, gram=None):
    """Lower L with L L^H = I + A^H A, batched over leading axes.

    Normally a Cholesky factorisation of the Gram matrix (fast). Draws whose scale exceeds
    _GRAM_SCALE_LIMIT (huge SNR: the identity would drown in rounding, and with Q > N_R the Gram
    matrix is numerically singular) are factorised as the R of a QR decomposition of the stacked
    [A; I] instead, which never forms A^H A (R^H R = A^H A + I exactly in exact arithmetic).
    """
    q = a.shape[-1]
    if gram is None:  # callers that already hold A^H A pass it
        gram = hermitian(a) @ a
    scale = np.max(np.real(np.diagonal(gram, axis1=-2, axis2=-1)), axis=-1, initial=0.0)
    big = scale > _GRAM_SCALE_LIMIT
    if not np.any(big):
        return np.linalg.cholesky(gram + np.eye(q))
    batch = a.shape[:-2]
    flat_a = a.reshape((-1,) + a.shape[-2:])
    flat_big = np.broadcast_to(big, batch).reshape(-1)
    lower = np.empty((flat_a.shape[0], q, q), dtype=np.result_type(a, complex))
    if np.any(~flat_big):
        lower[~flat_big] = np.linalg.cholesky(gram.reshape((-1, q, q))[~flat_big] + np.eye(q))
    hard = flat_a[flat_big]
    stacked = np.concatenate([hard, np.broadcast_to(np.eye(q, dtype=hard.dtype), (hard.shape[0], q, q))], axis=-2)
    r = np.linalg.qr(stacked, mode="r")
    diag = np.diagonal(r, axis1=-2, axis2=-1)
    phase = np.where(np.abs(diag) > 0, diag / np.where(np.abs(diag) > 0, np.abs(diag), 1.0), 1.0)
    r = np.conj(phase)[..., :, None] * r  # unit-modulus row scaling: positive real diagonal
    lower[flat_big] = hermitian(r)
    return lower.reshape(batch + (q, q))


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
    rev = np.argsort(-rank, axis=-1, kind="stable")  # reversed decoding order: decoded-last first
    a_rev = _gather_columns(a, rev)
    lower = gram_cholesky(a_rev)  # M = I + A^H A = L L^H, R = L^H
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
    lower = gram_cholesky(a)
    inv_lower = np.linalg.solve(lower, np.broadcast_to(np.eye(q), lower.shape))
    return hermitian(inv_lower) @ inv_lower
