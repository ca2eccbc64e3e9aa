"""The engine's scenario presets (data in rmtllmf_core.presets) as sidebar buttons."""
from __future__ import annotations

from rmtllmf_core.presets import PRESET_TITLES, SCENARIO_PRESETS, preset_scenario
from rmtllmf_core.scenario import Scenario

NAMES = tuple(SCENARIO_PRESETS)
LABELS = {name: PRESET_TITLES.get(name, name) for name in NAMES}
HELP = {name: PRESET_TITLES.get(name, name) + " (keeps your choice of users)" for name in NAMES}


def apply(name: str, current: Scenario) -> Scenario:
    """The preset on the current users' tasks (raises InputError if they do not fit)."""
    return preset_scenario(name, tasks=current.tasks, zoo=current.zoo)
