"""The defense arena: every defense measured against the non-adaptive worst-case jammers and against a
jammer that knows it, at the same average power (science/jamming.py, science/defenses.py).

A cell is (attack, defense): the paper's channel at its preset (`none`: the ideal channel, no
jammer), a defense or combination from the records, averaged over seeds. Its non-adaptive value is
the white jammer's; its adaptive value is the worst, for that defense, of a fixed set of strategies
that know the schedule and the defense (never the data), the white one included: the evaluator takes
the strongest attacker, as an ensemble of attacks does in adversarial robustness evaluations, so an
adaptive value is never kinder to the defender than the non-adaptive one. The strategy is fixed per
cell (the lowest mean over the seeds), not picked per seed.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

from ..errors import InputError
from ..experiment.scenario import Scenario
from ..science import defenses as defense_records
from ..science.jamming import STRATEGIES, STRATEGY_RECORDS
from .sweeps import RESILIENCE_PRESETS, without_control
from .work import Work

ATTACKS = tuple(RESILIENCE_PRESETS)          # none (the ideal channel), worst_sum_rate, worst_strongest_user
DEFENSES = ("none", "rmtllmf", "spectral", "spectral+rmtllmf", "destripe+spectral+rmtllmf", "drop+rmtllmf",
            "gate+drop+rmtllmf")
SEEDS = (0, 1, 2)
NON_ADAPTIVE = "white"
ADAPTIVE = tuple(s.name for s in STRATEGY_RECORDS if s.name != NON_ADAPTIVE)


def _check(names: Sequence[str], allowed: Iterable[str], field: str) -> tuple[str, ...]:
    allowed = tuple(allowed)
    names = tuple(names)
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise InputError(field, f"choose among {', '.join(allowed)}; got {', '.join(map(str, bad or names)) or 'none'}")
    return names


def check_defenses(names: Sequence[str]) -> tuple[str, ...]:
    for n in names:
        try:
            defense_records.parse(n)
        except ValueError as exc:
            raise InputError("defense", str(exc)) from None
    if not names:
        raise InputError("defense", f"at least one, e.g. {', '.join(DEFENSES)}")
    return tuple(names)


def scenario(attack: str, defense: str, strategy: str, seed: int, zoo: str = "tiny") -> Scenario:
    """The run behind one arena point: the attack's paper preset, the defense's fields, the jammer's strategy."""
    from ..experiment.pipeline import fit_to_zoo
    from ..experiment.presets import preset_scenario

    s = STRATEGIES[strategy]
    base, _ = fit_to_zoo(without_control(preset_scenario(RESILIENCE_PRESETS[attack], zoo=zoo)))  # a small zoo's test split
    return base.replace(seed=int(seed), **defense_records.settings(defense),
                        **{"jammer.structure": s.structure, "jammer.allocation": s.allocation})


def arena_points(zoo: str = "tiny", seeds: Sequence[int] | None = None, defenses: Sequence[str] | None = None,
                 attacks: Sequence[str] | None = None) -> list[tuple[dict, Scenario]]:
    """One run per (attack, strategy, defense, seed); the ideal channel has no jammer to adapt.
    Left out: SEEDS, DEFENSES, ATTACKS."""
    attacks = _check(ATTACKS if attacks is None else attacks, ATTACKS, "attack")
    defenses = check_defenses(DEFENSES if defenses is None else defenses)
    seeds = [int(s) for s in (SEEDS if seeds is None else seeds)]
    if not seeds:
        raise InputError("seeds", "at least one seed")
    points, seen = [], {}
    for attack in attacks:
        for defense in defenses:
            for strategy in (NON_ADAPTIVE,) + (tuple(ADAPTIVE) if attack != "none" else ()):
                scns = [scenario(attack, defense, strategy, seed, zoo) for seed in seeds]
                # a strategy the defense gives no hold to is another strategy's jammer (the schema makes the
                # two one scenario): kept once, under the first name
                sig = tuple(s.canonical_json() for s in scns)
                if sig in seen.setdefault((attack, defense), set()):
                    continue
                seen[(attack, defense)].add(sig)
                points += [({"attack": attack, "strategy": strategy, "defense": defense, "seed": seed}, s)
                           for seed, s in zip(seeds, scns)]
    return points


def arena_work(zoo: str = "tiny", seeds: Sequence[int] | None = None, defenses: Sequence[str] | None = None,
               attacks: Sequence[str] | None = None) -> Work:
    return Work.sweep(arena_points(zoo, seeds, defenses, attacks))


def arena_rows(points: Sequence[Mapping]) -> list[dict]:
    """The machine-readable table (arena.csv): per (attack, adaptive, defense, seed) the defended model's
    average normalised accuracy (a fraction) and the airtime factor; `strategy`: the jammer's."""
    cells = arena_cells(points)
    by_key = {(p["attack"], p["strategy"], p["defense"], p["seed"]): p for p in points}
    out = []
    for c in cells:
        for adaptive, strategy in ((False, NON_ADAPTIVE), (True, c["adaptive_strategy"])):
            for seed in c["seeds"]:
                p = by_key[(c["attack"], strategy, c["defense"], seed)]
                out.append({"attack": c["attack"], "adaptive": adaptive, "defense": c["defense"], "seed": seed,
                            "average_normalized": p["avg_normalized"], "airtime_factor": p["airtime_factor"],
                            "strategy": strategy, "engine_version": p.get("engine_version"),
                            "scenario": p.get("scenario")})
    return out


