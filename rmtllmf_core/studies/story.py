"""The guided story for a demo: five steps, each one click, each answered by one cached run.

Every step is a paper preset (R-MTLLMF on, seed 0: the runs the About page's table and
`python -m rmtllmf_core warm` compute too) and says what to look at; its text is a template filled
from the run's own numbers, so the story tells what this zoo measures, never what we hoped.
Three runs serve all five steps: the attacked fusion of a run is its "no defense" number, so the
steps before the repair hide the defended one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError, RmtllmfError
from ..experiment.presets import PRESETS, preset_scenario
from ..experiment.result import Condition, Result
from ..experiment.scenario import Scenario
from ..units import w_to_dbm


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    preset: str
    show: tuple[str, ...]       # the accuracy conditions this step reveals
    text: str                   # a template over `numbers`
    channel: bool = False       # also show the channel: the users' MSE, against the ideal channel's


_REFERENCES = (Condition.FINETUNED, Condition.CLEAN)
_DAMAGE = (*_REFERENCES, Condition.ATTACKED)
_REPAIR = (*_DAMAGE, Condition.DEFENDED)

STEPS: tuple[Step, ...] = (
    Step("ideal", "1. The ideal channel", "paper_ideal", _REFERENCES,
         "{users} users each fine-tune the same small CLIP-style model (the {zoo} zoo shipped with the app) on "
         "their own task and send what changed, their task vector, to a base station over a MIMO uplink. With no "
         "jammer, thermal noise alone leaves an average MSE of {mse:.3f}. Fused without any noise, the one model "
         "keeps {clean:.1f}% of what the individual models reach on their own tasks (their average accuracy: "
         "{finetuned_abs:.1f}%); fused as received over this channel, {ideal_attacked:.1f}%: thermal noise alone "
         "costs {thermal:.1f} points."),
    Step("jammer", "2. A worst-case jammer", "paper_worst_sum_rate", _REFERENCES,
         "A jammer with {jammer_dbm:.0f} dBm shapes its noise to minimise the users' sum rate. The receiver's "
         "average MSE rises from {ideal_mse:.3f} to {mse:.3f}; the worst user, {worst_title}, is now received at "
         "{worst_sinr_db:.1f} dB SINR (MSE {worst_mse:.2f}).", channel=True),
    Step("damage", "3. What it does to the fused model", "paper_worst_sum_rate", _DAMAGE,
         "Each received task vector carries its user's error into the fusion. The fused model falls from "
         "{clean:.1f}% (no noise) to {attacked:.1f}%: of those {drop:.1f} points, thermal noise costs "
         "{thermal:.1f} already on the ideal channel (step 1: {ideal_attacked:.1f}%), and the jammer adds "
         "{jammer_loss:.1f}."),
    Step("repair", "4. R-MTLLMF's repair", "paper_worst_sum_rate", _REPAIR,
         "R-MTLLMF reloads the base model's embeddings after fusion and realigns the fused model on {shots} "
         "samples per class ({steps} steps). It gives back {repair:.1f} points: {defended:.1f}%, against "
         "{attacked:.1f}% unprotected and {clean:.1f}% for the fusion without any noise."),
    Step("limits", "5. Its limits", "paper_worst_strongest_user", _REPAIR,
         "Another worst case, with another budget: a jammer of {jammer_dbm:.0f} dBm (the paper's for this attack, "
         "{jammer_db_more:.0f} dB above step 2's) puts its whole power on the strongest user's channel. "
         "Unprotected {attacked:.1f}%, with R-MTLLMF {defended:.1f}%, still {gap:.1f} points below the fusion "
         "without noise. Repair on the AI side alone does not undo a worst-case jammer; the paper calls for "
         "physical-layer protection beside it, and the Arena page shows a jammer that knows R-MTLLMF taking "
         "more from it."),
)
STEP_KEYS = tuple(s.key for s in STEPS)

# the landing view's one sentence: the harm and the repair, each loss to its cause (reads the ideal channel too)
HEADLINE = Step("headline", "The point", "paper_worst_sum_rate", _REPAIR,
                "A {jammer_dbm:.0f} dBm jammer shaped against the users' sum rate (the paper's worst case). Of the "
                "fused model's {clean:.1f}% without noise, thermal noise takes {thermal:.1f} points and the jammer "
                "{jammer_loss:.1f} more ({attacked:.1f}% left); R-MTLLMF gives back {repair:.1f} ({defended:.1f}%). "
                "Normalised accuracy of the {zoo} zoo's {users} tasks, seed 0.")


def step(key: str) -> Step:
    for s in STEPS:
        if s.key == key:
            return s
    raise InputError("story.step", f"unknown step {key!r}; the steps are {', '.join(STEP_KEYS)}")


def scenario(s: Step, zoo: str = "tiny") -> Scenario:
    """The step's run: its preset as it is (R-MTLLMF on, seed 0)."""
    return preset_scenario(s.preset, zoo=zoo)


