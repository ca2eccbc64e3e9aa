"""Jammer covariances C_J for every attack, batched over draws, at one budget tr C_J <= P_J.

All functions work in noise-normalised units (powers divided by the thermal s2, channel
G = H diag(sqrt(p / s2))) and return the jammer in eigen-form: an orthonormal basis E (..., N, r)
and the power per eigenmode c (..., r) >= 0, C_J / s2 = E diag(c) E^H. The eigen-form makes the
whitening of C_z = s2 (I + C) free: (I + C)^{-1/2} = I + E diag((1 + c)^{-1/2} - 1) E^H.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .receiver import hermitian

_BISECTION_STEPS = 56  # the log-nu bracket spans < 200: 56 halvings reach ~3e-15


@dataclass(frozen=True)
class Jammer:
    basis: np.ndarray  # (..., N, r), orthonormal columns
    power: np.ndarray  # (..., r), per eigenmode, in units of s2
    info: dict | None = None
    isotropic: bool = False  # basis = I and equal powers (none, white): whitening is a scaling

    def whiten(self, g):
        """(I + C)^{-1/2} G without forming (I + C)."""
        if self.isotropic:
            return g / np.sqrt(1.0 + self.power[..., :1, None])
        shrink = 1.0 / np.sqrt(1.0 + self.power) - 1.0
        return g + self.basis @ (shrink[..., :, None] * (hermitian(self.basis) @ g))

    def covariance(self):
        return (self.basis * self.power[..., None, :]) @ hermitian(self.basis)


def no_jammer(g):
    n = g.shape[-2]
    batch = g.shape[:-2]
    return Jammer(np.broadcast_to(np.eye(n, dtype=complex), batch + (n, n)), np.zeros(batch + (n,)), isotropic=True)


def white(g, budget):
    n = g.shape[-2]
    batch = g.shape[:-2]
    return Jammer(np.broadcast_to(np.eye(n, dtype=complex), batch + (n, n)), np.full(batch + (n,), budget / n), isotropic=True)


def aligned(g_raw_column, budget):
    """Rank-one jammer along one channel direction: C_J = P_J h h^H / ||h||^2 (paper eq. 15)."""
    norm = np.linalg.norm(g_raw_column, axis=-1, keepdims=True)
    # a zero channel has no direction: fall back to the first antenna so the budget is still spent
    fallback = np.zeros_like(g_raw_column)
    fallback[..., 0] = 1.0
    direction = np.where(norm > 0, g_raw_column / np.where(norm > 0, norm, 1.0), fallback)
    return Jammer(direction[..., :, None], np.full(g_raw_column.shape[:-1] + (1,), float(budget)))


def select_user_column(g, user_index):
    """g[..., :, user_index[...]] for a per-draw user index."""
    return np.take_along_axis(g, np.asarray(user_index)[..., None, None], axis=-1)[..., 0]


def strongest_user(channel, tx_power_w):
    """argmax_q p_q ||h_q||^2: the user SIC decodes last (same tie-break as the SIC order)."""
    strength = np.asarray(tx_power_w) * np.sum(np.abs(channel) ** 2, axis=-2)
    return np.argsort(strength, axis=-1, kind="stable")[..., -1]


def worst_sum_rate_noise(eig, budget):
    """Per-mode jamming c_i >= 0, sum c_i = budget, minimising sum log(1 + u_i / (1 + c_i)).

    KKT with the thermal floor (units of s2 = 1): total noise n_i = 1 + c_i equals
    max(1, (u_i/2)(sqrt(1 + 4/(u_i nu)) - 1)); the dual price nu >= 0 is found by bisection on
    log nu, vectorised over all draws at once. Modes with u_i = 0 get nothing (jamming there
    costs power and changes no rate). Returns c with the shape of `eig`.
    """
    u = np.maximum(np.asarray(eig, float), 0.0)
    u_max = u.max(axis=-1, initial=0.0)
    if budget <= 0.0:
        return np.zeros_like(u)
    active = u > 1e-14 * np.maximum(u_max, 1e-300)[..., None]
    u_safe = np.where(active, u, 1.0)

    def spend(nu):
        x = 4.0 / (u_safe * nu[..., None])
        # (u/2)(sqrt(1 + x) - 1) written as 2/(nu (sqrt(1 + x) + 1)): no cancellation for small x
        root = 2.0 / (nu[..., None] * (np.sqrt(1.0 + x) + 1.0))
        return np.where(active, np.maximum(root - 1.0, 0.0), 0.0)

    # bracket: at nu_hi = max u/(1+u) no mode wants noise above the floor; at nu_lo one mode alone
    # already takes more than the budget (its root >= min(1/(2 nu), sqrt(u / (2 nu))))
    total = budget + 1.0
    u_top = np.where(u_max > 0, u_max, 1.0)
    log_hi = np.log(u_top / (1.0 + u_top))
    log_lo = np.log(0.5 * np.minimum(1.0 / (2.0 * total), u_top / (2.0 * total**2)))
    log_lo = np.minimum(log_lo, log_hi)
    for _ in range(_BISECTION_STEPS):  # loop over bisection steps, not draws: each step is vectorised
        mid = 0.5 * (log_lo + log_hi)
        over = spend(np.exp(mid)).sum(axis=-1) > budget
        log_lo = np.where(over, mid, log_lo)
        log_hi = np.where(over, log_hi, mid)
    c = spend(np.exp(log_hi))  # the feasible side (spends <= budget)
    spent = c.sum(axis=-1, keepdims=True)
    # remove the last ~1e-15 relative of bisection slack so tr C_J = P_J exactly
    c = np.where(spent > 0, c * (budget / np.where(spent > 0, spent, 1.0)), c)
    # a budget below the float resolution of the thermal floor (P_J < ~1e-16 s2) vanishes in
    # root - 1; its optimal limit is all of it on the strongest mode (highest price u/(1+u))
    top_only = (spent[..., 0] <= 0) & (u_max > 0)
    if np.any(top_only):
        first = np.zeros_like(u)
        np.put_along_axis(first, np.argmax(u, axis=-1)[..., None], budget, axis=-1)
        c = np.where(top_only[..., None], first, c)
    c = np.where((u_max > 0)[..., None], c, 0.0)
    return c


def worst_sum_rate(g, budget):
    """P1 closed form: C_J shares the eigenvectors of S = G G^H (from an SVD of G)."""
    if budget <= 0.0:
        return no_jammer(g)
    basis, sv, _ = np.linalg.svd(g, full_matrices=False)
    return Jammer(basis, worst_sum_rate_noise(sv**2, budget))
