"""Scenario presets, as data: the paper's three channel conditions on a zoo's tasks.

Each preset is a partial scenario (nested dicts) laid over the defaults; `tasks` comes from the zoo.
The wireless part is one of the calibrated `paper` uplinks (see rmtllmf_core/wireless/presets.py).
"""
from __future__ import annotations

import copy

from .errors import InputError
from .scenario import Scenario
from .wireless import PRESETS as WIRELESS_PRESETS

RMTLLMF = {"freeze": True, "realign": True, "shots_per_class": 10}

# each names its calibrated uplink in rmtllmf_core.wireless.PRESETS (jammer budgets live there)
SCENARIO_PRESETS: dict[str, dict] = {
    "paper_ideal": {"wireless": "paper", "defense": RMTLLMF},
    "paper_worst_sum_rate": {"wireless": "paper_worst_sum_rate", "defense": RMTLLMF},
    "paper_worst_strongest_user": {"wireless": "paper_worst_strongest_user", "defense": RMTLLMF},
}
PRESET_TITLES = {
    "paper_ideal": "Paper: ideal channel",
    "paper_worst_sum_rate": "Paper: worst-case sum rate (P1)",
    "paper_worst_strongest_user": "Paper: worst-case strongest user (P2)",
}
DEFAULT_PRESET = "paper_ideal"


def zoo_tasks(zoo: str) -> tuple[str, ...]:
    from .pipeline import get_zoo

    return get_zoo(zoo).task_names


def preset_dict(name: str, tasks: tuple[str, ...], zoo: str = "tiny") -> dict:
    if name not in SCENARIO_PRESETS:
        raise InputError("preset", f"unknown preset {name!r}; allowed: {', '.join(SCENARIO_PRESETS)}")
    spec = copy.deepcopy(SCENARIO_PRESETS[name])
    wireless = {**copy.deepcopy(WIRELESS_PRESETS[spec.pop("wireless")]), "num_users": len(tasks)}
    return {"zoo": zoo, "tasks": list(tasks), "wireless": wireless, **spec}


def preset_scenario(name: str, tasks: tuple[str, ...] | None = None, zoo: str = "tiny") -> Scenario:
    return Scenario.parse(preset_dict(name, tuple(tasks) if tasks else zoo_tasks(zoo), zoo))


def default_scenario(zoo: str = "tiny") -> Scenario:
    return preset_scenario(DEFAULT_PRESET, zoo=zoo)
