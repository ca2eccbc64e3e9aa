"""Wireless uplink engine: MIMO uplink, MMSE-SIC receiver, worst-case jammers, per-user MSE.

    from rmtllmf_core.wireless import WirelessConfig, evaluate_uplink, monte_carlo, PRESETS, ATTACKS
"""
from .config import ATTACKS, PATHLOSS_MODELS, ChannelMatrix, WirelessConfig
from .engine import MonteCarloResult, UplinkResult, draw_channels, evaluate_uplink, monte_carlo
from .presets import PRESETS, preset

__all__ = [
    "ATTACKS",
    "PATHLOSS_MODELS",
    "PRESETS",
    "ChannelMatrix",
    "MonteCarloResult",
    "UplinkResult",
    "WirelessConfig",
    "draw_channels",
    "evaluate_uplink",
    "monte_carlo",
    "preset",
]
