"""The engine's scenario presets (data in rmtllmf_core.experiment.presets) as sidebar buttons."""
from __future__ import annotations

import functools

from rmtllmf_core.experiment.presets import PRESET_TITLES, SCENARIO_PRESETS, preset_scenario
from rmtllmf_core.experiment.scenario import Scenario

NAMES = tuple(SCENARIO_PRESETS)
LABELS = {name: PRESET_TITLES.get(name, name) for name in NAMES}
HELP = {name: PRESET_TITLES.get(name, name) + " (keeps your choice of users)" for name in NAMES}


def active(current: Scenario) -> str | None:
    """The preset the current scenario is exactly (on its users' tasks), if any: the sidebar marks it."""
    for name in NAMES:
        try:
            if apply(name, current) == current:
                return name
        except Exception:  # a preset that does not fit these users is simply not the active one
            continue
    return None


def apply(name: str, current: Scenario) -> Scenario:
    """The preset on the current users' tasks (raises InputError if they do not fit)."""
    return _preset(name, tuple(current.tasks), current.zoo)


@functools.lru_cache(maxsize=256)
def _preset(name: str, tasks: tuple[str, ...], zoo: str) -> Scenario:
    """A preset on some tasks, validated once (Scenario is frozen: shared safely; the sidebar asks on
    every run of every session which preset is active)."""
    return preset_scenario(name, tasks=tasks, zoo=zoo)
