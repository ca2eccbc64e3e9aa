"""`python -m rmtllmf_core calibrate`: fit the reference amplitude and the realignment budget to two of the
paper's numbers (the method is described in rmtllmf_core/science/calibration.py, which holds the result as data).
"""
from __future__ import annotations

import math
import shlex
import sys
import time
from typing import Callable, Sequence

import numpy as np

from .. import ENGINE_VERSION
from . import sweeps
from ..science.calibration import (DEFAULT_BATCH_SIZES, DEFAULT_FIT, DEFAULT_LRS, DEFAULT_SEEDS, DEFAULT_STEPS,
    GAIN_SEARCH_DB, GAIN_TOLERANCE_DB, PAPER_BASELINE, PAPER_NUMBERS, UNCALIBRATED, PaperNumber)
from ..science.defense import PRECISIONS
from ..errors import InputError
from ..science.perturb import SCALES
from ..experiment.pipeline import get_engine
from ..experiment.pipeline import run as pipeline_run
from ..experiment.presets import preset_scenario
from ..experiment.result import Condition, Result


def _share(result: Result, which: str) -> float:
    """A condition's normalised accuracy as a share of the clean fusion's (the paper's numbers read so)."""
    avg = result.average_normalized
    return avg[which] / avg[Condition.CLEAN]


def _scenario(number: PaperNumber, seed: int, zoo: str, overrides: dict):
    base = preset_scenario(number.condition, zoo=zoo).replace(
        **{"seed": seed, "evaluation.clean_realign_control": False, **overrides})
    return sweeps.with_defense(base, number.defense)


def measure(number: PaperNumber, seeds: Sequence[int], zoo: str, overrides: dict, run: Callable) -> list[float]:
    """Our share (condition / clean) for `number`, one per seed."""
    which = Condition.DEFENDED if number.defense != "none" else Condition.ATTACKED
    return [_share(run(_scenario(number, s, zoo, overrides)), which) for s in seeds]


