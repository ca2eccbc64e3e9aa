"""The Scenario: one frozen, validated, JSON-serialisable value describing a whole experiment.

scenario -> wireless -> perturb -> fuse -> defend -> evaluate. The app's widgets, the URL, an
uploaded file and the CLI all build a Scenario through `Scenario.parse`, the one place where
types and ranges are checked; its canonical JSON (with the zoo's fingerprint and the engine's
version) is the cache key.
"""
from __future__ import annotations

import copy
import hashlib
import json
from typing import Any, Literal, Optional, get_args

from pydantic import Field, field_validator, model_validator

from ..science import calibration
from ..science.calibration import SYMBOL_GAIN_DB_RANGE
from ..science.methods import LAMBDA_MAX, METHOD_NAMES
from ..validation import Config
from ..science.wireless import WirelessConfig

# The schema's defaults are the default scenario (the app's first view): the calibrated uplink, the
# fitted error model and R-MTLLMF on (calibration.json holds the fitted values, as data).
_FITTED = calibration.values()
MAX_USERS = 64
SEED_MAX = 2**32 - 1

NoiseModel = Literal["gaussian", "correlated", "digital", "coded"]
NoiseScale = Literal["absolute", "per_tensor", "per_vector", "peak"]
FusionMethod = Literal[METHOD_NAMES]  # the records: methods.py
LambdaMode = Literal["fixed", "heuristic", "validation"]
FreezeGroup = Literal["patch_embedding", "positional_embedding", "class_embedding"]
# the realignment's matmul arithmetic (defense.PRECISIONS; weights, optimiser and loss stay float32)
RealignPrecision = Literal["float32", "bfloat16"]
ReceiverDefense = Literal["drop", "destripe", "spectral", "norm"]
RECEIVER_DEFENSES: tuple[str, ...] = get_args(ReceiverDefense)  # the order they act in
SpectralShrinker = Literal["frobenius", "hard"]
JammerStructure = Literal["white", "row_periodic", "row_signed"]
JammerAllocation = Literal["uniform", "skip_frozen", "under_gate"]
# the groups R-MTLLMF reloads (taskvec.EMBEDDING_GROUPS; not imported from there: that pulls in torch)
EMBEDDING_GROUPS: tuple[str, ...] = get_args(FreezeGroup)
NOISE_SCALES: tuple[str, ...] = get_args(NoiseScale)


class PerturbConfig(Config):
    """How a user's MSE becomes an error on its received task vector (PAPER-NOTES sec. 3)."""

    model: NoiseModel = "gaussian"
    # what the MSE is relative to: the raw parameter (`absolute`), each tensor's power (`per_tensor`), the
    # whole vector's (`per_vector`) or each tensor's largest magnitude (`peak`)
    scale: NoiseScale = _FITTED["scale"]
    # the reference amplitude: error variance per parameter = MSE * scale^2 * 10^(-symbol_gain_db / 10)
    symbol_gain_db: float = Field(_FITTED["symbol_gain_db"], ge=SYMBOL_GAIN_DB_RANGE[0], le=SYMBOL_GAIN_DB_RANGE[1],
                                  allow_inf_nan=False,
                                  description="transmit gain on each normalised parameter before it becomes a symbol")
    bits_per_param: Literal[6, 12, 18, 24] = Field(12, description="digital and coded links: quantiser bits per parameter")
    # physical-layer protection (rmtllmf_core/science/phy.py), each at its airtime cost
    repetition: int = Field(1, ge=1, le=16, description="copies of every symbol, combined at the receiver (airtime x r)")
    code_rate: Literal["1/3", "1/2", "2/3", "3/4", "5/6"] = Field("1/2", description="coded link: 5G NR LDPC code rate")
    qam_bits: Literal[2, 4, 6, 8] = Field(4, description="coded link: bits per QAM symbol")
    coded_errors: Literal["codeword", "erasure", "independent"] = Field(
        "codeword", description="coded link: failed codewords delivered garbled (no HARQ), erased (a CRC "
                                "detects them), or every bit flipped alone (phy.py)")


