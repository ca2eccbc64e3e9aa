"""Presets are data: plain dicts that `WirelessConfig.parse` accepts (calibration below)."""
from __future__ import annotations

import copy

from .config import WirelessConfig

PRESETS: dict[str, dict] = {
    "paper": {
        "num_users": 8,
        "num_rx_antennas": 16,
        "tx_power_w": 1e-4,
        "d_min_m": 100.0,
        "d_max_m": 1000.0,
        "radial_distribution": "uniform_distance",
        "carrier_frequency_hz": 3.5e9,
        "pathloss_model": "uma_nlos",
        "noise_power_w": 10 ** ((-142.0 - 30.0) / 10.0) / 16,
        "jammer_power_w": 1e-16,
        "attack": "none",
    },
}


def preset(name: str, **overrides) -> WirelessConfig:
    """A preset as a validated config, with field overrides (W or dBm)."""
    from ..errors import InputError

    if name not in PRESETS:
        raise InputError("wireless.preset", f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    data = copy.deepcopy(PRESETS[name])
    for key in overrides:  # an override in dBm replaces the preset's value in W
        if key.endswith("_dbm"):
            data.pop(key[: -len("_dbm")] + "_w", None)
    return WirelessConfig.parse({**data, **overrides})
