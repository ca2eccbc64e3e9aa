"""run(scenario) -> result: the one entry point of the engine, memoised on disk.

scenario -> wireless (per-user MSE) -> perturb (received task vectors) -> fuse -> defend ->
evaluate -> plain JSON data. Each stage is a pure function of its inputs and a seed derived
from the scenario's seed; the only state is the loaded zoo (weights), the result cache, and memos
of values that do not depend on the noise: the chosen lambda, the logits of any evaluated encoder
(by content) and the clean-realigned control (see `compute`), the slow ones also on disk.
"""
from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Mapping

import numpy as np
import torch

from .. import ENGINE_VERSION
from ..science import defense, denoise, evaluate, fusion, jamming, perturb, phy
from ..cache import ResultCache
from ..errors import InputError
from ..science.methods import LAMBDA_MAX, METHODS
from .result import Condition, Result
# the per-process state lives in runtime.py; these names stay reachable as pipeline.* for callers
from .runtime import (Engine, default_cache, flat_digest, get_engine, get_zoo, note_run_seconds, register_zoo,
    result_fingerprint)
from .scenario import SAMPLES_PER_TASK_MIN, Scenario
from ..science.taskvec import cosine_from_gram, gram_add
from ..science.wireless import channel_warning, evaluate_uplink
from ..zoo.types import Zoo

__all__ = ["CONTROL_REALIGN_SEED", "Engine", "LAMBDA_VALIDATION_SAMPLES", "Progress", "cached", "choose_lambda",
           "compute", "default_cache", "flat_digest", "get_engine", "get_zoo", "register_zoo", "result_key", "run",
           "sub_seed"]

Progress = Callable[[float, str], None]
LAMBDA_VALIDATION_SAMPLES = 50  # per task: enough to rank lambdas, cheap enough for a cold run
LAMBDA_VALIDATION_MIN = 5       # fewer validation samples per task than this rank nothing: the heuristic instead