class FusionConfig(Config):
    """Generalised task arithmetic: sparsify, elect signs, weight, scale (see fusion.py)."""

    method: FusionMethod = "task_arithmetic"
    lambda_mode: LambdaMode = "validation"
    lambda_: float = Field(0.3, ge=0.0, le=LAMBDA_MAX, alias="lambda", description="scaling of the merged vectors")
    density: float = Field(0.2, gt=0.0, le=1.0, description="TIES: fraction of entries kept per vector")
    drop_rate: float = Field(0.9, ge=0.0, lt=1.0, description="DARE: fraction of entries dropped")
    consensus_min_tasks: int = Field(2, ge=1, le=MAX_USERS, description="consensus: tasks that must agree")
    tall_mask_lambda: float = Field(0.4, gt=0.0, le=10.0, description="consensus: TALL mask threshold")
    # weight each received vector by its estimated SNR (fusion.mse_aware_weights), with any method
    mse_aware: bool = False

    model_config = Config.model_config | {"populate_by_name": True, "serialize_by_alias": True}


class DefenseConfig(Config):
    """R-MTLLMF's two switches, and two cheap defenses beyond the paper."""

    freeze: bool = True
    freeze_groups: tuple[FreezeGroup, ...] = EMBEDDING_GROUPS
    realign: bool = True
    shots_per_class: int = Field(10, ge=1, le=20)  # the paper's
    realign_steps: int = Field(_FITTED["realign_steps"], ge=1, le=500)
    realign_lr: float = Field(_FITTED["realign_lr"], gt=0.0, le=1e-2)
    realign_batch_size: int = Field(_FITTED["realign_batch_size"], ge=1, le=256,
                                    description="samples per realignment step (a step's cost grows with it)")
    realign_precision: RealignPrecision = Field(_FITTED["realign_precision"],
                                                description="matmul arithmetic of the realignment (mixed precision)")
    # the receiver's denoisers of each received vector before fusion, in this order (science/denoise.py)
    receiver: tuple[ReceiverDefense, ...] = Field((), description="receiver-side denoisers before fusion: "
                                                  "drop, destripe, spectral, norm (science/defenses.py)")
    spectral_shrinker: SpectralShrinker = Field("frobenius", description="spectral: Gavish-Donoho's "
                                                "Frobenius-optimal shrinker or its optimal hard threshold")
    receiver_min_mse: float = Field(0.0, ge=0.0, le=1.0, description="the receiver's denoisers act only on the "
                                    "users whose known MSE is at least this (0: on every user)")
    shrinkage: bool = False  # linear MMSE estimate of each task vector from its known MSE
    trim_keep_fraction: float = Field(1.0, gt=0.0, le=1.0, description="keep this fraction of largest entries")

    @field_validator("freeze_groups")
    @classmethod
    def _canonical_groups(cls, groups):
        if len(set(groups)) != len(groups):
            raise ValueError("each group at most once")
        return tuple(g for g in EMBEDDING_GROUPS if g in groups)

    @field_validator("receiver")
    @classmethod
    def _canonical_receiver(cls, names):
        if len(set(names)) != len(names):
            raise ValueError("each denoiser at most once")
        return tuple(r for r in RECEIVER_DEFENSES if r in names)


class JammerConfig(Config):
    """How the jammer shapes its power over the transmission (science/jamming.py): in time (`structure`)
    and over the parameters (`allocation`), at the average power of `wireless.jammer_power_w`."""

    structure: JammerStructure = Field("white", description="white: a fresh draw every symbol; row_periodic: "
                                       "one waveform replayed every matrix row; row_signed: replayed with a "
                                       "random sign per row")
    allocation: JammerAllocation = Field("uniform", description="uniform: the same power on every symbol; "
                                         "skip_frozen: silent on the tensors the defense reloads, louder elsewhere; "
                                         "under_gate: the strongest power that keeps every MSE under the "
                                         "receiver's gate (defense.receiver_min_mse)")


SAMPLES_PER_TASK_MIN = 10  # evaluation.samples_per_task's floor (pipeline.fit_to_zoo reads it too)


class EvalConfig(Config):
    samples_per_task: int = Field(200, ge=SAMPLES_PER_TASK_MIN, le=10_000)
    significance: float = Field(0.05, gt=0.0, lt=0.5, description="hypothesis test level alpha")
    clean_realign_control: bool = True  # realign the clean fusion too: how much is repair vs extra training


