"""Wireless uplink engine: MIMO uplink, MMSE-SIC receiver, worst-case jammers, per-user MSE.

    from rmtllmf_core.science.wireless import WirelessConfig, evaluate_uplink, monte_carlo, PRESETS, ATTACKS

- `WirelessConfig.parse(data, field="wireless")`: the frozen, validated scenario (W / m / Hz / dB;
  `*_dbm` inputs accepted and converted); bad input raises `InputError` naming the dotted field.
- `evaluate_uplink(cfg) -> UplinkResult`: one seeded drop; per-user arrays in input order, the
  jammer covariance and its eigen-powers, the Q x Q error covariance, `to_dict()` (the JSON of
  `python -m rmtllmf_core channel`).
- `monte_carlo(cfg, draws, vary_placement=False) -> MonteCarloResult`: K draws as one batch.
- `PRESETS` (plain dicts, calibrated "paper" uplinks; see presets.py) and `preset(name, **overrides)`.
- `channel_warning(cfg, uplink=None) -> str | None`: says when the channel alone (no jammer) leaves
  the users' task vectors unusable (average MSE above 0.5), with the SINRs and the knobs.
- `ATTACKS`: none, white, worst_sum_rate (P1 closed form), worst_strongest_user (P2, eq. 15),
  targeted, worst_max_user_numeric (numerical min over C_J of max_q R_q, certified).
"""
from .checks import channel_warning, unusable_uplink_warning
from .config import ATTACKS, PATHLOSS_MODELS, ChannelMatrix, WirelessConfig
from .engine import MonteCarloResult, UplinkResult, draw_channels, evaluate_uplink, monte_carlo
from .presets import PAPER_REPORTED_AVERAGE_MSE, PRESETS, preset

__all__ = [
    "ATTACKS",
    "PAPER_REPORTED_AVERAGE_MSE",
    "PATHLOSS_MODELS",
    "PRESETS",
    "ChannelMatrix",
    "MonteCarloResult",
    "UplinkResult",
    "WirelessConfig",
    "channel_warning",
    "draw_channels",
    "evaluate_uplink",
    "monte_carlo",
    "preset",
    "unusable_uplink_warning",
]
