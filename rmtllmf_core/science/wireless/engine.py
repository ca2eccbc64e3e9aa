"""Scenario -> channel draw(s) -> jammer -> MMSE-SIC receiver -> per-user MSE. Pure, seeded.

`evaluate_uplink(cfg)` is one drop; `monte_carlo(cfg, draws)` runs K draws as one batch (every
step takes (K, N_R, Q) arrays; there is no Python loop over draws; only very large K N_R Q are
cut into a few chunks to bound memory).

Randomness: independent numpy Generator streams from the config's seeds,
  placement  <- [seed, 0]        shadowing <- [seed, 1]        fading <- [fading_seed, 2]
  Monte Carlo fading <- [fading_seed, 3]   Monte Carlo placement / shadowing per draw <- [seed, 4] / [seed, 5]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from . import attacks as atk
from .config import WirelessConfig
from .geometry import annulus_positions, pathloss_db
from .receiver import hermitian, linear_mmse_error_covariance, sic_mmse, sic_order
from .solver import DEFAULT_ITERATIONS, solve_worst_jammer

LN2 = float(np.log(2.0))
CERTIFY_STEPS = 200  # dual ascent steps for the numeric attack's certificate (single drops only)
CHUNK_ELEMENTS = 1 << 21  # complex entries per (K, N, max(N, Q)) temporary in one Monte Carlo batch (32 MiB)


# --------------------------------------------------------------------------- channel draws
@dataclass(frozen=True)
class Drop:
    channel: np.ndarray  # (K, N, Q) complex, linear amplitude
    distances_m: Optional[np.ndarray]  # (K, Q) or None (explicit channel)
    angles_deg: Optional[np.ndarray]
    pathloss_db: Optional[np.ndarray]  # path loss + shadowing, (K, Q)


def _rayleigh(rng, shape):
    """CN(0, 1) entries; (re, im) pairs drawn innermost, so drawing K draws in chunks gives the
    same numbers as drawing them at once."""
    pairs = rng.standard_normal(tuple(shape) + (2,))
    return pairs.view(np.complex128)[..., 0] * np.sqrt(0.5)


def _explicit_channel(cfg: WirelessConfig):
    im = np.asarray(cfg.channel.im, float) if cfg.channel.im is not None else 0.0
    return np.asarray(cfg.channel.re, float) + 1j * im


def _large_scale(cfg: WirelessConfig, draws: int, vary_placement: bool):
    """Distances, angles (deg), path loss incl. shadowing (dB), each (1, Q), or (K, Q) if varied."""
    q = cfg.num_users
    place_rng = np.random.default_rng([cfg.seed, 4 if vary_placement else 0])
    shadow_rng = np.random.default_rng([cfg.seed, 5 if vary_placement else 1])
    geo_shape = (draws, q) if vary_placement else (1, q)
    if cfg.distances_m is not None:
        distances = np.broadcast_to(np.asarray(cfg.distances_m, float), geo_shape)
        if cfg.angles_deg is not None:
            angles = np.broadcast_to(np.asarray(cfg.angles_deg, float), geo_shape)
        else:  # evenly spread on the map, deterministic
            angles = np.broadcast_to(np.arange(q) * 360.0 / q, geo_shape)
    else:
        distances, angles = annulus_positions(place_rng, geo_shape, cfg.d_min_m, cfg.d_max_m, cfg.radial_distribution)
    loss_db = pathloss_db(cfg.pathloss_model, distances, cfg.carrier_frequency_hz, cfg.pathloss_exponent)
    if cfg.shadowing_std_db > 0:
        loss_db = loss_db + cfg.shadowing_std_db * shadow_rng.standard_normal(geo_shape)
    return distances, angles, loss_db


def _fading_rng(cfg: WirelessConfig, monte_carlo: bool):
    return np.random.default_rng([cfg.fading_seed, 3 if monte_carlo else 2])


def draw_channels(cfg: WirelessConfig, draws: int = 1, *, monte_carlo: bool = False, vary_placement: bool = False) -> Drop:
    """K channel realisations (all at once; `monte_carlo` draws the same ones, in chunks).
    Placement and shadowing are fixed by `seed` unless `vary_placement`."""
    q, n = cfg.num_users, cfg.num_rx_antennas
    if cfg.channel is not None:
        return Drop(np.broadcast_to(_explicit_channel(cfg), (draws, n, q)), None, None, None)
    distances, angles, loss_db = _large_scale(cfg, draws, vary_placement)
    h = _rayleigh(_fading_rng(cfg, monte_carlo), (draws, n, q)) * np.sqrt(10.0 ** (-loss_db / 10.0))[:, None, :]
    shape = (draws, q)
    return Drop(h, np.broadcast_to(distances, shape), np.broadcast_to(angles, shape), np.broadcast_to(loss_db, shape))


# --------------------------------------------------------------------------- the core, batched
def design_jammer(attack: str, channel, tx_power_w, noise_w: float, jammer_w: float, target_user=None, *, iterations: int = DEFAULT_ITERATIONS, certify: bool = False):
    """The jammer (in units of the thermal noise) for K channels (K, N, Q)."""
    g = channel * np.sqrt(np.asarray(tx_power_w) / noise_w)[..., None, :]
    budget = jammer_w / noise_w
    if attack == "none":
        return atk.no_jammer(g)
    if attack == "white":
        return atk.white(g, budget)
    if attack == "worst_sum_rate":
        return atk.worst_sum_rate(g, budget)
    if attack == "worst_strongest_user":
        user = atk.strongest_user(channel, tx_power_w)
        return atk.aligned(atk.select_user_column(channel, user), budget)
    if attack == "targeted":
        user = np.full(channel.shape[:-2], int(target_user))
        return atk.aligned(atk.select_user_column(channel, user), budget)
    if attack == "worst_max_user_numeric":
        order, rank = sic_order(channel, tx_power_w)
        rev = order[..., ::-1]
        g_rev = np.take_along_axis(g, rev[..., None, :], axis=-1)
        return solve_worst_jammer(g_rev, budget, "max", iterations=iterations, certify_steps=CERTIFY_STEPS if certify else 0)
    raise ValueError(f"unknown attack {attack!r}")  # validated upstream


def _batch(cfg: WirelessConfig, channel, *, attack=None, with_filters=False, iterations=DEFAULT_ITERATIONS):
    attack = attack or cfg.attack
    p = cfg.tx_powers_w()
    s2 = cfg.thermal_noise_power_w()
    # one drop gets the numeric attack's certificate; Monte Carlo batches skip it (speed)
    jam = design_jammer(attack, channel, p, s2, cfg.jammer_power_w, cfg.target_user, iterations=iterations, certify=with_filters)
    g = channel * np.sqrt(p / s2)[None, None, :]
    a = jam.whiten(g)
    _, rank = sic_order(channel, p)
    if cfg.receiver_knows_jammer or attack == "none":
        return jam, a, rank, sic_mmse(a, rank, with_filters=with_filters)
    return jam, a, rank, _mismatched(g, jam, rank, with_filters)


def _mismatched(g, jam, rank, with_filters: bool):
    """The MMSE-SIC filters designed for thermal noise alone (`g`: the channel in thermal-noise units),
    applied to the actual noise I + C (C: the jammer's covariance in the same units): each error's
    covariance gains F C F^H, so every user's MSE is at least the matched receiver's (tested).
    The rate reported is the one the MSE supports, -log MSE (MSE = exp(-R), as for the matched filter)."""
    _, _, filters, cov = sic_mmse(g, rank, with_filters=True)
    cov = cov + filters @ jam.covariance() @ hermitian(filters)
    mse = np.clip(np.real(np.diagonal(cov, axis1=-2, axis2=-1)), 1e-300, 1.0)
    rate = -np.log(mse)
    return (rate, mse, filters, cov) if with_filters else (rate, mse)


# --------------------------------------------------------------------------- results
def _plain(x):
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return x


def json_safe(x):
    """JSON has no inf/nan (a silent user's SINR is -inf dB): such numbers become None."""
    if isinstance(x, float):
        return x if np.isfinite(x) else None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x


def _complex_json(m):
    m = np.asarray(m)
    return {"re": np.real(m).tolist(), "im": np.imag(m).tolist()}


@dataclass(frozen=True)
class UplinkResult:
    """One drop. Per-user arrays are in INPUT user order (index 0..Q-1).

    `error_covariance` is computed from the MMSE-SIC filters (notes sec. 3); with perfect
    cancellation it is diagonal up to rounding: each error is orthogonal to y and to every
    earlier-decoded symbol, hence to every earlier error. `error_covariance_no_sic` (a joint
    linear MMSE receiver, no SIC) is the correlated alternative, with larger MSEs.
    """

    attack: str
    sic_rank: np.ndarray  # 0 = decoded first (weakest p||h||^2)
    sinr_db: np.ndarray
    rate_nats: np.ndarray
    rate_bits_per_hz: np.ndarray
    mse: np.ndarray  # = exp(-rate_nats)
    sum_rate_nats: float
    tx_power_w: np.ndarray
    thermal_noise_w: float  # s2, per antenna
    jammer_power_w: float  # budget P_J
    jammer_trace_w: float  # tr C_J actually spent
    jammer_covariance: np.ndarray  # (N, N) complex, W
    jammer_eigen_w: np.ndarray  # (N,) power per eigenmode, descending
    error_covariance: np.ndarray  # (Q, Q) complex, E[(s_hat - s)(s_hat - s)^H]; diagonal == mse
    error_covariance_no_sic: np.ndarray  # (Q, Q) complex, joint linear MMSE without SIC (comparison)
    channel: np.ndarray  # (N, Q) complex H
    x_m: Optional[np.ndarray]  # user positions (BS at the origin); None for an explicit channel
    y_m: Optional[np.ndarray]
    distances_m: Optional[np.ndarray]
    pathloss_db: Optional[np.ndarray]  # incl. shadowing
    solver: Optional[dict] = None  # numeric attack: max user rate and a certified bound on its excess over the optimum (nats)

    @property
    def num_users(self) -> int:
        return int(self.mse.shape[0])

    @property
    def average_mse(self) -> float:
        return float(np.mean(self.mse))

    def to_dict(self) -> dict:
        users = []
        for q in range(self.num_users):
            row = {
                "index": q,
                "sic_rank": int(self.sic_rank[q]),
                "tx_power_w": float(self.tx_power_w[q]),
                "sinr_db": float(self.sinr_db[q]),
                "rate_nats": float(self.rate_nats[q]),
                "rate_bits_per_hz": float(self.rate_bits_per_hz[q]),
                "mse": float(self.mse[q]),
            }
            if self.distances_m is not None:
                row.update(distance_m=float(self.distances_m[q]), x_m=float(self.x_m[q]), y_m=float(self.y_m[q]), pathloss_db=float(self.pathloss_db[q]))
            users.append(row)
        return json_safe({
            "attack": self.attack,
            "num_users": self.num_users,
            "num_rx_antennas": int(self.channel.shape[0]),
            "users": users,
            "sum_rate_nats": self.sum_rate_nats,
            "sum_rate_bits_per_hz": self.sum_rate_nats / LN2,
            "average_mse": self.average_mse,
            "thermal_noise_w": self.thermal_noise_w,
            "jammer_power_w": self.jammer_power_w,
            "jammer_trace_w": self.jammer_trace_w,
            "jammer_eigen_w": self.jammer_eigen_w.tolist(),
            "error_covariance": _complex_json(self.error_covariance),
            "error_covariance_no_sic": _complex_json(self.error_covariance_no_sic),
            "solver": None if self.solver is None else {k: _plain(v) for k, v in self.solver.items()},
        })


def _sinr_db(rate):
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(np.expm1(rate))  # SINR = e^R - 1, accurate for tiny R


def evaluate_uplink(cfg: WirelessConfig, *, iterations: int = DEFAULT_ITERATIONS) -> UplinkResult:
    """One seeded drop of the scenario: channel, jammer, MMSE-SIC receiver, per-user MSE."""
    cfg = WirelessConfig.parse(cfg)
    drop = draw_channels(cfg, 1)
    channel = np.ascontiguousarray(drop.channel)
    jam, a, rank, (rate, mse, _filters, cov) = _batch(cfg, channel, with_filters=True, iterations=iterations)
    s2 = cfg.thermal_noise_power_w()
    cj = jam.covariance()[0] * s2
    cj = 0.5 * (cj + cj.conj().T)
    eig = np.sort(np.linalg.eigvalsh(cj))[::-1] if cj.shape[0] else np.zeros(0)
    solver = None
    if jam.info is not None:
        solver = {"max_user_rate_nats": float(jam.info["objective"][0]), "certificate_gap_nats": float(jam.info["gap"][0]), "iterations": int(jam.info["iterations"])}
    positions = (None, None)
    if drop.distances_m is not None:
        rad = np.deg2rad(drop.angles_deg[0])
        positions = (drop.distances_m[0] * np.cos(rad), drop.distances_m[0] * np.sin(rad))
    return UplinkResult(
        attack=cfg.attack,
        sic_rank=rank[0],
        sinr_db=_sinr_db(rate[0]),
        rate_nats=rate[0],
        rate_bits_per_hz=rate[0] / LN2,
        mse=mse[0],
        sum_rate_nats=float(rate[0].sum()),
        tx_power_w=cfg.tx_powers_w(),
        thermal_noise_w=s2,
        jammer_power_w=cfg.jammer_power_w,
        jammer_trace_w=float(np.sum(jam.power[0]) * s2),
        jammer_covariance=cj,
        jammer_eigen_w=np.maximum(eig, 0.0),
        error_covariance=cov[0],
        error_covariance_no_sic=linear_mmse_error_covariance(a)[0],
        channel=channel[0],
        x_m=positions[0],
        y_m=positions[1],
        distances_m=None if drop.distances_m is None else np.array(drop.distances_m[0]),
        pathloss_db=None if drop.pathloss_db is None else np.array(drop.pathloss_db[0]),
        solver=solver,
    )


# --------------------------------------------------------------------------- Monte Carlo
PERCENTILES = (5.0, 50.0, 95.0)


def _stats(x, axis=0):
    # a silent user's SINR is -inf dB: its mean is -inf and its spread NaN (null in JSON), quietly
    with np.errstate(invalid="ignore"):
        pct = np.percentile(x, PERCENTILES, axis=axis)
        return {"mean": np.mean(x, axis=axis), "std": np.std(x, axis=axis), **{f"p{int(p)}": v for p, v in zip(PERCENTILES, pct)}}


@dataclass(frozen=True)
class MonteCarloResult:
    """Statistics over K draws (per user in input order, and of the users' average MSE)."""

    attack: str
    draws: int
    vary_placement: bool
    mse: dict  # mean/std/p5/p50/p95, each (Q,)
    sinr_db: dict
    rate_nats: dict
    average_mse: dict  # scalars: stats of the per-draw mean over users
    sum_rate_nats: dict
    jammer_trace_w: float  # mean over draws
    per_draw_mse: np.ndarray = field(repr=False)  # (K, Q)

    def to_dict(self) -> dict:
        def conv(d):
            return {k: _plain(v) for k, v in d.items()}

        return json_safe({
            "attack": self.attack,
            "draws": self.draws,
            "vary_placement": self.vary_placement,
            "percentiles": list(PERCENTILES),
            "users": {"mse": conv(self.mse), "sinr_db": conv(self.sinr_db), "rate_nats": conv(self.rate_nats)},
            "average_mse": conv(self.average_mse),
            "sum_rate_nats": conv(self.sum_rate_nats),
            "jammer_trace_w": self.jammer_trace_w,
        })


def monte_carlo(cfg: WirelessConfig, draws: int, *, vary_placement: bool = False, attack: Optional[str] = None, iterations: int = DEFAULT_ITERATIONS) -> MonteCarloResult:
    """K fading draws (and placements/shadowing too with `vary_placement`), as one batch."""
    from ...errors import InputError

    cfg = WirelessConfig.parse(cfg)
    if isinstance(draws, bool) or not isinstance(draws, (int, np.integer)) or not 1 <= draws <= 1_000_000:
        raise InputError("draws", f"must be an integer in 1..1000000 (got {draws!r})")
    if attack is not None:
        cfg = WirelessConfig.parse({**cfg.model_dump(), "attack": attack})
    draws = int(draws)
    q, n = cfg.num_users, cfg.num_rx_antennas
    # chunks over draws bound the memory of the (K, N, Q) temporaries; results do not depend on it
    chunk = max(1, CHUNK_ELEMENTS // (n * max(n, q)))
    if cfg.channel is not None:
        explicit, amplitude = _explicit_channel(cfg), None
    else:
        explicit = None
        _, _, loss_db = _large_scale(cfg, draws, vary_placement)
        amplitude = np.sqrt(10.0 ** (-loss_db / 10.0))  # (1 or K, Q)
        rng = _fading_rng(cfg, True)
    rates, mses, traces = [], [], []
    for start in range(0, draws, chunk):  # one batch per chunk (a single one for the paper preset)
        k = min(chunk, draws - start)
        if explicit is not None:
            h = np.broadcast_to(explicit, (k, n, q))
        else:
            amp = amplitude if amplitude.shape[0] == 1 else amplitude[start : start + k]
            h = _rayleigh(rng, (k, n, q)) * amp[:, None, :]
        jam, _a, _rank, (rate, mse) = _batch(cfg, h, iterations=iterations)
        rates.append(rate)
        mses.append(mse)
        traces.append(jam.power.sum(axis=-1))
    rate, mse, trace = np.concatenate(rates), np.concatenate(mses), np.concatenate(traces)
    s2 = cfg.thermal_noise_power_w()
    return MonteCarloResult(
        attack=cfg.attack,
        draws=int(draws),
        vary_placement=vary_placement,
        mse=_stats(mse),
        sinr_db=_stats(_sinr_db(rate)),
        rate_nats=_stats(rate),
        average_mse=_stats(mse.mean(axis=-1)),
        sum_rate_nats=_stats(rate.sum(axis=-1)),
        jammer_trace_w=float(np.mean(trace) * s2),
        per_draw_mse=mse,
    )
