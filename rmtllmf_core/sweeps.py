"""Sweeps: many scenarios, each one a `run` (so every finished point lands in the disk cache and
an interrupted sweep resumes where it stopped).

- snr_sweep: accuracy versus jammer power for each attack and defense, with the H0 rejection rate
  and the clean-realigned control (`snr_points`);
- gain_sweep: accuracy versus the error model's reference amplitude (`perturb.symbol_gain_db`) on
  the paper's channel conditions (`gain_points`);
- tasks_sweep: accuracy versus the number of fused tasks over every combination (paper Fig. 2);
- ablation_sweep: freeze / realign / both / neither over shots per class (paper Fig. 5);
- run_points: any list of (row, scenario) points, serially or in a pool of worker processes
  (`workers`), with the same rows either way.
"""
from __future__ import annotations

import contextlib
import functools
import os
import sys
import traceback
import types
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from itertools import combinations
from multiprocessing import get_context
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from . import pipeline
from .errors import AssetError, CapExceeded, InputError
from .pipeline import run
from .scenario import Scenario
from .units import dbm_to_w
from .wireless.presets import PAPER_JAMMER_DBM, PAPER_SU_JAMMER_DBM

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


def without_control(base: Scenario) -> Scenario:
    """A sweep point's scenario: a sweep's rows read the defended and clean accuracies only, so the
    clean-realigned control (one more realignment and evaluation per point, about a sixth of a
    sweep's CPU time on the tiny zoo) is off; single runs keep the user's choice. The control
    depends on neither the channel nor the error model, so the SNR and gain sweeps turn it back on
    for one point (`_one_control`) and give its value to every row of that defense."""
    return base.replace(**{"evaluation.clean_realign_control": False})


def _row(row: Mapping, result: Mapping) -> dict:
    avg = result["average_normalized"]
    rejection = result.get("rejection_rate") or {}
    return {
        **row,
        "avg_normalized": avg["defended"],
        "avg_normalized_clean": avg["clean"],
        "mean_mse": float(np.mean([u["mse"] for u in result["wireless"]["users"]])),
        "mean_sinr_db": float(np.mean([u["sinr_db"] for u in result["wireless"]["users"]])),
        # the same run's received fusion without any defense, and the clean fusion realigned (the
        # control; None where the point did not compute it)
        "avg_normalized_attacked": avg["attacked"],
        "avg_normalized_clean_realigned": avg.get("clean_realigned"),
        # the hypothesis test (H0: the noise does not alter the prediction) against the clean fusion
        "rejection_rate": rejection.get("defended"),
        "rejection_rate_attacked": rejection.get("attacked"),
        "key": result["key"],
    }


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def run_points(points: Sequence[tuple[dict, Scenario]], progress: Progress | None = None, *, workers: int = 1,
               worker_setup: Callable[[], Any] | None = None, **run_kw) -> list[dict]:
    """One row per point, in the order of `points`; every point is one cached `run`.

    `workers` > 1 runs the points not yet in the cache in that many worker processes (spawned, one
    torch thread each, each loading the engine once; the results go to the same disk cache, so a
    killed pool keeps its finished points). Points that share work go to the same worker in one
    batch (see `_batches`). `worker_setup` (a picklable callable) runs first in every worker, e.g. to
    register a zoo that is not loadable by name. The rows equal the serial path's (tested), as long
    as the serial process also runs torch on one thread: floating-point sums may depend on the
    thread count.
    """
    points = list(points)
    if workers <= 1 or len(points) <= 1:
        return _run_serial(points, progress, **run_kw)
    return _run_pool(points, progress, workers, worker_setup, **run_kw)


def _run_serial(points, progress, **run_kw) -> list[dict]:
    rows = []
    for i, (row, scenario) in enumerate(points):
        rows.append(_row(row, run(scenario, **run_kw)))
        if progress:
            progress((i + 1) / len(points), f"{i + 1}/{len(points)}")
    return rows


def _sharing_keys(scenario: Scenario) -> tuple[str, str]:
    """What a point shares with others: the clean side (lambda, clean fusion and control: same zoo,
    fused tasks, fusion and evaluation) and the attacked side (everything but the defense)."""
    d = scenario.to_dict()
    # the one point of an SNR or gain sweep that also computes the control shares the rest
    d["evaluation"] = {k: v for k, v in d["evaluation"].items() if k != "clean_realign_control"}
    clean = {k: d[k] for k in ("zoo", "tasks", "fuse", "fusion", "evaluation")}
    attacked = {k: v for k, v in d.items() if k != "defense"}
    return repr(sorted(clean.items())), repr(sorted(attacked.items()))


