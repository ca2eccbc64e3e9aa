"""Sweeps: the science of many scenarios. Each sweep is its points (`*_points`: (row, scenario)
pairs), the same as one `work.Work` (`*_work`: what a page hands the host), and a convenience that
runs it here (`*_sweep`, through `work.execute`: every finished point lands in the disk cache, so an
interrupted sweep resumes where it stopped).

- snr_sweep: accuracy versus jammer power for each attack and defense, with the H0 rejection rate
  and the clean-realigned control (`snr_points`);
- gain_sweep: accuracy versus the error model's reference amplitude (`perturb.symbol_gain_db`) on
  the paper's channel conditions (`gain_points`);
- tasks_sweep: accuracy versus the number of fused tasks over every combination (paper Fig. 2);
- ablation_sweep: freeze / realign / both / neither over shots per class (paper Fig. 5).
"""
from __future__ import annotations

from itertools import combinations
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ..errors import InputError
from ..experiment.scenario import Scenario
from ..units import dbm_to_w
from ..science.wireless.presets import PAPER_JAMMER_DBM, PAPER_SU_JAMMER_DBM
from .work import Progress, Row, Work, execute

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
    and `work.spread_control` gives its value to every row of that defense (the other rows: None). One
    control, not one per realigning defense: each costs a realignment on a cold cache."""
    realigning = [row["defense"] for row, s in points if s.defense.realign]
    if not realigning:
        return points
    defense = CONTROL_DEFENSE if CONTROL_DEFENSE in realigning else realigning[0]
    chosen = next(s for row, s in points if row["defense"] == defense)
    # every point equal to the chosen one (the ideal channel's, at each power) keeps one scenario
    return [(row, s.replace(**{"evaluation.clean_realign_control": True}) if s == chosen else s) for row, s in points]


def channel_sweep(base: Scenario, jammer_powers_dbm: Iterable[float], attacks: Iterable[str], *,
                  uplink: Callable[[Any], Mapping] | None = None) -> list[dict]:
    """The channel alone along an SNR sweep (instant: no model is run): one row per (attack, jammer
    power) with the users' average MSE, on the same channels as `snr_points`. `uplink` maps a
    WirelessConfig to `evaluate_uplink(cfg).to_dict()` (the app passes its memoised one)."""
    if uplink is None:
        from ..science.wireless import evaluate_uplink

        def uplink(cfg):
            return evaluate_uplink(cfg).to_dict()
    powers = [float(p) for p in jammer_powers_dbm]
    return [{"attack": a, "jammer_power_dbm": p, "average_mse": float(uplink(_channel(base, a, p).wireless)["average_mse"])}
            for a in attacks for p in powers]


def fitted_gain_db() -> float | None:
    """The calibrated reference amplitude (calibration.json), None where no calibration is there."""
    from ..science import calibration

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


def snr_work(base: Scenario, jammer_powers_dbm: Iterable[float], attacks: Iterable[str],
             defenses: Iterable[str], *, control: bool = True) -> Work:
    return Work.sweep(snr_points(base, list(jammer_powers_dbm), list(attacks), list(defenses), control=control),
                      spread_control=control)


def snr_sweep(base: Scenario, jammer_powers_dbm: Iterable[float], attacks: Iterable[str],
              defenses: Iterable[str], *, control: bool = True, progress: Progress | None = None,
              **run_kw) -> list[Row]:
    """Rows: attack, defense, jammer_power_dbm; avg_normalized (with the defense), _attacked (none),
    _clean, _clean_realigned (the control: the same on every row of the defense it was computed
    for, see `_one_control`, else None); mean_mse, mean_sinr_db; rejection_rate (H0 rejection rate
    of the defended model against the clean fusion), rejection_rate_attacked (of the received
    fusion, no defense); key."""
    return execute(snr_work(base, jammer_powers_dbm, attacks, defenses, control=control), progress, **run_kw)


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


def gain_work(base: Scenario, gains_db: Iterable[float], attacks: Iterable[str], defenses: Iterable[str], *,
              jammer_dbm: float | None = None, control: bool = True) -> Work:
    return Work.sweep(gain_points(base, list(gains_db), list(attacks), list(defenses), jammer_dbm=jammer_dbm,
                                  control=control), spread_control=control)


def gain_sweep(base: Scenario, gains_db: Iterable[float], attacks: Iterable[str], defenses: Iterable[str], *,
               jammer_dbm: float | None = None, control: bool = True, progress: Progress | None = None,
               **run_kw) -> list[Row]:
    """The rows of `snr_sweep` with `symbol_gain_db` (jammer_power_dbm: None on the ideal channel)."""
    return execute(gain_work(base, gains_db, attacks, defenses, jammer_dbm=jammer_dbm, control=control), progress,
                   **run_kw)


def combinations_of(users: Sequence[str], n: int, per_size: int | None = None, seed: int = 0) -> list[tuple]:
    """Every combination of n users' tasks, or a seeded sample of `per_size` of them (the same sample for
    every condition, so conditions stay comparable; all of them when there are no more than that)."""
    combos = list(combinations(users, n))
    if per_size is None or len(combos) <= per_size:
        return combos
    if isinstance(per_size, bool) or not isinstance(per_size, int) or per_size < 1:
        raise InputError("per_size", f"combinations per size must be a whole number >= 1; got {per_size!r}")
    pick = np.random.default_rng([seed, n]).choice(len(combos), size=per_size, replace=False)
    return [combos[i] for i in sorted(pick)]


def tasks_points(base: Scenario, conditions: Iterable[tuple[str, str]], sizes: Iterable[int] | None = None,
                 per_size: int | None = None) -> list[tuple[dict, Scenario]]:
    """Every combination of the users' tasks of each size (or a seeded sample of `per_size` per size),
    fused from the same uplink drop."""
    base, users = without_control(base), base.tasks
    sizes = list(sizes) if sizes is not None else list(range(2, len(users) + 1))
    points = []
    for attack, defense in conditions:
        attacked = with_defense(base, defense).replace(**{"wireless.attack": attack})
        for n in sizes:
            if not 1 <= n <= len(users):
                raise InputError("sizes", f"combination sizes must lie in 1..{len(users)}; got {n}")
            for combo in combinations_of(users, n, per_size, base.seed):
                row = {"attack": attack, "defense": defense, "n_tasks": n, "tasks": "+".join(combo)}
                points.append((row, attacked.replace(fuse=list(combo))))
    return points


def tasks_work(base: Scenario, conditions: Iterable[tuple[str, str]], *, sizes: Iterable[int] | None = None,
               per_size: int | None = None) -> Work:
    return Work.sweep(tasks_points(base, list(conditions), sizes, per_size))


def tasks_sweep(base: Scenario, conditions: Iterable[tuple[str, str]], *, sizes: Iterable[int] | None = None,
                progress: Progress | None = None, **run_kw) -> list[Row]:
    return execute(tasks_work(base, conditions, sizes=sizes), progress, **run_kw)


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


def ablation_work(base: Scenario, shots: Iterable[int] = (1, 5, 10, 20)) -> Work:
    return Work.sweep(ablation_points(base, list(shots)))


def ablation_sweep(base: Scenario, shots: Iterable[int] = (1, 5, 10, 20), *, progress: Progress | None = None,
                   **run_kw) -> list[Row]:
    return execute(ablation_work(base, shots), progress, **run_kw)


def undefended_rows(rows: Sequence[Mapping]) -> list[Row]:
    """Each defended row's attacked fusion as a row of defense "none" (the same run, the same key):
    what a run of the same point without the defense gives, without running it."""
    return [{**r, "defense": "none", "avg_normalized": r["avg_normalized_attacked"],
             "rejection_rate": r["rejection_rate_attacked"], "avg_normalized_clean_realigned": None}
            for r in rows if r["defense"] != "none"]


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


# ---- resilience: physical-layer protection beside R-MTLLMF (phy.py) -------------------------------
AIRTIME_BUDGETS = (1, 2, 4, 8)
# what the base station may buy with airtime: repeating every analogue symbol, or a coded digital link;
# and, with hardware instead of airtime, twice the receive antennas ("rx_antennas_x": a factor on the preset's)
PHY_OPTIONS: tuple[dict, ...] = (
    {"perturb.model": "gaussian", "perturb.repetition": 1},
    {"perturb.model": "gaussian", "perturb.repetition": 1, "rx_antennas_x": 2},
    {"perturb.model": "gaussian", "perturb.repetition": 2},
    {"perturb.model": "gaussian", "perturb.repetition": 4},
    {"perturb.model": "gaussian", "perturb.repetition": 8},
    {"perturb.model": "coded", "perturb.code_rate": "5/6", "perturb.qam_bits": 8},
    {"perturb.model": "coded", "perturb.code_rate": "3/4", "perturb.qam_bits": 8},
    {"perturb.model": "coded", "perturb.code_rate": "3/4", "perturb.qam_bits": 6},
    {"perturb.model": "coded", "perturb.code_rate": "1/2", "perturb.qam_bits": 6},
    {"perturb.model": "coded", "perturb.code_rate": "1/2", "perturb.qam_bits": 4},
)
RESILIENCE_PRESETS = {"none": "paper_ideal", "worst_sum_rate": "paper_worst_sum_rate",
                      "worst_strongest_user": "paper_worst_strongest_user"}


def phy_label(option: Mapping) -> str:
    if option.get("rx_antennas_x"):
        return f"{option['rx_antennas_x']}x receive antennas"
    if option.get("perturb.model") == "coded":
        return f"LDPC {option['perturb.code_rate']}, {2 ** option['perturb.qam_bits']}-QAM"
    r = option.get("perturb.repetition", 1)
    return "analogue" if r == 1 else f"analogue x{r}"


def ldpc_tables(cache=None, build: bool = False) -> dict[str, dict]:
    """The sweep's code settings' BER/BLER tables by label (phy.ber_table; shipped ones at once, others
    from `cache`, simulated only with `build`)."""
    from ..science.phy import ber_table

    tables = {phy_label(o): ber_table(o["perturb.code_rate"], o["perturb.qam_bits"], cache, build=build)
              for o in PHY_OPTIONS if o["perturb.model"] == "coded"}
    return {k: v for k, v in tables.items() if v is not None}


def resilience_points(zoo: str = "tiny", attacks: Iterable[str] = tuple(RESILIENCE_PRESETS),
                      options: Sequence[Mapping] | None = None) -> list[tuple[dict, Scenario]]:
    """One run per (channel at its paper preset, physical-layer option), R-MTLLMF on: its attacked fusion
    is the option without AI protection, its defended one the option with it."""
    from ..science.phy import airtime_factor
    from ..experiment.presets import preset_scenario

    options = PHY_OPTIONS if options is None else options
    points = []
    for attack in attacks:
        if attack not in RESILIENCE_PRESETS:
            raise InputError("attacks", f"choose among {', '.join(RESILIENCE_PRESETS)}; got {attack!r}")
        base = without_control(preset_scenario(RESILIENCE_PRESETS[attack], zoo=zoo))
        for option in options:
            changes = {k: v for k, v in option.items() if k != "rx_antennas_x"}
            if option.get("rx_antennas_x"):
                changes["wireless.num_rx_antennas"] = base.wireless.num_rx_antennas * int(option["rx_antennas_x"])
            s = base.replace(**changes)
            p = s.perturb
            points.append(({"attack": attack, "setting": phy_label(option),
                            "airtime_used": airtime_factor(p.model, p.repetition, p.bits_per_param, p.code_rate,
                                                           p.qam_bits)}, s))
    return points


def resilience_work(zoo: str = "tiny", attacks: Iterable[str] = tuple(RESILIENCE_PRESETS),
                    options: Sequence[Mapping] | None = None) -> Work:
    return Work.sweep(resilience_points(zoo, list(attacks), options))


def resilience_table(rows: Sequence[Mapping], budgets: Sequence[float] = AIRTIME_BUDGETS) -> list[dict]:
    """Per channel and airtime budget: no protection, AI (R-MTLLMF), PHY (the best physical-layer option
    within the budget, by its accuracy without AI) and PHY+AI (the best option with R-MTLLMF)."""
    budgets = [float(b) for b in budgets]
    if not budgets or any(not b >= 1.0 for b in budgets):   # also refuses NaN
        raise InputError("airtime", f"budgets are channel uses per parameter, each >= 1; got {budgets}")
    out = []
    for attack in dict.fromkeys(r["attack"] for r in rows):
        mine = [r for r in rows if r["attack"] == attack]
        plain = next(r for r in mine if r["setting"] == "analogue")
        for budget in budgets:
            fits = [r for r in mine if r["airtime_used"] <= budget + 1e-9]
            phy = max(fits, key=lambda r: r["avg_normalized_attacked"])
            both = max(fits, key=lambda r: r["avg_normalized"])
            for protection, row, value in (("none", plain, plain["avg_normalized_attacked"]),
                                           ("ai", plain, plain["avg_normalized"]),
                                           ("phy", phy, phy["avg_normalized_attacked"]),
                                           ("phy+ai", both, both["avg_normalized"])):
                out.append({"attack": attack, "protection": protection, "airtime_factor": budget,
                            "average_normalized": value, "setting": row["setting"],
                            "airtime_used": row["airtime_used"], "clean": row["avg_normalized_clean"],
                            "mean_mse": row["mean_mse"]})
    return out
