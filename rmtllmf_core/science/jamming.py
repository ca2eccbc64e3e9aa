"""Jammers that know the defense: how a jammer shapes its power over the transmission, in time and over
the parameters, at the same average power as the non-adaptive worst-case jammer (the covariance per
symbol is the wireless engine's worst case for the power the jammer spends on that block).

What every strategy knows: the channel (as the worst-case covariance does), the transmission schedule
(the parameter tensors' shapes and order, which follow from the public architecture) and the defense.
None knows the data. Each is physically possible with a jammer that is synchronised to the uplink's
frames (it hears them) and can store and replay a waveform:

- `structure` "white": a fresh draw every symbol (the non-adaptive jammer); "row_periodic": the same
  jamming waveform replayed for every row of a matrix being sent (row period = the tensor's row
  length), so that after the receiver's filter the jammer's share of each user's error is the same on
  every row: a rank-one error 1 e^T per matrix instead of white noise; "row_signed": the replay with a
  random sign per row (s e^T, s = +-1), which survives a receiver that removes row means.
- `allocation` "uniform": the same power on every symbol; "skip_frozen": silent while the tensors the
  defense reloads from the base model are sent (R-MTLLMF's embeddings: jamming them is wasted), the
  saved energy spent on the rest, so the average power is the budget; "under_gate": against a receiver
  that denoises only the users whose MSE reaches a gate (`defense.receiver_min_mse`), the strongest
  power at or below the budget that keeps every user's MSE under the gate, so that nothing is denoised
  (`power_under_gate`).

The jammer's share of a user's error is what the jammer adds to the MSE over the thermal noise and
interference (the MSE with the jammer minus the MSE without it, on the same channel draw); the rest
stays white. Only the Gaussian (analogue) link takes a structure or an allocation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STRUCTURES = ("white", "row_periodic", "row_signed")
ALLOCATIONS = ("uniform", "skip_frozen", "under_gate")


@dataclass(frozen=True)
class Strategy:
    name: str
    title: str
    knows: str           # beyond the channel, which every worst-case jammer knows
    structure: str
    allocation: str


STRATEGY_RECORDS: tuple[Strategy, ...] = (
    Strategy("white", "non-adaptive (white in time)", "nothing beyond the channel", "white", "uniform"),
    Strategy("row_periodic", "replayed every matrix row", "the schedule", "row_periodic", "uniform"),
    Strategy("row_signed", "replayed every row, random signs", "the schedule", "row_signed", "uniform"),
    Strategy("skip_frozen", "silent on what the defense reloads", "the schedule and the defense", "white",
             "skip_frozen"),
    Strategy("under_gate", "just under the receiver's gate", "the schedule and the defense", "white", "under_gate"),
    Strategy("row_periodic+skip_frozen", "replayed every row, silent on reloaded tensors",
             "the schedule and the defense", "row_periodic", "skip_frozen"),
    Strategy("row_signed+skip_frozen", "replayed every row with random signs, silent on reloaded tensors",
             "the schedule and the defense", "row_signed", "skip_frozen"),
)
STRATEGIES: dict[str, Strategy] = {s.name: s for s in STRATEGY_RECORDS}


def allocation_factors(sizes, reloaded, allocation: str) -> np.ndarray:
    """Per tensor: the factor a_i on the jammer's power while tensor i is sent, with
    sum_i a_i n_i = sum_i n_i (the same average power as the uniform jammer). `reloaded[i]`: whether
    the defense reloads tensor i from the base model."""
    sizes = np.asarray(sizes, dtype=np.float64)
    reloaded = np.asarray(reloaded, dtype=bool)
    if allocation in ("uniform", "under_gate") or not reloaded.any() or reloaded.all():
        return np.ones(len(sizes))
    if allocation != "skip_frozen":
        raise ValueError(f"allocation: one of {', '.join(ALLOCATIONS)}; got {allocation!r}")
    out = np.where(reloaded, 0.0, sizes.sum() / sizes[~reloaded].sum())
    return out


def power_under_gate(max_mse_at, gate: float, tolerance: float = 1e-3) -> float:
    """The largest factor a in [0, 1] on the jammer's budget with max_q MSE_q(a) < `gate`, by bisection
    (the MSE grows with the jammer's power); 1 where the full budget stays under it, 0 where even
    silence does not (the thermal noise alone reaches the gate)."""
    if not gate > 0 or max_mse_at(1.0) < gate:
        return 1.0
    if max_mse_at(0.0) >= gate:
        return 0.0
    lo, hi = 0.0, 1.0
    while hi - lo > tolerance:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if max_mse_at(mid) < gate else (lo, mid)
    return lo


def average_power_factor(sizes, factors) -> float:
    """The jammer's average power over the transmission, as a multiple of its budget (1 when it keeps it)."""
    sizes = np.asarray(sizes, dtype=np.float64)
    return float((np.asarray(factors, dtype=np.float64) * sizes).sum() / sizes.sum())


def jammer_share(mse_jammed, mse_quiet) -> np.ndarray:
    """The jammer's share of each error variance: (MSE with it - MSE without it) / MSE with it, in [0, 1]."""
    jammed = np.asarray(mse_jammed, dtype=np.float64)
    quiet = np.asarray(mse_quiet, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(jammed > 0, (jammed - quiet) / np.where(jammed > 0, jammed, 1.0), 0.0)
    return np.clip(share, 0.0, 1.0)