def fit(fit_names: Sequence[str] = DEFAULT_FIT, *, zoo: str = "tiny", scale: str = "absolute",
        seeds: Sequence[int] = DEFAULT_SEEDS, steps: Sequence[int] = DEFAULT_STEPS, lrs: Sequence[float] = DEFAULT_LRS,
        batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES, precision: str = "float32", run: Callable | None = None,
        say: Callable[[str], None] = lambda line: None) -> dict:
    """Fit the reference amplitude on the first named number and, if a second (an R-MTLLMF one) is named,
    the realignment budget on it; returns the record `write` stores."""
    run = run or pipeline_run
    names = _check_fit(fit_names)
    if scale not in SCALES:
        raise InputError("scale", f"must be one of {', '.join(SCALES)}; got {scale!r}")
    seeds = _check_list("seeds", seeds, int, lambda s: 0 <= s < 2**32, "integers in [0, 2^32)")
    steps = _check_list("steps", steps, int, lambda s: 1 <= s <= 500, "integers in [1, 500]")
    lrs = _check_list("lrs", lrs, float, lambda v: 0 < v <= 1e-2, "numbers in (0, 0.01]")
    batch_sizes = _check_list("batch_sizes", batch_sizes, int, lambda b: 1 <= b <= 256, "integers in [1, 256]")
    if precision not in PRECISIONS:
        raise InputError("precision", f"one of {', '.join(PRECISIONS)}; got {precision!r}")
    trace: list[dict] = []
    t0 = time.perf_counter()
    gain_number = PAPER_NUMBERS[names[0]]
    budget_number = PAPER_NUMBERS[names[1]] if len(names) > 1 else None
    # where the budget starts when the gain's number depends on it: the most steps, the middle rate, the
    # largest batch
    budget = ({"realign_steps": max(steps), "realign_lr": sorted(lrs)[len(lrs) // 2],
               "realign_batch_size": max(batch_sizes)} if budget_number
              else {k: UNCALIBRATED[k] for k in ("realign_steps", "realign_lr", "realign_batch_size")})
    budget["realign_precision"] = precision
    # coordinate descent: the gain on the first number, then the budget on the second; a second round
    # only where the first number itself depends on the budget (an R-MTLLMF one)
    rounds = 2 if budget_number and gain_number.defense != "none" else 1
    gain_db = 0.0
    for _ in range(rounds):
        gain_db = _fit_gain(gain_number, scale, budget, seeds, zoo, run, trace, say)
        if budget_number:
            budget = _fit_budget(budget_number, scale, gain_db, steps, lrs, batch_sizes, precision, seeds, zoo, run,
                                 trace, say)
    over = {"perturb.scale": scale, "perturb.symbol_gain_db": gain_db,
            **{f"defense.{k}": v for k, v in budget.items()}}
    fitted = [_fitted_entry(n, measure(n, seeds, zoo, over, run)) for n in (gain_number, budget_number) if n]

    engine = get_engine(zoo)
    return {
        "values": {"scale": scale, "symbol_gain_db": gain_db, **budget},
        "provenance": {
            "fitted": fitted,
            "seeds": list(seeds),
            "zoo": {"name": zoo, "fingerprint": engine.zoo.fingerprint},
            "engine_version": ENGINE_VERSION,
            "command": "python -m rmtllmf_core " + " ".join(shlex.quote(a) for a in sys.argv[1:])
            if sys.argv and sys.argv[0].endswith("__main__.py") else "rmtllmf_core.studies.calibrate.fit(...)",
            "grid": {"steps": list(steps), "lrs": list(lrs), "batch_sizes": list(batch_sizes),
                     "gain_search_db": list(GAIN_SEARCH_DB)},
            "seconds": round(time.perf_counter() - t0, 1),
            "date": time.strftime("%Y-%m-%d"),
            "trace": trace,
        },
    }


def _fit_gain(number: PaperNumber, scale: str, budget: dict, seeds, zoo: str, run, trace: list, say) -> float:
    """Bisection on the gain (dB) for our share of `number` to equal the paper's (it rises with the gain)."""
    budget_over = {f"defense.{k}": v for k, v in budget.items()}

    def share(gain_db: float) -> float:
        shares = measure(number, seeds, zoo, {"perturb.scale": scale, "perturb.symbol_gain_db": gain_db,
                                              **budget_over}, run)
        trace.append({"fits": "symbol_gain_db", "symbol_gain_db": gain_db, **budget,
                      "mean": float(np.mean(shares)), "per_seed": shares})
        say(f"  gain {gain_db:6.2f} dB: {number.title} {100 * np.mean(shares):5.1f}% of clean "
            f"(target {100 * number.ratio:.1f}%)")
        return float(np.mean(shares))

    say(f"fitting perturb.symbol_gain_db ({scale} scale) on '{number.name}' over seeds {list(seeds)}"
        + (f" with {budget['realign_steps']} realignment steps of {budget['realign_batch_size']} samples at lr "
           f"{budget['realign_lr']:g}"
           if number.defense != "none" else ""))
    lo, hi = GAIN_SEARCH_DB
    f_lo, f_hi = share(lo), share(hi)
    if not f_lo <= number.ratio <= f_hi:
        raise InputError("fit", f"'{number.name}' ({100 * number.ratio:.1f}% of clean) is not reached between "
                         f"{lo:g} and {hi:g} dB on this zoo ({100 * f_lo:.1f}% to {100 * f_hi:.1f}%)")
    while hi - lo > GAIN_TOLERANCE_DB:
        mid = round(0.5 * (lo + hi), 3)
        if share(mid) < number.ratio:
            lo = mid
        else:
            hi = mid
    return round(0.5 * (lo + hi), 1)


def _fit_budget(number: PaperNumber, scale: str, gain_db: float, steps, lrs, batch_sizes, precision: str, seeds,
                zoo: str, run, trace: list, say) -> dict:
    """The grid's (batch, steps, lr) whose mean share of `number` is closest to the paper's; the cheaper
    (fewer samples in all, steps x batch) among equals."""
    say(f"fitting defense.realign_steps, realign_batch_size and realign_lr on '{number.name}' at {gain_db} dB")
    best = None
    for n_steps, batch in sorted(((s, b) for s in steps for b in batch_sizes), key=lambda sb: (sb[0] * sb[1], sb)):
        for lr in sorted(lrs):
            over = {"perturb.scale": scale, "perturb.symbol_gain_db": gain_db,
                    "defense.realign_steps": n_steps, "defense.realign_lr": lr,
                    "defense.realign_batch_size": batch, "defense.realign_precision": precision}
            mean = float(np.mean(shares := measure(number, seeds, zoo, over, run)))
            trace.append({"fits": "realign", "symbol_gain_db": gain_db, "realign_steps": n_steps, "realign_lr": lr,
                          "realign_batch_size": batch, "mean": mean, "per_seed": shares})
            say(f"  {n_steps:4d} steps of {batch:3d}, lr {lr:.0e}: {number.title} {100 * mean:5.1f}% of clean "
                f"(target {100 * number.ratio:.1f}%)")
            err = abs(mean - number.ratio)
            if best is None or err < best[0] - 1e-9:  # strictly better: among equals the cheaper stays
                best = (err, n_steps, batch, lr)
    return {"realign_steps": best[1], "realign_lr": best[3], "realign_batch_size": best[2],
            "realign_precision": precision}


def _fitted_entry(number: PaperNumber, shares: list[float]) -> dict:
    return {"name": number.name, "paper": number.value, "paper_baseline": PAPER_BASELINE,
            "target_share": round(number.ratio, 4), "ours_mean": round(float(np.mean(shares)), 4),
            "ours_std": round(float(np.std(shares)), 4), "per_seed": [round(s, 4) for s in shares]}


def _check_fit(names: Sequence[str]) -> tuple[str, ...]:
    names = tuple(names)
    allowed = ", ".join(PAPER_NUMBERS)
    if not 1 <= len(names) <= 2:
        raise InputError("fit", f"one or two paper numbers (the first fits the gain, the second, an R-MTLLMF "
                         f"one, the realignment budget); got {len(names)}")
    for n in names:
        if n not in PAPER_NUMBERS:
            raise InputError("fit", f"unknown paper number {n!r}; allowed: {allowed}")
    if len(names) == 2 and PAPER_NUMBERS[names[1]].defense != "rmtllmf":
        raise InputError("fit", f"the second number fits the realignment and must be an R-MTLLMF one; got {names[1]!r}")
    return names


def _check_list(field: str, values, kind, ok, allowed: str) -> tuple:
    try:
        out = tuple(kind(v) for v in values)
    except (TypeError, ValueError):
        raise InputError(field, f"must be {allowed}; got {values!r}") from None
    if not out or not all(ok(v) and (kind is not float or math.isfinite(v)) for v in out):
        raise InputError(field, f"must be {allowed}; got {list(values)!r}")
    return out
