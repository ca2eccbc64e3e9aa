"""Numerical worst-case jammer: min over {C_J Hermitian PSD, tr C_J <= P_J} of a rate objective.

Objectives (users at full power, SIC order fixed by p ||h||^2 as in the paper):
  "sum"  -> sum_q R_q = log det(I + C_z^{-1} S)            (P1; cross-checks the closed form)
  "user" -> R_k for one chosen user k                        (P2 per user; cross-checks eq. 15)
  "max"  -> max_q R_q                                        (P2 as posed; attack `worst_max_user_numeric`)
Each R_q = log det(X_q + g_q g_q^H) - log det X_q is a Gaussian mutual information with noise
X_q = C_z + (interference), convex in C_z; a max of convex functions is convex, so every local
minimum found here is global. The max is smoothed by a log-sum-exp whose temperature rises
during the run (error <= log(Q) / t).

Method, vectorised over all draws (the Python loop is over iterations, never draws):
- reduce to the signal subspace: with V an orthonormal basis of range(G), restricting C_J to
  V Phi V^H loses nothing (the Schur complement of any other C_J's cross terms only *lowers* the
  noise seen in range(G)), so the unknown is Phi (m x m, m = min(N_R, Q));
- Burer-Monteiro parametrisation Phi = P_J B B^H / ||B||_F^2: PSD and full budget by
  construction, so no eigen-decomposition per step (rates fall with C_J: the optimum spends all);
- gradient of R_q w.r.t. C is -(1 + SINR_q) f_q f_q^H with f_q the MMSE-SIC filter, obtained for
  all users at once from two Cholesky factors and triangular solves;
- L-BFGS (memory 4) on B, vectorised over draws: every draw keeps its own curvature pairs and
  step; a trial that raises the objective is rejected and that draw's step halved (monotone).
  The temperature rises geometrically from t_min to t_max over the iterations (continuation).
A certificate bounds the remaining suboptimality: the Frank-Wolfe gap for "sum"/"user", and for
"max" a Lagrangian lower bound maximised over the users' weights (see `_dual_gap`).
"""
from __future__ import annotations

import numpy as np

from .attacks import Jammer, worst_sum_rate_noise
from .receiver import gram_cholesky, hermitian

# dot products over the last axis (np.vecdot is numpy >= 2; requirements admit 1.26)
_vdot = getattr(np, "vecdot", None) or (lambda a, b: np.einsum("...i,...i->...", a, b))

DEFAULT_ITERATIONS = 20
LBFGS_MEMORY = 4


def _solve_lower(lower, rhs):
    """lower^{-1} rhs for a batch of small lower-triangular matrices (loop over rows, not draws)."""
    m = lower.shape[-1]
    x = np.empty(np.broadcast_shapes(lower.shape[:-2], rhs.shape[:-2]) + rhs.shape[-2:], dtype=np.result_type(lower, rhs))
    for i in range(m):
        acc = rhs[..., i, :]
        if i:
            acc = acc - (lower[..., i : i + 1, :i] @ x[..., :i, :])[..., 0, :]
        x[..., i, :] = acc / lower[..., i, i, None]
    return x


def _solve_upper(upper, rhs):
    m = upper.shape[-1]
    x = np.empty(np.broadcast_shapes(upper.shape[:-2], rhs.shape[:-2]) + rhs.shape[-2:], dtype=np.result_type(upper, rhs))
    for i in range(m - 1, -1, -1):
        acc = rhs[..., i, :]
        if i < m - 1:
            acc = acc - (upper[..., i : i + 1, i + 1 :] @ x[..., i + 1 :, :])[..., 0, :]
        x[..., i, :] = acc / upper[..., i, i, None]
    return x


def _rates_and_gradient(factor, t_rev, need_grad=True, phi=None):
    """Rates (reverse decoding order) and the gradient pieces, at noise I + Phi, Phi = F F^H.

    Phi is given by a factor F (m x r) so that I + F F^H is factorised without forming it
    (`gram_cholesky`): jamming budgets of 1e20 thermal units would otherwise drown the identity.
    """
    lc = gram_cholesky(hermitian(factor), gram=phi)  # phi = F F^H when the caller has it
    a = _solve_lower(lc, t_rev)
    lm = gram_cholesky(a)
    rates = 2.0 * np.log(np.real(np.diagonal(lm, axis1=-2, axis2=-1)))
    if not need_grad:
        return rates, None
    # K = Lc^{-H} A R^{-1}: column i is sqrt(1 + SINR_i) times user i's MMSE-SIC filter, so
    # dR_i/dC = -K_i K_i^H
    jh = _solve_lower(lm, hermitian(a))
    k = _solve_upper(hermitian(lc), hermitian(jh))
    return rates, k


