"""`WirelessConfig`: the frozen, validated scenario of one uplink (PAPER-NOTES sec. 1-2).

Canonical units are W, m, Hz and dB. Power inputs may also be given in dBm (`tx_power_dbm`,
`noise_power_dbm`, `jammer_power_dbm`); a mode="before" validator converts them to the `*_w`
field so a config has exactly one canonical form (and one cache key).

Users are indexed from 0 in input order everywhere (`target_user`, result rows).

The field defaults ARE the calibrated "paper" uplink (presets.py explains the calibration), so a
scenario that leaves out the wireless section, or part of it, gets the app's default uplink. The
thermal noise defaults to the calibrated power; `bandwidth_hz` and `noise_figure_db` only act
through k T B NF, when `noise_power_w` is null (a config given them without a noise power).
"""
from __future__ import annotations

import math
from typing import Any, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from ...validation import Config

MAX_USERS = 64
MAX_RX_ANTENNAS = 256

ATTACKS: tuple[str, ...] = (
    "none",
    "white",
    "worst_sum_rate",
    "worst_strongest_user",
    "targeted",
    "worst_max_user_numeric",
)
PATHLOSS_MODELS: tuple[str, ...] = ("uma_nlos", "umi_nlos", "free_space", "log_distance")

Attack = Literal["none", "white", "worst_sum_rate", "worst_strongest_user", "targeted", "worst_max_user_numeric"]
PathlossModel = Literal["uma_nlos", "umi_nlos", "free_space", "log_distance"]

DBM_ALIASES = {"tx_power_dbm": "tx_power_w", "noise_power_dbm": "noise_power_w", "jammer_power_dbm": "jammer_power_w"}
# Physical bounds keep every quantity well inside float range through the engine (SNRs up to
# ~1e60, budgets up to ~1e53 thermal units): absurd values are refused, not computed into inf.
MAX_POWER_W = 1e3  # 60 dBm, per user and for the jammer
MIN_NOISE_W, MAX_NOISE_W = 1e-50, 1.0
MAX_CHANNEL_AMPLITUDE = 1e6
_DBM_MAX = {"tx_power_dbm": 60.0, "jammer_power_dbm": 60.0, "noise_power_dbm": 30.0}
_DBM_MIN = {"noise_power_dbm": -470.0}


def _field_error(field: str, message: str) -> PydanticCustomError:
    return PydanticCustomError("value_error", "{f}: {m}", {"f": field, "m": message})


def _finite_number(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float range (e.g. 10**400)
        return False


def dbm_to_w(value: float) -> float:
    return 10.0 ** ((float(value) - 30.0) / 10.0)


# The calibrated numbers of the default ("paper") uplink, defined here once (calibration: presets.py)
PAPER_NUM_RX_ANTENNAS = 16  # paper
PAPER_TOTAL_THERMAL_DBM = -142.3  # over all 16 antennas (calibrated, ours)
PAPER_JAMMER_DBM = -129.25  # worst_sum_rate -> 0.21 (calibrated, ours)
PAPER_SEED = 281  # a representative drop (see presets.py)
DEFAULT_NOISE_POWER_W = dbm_to_w(PAPER_TOTAL_THERMAL_DBM) / PAPER_NUM_RX_ANTENNAS  # per antenna: -154.3 dBm
DEFAULT_JAMMER_POWER_W = dbm_to_w(PAPER_JAMMER_DBM)


class ChannelMatrix(Config):
    """An explicit channel H (N_R rows x Q columns, linear complex amplitude), bypassing geometry."""

    re: list[list[float]]
    im: Optional[list[list[float]]] = None  # absent = a real channel

    @field_validator("re", "im")
    @classmethod
    def _rectangular(cls, rows, info):
        if rows is None:
            return rows
        if not 1 <= len(rows) <= MAX_RX_ANTENNAS:
            raise ValueError(f"needs 1-{MAX_RX_ANTENNAS} rows (receive antennas), got {len(rows)}")
        width = len(rows[0])
        if not 1 <= width <= MAX_USERS:
            raise ValueError(f"needs 1-{MAX_USERS} columns (users), got {width}")
        for i, row in enumerate(rows):
            if len(row) != width:
                raise ValueError(f"rows must all have {width} columns (N_R x Q); row {i} has {len(row)}")
            if any(abs(v) > MAX_CHANNEL_AMPLITUDE for v in row):
                raise ValueError(f"entries must be within +-{MAX_CHANNEL_AMPLITUDE:g} (linear amplitude); row {i} is not")
        return rows

    @model_validator(mode="after")
    def _same_shape(self):
        if self.im is not None and (len(self.im) != len(self.re) or len(self.im[0]) != len(self.re[0])):
            raise ValueError(
                f"im: shape {len(self.im)}x{len(self.im[0])} differs from re {len(self.re)}x{len(self.re[0])}"
            )
        return self

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.re), len(self.re[0])


