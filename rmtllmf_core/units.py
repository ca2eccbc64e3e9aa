"""Unit conversions. Names carry units: *_w, *_dbm, *_db, *_hz."""
from __future__ import annotations

import numpy as np

BOLTZMANN_J_PER_K = 1.380649e-23


def dbm_to_w(power_dbm):
    return 10.0 ** ((np.asarray(power_dbm, dtype=float) - 30.0) / 10.0)


def w_to_dbm(power_w):
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(np.asarray(power_w, dtype=float)) + 30.0


def db_to_linear(value_db):
    return 10.0 ** (np.asarray(value_db, dtype=float) / 10.0)


def linear_to_db(value):
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(np.asarray(value, dtype=float))


def thermal_noise_w(bandwidth_hz: float, noise_figure_db: float, temperature_k: float = 290.0) -> float:
    """Thermal noise power per receive antenna, k T B NF."""
    return float(BOLTZMANN_J_PER_K * temperature_k * bandwidth_hz * db_to_linear(noise_figure_db))
