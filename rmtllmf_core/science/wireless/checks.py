"""Is the uplink usable at all? A warning when the channel alone leaves the task vectors as noise.

A jammer that ruins the users' vectors is the experiment; a channel that ruins them with no jammer
(too little transmit power, too much thermal noise, users too far) is a mistake in the scenario,
and fusing those vectors would silently fuse noise. `channel_warning(cfg, uplink)` is what the
pipeline, the CLI and the app's pages call; none of them computes the check itself.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional

from .config import DEFAULT_NOISE_POWER_W, WirelessConfig

# Above it a user's SINR is below 0 dB on average: each received task vector is more error than signal
# (MSE = 1 / (1 + SINR); the error power per normalised parameter is the MSE).
UNUSABLE_AVERAGE_MSE = 0.5
MAX_LISTED_USERS = 8  # more users: the SINR range instead of one figure each


def _dbm(power_w: float) -> float:
    return 10.0 * math.log10(power_w) + 30.0 if power_w > 0 else -math.inf


def _figures(uplink: Any) -> dict:
    """The numbers the check needs, from `evaluate_uplink`'s result or its `to_dict()`."""
    if isinstance(uplink, Mapping):
        users = uplink["users"]
        return {
            "attack": uplink["attack"],
            "jammer_trace_w": float(uplink.get("jammer_trace_w") or 0.0),
            "mse": [float(u["mse"]) for u in users],
            "sinr_db": [-math.inf if u.get("sinr_db") is None else float(u["sinr_db"]) for u in users],
            "tx_power_w": [float(u["tx_power_w"]) for u in users],
            "thermal_noise_w": float(uplink["thermal_noise_w"]),
            "distances_m": [float(u["distance_m"]) for u in users] if users and "distance_m" in users[0] else None,
        }
    return {
        "attack": uplink.attack,
        "jammer_trace_w": float(uplink.jammer_trace_w),
        "mse": [float(v) for v in uplink.mse],
        "sinr_db": [float(v) for v in uplink.sinr_db],
        "tx_power_w": [float(v) for v in uplink.tx_power_w],
        "thermal_noise_w": float(uplink.thermal_noise_w),
        "distances_m": None if uplink.distances_m is None else [float(v) for v in uplink.distances_m],
    }


def _span(values: list[float], spec: str) -> str:
    low, high = min(values), max(values)
    return format(low, spec) if math.isclose(low, high, rel_tol=1e-9, abs_tol=1e-9) else f"{low:{spec}} to {high:{spec}}"


def unusable_uplink_warning(uplink: Any, *, even_without_jammer: bool = False, noise_note: str = "") -> Optional[str]:
    """A one-paragraph warning, or None: the average MSE of a jammer-free uplink evaluation (what
    `evaluate_uplink` returns, or its `to_dict()`) above UNUSABLE_AVERAGE_MSE. A jammed evaluation
    gives None (the jammer's effect is the point); `channel_warning` checks its jammer-free drop.
    `noise_note`: where the noise power comes from, when it is not a given value."""
    f = _figures(uplink)
    if f["attack"] != "none" and f["jammer_trace_w"] > 0.0:
        return None
    mse = f["mse"]
    average = sum(mse) / len(mse)
    if not average > UNUSABLE_AVERAGE_MSE:
        return None
    sinr = f["sinr_db"]
    if len(sinr) <= MAX_LISTED_USERS:
        per_user = ", ".join(f"{s:.1f}" for s in sinr) + " dB"
    else:
        per_user = f"{_span(sinr, '.1f')} dB over {len(sinr)} users"
    geometry = f["distances_m"] is not None
    where = f"users at {_span(f['distances_m'], '.0f')} m" if geometry else "the explicit channel's gains"
    noise = f"{_dbm(f['thermal_noise_w']):.1f} dBm per antenna ({noise_note + '; ' if noise_note else ''}" \
            f"the calibrated default is {_dbm(DEFAULT_NOISE_POWER_W):.1f} dBm)"
    return (
        f"Unusable channel{' even without the jammer' if even_without_jammer else ''}: average MSE "
        f"{average:.3f} with no jammer (above {UNUSABLE_AVERAGE_MSE}), so the users' task vectors arrive as "
        f"mostly noise. SINR per user: {per_user}. What sets it: transmit power "
        f"{_span([_dbm(p) for p in f['tx_power_w']], '.1f')} dBm per user, thermal noise {noise}, {where}. "
        f"Raise the transmit power, lower the noise power or {'bring the users closer' if geometry else 'strengthen the channel'}."
    )


def channel_warning(cfg: WirelessConfig | Mapping, uplink: Any = None) -> Optional[str]:
    """The unusable-channel warning of a scenario's uplink, or None. `uplink`: `evaluate_uplink(cfg)`
    (or its `to_dict()`) when the caller has it; under an attack the same drop is evaluated once
    more with no jammer (cheap: one small receiver), since only the channel's own part is checked."""
    from .engine import evaluate_uplink

    cfg = WirelessConfig.parse(cfg)
    jammed = cfg.attack != "none" and cfg.jammer_power_w > 0.0
    if jammed:
        uplink = evaluate_uplink(WirelessConfig.parse({**cfg.to_dict(), "attack": "none"}))
    elif uplink is None:
        uplink = evaluate_uplink(cfg)
    note = "" if cfg.noise_power_w is not None else (
        f"k T B NF of {cfg.bandwidth_hz / 1e6:g} MHz and {cfg.noise_figure_db:g} dB, noise_power_w unset")
    return unusable_uplink_warning(uplink, even_without_jammer=jammed, noise_note=note)
