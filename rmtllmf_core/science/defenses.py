"""The defenses as records: name, title, reference, what the base station must know, and the scenario
fields (`defense.*`) that switch it on. Plain data (no torch): the arena, the app and the docs read it.
Defenses combine with '+' (`spectral+rmtllmf`): the receiver's denoisers act on each received vector
before fusion, R-MTLLMF (freeze, realign) on the fused model after it; the kernels are
`denoise.py` (receiver side) and `defense.py` (freeze, realign, shrinkage, trim).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Defense:
    name: str
    title: str
    reference: str
    knows: str                                     # what the base station must know
    settings: dict = field(default_factory=dict)   # dotted scenario fields it sets
    help: str = ""


# every defense off: the starting point that a combination's settings are laid on
NO_DEFENSE = {"defense.freeze": False, "defense.realign": False, "defense.receiver": [], "defense.receiver_min_mse": 0.0,
              "defense.shrinkage": False, "defense.trim_keep_fraction": 1.0}

DEFENSE_RECORDS: tuple[Defense, ...] = (
    Defense("none", "no defense", "", "nothing", help="the received vectors fused as they are"),
    Defense("rmtllmf", "R-MTLLMF", "Djuhera et al., R-MTLLMF: Resilient Multi-Task Large Language Model Fusion at "
            "the Wireless Edge, arXiv 2411.18220", "the base model's embeddings and a few labelled samples per class",
            {"defense.freeze": True, "defense.realign": True},
            help="reload the base model's embeddings after fusion, realign on a few samples per class"),
    Defense("spectral", "spectral shrinkage", "Gavish and Donoho, Optimal shrinkage of singular values, IEEE Trans. "
            "IT 2017; The optimal hard threshold for singular values is 4/sqrt(3), IEEE Trans. IT 2014",
            "each user's error level (its MSE through the error model)", {"defense.receiver": ["spectral"]},
            help="shrink each received matrix's singular values at its known noise level"),
    Defense("norm", "norm calibration", "after DisTaC (task-vector norm mismatch breaks merges), ICLR 2026",
            "each user's error level", {"defense.receiver": ["norm"]},
            help="rescale each received tensor to its estimated clean energy"),
    Defense("destripe", "destriping", "ours: removes the row-periodic (rank-one) error a schedule-aware jammer leaves",
            "each user's error level and the transmission schedule", {"defense.receiver": ["destripe"]},
            help="remove a received matrix's row mean where it is far above what white noise leaves"),
    Defense("drop", "drop vectors", "ours: the fusion leaves the vector out (the base weights stay)",
            "each user's MSE (with the gate: which users are jammed)", {"defense.receiver": ["drop"]},
            help="discard a received vector; with the gate, only the jammed users' vectors"),
    Defense("gate", "denoise only jammed users", "ours: a per-user decision from the known noise level",
            "each user's MSE", {"defense.receiver_min_mse": 0.1},
            help="the receiver's denoisers act only on users whose MSE is at least 0.1; below it, weight noise "
                 "is large in weight space but harms the fused model less than the signal a denoiser removes"),
    Defense("shrinkage", "scalar shrinkage (LMMSE)", "ours: the Wiener gain per tensor", "each user's error level",
            {"defense.shrinkage": True}, help="scale each received tensor by its LMMSE gain"),
)
DEFENSES: dict[str, Defense] = {d.name: d for d in DEFENSE_RECORDS}
# the receiver's denoisers in the order they act (the schema's canonical order of defense.receiver)
RECEIVER_ORDER = ("drop", "destripe", "spectral", "norm")


def parse(combo: str) -> tuple[str, ...]:
    """'spectral+rmtllmf' -> its parts, checked against the records (ValueError naming the allowed ones)."""
    parts = tuple(p.strip() for p in str(combo).split("+"))
    unknown = [p for p in parts if p not in DEFENSES]
    if unknown or not parts or len(set(parts)) != len(parts) or ("none" in parts and len(parts) > 1):
        raise ValueError(f"defenses joined by '+', each at most once, among {', '.join(DEFENSES)}; got {combo!r}")
    return parts


def settings(combo: str) -> dict:
    """The scenario fields of a defense or a combination ('spectral+rmtllmf'), every other defense off."""
    out = {k: (list(v) if isinstance(v, list) else v) for k, v in NO_DEFENSE.items()}
    for part in parse(combo):
        for key, value in DEFENSES[part].settings.items():
            if key == "defense.receiver":
                out[key] = [r for r in RECEIVER_ORDER if r in set(out[key]) | set(value)]
            else:
                out[key] = value
    return out


def title(combo: str) -> str:
    """A combination's title; with the gate, the receiver's part names whom it acts on."""
    parts = parse(combo)
    if "gate" not in parts:
        return " + ".join(DEFENSES[p].title for p in parts)
    receiver = [p for p in parts if DEFENSES[p].settings.get("defense.receiver")]
    rest = [p for p in parts if p != "gate" and p not in receiver]
    front = " + ".join(DEFENSES[p].title for p in receiver) or "denoise"
    return " + ".join([f"{front} (jammed users only)", *(DEFENSES[p].title for p in rest)])
