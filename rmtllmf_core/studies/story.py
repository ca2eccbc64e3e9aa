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

from ..errors import InputError
from ..experiment.presets import PRESETS, preset_scenario
from ..experiment.result import Result
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


STEPS: tuple[Step, ...] = (
    Step("ideal", "1. The ideal channel", "paper_ideal", ("finetuned", "clean"),
         "{users} users each fine-tune the same CLIP model on their own task and send what changed, their "
         "task vector, to a base station over a MIMO uplink. With no jammer, thermal noise alone leaves an "
         "average MSE of {mse:.3f}. Fused without noise, the one model keeps {clean:.1f}% of what the "
         "individual models reach on their own tasks (their average accuracy: {finetuned_abs:.1f}%)."),
    Step("jammer", "2. A worst-case jammer", "paper_worst_sum_rate", ("finetuned", "clean"),
         "A jammer with {jammer_dbm:.0f} dBm shapes its noise to minimise the users' sum rate. The receiver's "
         "average MSE rises from {ideal_mse:.3f} to {mse:.3f}; the worst user, {worst_user}, is now received at "
         "{worst_sinr_db:.1f} dB SINR (MSE {worst_mse:.2f}).", channel=True),
    Step("damage", "3. What it does to the fused model", "paper_worst_sum_rate", ("finetuned", "clean", "attacked"),
         "Each received task vector carries its user's error into the fusion. The fused model falls from "
         "{clean:.1f}% to {attacked:.1f}%: {drop:.1f} points lost to the jammer."),
    Step("repair", "4. R-MTLLMF's repair", "paper_worst_sum_rate", ("finetuned", "clean", "attacked", "defended"),
         "R-MTLLMF reloads the base model's embeddings after fusion and realigns the fused model on {shots} "
         "samples per class ({steps} steps). It gives back {repair:.1f} points: {defended:.1f}%, against "
         "{attacked:.1f}% unprotected and {clean:.1f}% without any jammer."),
    Step("limits", "5. Its limits", "paper_worst_strongest_user", ("finetuned", "clean", "attacked", "defended"),
         "A jammer that puts its whole budget on the strongest user's channel: unprotected {attacked:.1f}%, "
         "with R-MTLLMF {defended:.1f}%, still {gap:.1f} points below the clean fusion. Repair on the AI "
         "side alone does not undo a worst-case jammer; the paper calls for physical-layer protection "
         "beside it."),
)
STEP_KEYS = tuple(s.key for s in STEPS)


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
    return {
        "users": len(users), "mse": result.wireless["average_mse"],
        "clean": 100 * avg["clean"], "attacked": 100 * avg["attacked"], "defended": 100 * avg["defended"],
        "finetuned_abs": 100 * float(np.mean(list(result.accuracy["finetuned"].values()))),
        "drop": 100 * (avg["clean"] - avg["attacked"]), "repair": 100 * (avg["defended"] - avg["attacked"]),
        "gap": 100 * (avg["clean"] - avg["defended"]),
        "worst_user": tasks[worst] if worst < len(tasks) else f"user {worst}",
        "worst_mse": users[worst]["mse"], "worst_sinr_db": users[worst]["sinr_db"],
        "jammer_dbm": float(w_to_dbm(jammer_w)) if jammer_w > 0 else float("nan"),
        "ideal_mse": ideal.wireless["average_mse"] if ideal is not None else float("nan"),
        "shots": d["shots_per_class"], "steps": d["realign_steps"],
        "preset_title": PRESETS[s.preset].title,
    }


def narrative(s: Step, result: Result, ideal: Result | None = None) -> str:
    return s.text.format(**numbers(s, result, ideal))