def _flat(b):
    """(..., m, m) complex -> (..., 2 m^2) real: the real vector space L-BFGS works in."""
    return np.ascontiguousarray(b).view(np.float64).reshape(b.shape[:-2] + (-1,))


def _unflat(x, shape):
    return np.ascontiguousarray(x).view(np.complex128).reshape(shape)


def _lbfgs_direction(g, memory, gstep, damp):
    """Quasi-Newton step -H g by the two-loop recursion, per draw (pairs with rho = 0 are
    skipped for that draw), damped by `damp` after failed trials. A draw without curvature
    information, or whose quasi-Newton step is not a descent direction, steps -gstep * g."""
    q = g.copy()
    alphas = []
    for s, y, rho, _ in reversed(memory):
        alpha = rho * _vdot(s, q)
        q -= alpha[..., None] * y
        alphas.append(alpha)
    gamma = np.zeros(g.shape[:-1])  # initial inverse Hessian gamma I from the newest valid pair
    for _, _, rho, yy in reversed(memory):
        fresh = (gamma == 0) & (rho > 0) & (yy > 0)
        gamma = np.where(fresh, 1.0 / np.where(fresh, rho * yy, 1.0), gamma)
    r = gamma[..., None] * q
    for (s, y, rho, _), alpha in zip(memory, reversed(alphas)):
        beta = rho * _vdot(y, r)
        r += (alpha - beta)[..., None] * s
    newton = (gamma > 0) & (_vdot(r, g) > 0)
    return np.where(newton[..., None], -damp[..., None] * r, -gstep[..., None] * g)


def _aggregate(rates, objective, user_rev, temperature):
    """Objective value and per-user weights (d objective / d R_i)."""
    if objective == "sum":
        return rates.sum(axis=-1), np.ones_like(rates)
    if objective == "user":
        w = np.zeros_like(rates)
        np.put_along_axis(w, user_rev[..., None], 1.0, axis=-1)
        return np.take_along_axis(rates, user_rev[..., None], axis=-1)[..., 0], w
    top = rates.max(axis=-1, keepdims=True)
    e = np.exp(temperature * (rates - top))
    s = e.sum(axis=-1, keepdims=True)
    return top[..., 0] + np.log(s[..., 0]) / temperature, e / s


def _exact(rates, objective, user_rev):
    if objective == "max":
        return rates.max(axis=-1)
    return _aggregate(rates, objective, user_rev, 1.0)[0]


