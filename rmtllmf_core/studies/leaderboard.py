"""Which merge survives a jammer: every merge method x the paper's three channels x {no defense,
R-MTLLMF} (x plain or MSE-aware fusion), as one Work of cached runs.

One run per (method, channel, fusion weighting, seed) with R-MTLLMF on: its attacked fusion is the
"no defense" entry (the same numbers as a run without defense: the attacked fusion is computed before
any defense) and its defended one the "rmtllmf" entry; every run also gives the clean fusion.
`table` reads the runs' results from the disk cache and makes one row per (method, channel,
defense, weighting); `entries` one record per method in RobustBench's spirit (reference, published
clean number and for which model, ours, the zoo's fingerprint); `reading` says in words what the
numbers show.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from ..experiment import pipeline
from ..experiment.codec import link_query
from ..errors import InputError
from ..science.methods import METHODS
from ..experiment.presets import preset_scenario
from ..experiment.result import Condition, Result
from ..experiment.scenario import Scenario
from .work import Work

CHANNELS = (("paper_ideal", "none"), ("paper_worst_sum_rate", "worst_sum_rate"),
            ("paper_worst_strongest_user", "worst_strongest_user"))
ATTACKS = tuple(a for _, a in CHANNELS)
DEFENSES = ("none", "rmtllmf")
CONDITION_OF = {"none": Condition.ATTACKED, "rmtllmf": Condition.DEFENDED}


def _check_names(values: Iterable[str], allowed: Sequence[str], field: str) -> list[str]:
    values = list(values)
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise InputError(field, f"choose among {', '.join(allowed)}; got {', '.join(map(str, bad)) or 'nothing'}")
    return values


def points(zoo: str = "tiny", methods: Iterable[str] = tuple(METHODS), attacks: Iterable[str] = ATTACKS,
           mse_aware: Iterable[bool] = (False,), seeds: Iterable[int] = (0,)) -> list[tuple[dict, Scenario]]:
    """One point per (method, channel, weighting, seed), R-MTLLMF on, without the clean control."""
    methods = _check_names(methods, tuple(METHODS), "methods")
    attacks = _check_names(attacks, ATTACKS, "attacks")
    preset_of = {a: p for p, a in CHANNELS}
    out = []
    for attack in attacks:
        base = preset_scenario(preset_of[attack], zoo=zoo).replace(**{
            "evaluation.clean_realign_control": False, "defense.freeze": True, "defense.realign": True})
        for method in methods:
            for aware in mse_aware:
                for seed in seeds:
                    s = base.replace(**{"fusion.method": method, "fusion.mse_aware": bool(aware), "seed": int(seed)})
                    out.append(({"method": method, "attack": attack, "mse_aware": bool(aware), "seed": int(seed)}, s))
    return out


def work(zoo: str = "tiny", **options) -> Work:
    return Work.sweep(points(zoo, **options))


def _results(w: Work, cache=None) -> list[Result]:
    cache = cache if cache is not None else pipeline.default_cache()
    out = []
    for (_, s), key in zip(w.points, w.result_keys):
        r = pipeline.stored(cache, key)
        if r is None:
            raise InputError("leaderboard", f"the run of {s.fusion.method} on {s.wireless.attack} is not computed "
                                            "yet; run the leaderboard first")
        out.append(r)
    return out


def table(w: Work, cache=None) -> list[dict]:
    """One row per (method, attack, defense, mse_aware), mean over seeds: average normalised and absolute
    accuracy of that condition, the clean fusion's, the drop and the per-task accuracies, all as fractions
    (percent only on screen)."""
    groups: dict[tuple, list[Result]] = {}
    for (row, _), r in zip(w.points, _results(w, cache)):
        groups.setdefault((row["method"], row["attack"], row["mse_aware"]), []).append(r)
    rows = []
    for (method, attack, aware), results in groups.items():
        tasks = results[0].tasks
        for defense in DEFENSES:
            cond = CONDITION_OF[defense]
            norm = [r.average_normalized[cond] for r in results]
            absolute = [float(np.mean([r.accuracy[cond][t] for t in tasks])) for r in results]
            clean = [r.average_normalized[Condition.CLEAN] for r in results]
            rows.append({
                "method": method, "attack": attack, "defense": defense, "mse_aware": aware,
                "average_normalized": float(np.mean(norm)), "average_absolute": float(np.mean(absolute)),
                "clean_normalized": float(np.mean(clean)),
                "clean_absolute": float(np.mean([np.mean([r.accuracy[Condition.CLEAN][t] for t in tasks]) for r in results])),
                "drop_from_clean": float(np.mean(clean) - np.mean(norm)),
                "sd_over_seeds": float(np.std(norm)), "seeds": len(results),
                "lambda": float(np.mean([r.lam for r in results])),
                "mean_mse": float(np.mean([r.mean_mse for r in results])),
                **{f"acc_{t}": float(np.mean([r.accuracy[cond][t] for r in results])) for t in tasks},
                "engine_version": results[0].engine_version,
                "scenario": link_query(results[0].scenario),    # the first seed's run (its share link's query)
            })
    return rows


def entries(rows: Sequence[dict], zoo_fingerprint: str, zoo_name: str) -> list[dict]:
    """One record per (method, weighting): its reference and published clean numbers, and ours."""
    out = []
    for (method, aware) in dict.fromkeys((r["method"], r["mse_aware"]) for r in rows):
        m = METHODS[method]
        mine = [r for r in rows if r["method"] == method and r["mse_aware"] == aware]
        out.append({
            "method": method, "title": m.title, "reference": m.reference, "mse_aware": aware,
            "published_clean": [{"value": p.value / 100, "metric": p.metric, "model": p.model, "source": p.source}
                                for p in m.published],
            "ours": {
                "zoo": zoo_name, "zoo_fingerprint": zoo_fingerprint,
                "clean_normalized": mine[0]["clean_normalized"], "clean_absolute": mine[0]["clean_absolute"],
                "lambda": mine[0]["lambda"],
                "conditions": [{k: r[k] for k in ("attack", "defense", "average_normalized", "average_absolute",
                                                  "drop_from_clean", "sd_over_seeds", "seeds")} for r in mine],
            },
        })
    return out


def _best(rows, **where):
    pool = [r for r in rows if all(r[k] == v for k, v in where.items())]
    return max(pool, key=lambda r: r["average_normalized"]) if pool else None


def _below(drop: float) -> str:
    """A drop (a fraction) in points, on screen."""
    return f"{100 * drop:.1f} points below" if drop >= 0 else f"{-100 * drop:.1f} points above"


def reading(rows: Sequence[dict], titles: dict[str, str] | None = None) -> list[str]:
    """What the numbers show, in a few sentences built from them (none of it is written in advance)."""
    title = lambda m: (titles or {}).get(m, METHODS[m].title if m in METHODS else m)  # noqa: E731
    plain = [r for r in rows if not r["mse_aware"]] or list(rows)
    lines = []
    clean = {r["method"]: r["clean_normalized"] for r in plain}
    if clean:
        order = sorted(clean, key=clean.get, reverse=True)
        lines.append(f"Without noise, {title(order[0])} fuses best ({100 * clean[order[0]]:.1f}% normalised) and "
                     f"{title(order[-1])} worst ({100 * clean[order[-1]]:.1f}%).")
    for attack in ATTACKS:
        attacked = [r for r in plain if r["attack"] == attack and r["defense"] == "none"]
        if not attacked:
            continue
        hurt = max(attacked, key=lambda r: r["drop_from_clean"])
        kept = min(attacked, key=lambda r: r["drop_from_clean"])
        defended = _best(plain, attack=attack, defense="rmtllmf")
        where = {"none": "On the ideal channel", "worst_sum_rate": "Under the worst-case sum-rate jammer",
                 "worst_strongest_user": "Under the worst-case strongest-user jammer"}[attack]
        text = (f"{where}, {title(kept['method'])} loses least without defense ({_below(kept['drop_from_clean'])} "
                f"its clean fusion) and {title(hurt['method'])} most ({100 * hurt['drop_from_clean']:.1f} points)")
        if defended is not None:
            text += (f"; with R-MTLLMF, {title(defended['method'])} ends highest "
                     f"({100 * defended['average_normalized']:.1f}%)")
        lines.append(text + ".")
    aware = [r for r in rows if r["mse_aware"]]
    if aware:
        gains = []
        for r in aware:
            twin = next((p for p in plain if (p["method"], p["attack"], p["defense"]) ==
                         (r["method"], r["attack"], r["defense"])), None)
            if twin is not None and r["attack"] != "none":
                gains.append(100 * (r["average_normalized"] - twin["average_normalized"]))
        if gains:
            lines.append(f"MSE-aware fusion changes the jammed accuracies by {np.mean(gains):+.1f} points on average "
                         f"(from {min(gains):+.1f} to {max(gains):+.1f}) over methods, the two jammers and both defenses.")
    return lines