def _batches(indices: Sequence[int], points, workers: int) -> list[list[int]]:
    """Point indices grouped so that one worker computes what its points share once: by the clean side
    (the tasks sweep: the 6 points of one combination), else by the attacked side (an SNR sweep: the
    defenses of one jammer power), else one point per batch (an ablation), whichever first gives at
    least two batches per worker."""
    keys = [_sharing_keys(points[i][1]) for i in indices]
    for level in (0, 1):
        groups: dict[str, list[int]] = {}
        for i, k in zip(indices, keys):
            groups.setdefault(k[level], []).append(i)
        if len(groups) >= 2 * workers:
            return list(groups.values())
    return [[i] for i in indices]


def _run_pool(points, progress, workers: int, worker_setup, *, cache=None, use_cache: bool = True) -> list[dict]:
    cache = cache if cache is not None else pipeline.default_cache()
    results: list[dict | None] = [None] * len(points)
    for i, (_, scenario) in enumerate(points):   # validate every point first; take what is stored (resume)
        pipeline._check_tasks(scenario, pipeline.get_engine(scenario.zoo).zoo)
        if use_cache:
            results[i] = pipeline.cached(scenario, cache=cache)
    done = sum(r is not None for r in results)
    todo = [i for i, r in enumerate(results) if r is None]

    def report():
        if progress:
            progress(done / len(points), f"{done}/{len(points)}")

    if done:
        report()
    if todo:
        batches = _batches(todo, points, workers)
        ctx = get_context("spawn")  # fork after torch has started threads can hang the child
        with ProcessPoolExecutor(max_workers=min(workers, len(batches)), mp_context=ctx, initializer=_worker_init,
                                 initargs=(worker_setup,)) as pool:
            with _main_script_hidden(worker_setup):  # the workers are spawned here
                pending = {pool.submit(_worker_run, [(i, points[i][1].to_dict()) for i in b], str(cache.directory),
                                       use_cache) for b in batches}
            try:
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        for i, outcome in future.result():
                            if "error" in outcome:
                                raise _rebuild_error(outcome["error"])
                            results[i] = outcome["result"]
                            done += 1
                        report()
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
    return [_row(row, result) for (row, _), result in zip(points, results)]


@contextlib.contextmanager
def _main_script_hidden(worker_setup):
    """Spawn workers that do not re-run the parent's `__main__` script.

    A spawned process first runs the script that `sys.modules["__main__"]` names (as `__mp_main__`).
    Streamlit runs every app script as a fake `__main__` (AppTest leaves its script there): each worker
    then ran the whole app, whose zoo warm-up thread drew from torch's global RNG while the worker
    built its zoo, so rows depended on timing. Workers need only the engine and `worker_setup`, so
    `__main__` is a bare module while they spawn, unless `worker_setup` lives in `__main__`."""
    main = sys.modules.get("__main__")
    setup = worker_setup.func if isinstance(worker_setup, functools.partial) else worker_setup
    if main is None or getattr(setup, "__module__", None) == "__main__":  # a worker finds it only by re-running
        yield
        return
    bare = types.ModuleType("__main__")
    sys.modules["__main__"] = bare
    try:
        yield
    finally:
        if sys.modules.get("__main__") is bare:  # unless another thread (a Streamlit run) set its own meanwhile
            sys.modules["__main__"] = main


def _worker_init(setup: Callable[[], Any] | None) -> None:
    import torch

    torch.set_num_threads(1)  # the pool is the parallelism; one thread per worker does not oversubscribe
    if setup is not None:
        setup()


_worker_caches: dict[str, Any] = {}


def _worker_run(items: list[tuple[int, dict]], cache_dir: str, use_cache: bool) -> list[tuple[int, dict]]:
    from .cache import ResultCache

    cache = _worker_caches.get(cache_dir)
    if cache is None:
        cache = _worker_caches[cache_dir] = ResultCache(cache_dir)
    out = []
    for i, data in items:
        try:
            out.append((i, {"result": run(Scenario.parse(data), cache=cache, use_cache=use_cache)}))
        except Exception as exc:  # errors with several constructor arguments do not unpickle: send their parts
            out.append((i, {"error": {"type": type(exc).__name__, "text": str(exc),
                                      "field": getattr(exc, "field", None), "path": getattr(exc, "path", None),
                                      "reason": getattr(exc, "reason", None), "traceback": traceback.format_exc()}}))
            break
    return out