class WirelessConfig(Config):
    """One uplink scenario: users, antennas, powers, placement, propagation, noise and attack.

    Defaults: the calibrated paper uplink (8 users, 16 antennas, 0.1 mW, 100-1000 m, UMa NLOS at
    3.5 GHz, -154.3 dBm of thermal noise per antenna, seeds 281, no attack).

    Either an explicit `channel` (N_R x Q) or geometry: explicit `distances_m` (+ optional
    `angles_deg`), else users uniform in the annulus [d_min_m, d_max_m] drawn from `seed`.
    `seed` drives placement and shadowing, `fading_seed` the Rayleigh fading of `evaluate_uplink`.
    Field order matters: later validators cross-check earlier fields.
    """

    channel: Optional[ChannelMatrix] = None
    num_users: int = Field(8, ge=1, le=MAX_USERS, description="Q; implied by distances_m / channel / a tx power list")
    num_rx_antennas: int = Field(PAPER_NUM_RX_ANTENNAS, ge=1, le=MAX_RX_ANTENNAS, description="N_R; implied by channel")
    # paper: 0.1 mW
    tx_power_w: Union[float, list[float]] = Field(1e-4, description="max transmit power per user, W (scalar or per user)")

    distances_m: Optional[list[float]] = Field(None, description="explicit user distances from the BS, m")
    angles_deg: Optional[list[float]] = Field(None, description="explicit user angles (with distances_m)")
    d_min_m: float = Field(100.0, gt=0.0, le=1e5)  # paper
    d_max_m: float = Field(1000.0, gt=0.0, le=1e5)  # paper
    # paper: d_q uniform in [100, 1000] m
    radial_distribution: Literal["uniform_area", "uniform_distance"] = "uniform_distance"
    seed: int = Field(PAPER_SEED, ge=0, le=2**32 - 1, description="placement and shadowing")
    fading_seed: int = Field(PAPER_SEED, ge=0, le=2**32 - 1, description="small-scale Rayleigh fading")

    carrier_frequency_hz: float = Field(3.5e9, ge=1e8, le=1e11)  # ours
    bandwidth_hz: float = Field(1e6, gt=0.0, le=1e10, description="k T B NF only (noise_power_w null)")
    noise_figure_db: float = Field(7.0, ge=0.0, le=40.0, description="k T B NF only (noise_power_w null)")
    noise_power_w: Optional[float] = Field(DEFAULT_NOISE_POWER_W, description="thermal noise per antenna, W "
                                           "(default: the calibrated paper value); null = k T B NF at 290 K")
    pathloss_model: PathlossModel = "uma_nlos"  # ours: 3GPP TR 38.901
    pathloss_exponent: float = Field(3.5, ge=1.0, le=8.0, description="log_distance only (1 m reference)")
    shadowing_std_db: float = Field(0.0, ge=0.0, le=20.0, description="log-normal shadowing, 0 = off")

    jammer_power_w: float = Field(DEFAULT_JAMMER_POWER_W, ge=0.0, le=MAX_POWER_W,
                                  description="jammer budget P_J >= tr C_J, W (all attacks; unused by 'none')")
    attack: Attack = "none"
    target_user: Optional[int] = Field(None, description="0-based user index, for attack='targeted'")
    # True: the MMSE-SIC filters use the true noise-plus-jamming covariance (a sensing-assisted
    # receiver); False: they are designed for thermal noise alone and each user's MSE is that of the
    # mismatched filter under the actual jamming
    receiver_knows_jammer: bool = Field(True, description="the receiver knows the jammer's covariance")

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def parse(cls, data: Any, *, field: str = "wireless") -> "WirelessConfig":
        """The entry point: plain data (or a config) -> config, or InputError naming the field
        (cross-field messages "name: reason" are attributed to `name` by `input_error`)."""
        return super().parse(data, field=field)

    @model_validator(mode="before")
    @classmethod
    def _aliases_and_implied_sizes(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for alias, canonical in DBM_ALIASES.items():
            if alias not in data:
                continue
            if canonical in data:
                raise _field_error(alias, f"give either {alias} or {canonical}, not both")
            value = data.pop(alias)
            values = value if alias == "tx_power_dbm" and isinstance(value, list) and value else [value]
            if not all(map(_finite_number, values)):
                raise _field_error(alias, f"must be a finite number in dBm{' or a list of them' if alias == 'tx_power_dbm' else ''} (got {value!r:.60})")
            low, high = _DBM_MIN.get(alias, -math.inf), _DBM_MAX[alias]
            if not all(low <= v <= high for v in values):  # checked before 10**(dBm/10) can overflow
                span = f"{low:g} to {high:g}" if low > -math.inf else f"at most {high:g}"
                raise _field_error(alias, f"must be {span} dBm (got {value!r:.60})")
            data[canonical] = [dbm_to_w(v) for v in values] if isinstance(value, list) else dbm_to_w(value)
        # A bandwidth or noise figure given without a noise power asks for k T B NF: the calibrated
        # default noise power would otherwise silently override them. A given noise power wins.
        if "noise_power_w" not in data and ("bandwidth_hz" in data or "noise_figure_db" in data):
            data["noise_power_w"] = None
        # Q (and N_R) may be implied; fill them so the canonical form always states them
        if "num_users" not in data:
            channel = data.get("channel")
            if isinstance(channel, dict) and isinstance(channel.get("re"), list) and channel["re"] and isinstance(channel["re"][0], list):
                data["num_users"] = len(channel["re"][0])
            elif isinstance(data.get("distances_m"), list) and data["distances_m"]:
                data["num_users"] = len(data["distances_m"])
            elif isinstance(data.get("tx_power_w"), list) and data["tx_power_w"]:
                data["num_users"] = len(data["tx_power_w"])
        if "num_rx_antennas" not in data:
            channel = data.get("channel")
            if isinstance(channel, dict) and isinstance(channel.get("re"), list) and channel["re"]:
                data["num_rx_antennas"] = len(channel["re"])
        return data

    # ---- cross-field checks, each attributed to its field ----------------------------------
    @field_validator("num_users")
    @classmethod
    def _users_match_channel(cls, value, info):
        channel = info.data.get("channel")
        if channel is not None and channel.shape[1] != value:
            raise ValueError(f"is {value} but the channel has {channel.shape[1]} columns (N_R x Q)")
        return value

    @field_validator("num_rx_antennas")
    @classmethod
    def _antennas_match_channel(cls, value, info):
        channel = info.data.get("channel")
        if channel is not None and channel.shape[0] != value:
            raise ValueError(f"is {value} but the channel has {channel.shape[0]} rows (N_R x Q)")
        return value

    @field_validator("tx_power_w", mode="before")
    @classmethod
    def _power_shape(cls, value):
        # checked here (not by the Union) so an error names `tx_power_w`, not a union branch
        if _finite_number(value):
            return float(value)
        if isinstance(value, list) and value and all(map(_finite_number, value)):
            return [float(v) for v in value]
        raise ValueError("must be a finite number of W or a non-empty list of them, one per user")

    @field_validator("tx_power_w")
    @classmethod
    def _powers(cls, value, info):
        values = value if isinstance(value, list) else [value]
        if any(not 0.0 <= v <= MAX_POWER_W for v in values):
            raise ValueError(f"must be in [0, {MAX_POWER_W:g}] W")
        q = info.data.get("num_users")
        if isinstance(value, list) and q is not None and len(value) != q:
            raise ValueError(f"has {len(value)} entries, needs one per user ({q}) or a scalar")
        return value

    @field_validator("distances_m")
    @classmethod
    def _distances(cls, value, info):
        if value is None:
            return value
        if info.data.get("channel") is not None:
            raise ValueError("give either an explicit channel or geometry, not both")
        if any(not (1.0 <= d <= 1e5) for d in value):
            raise ValueError("must be in [1, 1e5] m")
        q = info.data.get("num_users")
        if q is not None and len(value) != q:
            raise ValueError(f"has {len(value)} entries, needs one per user ({q})")
        return value

    @field_validator("angles_deg")
    @classmethod
    def _angles(cls, value, info):
        if value is None:
            return value
        distances = info.data.get("distances_m")
        if distances is None:
            raise ValueError("needs distances_m (random placements draw their own angles)")
        if len(value) != len(distances):
            raise ValueError(f"has {len(value)} entries, needs one per user ({len(distances)})")
        return value

    @field_validator("d_max_m")
    @classmethod
    def _annulus(cls, value, info):
        d_min = info.data.get("d_min_m")
        if d_min is not None and value < d_min:
            raise ValueError(f"must be >= d_min_m ({d_min})")
        return value

    @field_validator("noise_power_w")
    @classmethod
    def _noise(cls, value):
        if value is not None and not MIN_NOISE_W <= value <= MAX_NOISE_W:
            raise ValueError(f"must be in [{MIN_NOISE_W:g}, {MAX_NOISE_W:g}] W per antenna")
        return value

    @field_validator("target_user")
    @classmethod
    def _target(cls, value, info):
        q = info.data.get("num_users")
        if value is None:
            if info.data.get("attack") == "targeted":
                raise ValueError(f"attack 'targeted' needs a target_user in 0..{(q or 1) - 1}")
            return value
        if q is not None and not 0 <= value < q:
            raise ValueError(f"must be a user index in 0..{q - 1} (0-based, input order)")
        return value

    # ---- derived values -----------------------------------------------------------------
    @property
    def has_explicit_channel(self) -> bool:
        return self.channel is not None

    def tx_powers_w(self):
        """Per-user power vector p (Q,), W (users transmit at full power: the inner max of P1/P2)."""
        import numpy as np

        return np.broadcast_to(np.asarray(self.tx_power_w, dtype=float), (self.num_users,)).copy()

    def thermal_noise_power_w(self) -> float:
        """s2, thermal noise per receive antenna: `noise_power_w` (default calibrated), else k T B NF at 290 K."""
        from ...units import thermal_noise_w

        if self.noise_power_w is not None:
            return float(self.noise_power_w)
        return thermal_noise_w(self.bandwidth_hz, self.noise_figure_db)

