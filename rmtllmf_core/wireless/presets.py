"""Presets are data: plain dicts that `WirelessConfig.parse` accepts.

Calibration of "paper" (R-MTLLMF, arXiv 2411.18220, Sec. IV). The paper fixes Q = 8 users,
N_R = 16 antennas, 0.1 mW per user, distances uniform in [100, 1000] m, Rayleigh fading and
64-QAM, and reports the average MSE over the 8 users: 0.013 in the ideal case, 0.21 under the
worst-case sum-rate (SR) jammer and 0.16 under the strongest-user (SU) jammer. It gives no path
loss, carrier, bandwidth, noise figure or jammer power; those are ours:
- path loss 3GPP TR 38.901 UMa NLOS at 3.5 GHz, no shadowing;
- thermal noise chosen so the ideal case matches: -142.3 dBm in total over the 16 antennas
  (-154.3 dBm per antenna, i.e. k T B NF with B NF ~ 19.7 dB-Hz): average MSE 0.0129 (paper 0.013);
- jammer budget P_J = -129.25 dBm chosen so `worst_sum_rate` gives 0.211 (paper 0.21); at the
  same budget `white` gives 0.160, `worst_strongest_user` 0.019, `worst_max_user_numeric` 0.035.
These are means over 8,000 drops (placement and fading redrawn each time:
`monte_carlo(cfg, 8000, vary_placement=True)`; p5-p95 of the ideal case 0.0045-0.023, of SR
0.10-0.33). One drop (what `evaluate_uplink` computes) varies around them, so the preset's seed
is a representative drop: 0.0132 ideal, 0.209 SR, 0.162 white, 0.136 SU at -90 dBm.
The SU jammer only hurts one user under MMSE-SIC with N_R > 1, so its average MSE saturates near
1/Q + ideal ~ 0.14 however large P_J is: the paper's 0.16 is out of reach in this model
(PAPER-NOTES sec. 2). "paper_worst_strongest_user" therefore uses P_J = -90 dBm, near that
ceiling (0.136; 0.121 at -100 dBm, 0.079 at -110 dBm).
"""
from __future__ import annotations

import copy

from .config import WirelessConfig


def _dbm_to_w(power_dbm: float) -> float:
    return 10.0 ** ((power_dbm - 30.0) / 10.0)


PAPER_TOTAL_THERMAL_DBM = -142.3  # over all 16 antennas (calibrated, ours)
PAPER_JAMMER_DBM = -129.25  # worst_sum_rate -> 0.21 (calibrated, ours)
PAPER_SU_JAMMER_DBM = -90.0  # strongest-user jammer near its ceiling

_PAPER = {
    "num_users": 8,  # paper
    "num_rx_antennas": 16,  # paper
    "tx_power_w": 1e-4,  # paper: 0.1 mW
    "d_min_m": 100.0,  # paper
    "d_max_m": 1000.0,  # paper
    "radial_distribution": "uniform_distance",  # paper: d_q uniform in [100, 1000] m
    "carrier_frequency_hz": 3.5e9,  # ours
    "pathloss_model": "uma_nlos",  # ours
    "shadowing_std_db": 0.0,
    "noise_power_w": _dbm_to_w(PAPER_TOTAL_THERMAL_DBM) / 16,  # ours, per antenna
    "jammer_power_w": _dbm_to_w(PAPER_JAMMER_DBM),  # ours
    "attack": "none",  # the paper's ideal case; 64-QAM symbols are noted, not simulated here
    # a representative drop: among seeds 0-299 (seed = fading_seed), the one whose single drop is
    # closest to the 8,000-drop means (ideal 0.0132, worst_sum_rate 0.209, white 0.162, SU 0.136)
    "seed": 281,
    "fading_seed": 281,
}

PRESETS: dict[str, dict] = {
    "paper": _PAPER,
    "paper_worst_sum_rate": {**_PAPER, "attack": "worst_sum_rate"},
    "paper_worst_strongest_user": {**_PAPER, "attack": "worst_strongest_user", "jammer_power_w": _dbm_to_w(PAPER_SU_JAMMER_DBM)},
    "paper_white": {**_PAPER, "attack": "white"},
}

# what the paper reports (average MSE over the 8 users), for side-by-side display
PAPER_REPORTED_AVERAGE_MSE = {"none": 0.013, "worst_sum_rate": 0.21, "worst_strongest_user": 0.16}


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