def solve_worst_jammer(
    g_rev,
    budget: float,
    objective: str,
    *,
    user_rev=None,
    init="auto",
    iterations: int = DEFAULT_ITERATIONS,
    t_min: float = 3.0,
    t_max: float = 100.0,
    white_mix: float = 0.1,
    first_step: float = 0.1,
    certify_steps: int = 0,
):
    """Numerical worst-case jammer for normalised channels g_rev (..., N, Q), columns in REVERSE
    decoding order (decoded-last first). `user_rev`: per-draw column index for objective "user".
    `init`: "auto" (best closed form for the objective), a Jammer, or None (white).
    Returns a Jammer (units of s2) whose `info` holds the exact objective and a certified bound
    "gap" on its distance to the optimum (for "max" only with `certify_steps` > 0, else None).
    """
    batch = g_rev.shape[:-2]
    basis, sv, _ = np.linalg.svd(g_rev, full_matrices=False)  # V: range(G) (all of C^N if N <= Q)
    m = basis.shape[-1]
    t_sub = hermitian(basis) @ g_rev  # = diag(sv) W^H: the channel in subspace coordinates
    if budget <= 0.0 or m == 1:  # nothing to choose: no power, or one direction takes it all
        power = np.full(batch + (m,), max(budget, 0.0))
        rates, _ = _rates_and_gradient(np.full(batch + (m, m), np.sqrt(max(budget, 0.0))), t_sub, False)
        return Jammer(basis, power, {"objective": _exact(rates, objective, user_rev), "gap": np.zeros(batch), "iterations": 0})  # exact

    eye = np.eye(m)
    if init == "auto":
        # warm start: the better, for this objective, of the two closed forms (both live in the
        # subspace: the sum-rate jammer is diagonal in the SVD basis, the strongest-user one is
        # aligned with the first column)
        c_sr = worst_sum_rate_noise(sv**2, budget)
        d = t_sub[..., :, 0] / np.maximum(np.linalg.norm(t_sub[..., :, 0], axis=-1, keepdims=True), 1e-300)
        val_sr = _exact(_rates_and_gradient(eye * np.sqrt(c_sr)[..., None, :], t_sub, False)[0], objective, user_rev)
        val_su = _exact(_rates_and_gradient(np.sqrt(budget) * d[..., :, None], t_sub, False)[0], objective, user_rev)
        phi0 = np.where((val_su < val_sr)[..., None, None], d[..., :, None] * np.conj(d[..., None, :]), eye * (c_sr / budget)[..., None, :])
    elif init is not None:
        proj = hermitian(basis) @ init.basis
        phi0 = (proj * init.power[..., None, :]) @ hermitian(proj)
    else:
        phi0 = np.zeros(batch + (m, m))
    # in units of the budget, mixed with 10% white so B has full rank (Burer-Monteiro cannot
    # grow a direction that starts at exactly zero), then B = chol(Phi0 / P_J)
    trace = np.real(np.trace(phi0, axis1=-2, axis2=-1))
    phi0 = phi0 * np.where(trace > 0, 1.0 / np.where(trace > 0, trace, 1.0), 0.0)[..., None, None]
    b = np.linalg.cholesky((1.0 - white_mix) * phi0 + (white_mix / m) * eye)
    b = b / np.linalg.norm(b, axis=(-2, -1), keepdims=True)

    def phi_of(bb):
        return budget * (bb @ hermitian(bb))

    def bm_gradient(bb, phi, rates, kmat, temp):
        """Objective at `temp` and its gradient w.r.t. B (real inner product), as flat reals."""
        f, weight = _aggregate(rates, objective, user_rev, temp)
        grad = -(kmat * weight[..., None, :]) @ hermitian(kmat)  # d f / d Phi (Hermitian, <= 0)
        lin = np.real(np.einsum("...ij,...ji->...", grad, phi))
        gb = 2.0 * budget * (grad @ bb) - 2.0 * lin[..., None, None] * bb
        return f, _flat(gb)

    shape = b.shape
    schedule = np.geomspace(t_min, t_max, max(iterations, 1))
    phi = phi_of(b)
    rates, kmat = _rates_and_gradient(np.sqrt(budget) * b, t_sub, phi=phi)
    x = _flat(b)
    best_x, best_val = x.copy(), _exact(rates, objective, user_rev)
    memory: list[tuple[np.ndarray, ...]] = []  # (s, y, 1 / s.y, y.y) per draw
    gstep, damp = None, np.ones(batch)
    for it in range(iterations):
        temp = schedule[it]
        f, g = bm_gradient(_unflat(x, shape), phi, rates, kmat, temp)
        if gstep is None:
            gstep = first_step / np.maximum(np.linalg.norm(g, axis=-1), 1e-300)  # first move: part of ||B|| = 1
        direction = _lbfgs_direction(g, memory, gstep, damp)
        trial = x + direction
        trial = trial / np.linalg.norm(trial, axis=-1, keepdims=True)  # Phi is scale-free in B
        b_t = _unflat(trial, shape)
        phi_t = phi_of(b_t)
        rates_t, k_t = _rates_and_gradient(np.sqrt(budget) * b_t, t_sub, phi=phi_t)
        f_t, g_t = bm_gradient(b_t, phi_t, rates_t, k_t, temp)
        ok = f_t <= f  # monotone: a draw whose trial is worse keeps its point and halves its step
        s_vec, y_vec = trial - x, g_t - g
        sy = _vdot(s_vec, y_vec)
        keep = ok & (sy > 0)  # only curvature pairs that keep the inverse Hessian positive definite
        rho = np.where(keep, 1.0 / np.where(keep, sy, 1.0), 0.0)
        memory.append((s_vec, y_vec, rho, _vdot(y_vec, y_vec)))  # rho = 0: the pair is inert
        if len(memory) > LBFGS_MEMORY:
            memory.pop(0)
        gstep = np.where(ok, gstep * 1.2, gstep * 0.5)
        damp = np.where(ok, np.minimum(damp * 2.0, 1.0), damp * 0.5)
        x = np.where(ok[..., None], trial, x)
        phi = np.where(ok[..., None, None], phi_t, phi)
        rates = np.where(ok[..., None], rates_t, rates)
        kmat = np.where(ok[..., None, None], k_t, kmat)
        val = _exact(rates, objective, user_rev)
        better = val < best_val
        best_val = np.where(better, val, best_val)
        best_x = np.where(better[..., None], x, best_x)
    best_b = _unflat(best_x, shape)

    phi = phi_of(best_b)
    rates, kmat = _rates_and_gradient(np.sqrt(budget) * best_b, t_sub)
    if objective == "max":
        gap = _dual_gap(best_b, rates, kmat, budget, certify_steps) if certify_steps else None
    else:  # fixed weights: the Frank-Wolfe gap tr(grad Phi) - P lambda_min(grad) >= f(Phi) - f*
        _, weight = _aggregate(rates, objective, user_rev, t_max)
        grad = -(kmat * weight[..., None, :]) @ hermitian(kmat)
        gap = np.maximum(np.real(np.einsum("...ij,...ji->...", grad, phi)) - budget * np.linalg.eigvalsh(grad)[..., 0], 0.0)
    lam, vec = np.linalg.eigh(phi)  # eigen-form of Phi = P_J B B^H (rounding may leave tiny negatives)
    lam = np.maximum(lam, 0.0)
    lam = lam * (budget / np.maximum(lam.sum(axis=-1, keepdims=True), 1e-300))
    return Jammer(basis @ vec, lam, {"objective": _exact(rates, objective, user_rev), "gap": gap, "iterations": iterations})