def arena_cells(points: Sequence[Mapping]) -> list[dict]:
    """Per (attack, defense): the non-adaptive and the adaptive mean over seeds (fractions), the strategy
    that attains the adaptive one, the gap, and every strategy's mean."""
    groups: dict[tuple, dict[str, dict[int, float]]] = {}
    airtime: dict[tuple, float] = {}
    for p in points:
        key = (p["attack"], p["defense"])
        groups.setdefault(key, {}).setdefault(p["strategy"], {})[p["seed"]] = float(p["avg_normalized"])
        airtime[key] = float(p["airtime_factor"])
    out = []
    for (attack, defense), by_strategy in groups.items():
        seeds = sorted(by_strategy[NON_ADAPTIVE])
        means = {s: float(np.mean([v[k] for k in seeds])) for s, v in by_strategy.items() if set(v) >= set(seeds)}
        worst = min(means, key=lambda s: (means[s], s != NON_ADAPTIVE))   # ties: the non-adaptive one
        out.append({"attack": attack, "defense": defense, "non_adaptive": means[NON_ADAPTIVE],
                    "adaptive": means[worst], "adaptive_strategy": worst, "gap": means[NON_ADAPTIVE] - means[worst],
                    "strategies": means, "seeds": seeds, "airtime_factor": airtime[(attack, defense)]})
    return out


def best_other_defense(cells: Sequence[Mapping], attack: str = "worst_sum_rate") -> dict | None:
    """The defense other than R-MTLLMF alone (and none) with the highest adaptive value under `attack`."""
    mine = [c for c in cells if c["attack"] == attack and c["defense"] not in ("none", "rmtllmf")]
    return max(mine, key=lambda c: c["adaptive"]) if mine else None


def reading(cells: Sequence[Mapping]) -> list[str]:
    """What the table says, in sentences whose every number comes from `cells` (percent points)."""
    by = {(c["attack"], c["defense"]): c for c in cells}
    lines = []
    pct = lambda v: f"{100 * v:.1f}%"
    for attack in ATTACKS:
        if (attack, "rmtllmf") not in by:
            continue
        r = by[(attack, "rmtllmf")]
        none = by.get((attack, "none"))
        what = "On the ideal channel" if attack == "none" else f"Under the {attack.replace('_', ' ')} jammer"
        text = f"{what}, R-MTLLMF gets {pct(r['non_adaptive'])}"
        if none is not None:
            text += f" (no defense {pct(none['non_adaptive'])})"
        if attack != "none":
            text += (f"; a jammer of the same power that knows it ({_strategy_title(r['adaptive_strategy'])}) "
                     f"leaves {pct(r['adaptive'])}, {100 * r['gap']:.1f} points less")
        lines.append(text + ".")
    best = best_other_defense(cells)
    if best is not None and ("worst_sum_rate", "rmtllmf") in by:
        r = by[("worst_sum_rate", "rmtllmf")]
        ideal = by.get(("none", best["defense"]))
        text = (f"The strongest other defense against its adaptive attacker under the worst-case sum-rate jammer "
                f"is {defense_records.title(best['defense'])}: {pct(best['adaptive'])} against R-MTLLMF's "
                f"{pct(r['adaptive'])} ({100 * (best['adaptive'] - r['adaptive']):+.1f} points)")
        if ideal is not None and ("none", "rmtllmf") in by:
            text += (f"; on the ideal channel {pct(ideal['non_adaptive'])} against "
                     f"{pct(by[('none', 'rmtllmf')]['non_adaptive'])}")
        lines.append(text + ".")
    broken = [c for c in cells if c["gap"] >= 0.05]
    if broken:
        lines.append("Broken by an adaptive jammer (5 points or more): " + "; ".join(
            f"{defense_records.title(c['defense'])} under {c['attack'].replace('_', ' ')} "
            f"({100 * c['gap']:.1f} points, {_strategy_title(c['adaptive_strategy'])})" for c in broken) + ".")
    else:
        lines.append("No defense loses 5 points or more to its adaptive attacker.")
    return lines


def _strategy_title(name: str) -> str:
    return STRATEGIES[name].title


def markdown(cells: Sequence[Mapping], seeds: Sequence[int]) -> str:
    """arena.md: the table (percent on screen) and the reading."""
    head = ("| attack | defense | non-adaptive | adaptive | gap (points) | strongest strategy |\n"
            "|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {c['attack']} | {c['defense']} | {100 * c['non_adaptive']:.1f} | {100 * c['adaptive']:.1f} | "
        f"{100 * c['gap']:.1f} | {c['adaptive_strategy']} |\n" for c in cells)
    strategies = "".join(f"- `{s.name}`: {s.title} (knows {s.knows})\n" for s in STRATEGY_RECORDS)
    return ("# The defense arena\n\nAverage normalised accuracy of the defended model (%), mean over seeds "
            f"{', '.join(map(str, seeds))}; zero airtime. Adaptive: the strongest of the strategies below "
            "for that defense, the non-adaptive one included.\n\n" + head + body + "\n## The jammers\n\n"
            + strategies + "\n## What it shows\n\n" + "".join(f"- {line}\n" for line in reading(cells)))