def _rebuild_error(e: Mapping) -> Exception:
    if e["type"] in ("InputError", "CapExceeded") and e["field"] is not None:
        return (CapExceeded if e["type"] == "CapExceeded" else InputError)(e["field"], e["reason"])
    if e["type"] == "AssetError" and e["path"] is not None:
        return AssetError(e["path"], e["reason"])
    return RuntimeError(f"a sweep worker failed: {e['text']}\n{e['traceback']}")


# The paper's three channel conditions (its Sec. IV; our calibrated jammer budgets): the marks of the
# SNR and gain plots and the default channels of the gain sweep. The ideal channel has no jammer.
PAPER_CHANNELS: tuple[dict, ...] = (
    {"preset": "paper_ideal", "title": "ideal channel (no jammer)", "short": "ideal", "attack": "none",
     "jammer_power_dbm": None},
    {"preset": "paper_worst_sum_rate", "title": "worst-case sum rate (P1)", "short": "P1", "attack": "worst_sum_rate",
     "jammer_power_dbm": PAPER_JAMMER_DBM},
    {"preset": "paper_worst_strongest_user", "title": "worst-case strongest user (P2)", "short": "P2",
     "attack": "worst_strongest_user", "jammer_power_dbm": PAPER_SU_JAMMER_DBM},
)


def paper_jammer_dbm(attack: str) -> float:
    """The jammer budget of the paper condition of `attack` (P2's for the strongest-user jammer, the
    calibrated P1 budget for every other jammer)."""
    return next((c["jammer_power_dbm"] for c in PAPER_CHANNELS if c["attack"] == attack and c["jammer_power_dbm"]),
                PAPER_JAMMER_DBM)


def _channel(base: Scenario, attack: str, p_dbm: float | None) -> Scenario:
    """The base on `attack` at `p_dbm`. Without a jammer (attack 'none') the power changes nothing, so
    every power maps to the base's own: one scenario, computed once, a cache hit for the others."""
    if attack == "none" or p_dbm is None:
        return base.replace(**{"wireless.attack": attack})
    return base.replace(**{"wireless.attack": attack, "wireless.jammer_power_w": float(dbm_to_w(p_dbm))})


CONTROL_DEFENSE = "rmtllmf"  # whose recipe the sweeps' clean control follows, when it is swept


def _one_control(points: list[tuple[dict, Scenario]]) -> list[tuple[dict, Scenario]]:
    """The clean-realigned control on one point, off elsewhere: the first point of R-MTLLMF (else of
    the first realigning defense swept), and the points equal to it.

    The control realigns the clean fusion: it depends on neither the channel nor the error model
    (pipeline.compute memoises it on disk by recipe), so the sweep draws it as one line from one run
    and `_spread_control` gives its value to every row of that defense (the other rows: None). One
    control, not one per realigning defense: each costs a realignment on a cold cache."""
    realigning = [row["defense"] for row, s in points if s.defense.realign]
    if not realigning:
        return points
    defense = CONTROL_DEFENSE if CONTROL_DEFENSE in realigning else realigning[0]
    chosen = next(s for row, s in points if row["defense"] == defense)
    # every point equal to the chosen one (the ideal channel's, at each power) keeps one scenario
    return [(row, s.replace(**{"evaluation.clean_realign_control": True}) if s == chosen else s) for row, s in points]


def _spread_control(rows: list[dict]) -> list[dict]:
    control = {}
    for r in rows:
        if r.get("avg_normalized_clean_realigned") is not None:
            control.setdefault(r["defense"], r["avg_normalized_clean_realigned"])
    return [{**r, "avg_normalized_clean_realigned": control.get(r["defense"])} for r in rows]


def channel_sweep(base: Scenario, jammer_powers_dbm: Iterable[float], attacks: Iterable[str], *,
                  uplink: Callable[[Any], Mapping] | None = None) -> list[dict]:
    """The channel alone along an SNR sweep (instant: no model is run): one row per (attack, jammer
    power) with the users' average MSE, on the same channels as `snr_points`. `uplink` maps a
    WirelessConfig to `evaluate_uplink(cfg).to_dict()` (the app passes its memoised one)."""
    if uplink is None:
        from .wireless import evaluate_uplink

        def uplink(cfg):
            return evaluate_uplink(cfg).to_dict()
    powers = [float(p) for p in jammer_powers_dbm]
    return [{"attack": a, "jammer_power_dbm": p, "average_mse": float(uplink(_channel(base, a, p).wireless)["average_mse"])}
            for a in attacks for p in powers]


