"""Model zoos: the embedded tiny CLIP zoo and real open_clip zoos, all through one loader.

    from rmtllmf_core.zoo import load_zoo
    zoo = load_zoo("tiny")                 # the shipped default under assets/tiny
    x, y = zoo.split("digits", "test", 200)
"""
from __future__ import annotations

from .types import SPLITS, TaskInfo, Zoo

__all__ = ["load_zoo", "Zoo", "TaskInfo", "SPLITS", "TASK_NAMES"]


def __getattr__(name):  # lazy: importing the package must not pay for torch/open_clip
    if name == "load_zoo":
        from .loader import load_zoo

        return load_zoo
    if name == "TASK_NAMES":
        from .tasks import TASK_NAMES

        return TASK_NAMES
    raise AttributeError(name)
