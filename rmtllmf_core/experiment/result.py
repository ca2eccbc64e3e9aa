"""One run's result, typed: what `pipeline.run` answers and the disk cache stores (as its JSON form).

The JSON form (`to_json`, read back with `Result.from_json`) is what a result file, the CLI's
`--json` and the app's export carry; its keys are the engine's contract (ENGINE_VERSION).
Accuracies are fractions in [0, 1]; conditions are "clean" (the fusion without noise), "attacked"
(the received vectors fused, no defense), "defended" (with the scenario's defense), "finetuned"
and "zeroshot" (per-task references), and "clean_realigned" (the control, when computed).
"""
from __future__ import annotations

from enum import StrEnum
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import InputError


class Condition(StrEnum):
    """The conditions a Result reports: the keys of its accuracy, normalized, average_normalized, wde
    and rejection_rate (a str: `Condition.DEFENDED == "defended"`, and JSON keeps the plain name)."""
    FINETUNED = "finetuned"              # each task's own fine-tuned encoder (the normalisation's reference)
    ZEROSHOT = "zeroshot"                # the base encoder
    CLEAN = "clean"                      # the fusion without noise
    CLEAN_REALIGNED = "clean_realigned"  # the control: the defense's realignment on the clean fusion
    ATTACKED = "attacked"                # the received vectors fused, no defense
    DEFENDED = "defended"                # the received vectors fused, with the scenario's defense


class ZooInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    fingerprint: str
    device: str


class Result(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    engine_version: str
    zoo: ZooInfo
    scenario: dict[str, Any]                     # Scenario.to_dict() of what ran
    tasks: list[str]                             # the fused tasks, in user order
    wireless: dict[str, Any]                     # wireless.UplinkResult.to_dict(): users' SINR, MSE, rates
    lam: float = Field(alias="lambda")           # the task-arithmetic scaling used
    accuracy: dict[str, dict[str, float]]        # condition -> task -> top-1 accuracy
    normalized: dict[str, dict[str, float]]      # condition -> task -> accuracy / fine-tuned accuracy
    average_normalized: dict[str, float]         # condition -> mean over tasks
    wde: dict[str, float]                        # condition -> weighted disagreement with the fine-tuned models
    rejection_rate: dict[str, float]             # attacked / defended -> share of samples rejecting H0
    cosine: dict[str, list[list[float]]]         # clean / received / defended -> task-vector cosines
    timing_s: dict[str, float]                   # stage -> seconds (of the run that computed it)
    airtime_factor: float = 1.0                  # channel uses per parameter against one analogue symbol (phy.py)
    warnings: list[str] = []
    key: str = ""                                # the disk-cache key (set by pipeline.run)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Result":
        """A result from its JSON form (a cache entry, a result file); InputError names what is wrong."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "result"
            raise InputError(where, f"not a result of this engine: {err['msg']}") from None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    @property
    def users(self) -> list[dict[str, Any]]:
        return self.wireless["users"]

    @property
    def mean_mse(self) -> float:
        """The users' mean MSE after the receiver (the error model's variance before its scale)."""
        return sum(u["mse"] for u in self.users) / len(self.users)

    @property
    def mean_sinr_db(self) -> float:
        return sum(u["sinr_db"] for u in self.users) / len(self.users)

    def with_warning(self, text: str) -> "Result":
        return self.model_copy(update={"warnings": [*self.warnings, text]})
