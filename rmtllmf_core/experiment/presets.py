"""Scenario presets as records: the paper's three channel conditions on a zoo's tasks.

Each preset is a partial scenario (nested dicts) laid over the defaults; `tasks` comes from the zoo.
The wireless part is one of the calibrated `paper` uplinks (rmtllmf_core/science/wireless/presets.py); the
error model's reference amplitude and the realignment budget are the fitted values of
`calibration.json` (rmtllmf_core/science/calibration.py), taken as data.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from ..science import calibration
from ..errors import InputError
from .scenario import Scenario
from ..science.wireless import PRESETS as WIRELESS_PRESETS


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    description: str
    wireless: str  # a calibrated uplink of rmtllmf_core.science.wireless.PRESETS (jammer budgets live there)
    data: dict = field(default_factory=dict)  # the rest of the partial scenario
    reference: str = "R-MTLLMF, arXiv 2411.18220, Sec. IV"


def _paper_defense() -> dict:
    return {"freeze": True, "realign": True, "shots_per_class": 10, **calibration.scenario_overlay()["defense"]}


def _records() -> dict[str, Preset]:
    perturb = calibration.scenario_overlay()["perturb"]
    common = {"perturb": perturb, "defense": _paper_defense()}
    return {p.name: p for p in (
        Preset("paper_ideal", "Paper: ideal channel",
               "No jammer: only thermal noise; the paper's average MSE 0.013.", "paper", common),
        Preset("paper_worst_sum_rate", "Paper: worst-case sum rate (P1)",
               "The jammer's covariance that minimises the sum rate at its budget; average MSE 0.21.",
               "paper_worst_sum_rate", common),
        Preset("paper_worst_strongest_user", "Paper: worst-case strongest user (P2)",
               "The jammer's whole budget on the strongest user's channel; the paper's average MSE 0.16.",
               "paper_worst_strongest_user", common),
    )}


PRESETS: dict[str, Preset] = _records()
# views kept for the callers that read them
SCENARIO_PRESETS: dict[str, dict] = {n: {"wireless": p.wireless, **p.data} for n, p in PRESETS.items()}
PRESET_TITLES: dict[str, str] = {n: p.title for n, p in PRESETS.items()}
DEFAULT_PRESET = "paper_ideal"


def zoo_tasks(zoo: str) -> tuple[str, ...]:
    """A zoo's tasks: a built-in zoo's from its card (no weights loaded), any other's from the loaded zoo."""
    from .runtime import get_zoo, loaded
    from ..zoo import BUILTIN, builtin_card

    if zoo in BUILTIN and not loaded(zoo):
        return tuple(builtin_card(zoo)["tasks"])
    return get_zoo(zoo).task_names


def with_zoo_tasks(data: dict, zoo: str = "tiny") -> dict:
    """A scenario file's data, with 'tasks' (when it has none) every task of its zoo (its own 'zoo', else
    `zoo`), one user each: the one rule of the CLI and the app."""
    if "tasks" in data:
        return data
    return {**data, "tasks": list(zoo_tasks(data["zoo"] if isinstance(data.get("zoo"), str) else zoo))}


def preset_dict(name: str, tasks: tuple[str, ...], zoo: str = "tiny") -> dict:
    if name not in PRESETS:
        raise InputError("preset", f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    p = PRESETS[name]
    wireless = {**copy.deepcopy(WIRELESS_PRESETS[p.wireless]), "num_users": len(tasks)}
    return {"zoo": zoo, "tasks": list(tasks), "wireless": wireless, **copy.deepcopy(p.data)}


def preset_scenario(name: str, tasks: tuple[str, ...] | None = None, zoo: str = "tiny") -> Scenario:
    return Scenario.parse(preset_dict(name, tuple(tasks) if tasks else zoo_tasks(zoo), zoo))


def default_scenario(zoo: str = "tiny") -> Scenario:
    return preset_scenario(DEFAULT_PRESET, zoo=zoo)