class Scenario(Config):
    zoo: str = Field("tiny", min_length=1, max_length=200)
    tasks: tuple[str, ...] = Field(..., min_length=1, max_length=MAX_USERS, description="user q sends task q")
    # which users' task vectors the base station fuses (default: all); every user still transmits
    fuse: Optional[tuple[str, ...]] = None
    wireless: WirelessConfig = Field(default_factory=lambda: WirelessConfig.parse({}))
    perturb: PerturbConfig = PerturbConfig()
    fusion: FusionConfig = FusionConfig()
    defense: DefenseConfig = DefenseConfig()
    evaluation: EvalConfig = EvalConfig()
    jammer: JammerConfig = JammerConfig()
    seed: int = Field(0, ge=0, le=SEED_MAX)

    @field_validator("tasks")
    @classmethod
    def _unique_tasks(cls, tasks):
        for t in tasks:
            if not (1 <= len(t) <= 64) or not t.replace("_", "").replace("-", "").isalnum():
                raise ValueError("task names are 1-64 letters, digits, '_' or '-'")
        if len(set(tasks)) != len(tasks):
            raise ValueError("each task at most once")
        return tasks

    @model_validator(mode="before")
    @classmethod
    def _users_follow_tasks(cls, data: Any):
        # One user per task: unless the wireless part fixes its own user count, take it from tasks.
        if isinstance(data, dict) and isinstance(data.get("tasks"), (list, tuple)):
            wireless = data.get("wireless", {})
            if isinstance(wireless, dict) and not any(
                k in wireless for k in ("num_users", "distances_m", "channel")
            ) and not isinstance(wireless.get("tx_power_w", wireless.get("tx_power_dbm")), list):
                data = {**data, "wireless": {**wireless, "num_users": len(data["tasks"])}}
        return data

    @model_validator(mode="after")
    def _fuse_is_a_subset(self):
        if self.fuse is None:
            return self
        unknown = [t for t in self.fuse if t not in self.tasks]
        if unknown or not self.fuse or len(set(self.fuse)) != len(self.fuse):
            raise ValueError(f"fuse: must name distinct tasks among tasks ({', '.join(self.tasks)}); got {list(self.fuse)}")
        # canonical: in user order, and None when every task is fused
        ordered = tuple(t for t in self.tasks if t in self.fuse)
        object.__setattr__(self, "fuse", None if len(ordered) == len(self.tasks) else ordered)
        return self

    @model_validator(mode="after")
    def _mse_aware_needs_a_variance(self):
        if self.fusion.mse_aware and self.perturb.model in ("digital", "coded"):
            raise ValueError("fusion.mse_aware: weights each vector by its SNR from the Gaussian error model's "
                             "variance; the digital and coded links have none (use perturb.model gaussian or "
                             "correlated)")
        return self

    @model_validator(mode="after")
    def _shaped_noise_needs_the_gaussian_link(self):
        if self.perturb.model == "gaussian":
            return self
        shaped = [f"jammer.{k}" for k, plain in (("structure", "white"), ("allocation", "uniform"))
                  if getattr(self.jammer, k) != plain]
        if shaped:
            raise ValueError(f"{shaped[0]}: a jammer shaped in time or over the parameters is modelled on the "
                             f"analogue link only (perturb.model gaussian); got {self.perturb.model!r}")
        if self.defense.receiver and self.perturb.model != "correlated":
            raise ValueError("defense.receiver: the receiver's denoisers read the Gaussian error model's variance "
                             f"(perturb.model gaussian or correlated); got {self.perturb.model!r}")
        return self

    @model_validator(mode="after")
    def _canonical_jammer(self):
        # one physical jammer, one scenario (one cache key): a power allocation that the defense gives no
        # hold to is the uniform one (nothing reloaded to skip; no gate to stay under)
        a = self.jammer.allocation
        idle = ((a == "skip_frozen" and not (self.defense.freeze and self.defense.freeze_groups))
                or (a == "under_gate" and not (self.defense.receiver and self.defense.receiver_min_mse > 0)))
        if idle:
            object.__setattr__(self, "jammer", self.jammer.model_copy(update={"allocation": "uniform"}))
        return self

    @property
    def fused_tasks(self) -> tuple[str, ...]:
        return self.fuse or self.tasks

    @model_validator(mode="after")
    def _one_user_per_task(self):
        if self.wireless.num_users != len(self.tasks):
            raise ValueError(
                f"tasks: has {len(self.tasks)} entries but the uplink has {self.wireless.num_users} users; "
                "give one task per user"
            )
        return self

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def key(self) -> str:
        """Hash of the canonical form (the zoo fingerprint and engine version join it in the cache)."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def replace(self, **changes: Any) -> "Scenario":
        """A validated copy with dotted-path changes, e.g. replace(**{"wireless.attack": "white"})."""
        return Scenario.parse(apply_changes(self.to_dict(), changes))


def apply_changes(data: dict, changes: dict[str, Any]) -> dict:
    out = copy.deepcopy(data)
    for path, value in changes.items():
        node = out
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out