def fitted_gain_db() -> float | None:
    """The calibrated reference amplitude (calibration.json), None where no calibration is there."""
    from . import calibration

    data = calibration.load()
    return float(data["values"]["symbol_gain_db"]) if data.get("provenance") else None


def snr_points(base: Scenario, jammer_powers_dbm: Iterable[float], attacks: Iterable[str],
               defenses: Iterable[str], *, control: bool = True) -> list[tuple[dict, Scenario]]:
    """One point per (attack, defense, jammer power). Attack 'none' (the ideal channel) gives the same
    scenario at every power. With `control`, one point of R-MTLLMF (else of another realigning
    defense) also computes the clean-realigned control (see `_one_control`)."""
    base, points = without_control(base), []
    for attack in attacks:
        for defense in defenses:
            for p_dbm in jammer_powers_dbm:
                scenario = _channel(with_defense(base, defense), attack, p_dbm)
                points.append(({"attack": attack, "defense": defense, "jammer_power_dbm": float(p_dbm)}, scenario))
    return _one_control(points) if control else points


def snr_sweep(base: Scenario, jammer_powers_dbm: Iterable[float], attacks: Iterable[str],
              defenses: Iterable[str], *, control: bool = True, progress: Progress | None = None,
              **run_kw) -> list[dict]:
    """Rows: attack, defense, jammer_power_dbm; avg_normalized (with the defense), _attacked (none),
    _clean, _clean_realigned (the control: the same on every row of the defense it was computed
    for, see `_one_control`, else None); mean_mse, mean_sinr_db; rejection_rate (H0 rejection rate
    of the defended model against the clean fusion), rejection_rate_attacked (of the received
    fusion, no defense); key."""
    points = snr_points(base, list(jammer_powers_dbm), list(attacks), list(defenses), control=control)
    return _spread_control(run_points(points, progress, **run_kw))


def gain_points(base: Scenario, gains_db: Iterable[float], attacks: Iterable[str], defenses: Iterable[str],
                *, jammer_dbm: float | None = None, control: bool = True) -> list[tuple[dict, Scenario]]:
    """One point per (attack, defense, reference amplitude `perturb.symbol_gain_db`). Each jammer
    attacks at `jammer_dbm`, or by default at its paper budget (`paper_jammer_dbm`): with the default
    attacks none, worst_sum_rate and worst_strongest_user these are the paper's three conditions."""
    base, points = without_control(base), []
    for attack in attacks:
        p_dbm = None if attack == "none" else float(jammer_dbm if jammer_dbm is not None else paper_jammer_dbm(attack))
        for defense in defenses:
            channel = _channel(with_defense(base, defense), attack, p_dbm)
            for g in gains_db:
                scenario = channel.replace(**{"perturb.symbol_gain_db": float(g)})
                points.append(({"attack": attack, "defense": defense, "jammer_power_dbm": p_dbm,
                                "symbol_gain_db": float(g)}, scenario))
    return _one_control(points) if control else points


def gain_sweep(base: Scenario, gains_db: Iterable[float], attacks: Iterable[str], defenses: Iterable[str], *,
               jammer_dbm: float | None = None, control: bool = True, progress: Progress | None = None,
               **run_kw) -> list[dict]:
    """The rows of `snr_sweep` with `symbol_gain_db` (jammer_power_dbm: None on the ideal channel)."""
    points = gain_points(base, list(gains_db), list(attacks), list(defenses), jammer_dbm=jammer_dbm, control=control)
    return _spread_control(run_points(points, progress, **run_kw))


def tasks_points(base: Scenario, conditions: Iterable[tuple[str, str]], sizes: Iterable[int] | None = None
                 ) -> list[tuple[dict, Scenario]]:
    """Every combination of the users' tasks of each size, fused from the same uplink drop."""
    base, users = without_control(base), base.tasks
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
    return run_points(tasks_points(base, list(conditions), sizes), progress, **run_kw)


def ablation_points(base: Scenario, shots: Iterable[int] = (1, 5, 10, 20)) -> list[tuple[dict, Scenario]]:
    base, points = without_control(base), []
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
    return run_points(ablation_points(base, list(shots)), progress, **run_kw)


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