def sub_seed(seed: int, stage: str) -> int:
    """Independent, reproducible seed per stage, so adding a stage never shifts another's noise."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{stage}".encode()).digest()[:4], "little")


# The clean-realigned control realigns the *clean* fusion with the batch order of seed 0 whatever the
# scenario's seed: it is a property of the clean fusion, not of a noise draw, so it is computed once
# per (tasks, clean fusion, freeze and realign options, samples) and reused across seeds and channels.
CONTROL_REALIGN_SEED = sub_seed(0, "realign")


def result_key(scenario: Scenario, engine: Engine | str) -> str:
    """The disk cache's key of a scenario's result on an engine (or that engine's fingerprint)."""
    fp = engine if isinstance(engine, str) else engine.fingerprint
    payload = f"{ENGINE_VERSION}\n{fp}\n{scenario.canonical_json()}"
    return hashlib.sha256(payload.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------

def cached(scenario: Scenario | Mapping, *, cache: ResultCache | None = None) -> Result | None:
    """The stored result, or None; never computes."""
    scenario = Scenario.parse(scenario)
    key = result_key(scenario, result_fingerprint(scenario.zoo))  # a built-in zoo's weights are not loaded
    return stored(cache if cache is not None else default_cache(), key)


def stored(cache: ResultCache, key: str) -> Result | None:
    hit = cache.get(key)
    if hit is None:
        return None
    try:
        return Result.from_json(hit)
    except InputError:   # an entry of another shape (hand-edited, truncated): computed again
        cache.discard(key)
        return None


def run(
    scenario: Scenario | Mapping,
    *,
    cache: ResultCache | None = None,
    progress: Progress | None = None,
    use_cache: bool = True,
    key: str | None = None,
) -> Result:
    """Validate, look up, and if needed compute the whole pipeline for one scenario. `key`: its
    `result_key`, when the caller has it already (`work.Work.result_keys`)."""
    scenario = Scenario.parse(scenario)
    engine = get_engine(scenario.zoo)
    _check_tasks(scenario, engine.zoo)
    cache = cache if cache is not None else default_cache()
    key = key or result_key(scenario, engine)
    if use_cache:
        hit = stored(cache, key)
        if hit is not None:
            return hit
    start = time.perf_counter()
    with engine.lock:
        result = compute(scenario, engine, progress=progress or (lambda f, m: None), cache=cache if use_cache else None)
    note_run_seconds(time.perf_counter() - start)
    result = result.model_copy(update={"key": key})
    if use_cache and not cache.set(key, result.to_json()):
        result = result.with_warning(cache.last_error)
    return result


def check_fits(scenario: Scenario) -> None:
    """What only the zoo can refuse in a scenario the schema accepted (unknown tasks, more test samples than
    its splits hold): an InputError naming the field, before any work starts."""
    _check_tasks(scenario, get_engine(scenario.zoo).zoo)


def _smallest_test_split(scenario: Scenario, zoo: Zoo) -> tuple[str, int]:
    """The fused task whose test split holds the fewest samples, and how many (unknown tasks refused)."""
    unknown = [t for t in scenario.tasks if t not in zoo.tasks]
    if unknown:
        raise InputError("tasks", f"unknown task {unknown[0]!r}; zoo {zoo.name!r} has {', '.join(zoo.task_names)}")
    sizes = {t: zoo.split_size(t, "test") for t in scenario.fused_tasks}
    smallest = min(sizes, key=sizes.get)
    return smallest, sizes[smallest]


def _check_samples(n: int, smallest: str, size: int, zoo: Zoo) -> None:
    # the schema allows up to 10,000 test samples; this zoo's test splits may hold fewer (one source: the zoo)
    if n > size:
        raise InputError("evaluation.samples_per_task", f"at most {size} with zoo {zoo.name!r} (the test "
                                                        f"split of {smallest} holds that many); got {n}")


def _check_tasks(scenario: Scenario, zoo: Zoo) -> None:
    _check_samples(scenario.evaluation.samples_per_task, *_smallest_test_split(scenario, zoo), zoo)


def fit_to_zoo(scenario: Scenario, explicit: Collection[str] = ()) -> tuple[Scenario, list[str]]:
    """The scenario with `evaluation.samples_per_task` fitted to the zoo's smallest test split of the fused
    tasks where the user did not set it (`explicit`: the dotted fields they gave), and a note for the change.
    A value the user set and that does not fit stays an error, raised here, before any work starts."""
    field = "evaluation.samples_per_task"
    zoo = get_engine(scenario.zoo).zoo
    smallest, size = _smallest_test_split(scenario, zoo)
    n = scenario.evaluation.samples_per_task
    notes = []
    if not (field in explicit or "evaluation" in explicit) and SAMPLES_PER_TASK_MIN <= size < n:
        scenario = scenario.replace(**{field: size})
        notes.append(f"{field}: {size}, what the test split of {smallest} holds (the default {n} does "
                     f"not fit zoo {zoo.name!r}; --set {field}=N chooses)")
    _check_samples(scenario.evaluation.samples_per_task, smallest, size, zoo)
    return scenario, notes


def validation_samples(scenario: Scenario, zoo: Zoo) -> int:
    """Validation samples per task the lambda search reads: 50, or what the smallest validation split of
    the fused tasks holds (a user's own zoo may have a few dozen images a task)."""
    return min([LAMBDA_VALIDATION_SAMPLES, *(zoo.split_size(t, "val") for t in scenario.fused_tasks)])


def lambda_note(scenario: Scenario, zoo: Zoo) -> str | None:
    """What a result says when the lambda search had fewer validation samples than it asks for."""
    f = scenario.fusion
    if f.method == "average" or f.lambda_mode != "validation":
        return None
    n_val = validation_samples(scenario, zoo)
    if n_val >= LAMBDA_VALIDATION_SAMPLES:
        return None
    if n_val < LAMBDA_VALIDATION_MIN:
        return (f"fusion.lambda_mode: the validation split holds {n_val} samples of a task, too few to rank "
                f"lambdas; the method's heuristic lambda was used (set fusion.lambda_mode=fixed and fusion.lambda "
                "to choose it)")
    return (f"fusion.lambda_mode: lambda chosen on {n_val} validation samples per task (the smallest validation "
            f"split holds that many; {LAMBDA_VALIDATION_SAMPLES} are read where there are)")


def choose_lambda(scenario: Scenario, engine: Engine, clean: "fusion.Slices", cache: ResultCache | None = None) -> float:
    """The fusion's lambda: fixed, the per-N heuristic, or the best clean fusion on validation data.

    Chosen once on the clean vectors and used for every condition, so conditions differ only in
    the noise and the defense.
    """
    f = scenario.fusion
    n_tasks = len(scenario.fused_tasks)
    record = METHODS[f.method]
    if f.method == "average":
        return 1.0 / n_tasks
    if f.lambda_mode == "fixed":
        return f.lambda_
    if f.lambda_mode == "heuristic":
        return record.heuristic_lambda(n_tasks)

    n_val = validation_samples(scenario, engine.zoo)
    if n_val < LAMBDA_VALIDATION_MIN:  # a user's small zoo: the method's heuristic (lambda_note says so)
        return record.heuristic_lambda(n_tasks)

    def search():
        # two [P] buffers: the merged clean vector (lambda 1) and the candidate encoder
        ev = engine.evaluator(n_val, split="val")
        layout = engine.layout
        merged = fusion.merge_into(clean, _plan(scenario, engine, clean, 1.0), layout,
                                   torch.empty(layout.numel, dtype=torch.float32))
        candidate = torch.empty_like(merged)
        scores = []
        for lam in record.lambda_grid:
            for i, (a, b) in enumerate(zip(layout.offsets, layout.offsets[1:])):
                torch.mul(merged[a:b], lam, out=candidate[a:b]).add_(engine.base_tensor(i))
            acc = ev.accuracy(candidate, scenario.fused_tasks)
            scores.append(float(np.mean(list(acc.values()))))
        return float(record.lambda_grid[int(np.argmax(scores))])

    opts = f.model_dump(exclude={"lambda_mode", "lambda_", "mse_aware"})  # chosen on the clean vectors
    # only DARE's random drop depends on the seed; other methods share one search across seeds
    seed = scenario.seed if f.method == "dare" else None
    memo_key = ("lambda", scenario.fused_tasks, tuple(sorted(opts.items())), seed)
    if cache is None:
        return engine.memo(memo_key, search)
    # persisted too: the search is the slowest part of a cold run and depends only on zoo and fusion
    disk_key = "lambda/" + hashlib.sha256(f"{ENGINE_VERSION}{engine.fingerprint}{memo_key}".encode()).hexdigest()

    def persisted():
        stored = cache.get(disk_key)
        if isinstance(stored, float) and 0.0 <= stored <= LAMBDA_MAX:
            return stored
        value = search()
        cache.set(disk_key, value)
        return value

    return engine.memo(memo_key, persisted)


def _plan(scenario: Scenario, engine: Engine, slices: "fusion.Slices", lam: float,
          user_weights=None) -> "fusion.MergePlan":
    f = scenario.fusion
    return fusion.plan_merge(
        slices, fusion.RECIPES[f.method], layout=engine.layout, n_tasks=len(scenario.fused_tasks), lambda_=lam,
        options=fusion.Options.of(f), seed=sub_seed(scenario.seed, "fusion"), user_weights=user_weights,
    )


class _Gram:
    """[T, T] float64 Gram matrix accumulated slice by slice (cosine similarities without a [T, P] stack)."""

    def __init__(self, n: int, skip: tuple[bool, ...] = ()):
        self.gram = torch.zeros(n, n, dtype=torch.float64)
        self.skip = skip

    def __call__(self, i: int, x: torch.Tensor) -> None:
        if x.shape[1] and not (self.skip and self.skip[i]):
            gram_add(self.gram, x)

    def cosine(self) -> np.ndarray:
        return cosine_from_gram(self.gram)


@dataclass
class _Run:
    """What every stage of one run reads: the scenario, the engine, the cache of memos, and the clock."""
    scenario: Scenario
    engine: Engine
    cache: ResultCache | None
    progress: Progress
    timing: dict
    clock: float
    side: ThreadPoolExecutor | None = None  # the run's side branches (`_branches`), None: one line
    stop: threading.Event = field(default_factory=threading.Event)  # the main line failed: side work stops

    def branch(self, fn: Callable[..., Any], *args, **kwargs) -> Callable[[], Any]:
        """fn(*args, **kwargs) beside the main line where the run has side branches, else now; the
        returned call gives its value (raising what it raised)."""
        if self.side is None:
            value = fn(*args, **kwargs)
            return lambda: value
        return self.side.submit(fn, *args, **kwargs).result

    def check_stop(self, fraction: float = 0.0) -> None:
        """A side branch's progress: it stops at its next step once the main line has failed."""
        if self.stop.is_set():
            raise _Stopped()

    @property
    def tasks(self) -> list[str]:
        return list(self.scenario.fused_tasks)  # the base station fuses these users' vectors

    @property
    def n_eval(self) -> int:
        return self.scenario.evaluation.samples_per_task

    def lap(self, stage: str, fraction: float) -> None:
        now = time.perf_counter()
        self.timing[stage] = round(now - self.clock, 4)
        self.clock = now
        self.progress(fraction, stage)

    def plan(self, slices: "fusion.Slices", lam: float, user_weights=None) -> "fusion.MergePlan":
        return _plan(self.scenario, self.engine, slices, lam, user_weights)


@dataclass
class _Clean:
    """The clean side of a run: the fused users' clean slices, their per-tensor reference squares (the
    noise scale) and Gram matrix, the lambda and the clean fusion's logits and content digest."""
    slices: "fusion.Slices"
    power: torch.Tensor
    gram: "_Gram"
    lam: float
    logits: dict
    digest: str


@dataclass
class _Received:
    """The channel's output, slice by slice: `received(i)` adds that tensor's noise to the clean slice;
    `restored(i)` passes it through the cheap defenses (shrinkage, trim) too."""
    received: Callable[[int], torch.Tensor]
    restored: Callable[[int], torch.Tensor]
    cheap_defenses: bool
    user_weights: torch.Tensor | None = None  # MSE-aware fusion's [T] weights (fusion.mse_aware), else None


def compute(scenario: Scenario, engine: Engine, *, progress: Progress, cache: ResultCache | None = None) -> Result:
    """One run, stage by stage: wireless -> clean side (lambda, clean fusion) -> perturb -> fuse the
    received vectors -> defend -> evaluate. The stages stream the task vectors one parameter tensor at
    a time ([T, n_i] slices, `fusion.Slices`) and build flat encoders one at a time in a [P] buffer.

    Where the run has side branches (`_branches`: a small encoder on the CPU), three pieces of work that
    do not wait on the main line run beside it: the fine-tuned and zero-shot predictions, the
    clean-realigned control, and the attacked fusion's evaluation (beside the defense, on a copy of its
    buffer); each other evaluation puts half of its tasks on a side branch (`_logits`). Memoised pieces
    cost nothing there. A few [P] buffers then live at once; a large encoder keeps one line."""
    with _branches(engine) as side:
        run_ = _Run(scenario, engine, cache, progress, {}, time.perf_counter(), side=side)
        try:
            noise_free = run_.branch(_noise_free, run_)
            uplink = _wireless(run_)
            clean = _clean_side(run_)
            control = run_.branch(_control, run_, clean)
            channel = _perturb(run_, clean, uplink)
            logits = {Condition.CLEAN: clean.logits}
            grams = _fuse_and_defend(run_, clean, channel, logits)
            if (value := control()) is not None:
                logits[Condition.CLEAN_REALIGNED] = value
            noise_free()
        except BaseException:
            run_.stop.set()
            raise
        progress(0.9, "evaluate")
        out = _evaluate(run_, clean, uplink, logits, grams)
        run_.lap("evaluate", 1.0)
    return out


SMALL_ENCODER_PARAMS = 10_000_000  # the tiny zoo's encoder has 0.84 M
SIDE_BRANCHES = True  # off in a sweep's worker processes (studies/work.py): there the pool is the parallelism


class _Stopped(Exception):
    """A side branch given up because the run's main line failed (never seen outside `compute`)."""


@contextlib.contextmanager
def _branches(engine: Engine):
    """Side branches for a run, where they pay: on the CPU, for a small encoder whose forward pass swaps
    no parameters (`evaluate.module_lock` is then free). Such an encoder's products are too small to split
    over threads (a second thread buys 1.03-1.28x; two independent pieces side by side 1.7-2.0x,
    benchmarks/bench_threads.py), so the run computes on one torch thread in every branch, whether or not
    a branch has work: the result's bits do not depend on what the cache held, nor on the machine's
    cores (the server's engine processes and the sweep workers run on one thread too). The thread count
    is the process's: two engines computing at once in one process share it. A sweep's workers
    (`SIDE_BRANCHES` off) compute one line on one thread: the same bits. Elsewhere (a GPU, a large
    encoder) one line, at the process's thread count."""
    if not (engine.device.type == "cpu" and engine.layout.numel <= SMALL_ENCODER_PARAMS
            and evaluate._pools_class_token(engine.zoo.encoder)):
        yield None
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # every side branch has ended before the thread count comes back (a branch's bits depend on it)
        with (ThreadPoolExecutor(max_workers=2, thread_name_prefix="rmtllmf-branch") if SIDE_BRANCHES
              else contextlib.nullcontext()) as side:
            yield side
    finally:
        torch.set_num_threads(threads)


def _logits(run_: _Run, flat: torch.Tensor, cache: ResultCache | None = None, digest: str | None = None) -> dict:
    """`Engine.logits` of the fused tasks, half of them on a side branch where the run has them (a task's
    logits do not depend on which tasks share its evaluation: each image is encoded on its own). The
    control calls it from a side branch: the one branch that waits on another, so the two never both wait.
    `flat` is hashed once (`digest`, if the caller has it) for both halves' memo keys."""
    tasks, n = tuple(run_.tasks), run_.n_eval
    digest = digest or flat_digest(flat)

    def part(some: tuple) -> dict:  # Engine.logits' own content key, its digest computed once
        return run_.engine.logits(flat, some, n, cache=cache, key=("logits", some, n, digest))

    if run_.side is None or len(tasks) < 2:
        return part(tasks)
    first = run_.branch(part, tasks[:len(tasks) // 2])
    rest = part(tasks[len(tasks) // 2:])
    return {**first(), **rest}


def _noise_free(run_: _Run) -> None:
    """The fine-tuned and zero-shot predictions of the fused tasks (memoised, on disk too): `_evaluate`
    reads them."""
    for t in run_.tasks:
        run_.engine.individual(t, run_.n_eval, run_.cache)
        run_.engine.zeroshot(t, run_.n_eval, run_.cache)


def _wireless(run_: _Run):
    """One drop of the uplink: per-user MSE, SINR and the receiver's cross-user error covariance."""
    uplink = evaluate_uplink(run_.scenario.wireless)
    run_.lap("wireless", 0.05)
    return uplink


def _clean_side(run_: _Run) -> _Clean:
    """The lambda (chosen on the clean vectors, memoised), then the clean fusion in the same pass as the
    clean statistics (the noise scale and the clean cosine); its logits, and its buffer released."""
    engine, p, tasks = run_.engine, run_.scenario.perturb, run_.tasks
    slices = engine.clean_slices(tasks)
    power = torch.zeros(len(tasks), len(engine.layout.names), dtype=torch.float64)
    gram = _Gram(len(tasks))

    def stats(i, x):
        gram(i, x)
        if p.scale != "absolute":
            power[:, i] = perturb.reference_square(x, p.scale)

    lam = choose_lambda(run_.scenario, engine, slices, run_.cache)
    run_.lap("lambda", 0.2)
    fused = engine.encoder_flat(slices, run_.plan(slices, lam), each=stats)
    digest = flat_digest(fused)
    logits = _logits(run_, fused, cache=run_.cache, digest=digest)
    return _Clean(slices=slices, power=power, gram=gram, lam=lam, logits=logits, digest=digest)


def _perturb(run_: _Run, clean: _Clean, uplink) -> _Received:
    """The fused users' received slices (perturb is seeded per (user, tensor), so a slice recomputed for
    a second pass is the same), and the cheap defenses that act on each received vector before fusion."""
    scenario, layout = run_.scenario, run_.engine.layout
    p, d = scenario.perturb, scenario.defense
    users = list(scenario.tasks)
    rows = [users.index(t) for t in run_.tasks]
    # physical-layer repetition: r combined copies multiply the SINR by r; the MSE is the MMSE there (phy.py)
    mse, sinr_db = phy.repeated(uplink.mse, uplink.sinr_db, p.repetition)
    tensor_mse, stripes = _shaped_jammer(run_, uplink, mse, rows)
    link = perturb.link(mse, perturb.Spec.of(p), layout=layout, seed=sub_seed(scenario.seed, "perturb"),
                        power=clean.power if p.model in ("gaussian", "correlated") else None, users=rows,
                        error_covariance=np.asarray(uplink.error_covariance), sinr_db=sinr_db,
                        coded=_coded_links(p, sinr_db, run_.cache) if p.model == "coded" else None,
                        tensor_mse=tensor_mse, stripes=stripes)
    # what the base station knows of each user's error: its MSE over the whole transmission (a jammer that
    # varies its power over the tensors is seen as its average, weighted by the tensors' sizes)
    known = mse if tensor_mse is None else (tensor_mse * np.diff(layout.offsets)).sum(1) / layout.numel
    known_std = None
    if d.shrinkage or d.receiver or scenario.fusion.mse_aware:
        known_std = perturb.tensor_noise_std(clean.power, known[rows], layout, p.scale,
                                             p.symbol_gain_db).to(torch.float64)

    def received(i):
        return perturb.perturb_slice_(clean.slices(i), link, i)
    run_.lap("perturb", 0.25)

    def denoised(i):
        x = received(i)
        if d.receiver:
            opts = dict(spectral=d.spectral_shrinker if "spectral" in d.receiver else None,
                        norm="norm" in d.receiver, destripe="destripe" in d.receiver, drop="drop" in d.receiver)
            for r, q in enumerate(rows):
                if known[q] >= d.receiver_min_mse:
                    x[r] = denoise.denoise_tensor(x[r], layout.shapes[i], float(known_std[r, i]), **opts)
        return x

    def shrunk(i):
        x = denoised(i)
        return defense.shrink_slice_(x, known_std[:, i].square()) if d.shrinkage else x

    trim_plan = (defense.plan_trim(shrunk, len(layout.names), len(rows), layout.numel, d.trim_keep_fraction)
                 if d.trim_keep_fraction < 1.0 else None)

    def restored(i):
        x = shrunk(i)
        return defense.trim_slice_(x, trim_plan, i) if trim_plan is not None else x

    weights = None
    if scenario.fusion.mse_aware:
        # what the base station knows: each received vector's mean square (measured, one pass) and the
        # error model's mean variance per entry from the user's MSE (fusion.mse_aware_weights)
        sizes = torch.tensor(np.diff(layout.offsets), dtype=torch.float64)
        received_power = sum(received(i).to(torch.float64).square().sum(1) for i in range(len(layout.names)))
        weights = fusion.mse_aware_weights(received_power / layout.numel,
                                           (known_std.square() * sizes).sum(1) / layout.numel)
    return _Received(received=received, restored=restored,
                     cheap_defenses=d.shrinkage or d.trim_keep_fraction < 1.0 or bool(d.receiver),
                     user_weights=weights)


def _shaped_jammer(run_: _Run, uplink, mse: np.ndarray, rows: list[int]):
    """A jammer shaped over the transmission (science/jamming.py): each user's MSE while each tensor is sent
    ([Q, n_tensors]; the worst-case covariance for the power spent on that block, from the same uplink
    engine and channel draw) and the row-periodic share of the fused users' errors; (None, None) for the
    white, uniform jammer."""
    scenario, layout = run_.scenario, run_.engine.layout
    j, p, d = scenario.jammer, scenario.perturb, scenario.defense
    if j.structure == "white" and j.allocation == "uniform":
        return None, None
    cfg = scenario.wireless
    reloaded = defense.frozen_tensors(layout, d.freeze_groups) if d.freeze else (False,) * len(layout.names)
    factors = jamming.allocation_factors(np.diff(layout.offsets), reloaded, j.allocation)

    def mse_at(a: float) -> np.ndarray:  # every user's MSE with the jammer at a times its budget
        if a == 1.0:
            return mse
        u = evaluate_uplink(cfg.model_copy(update={"jammer_power_w": cfg.jammer_power_w * a}))
        return phy.repeated(u.mse, u.sinr_db, p.repetition)[0]

    if j.allocation == "under_gate":   # the whole transmission at the one power that stays under the gate
        gate = d.receiver_min_mse if d.receiver else 0.0
        level = jamming.power_under_gate(lambda a: float(np.max(mse_at(a)[rows])), gate)
        factors = np.full(len(layout.names), level)
    levels = {a: mse_at(a) for a in sorted(set(factors.tolist()))}
    tensor_mse = np.stack([levels[a] for a in factors], axis=1)
    stripes = None
    if j.structure != "white":
        quiet = mse_at(0.0)
        share = jamming.jammer_share(tensor_mse[rows], quiet[rows][:, None])
        stripes = perturb.stripes_for(share, layout, signed=j.structure == "row_signed")
    return (tensor_mse if j.allocation != "uniform" else None), stripes


def _coded_links(p, sinr_db, cache: ResultCache | None) -> tuple:
    """Each user's decoded error rates on the coded link at its SINR (the code's simulated table: shipped,
    cached or simulated once, phy.ber_table) and how a failed codeword shows (perturb.coded_errors)."""
    with np.errstate(divide="ignore"):
        ber, bler = phy.coded_rates(np.asarray(sinr_db, dtype=np.float64), p.code_rate, p.qam_bits,
                                    cache if cache is not None else default_cache())
    k = phy.block_bits(p.code_rate)
    return tuple(perturb.CodedLink(float(b), float(e), k, p.coded_errors) for b, e in zip(ber, bler))


def _fuse_and_defend(run_: _Run, clean: _Clean, channel: _Received, logits: dict) -> dict:
    """The attacked fusion (the received cosine in the same pass; the defended one too when no cheap
    defense changes the received vectors), then R-MTLLMF's freeze (in place) and realign on it; adds
    the attacked and defended logits, returns the received and defended Gram matrices."""
    engine, d, tasks, layout = run_.engine, run_.scenario.defense, run_.tasks, run_.engine.layout
    frozen_tensors = defense.frozen_tensors(layout, d.freeze_groups) if d.freeze else ()
    received_gram = _Gram(len(tasks))
    defended_gram = _Gram(len(tasks), frozen_tensors)

    def received_stats(i, x):
        received_gram(i, x)
        if not channel.cheap_defenses and d.freeze:
            defended_gram(i, x)

    fused = engine.encoder_flat(channel.received, run_.plan(channel.received, clean.lam, channel.user_weights),
                                each=received_stats)
    run_.lap("fuse", 0.3)
    undefended = not (channel.cheap_defenses or d.freeze or d.realign)
    # evaluated beside the defense, on a copy where the defense changes `fused` in place
    attacked = run_.branch(engine.logits, fused if undefended or run_.side is None else fused.clone(), tasks,
                           run_.n_eval)
    if channel.cheap_defenses:
        fused = engine.encoder_flat(channel.restored, run_.plan(channel.restored, clean.lam, channel.user_weights),
                                    out=fused, each=defended_gram)
    if d.freeze:
        defense.freeze_(fused, engine.zoo.base_state, layout, d.freeze_groups)
    if d.realign:
        fused = defense.realign(engine.zoo, fused, layout, tasks, **_realign_options(run_), inplace=True,
                                device=engine.device, progress=lambda f: run_.progress(0.3 + 0.3 * f, "realign"))
    run_.lap("defend", 0.6)
    defended = None if undefended else _logits(run_, fused)
    logits[Condition.ATTACKED] = attacked()
    logits[Condition.DEFENDED] = logits[Condition.ATTACKED] if undefended else defended
    return {"received": received_gram,
            "defended": defended_gram if d.freeze or channel.cheap_defenses else received_gram}


def _realign_options(run_: _Run, seed: int | None = None) -> dict:
    d, layout = run_.scenario.defense, run_.engine.layout
    frozen = layout.mask(d.freeze_groups) if d.freeze else torch.zeros(layout.numel, dtype=torch.bool)
    return dict(budget=defense.Budget.of(d), frozen_mask=frozen,
                seed=sub_seed(run_.scenario.seed, "realign") if seed is None else seed)


def _control(run_: _Run, clean: _Clean) -> dict | None:
    """The control: the same realignment on the *clean* fusion (no noise, same frozen parts), with the
    batch order of seed 0 (CONTROL_REALIGN_SEED): it depends on neither the channel nor the noise
    seed, so moving a slider or drawing a new seed never recomputes it (memoised, also on disk)."""
    engine, d, tasks, layout = run_.engine, run_.scenario.defense, run_.tasks, run_.engine.layout
    if not (d.realign and run_.scenario.evaluation.clean_realign_control):
        return None

    def realigned():  # the clean fusion is rebuilt (its buffer was released after its evaluation)
        start = engine.encoder_flat(clean.slices, run_.plan(clean.slices, clean.lam))
        if d.freeze:
            defense.freeze_(start, engine.zoo.base_state, layout, d.freeze_groups)
        flat = defense.realign(engine.zoo, start, layout, tasks, **_realign_options(run_, CONTROL_REALIGN_SEED),
                               inplace=True, device=engine.device, progress=run_.check_stop)
        return _logits(run_, flat)  # half of it on the other side branch: the run's last piece of work

    recipe = d.model_dump(include={"freeze", "freeze_groups", "shots_per_class", "realign_steps", "realign_lr",
                                   "realign_precision", "realign_batch_size"})
    key = ("control", tuple(tasks), run_.n_eval, clean.digest, tuple(sorted(recipe.items())), CONTROL_REALIGN_SEED)
    return engine.logits(torch.empty(0), tasks, run_.n_eval, cache=run_.cache, key=key, compute=realigned)


def _evaluate(run_: _Run, clean: _Clean, uplink, logits: dict, grams: dict) -> Result:
    """Accuracy (and normalised), WDE, the H0 rejection rate and cosines: the Result.

    Memoised rather than computed per run (by content, see Engine.logits): the individual and zero-shot
    predictions, the clean fusion's logits (the same encoder for every seed and channel unless the
    fusion is DARE) and the control; those persist in the disk cache. The attacked fusion is memoised
    in memory only (shared by the 'none' and 'R-MTLLMF' points of a sweep)."""
    engine, scenario, tasks, n_eval, cache = run_.engine, run_.scenario, run_.tasks, run_.n_eval, run_.cache
    ev = engine.evaluator(n_eval)
    individual = {t: engine.individual(t, n_eval, cache) for t in tasks}
    accuracy = {
        Condition.FINETUNED: ev.accuracy_from_predictions(individual),
        Condition.ZEROSHOT: ev.accuracy_from_predictions({t: engine.zeroshot(t, n_eval, cache) for t in tasks}),
    }
    preds = {cond: {t: lg.argmax(dim=1) for t, lg in by_task.items()} for cond, by_task in logits.items()}
    for cond, pr in preds.items():
        accuracy[cond] = ev.accuracy_from_predictions(pr)
    unusable = [t for t, a in accuracy[Condition.FINETUNED].items() if not a > 0]
    if unusable:  # normalised accuracy divides by it: a user's zoo with a task its own model never gets right
        raise InputError("tasks", f"the zoo's fine-tuned model of {', '.join(map(repr, unusable))} gets none of its "
                         f"{n_eval} test samples right, so its normalised accuracy is undefined; leave it out "
                         f"(--set tasks=...) or fine-tune it longer (zoo build clip --steps N)")
    normalized = {cond: evaluate.normalized(acc, accuracy[Condition.FINETUNED]) for cond, acc in accuracy.items()}
    alpha = scenario.evaluation.significance
    cosine = {"clean": clean.gram.cosine(), "received": grams["received"].cosine(),
              "defended": grams["defended"].cosine()}
    out = {
        "engine_version": ENGINE_VERSION,
        "zoo": {"name": engine.zoo.name, "fingerprint": engine.zoo.fingerprint, "device": str(engine.device)},
        "scenario": scenario.to_dict(),
        "tasks": tasks,
        "wireless": uplink.to_dict(),
        "lambda": clean.lam,
        "accuracy": accuracy,
        "normalized": normalized,
        "average_normalized": {cond: float(np.mean(list(v.values()))) for cond, v in normalized.items()},
        "wde": {cond: evaluate.disagreement(individual, preds[cond]) for cond in preds},
        "rejection_rate": {cond: evaluate.rejection_rate(logits[Condition.CLEAN], logits[cond], alpha)
                           for cond in (Condition.ATTACKED, Condition.DEFENDED)},
        "cosine": {name: m.tolist() for name, m in cosine.items()},
        "timing_s": run_.timing,
        "airtime_factor": phy.airtime_factor(scenario.perturb.model, scenario.perturb.repetition,
                                             scenario.perturb.bits_per_param, scenario.perturb.code_rate,
                                             scenario.perturb.qam_bits),
    }
    # a channel that leaves the task vectors as noise with no jammer says so (run() may append more)
    warnings = [w for w in (channel_warning(scenario.wireless, uplink), lambda_note(scenario, run_.engine.zoo)) if w]
    return Result.from_json({**out, "warnings": warnings})