def scenarios(zoo: str = "tiny") -> list[Scenario]:
    """The distinct runs behind the story (what `warm` computes), in order."""
    out: list[Scenario] = []
    for s in STEPS:
        sc = scenario(s, zoo)
        if sc not in out:
            out.append(sc)
    return out


def numbers(s: Step, result: Result, ideal: Result | None = None) -> dict:
    """The values the step's text and metrics read (percentages in %, MSE as a fraction)."""
    avg, users = result.average_normalized, result.users
    worst = int(np.argmax([u["mse"] for u in users]))
    d = result.scenario["defense"]
    tasks = result.scenario["tasks"]
    jammer_w = result.scenario["wireless"].get("jammer_power_w") or 0.0
    here = ideal if ideal is not None else (result if s.preset == "paper_ideal" else None)
    nan = float("nan")
    ideal_attacked = 100 * here.average_normalized[Condition.ATTACKED] if here is not None else nan
    thermal = (100 * (here.average_normalized[Condition.CLEAN] - here.average_normalized[Condition.ATTACKED])
               if here is not None else nan)
    p1_w = preset_scenario("paper_worst_sum_rate", zoo=result.scenario["zoo"]).wireless.jammer_power_w
    return {
        "zoo": result.zoo.name, "users": len(users), "mse": result.wireless["average_mse"],
        "ideal_attacked": ideal_attacked, "thermal": thermal,
        "jammer_loss": ideal_attacked - 100 * avg[Condition.ATTACKED],
        "worst_title": _task_title(result.zoo.name, tasks[worst]) if worst < len(tasks) else f"user {worst}",
        "jammer_db_more": (float(w_to_dbm(jammer_w)) - float(w_to_dbm(p1_w))) if jammer_w > 0 and p1_w > 0 else nan,
        "clean": 100 * avg[Condition.CLEAN], "attacked": 100 * avg[Condition.ATTACKED],
        "defended": 100 * avg[Condition.DEFENDED],
        "finetuned_abs": 100 * float(np.mean(list(result.accuracy[Condition.FINETUNED].values()))),
        "drop": 100 * (avg[Condition.CLEAN] - avg[Condition.ATTACKED]),
        "repair": 100 * (avg[Condition.DEFENDED] - avg[Condition.ATTACKED]),
        "gap": 100 * (avg[Condition.CLEAN] - avg[Condition.DEFENDED]),
        "worst_user": tasks[worst] if worst < len(tasks) else f"user {worst}",
        "worst_mse": users[worst]["mse"], "worst_sinr_db": users[worst]["sinr_db"],
        "jammer_dbm": float(w_to_dbm(jammer_w)) if jammer_w > 0 else float("nan"),
        "ideal_mse": ideal.wireless["average_mse"] if ideal is not None else float("nan"),
        "shots": d["shots_per_class"], "steps": d["realign_steps"],
        "preset_title": PRESETS[s.preset].title,
    }


def _task_title(zoo: str, task: str) -> str:
    """A task's human title from a built-in zoo's card (its name elsewhere): what the story reads aloud."""
    from ..zoo import builtin_card

    try:
        return builtin_card(zoo)["tasks"].get(task, {}).get("title", task)
    except RmtllmfError:
        return task


def narrative(s: Step, result: Result, ideal: Result | None = None) -> str:
    return s.text.format(**numbers(s, result, ideal))