def _dual_gap(b, rates, kmat, budget, steps):
    """Certified bound on max_q R_q(Phi) - min_C max_q R_q, per draw.

    For any weights lam on the simplex, convexity of L = sum_q lam_q R_q gives the lower bound
    min max_q R_q >= L(Phi) + min_{Phi'} <grad L, Phi' - Phi>
                   = sum_q lam_q (R_q + k_q^H Phi k_q) - P_J lambda_max(K diag(lam) K^H),
    (dR_q/dC = -k_q k_q^H). The bound is concave in lam; a few hundred exponentiated-subgradient
    steps on lam (Q x Q Hermitian eigenproblems) make it tight near the optimum.
    """
    gram = hermitian(kmat) @ kmat  # K^H K: shares the nonzero spectrum of K diag(lam) K^H
    lin = budget * np.sum(np.abs(hermitian(b) @ kmat) ** 2, axis=-2)  # k_q^H Phi k_q, Phi = P_J B B^H
    value = rates + lin
    top = rates.max(axis=-1, keepdims=True)
    lam = np.exp(100.0 * (rates - top))  # start from the smoothed-max weights
    lam = lam / lam.sum(axis=-1, keepdims=True)
    best = np.full(rates.shape[:-1], -np.inf)
    for it in range(steps):  # loop over ascent steps; every draw at once
        root = np.sqrt(lam)
        w, v = np.linalg.eigh(root[..., :, None] * gram * root[..., None, :])
        best = np.maximum(best, np.sum(lam * value, axis=-1) - budget * w[..., -1])
        # supergradient: value_q - P_J |k_q^H u|^2, u the top eigenvector of K diag(lam) K^H
        ku = np.abs(np.einsum("...qr,...r->...q", gram, root * v[..., :, -1])) ** 2 / np.maximum(w[..., -1:], 1e-300)
        sub = value - budget * ku
        lam = lam * np.exp((0.5 / np.sqrt(it + 1.0)) * (sub - sub.max(axis=-1, keepdims=True)))
        lam = np.maximum(lam / lam.sum(axis=-1, keepdims=True), 1e-300)
    return np.maximum(rates.max(axis=-1) - best, 0.0)
