"""Sweeps: many scenarios, each one a `run` (so every finished point lands in the disk cache and
an interrupted sweep resumes where it stopped).

- snr_sweep: accuracy versus jammer power for each attack and defense;
- tasks_sweep: accuracy versus the number of fused tasks over every combination (paper Fig. 2);
- ablation_sweep: freeze / realign / both / neither over shots per class (paper Fig. 5).
"""
from __future__ import annotations

from itertools import combinations
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from .errors import InputError
from .pipeline import run
from .scenario import Scenario
from .units import dbm_to_w

Progress = Callable[[float, str], None]

# Named defenses, as the DefenseConfig values they set (everything else keeps the base's value).
OFF = {"freeze": False, "realign": False, "shrinkage": False, "trim_keep_fraction": 1.0}
DEFENSES: dict[str, dict] = {
    "none": OFF,
    "rmtllmf": {**OFF, "freeze": True, "realign": True},
    "freeze": {**OFF, "freeze": True},
    "realign": {**OFF, "realign": True},
    "shrinkage": {**OFF, "shrinkage": True},
    "trim": {**OFF, "trim_keep_fraction": 0.2},
}
ABLATION_VARIANTS = {"neither": "none", "freeze": "freeze", "realign": "realign", "both": "rmtllmf"}


def with_defense(base: Scenario, name: str) -> Scenario:
    if name not in DEFENSES:
        raise InputError("defense", f"unknown defense {name!r}; allowed: {', '.join(DEFENSES)}")
    return base.replace(**{f"defense.{k}": v for k, v in DEFENSES[name].items()})


def _run_all(points: Sequence[tuple[dict, Scenario]], progress: Progress | None, **run_kw) -> list[dict]:
    rows = []
    for i, (row, scenario) in enumerate(points):
        result = run(scenario, **run_kw)
        avg = result["average_normalized"]
        rows.append({
            **row,
            "avg_normalized": avg["defended"],
            "avg_normalized_clean": avg["clean"],
            "mean_mse": float(np.mean([u["mse"] for u in result["wireless"]["users"]])),
            "mean_sinr_db": float(np.mean([u["sinr_db"] for u in result["wireless"]["users"]])),
            "key": result["key"],
        })
        if progress:
            progress((i + 1) / len(points), f"{i + 1}/{len(points)}")
    return rows


def snr_points(base: Scenario, jammer_powers_dbm: Iterable[float], attacks: Iterable[str],
               defenses: Iterable[str]) -> list[tuple[dict, Scenario]]:
    points = []
    for attack in attacks:
        for defense in defenses:
            for p_dbm in jammer_powers_dbm:
                scenario = with_defense(base, defense).replace(**{
                    "wireless.attack": attack, "wireless.jammer_power_w": float(dbm_to_w(p_dbm))})
                points.append(({"attack": attack, "defense": defense, "jammer_power_dbm": float(p_dbm)}, scenario))
    return points


def snr_sweep(base: Scenario, jammer_powers_dbm: Iterable[float], attacks: Iterable[str],
              defenses: Iterable[str], *, progress: Progress | None = None, **run_kw) -> list[dict]:
    return _run_all(snr_points(base, list(jammer_powers_dbm), list(attacks), list(defenses)), progress, **run_kw)


def tasks_points(base: Scenario, conditions: Iterable[tuple[str, str]], sizes: Iterable[int] | None = None
                 ) -> list[tuple[dict, Scenario]]:
    """Every combination of the users' tasks of each size, fused from the same uplink drop."""
    users = base.tasks
    sizes = list(sizes) if sizes is not None else list(range(2, len(users) + 1))
    points = []
    for attack, defense in conditions:
        attacked = with_defense(base, defense).replace(**{"wireless.attack": attack})
        for n in sizes:
            if not 1 <= n <= len(users):
                raise InputError("sizes", f"combination sizes must lie in 1..{len(users)}; got {n}")
            for combo in combinations(users, n):
                row = {"attack": attack, "defense": defense, "n_tasks": n, "tasks": "+".join(combo)}
                points.append((row, attacked.replace(fuse=list(combo))))
    return points


def tasks_sweep(base: Scenario, conditions: Iterable[tuple[str, str]], *, sizes: Iterable[int] | None = None,
                progress: Progress | None = None, **run_kw) -> list[dict]:
    return _run_all(tasks_points(base, list(conditions), sizes), progress, **run_kw)


def ablation_points(base: Scenario, shots: Iterable[int] = (1, 5, 10, 20)) -> list[tuple[dict, Scenario]]:
    points = []
    for variant, defense in ABLATION_VARIANTS.items():
        realigns = DEFENSES[defense]["realign"]
        for k in (shots if realigns else [None]):
            scenario = with_defense(base, defense)
            if k is not None:
                scenario = scenario.replace(**{"defense.shots_per_class": int(k)})
            points.append(({"variant": variant, "shots": k}, scenario))
    return points


def ablation_sweep(base: Scenario, shots: Iterable[int] = (1, 5, 10, 20), *, progress: Progress | None = None,
                   **run_kw) -> list[dict]:
    return _run_all(ablation_points(base, list(shots)), progress, **run_kw)


def summarize_tasks(rows: Sequence[Mapping]) -> list[dict]:
    """Mean and spread of the tasks sweep per (attack, defense, n_tasks): the paper's Fig. 2 bands."""
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        groups.setdefault((r["attack"], r["defense"], r["n_tasks"]), []).append(r["avg_normalized"])
    return [
        {"attack": a, "defense": d, "n_tasks": n, "mean": float(np.mean(v)), "std": float(np.std(v)),
         "min": float(np.min(v)), "max": float(np.max(v)), "combinations": len(v)}
        for (a, d, n), v in sorted(groups.items())
    ]
