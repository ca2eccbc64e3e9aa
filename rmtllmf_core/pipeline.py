"""run(scenario) -> result: the one entry point of the engine, memoised on disk.

scenario -> wireless (per-user MSE) -> perturb (received task vectors) -> fuse -> defend ->
evaluate -> plain JSON data. Each stage is a pure function of its inputs and a seed derived
from the scenario's seed; the only state is the loaded zoo (weights), the result cache, and memos
of values that do not depend on the noise: the chosen lambda, the logits of any evaluated encoder
(by content) and the clean-realigned control (see `compute`), the slow ones also on disk.
"""
from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch

from . import ENGINE_VERSION, defense, evaluate, fusion, perturb
from .cache import ResultCache
from .errors import InputError
from .scenario import Scenario
from .taskvec import ParamLayout, cosine_from_gram, gram_add
from .wireless import channel_warning, evaluate_uplink
from .zoo.types import Zoo

Progress = Callable[[float, str], None]
LAMBDA_VALIDATION_SAMPLES = 50  # per task: enough to rank lambdas, cheap enough for a cold run
LOGITS_MEMO_SIZE = 256  # evaluated encoders kept in memory (8 tasks x 200 samples x 10 classes: 64 kB each)


def sub_seed(seed: int, stage: str) -> int:
    """Independent, reproducible seed per stage, so adding a stage never shifts another's noise."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{stage}".encode()).digest()[:4], "little")


# The clean-realigned control realigns the *clean* fusion with the batch order of seed 0 whatever the
# scenario's seed: it is a property of the clean fusion, not of a noise draw, so it is computed once
# per (tasks, clean fusion, freeze and realign options, samples) and reused across seeds and channels.
CONTROL_REALIGN_SEED = sub_seed(0, "realign")


def flat_digest(flat: torch.Tensor) -> str:
    """Content hash of a flat parameter vector (the memo key of what is evaluated on it)."""
    arr = flat.detach().float().contiguous().numpy()
    return hashlib.blake2b(arr, digest_size=20).hexdigest() + f":{arr.size}"


# ---------------------------------------------------------------------------------------------
# Per-process state: the zoo and what is derived from it once (flat vectors, evaluators, memos).

@dataclass(eq=False)
class Engine:
    """The zoo and what is derived from it once. Holds no full-precision copy of any encoder: the base
    encoder's tensors are the zoo's own (`base_tensor`) and task vectors stay as stored (fp16 for a
    big zoo), read one parameter tensor of several tasks at a time (`clean_slices`); flat encoders are
    built per run, at most two [P] float32 buffers at a time (see `compute`)."""
    zoo: Zoo
    layout: ParamLayout
    device: torch.device = torch.device("cpu")  # of evaluation and realignment (evaluate.compute_device)
    _evaluators: OrderedDict = field(default_factory=OrderedDict)
    _memo: OrderedDict = field(default_factory=OrderedDict)
    _logits: OrderedDict = field(default_factory=OrderedDict)
    lock: threading.RLock = field(default_factory=threading.RLock)  # one working encoder per engine

    @classmethod
    def from_zoo(cls, zoo: Zoo, device: str | None = None) -> "Engine":
        return cls(zoo=zoo, layout=ParamLayout.from_state(zoo.base_state), device=evaluate.compute_device(device))

    @property
    def fingerprint(self) -> str:
        """What results are keyed by besides the scenario: the zoo, and the device where not the CPU."""
        tag = evaluate.device_tag(self.device)
        return self.zoo.fingerprint + (f"@{tag}" if tag else "")

    def base_tensor(self, i: int) -> torch.Tensor:
        """Parameter tensor `i` of the base encoder, flat (the zoo's own storage, no copy)."""
        return self.zoo.base_state[self.layout.names[i]].detach().reshape(-1)

    @property
    def base_flat(self) -> torch.Tensor:
        """A new flat float32 copy of the base encoder (one [P] buffer: build it only where needed)."""
        out = torch.empty(self.layout.numel, dtype=torch.float32)
        for i, (a, b) in enumerate(zip(self.layout.offsets, self.layout.offsets[1:])):
            out[a:b].copy_(self.base_tensor(i))
        return out

    def clean_slices(self, tasks) -> "fusion.Slices":
        """tensor index -> [T, n_i] float32: that parameter of the clean task vectors of `tasks` (a fresh tensor)."""
        tasks, names, tv = tuple(tasks), self.layout.names, self.zoo.task_vectors
        return lambda i: tv.stacked(names[i], tasks).view(len(tasks), -1)

    def encoder_flat(self, slices: "fusion.Slices", plan: "fusion.MergePlan",
                     out: torch.Tensor | None = None, each: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
        """base + merge(slices) as a flat [P] float32 encoder (into `out` if given), one tensor at a time;
        `each(i, slice)` sees every slice on the way (for statistics gathered in the same pass)."""
        out = torch.empty(self.layout.numel, dtype=torch.float32) if out is None else out
        for i, (a, b) in enumerate(zip(self.layout.offsets, self.layout.offsets[1:])):
            x = slices(i)
            if each is not None:
                each(i, x)
            fusion.merge_slice(x, plan, i, out[a:b]).add_(self.base_tensor(i))
        return out

    def evaluator(self, samples: int, split: str = "test") -> "evaluate.Evaluator":
        """Every task's first `samples` of `split`; any subset of tasks is evaluated through it."""
        key = (samples, split)
        return _lru(self._evaluators, key, lambda: evaluate.Evaluator(self.zoo, self.zoo.task_names, samples,
                                                                      split=split, device=self.device), 8)

    def memo(self, key: tuple, compute: Callable[[], Any]) -> Any:
        """In-process memo of derived values (predictions, chosen lambdas), bounded for a long-lived server."""
        return _lru(self._memo, key, compute, 2048)

    def logits(self, flat: torch.Tensor, tasks, samples: int, *, cache: ResultCache | None = None,
               key: tuple | None = None, compute: Callable[[], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """task -> logits [n, C] of the encoder `flat` on the first `samples` test samples of `tasks`.

        Memoised in memory by content (the hash of `flat`, the tasks and `samples`), so two runs that
        evaluate the same encoder (the clean fusion of every seed and channel; the attacked fusion of
        the 'none' and 'R-MTLLMF' points of a sweep) evaluate it once. With `cache`, also persisted on
        disk (float32 bytes in JSON, exact). `key`/`compute` replace the content key and the encoder
        for values named by what produces them (the control: its encoder is the result of a realignment).
        """
        tasks = tuple(tasks)
        key = key if key is not None else ("logits", tasks, samples, flat_digest(flat))
        produce = compute if compute is not None else (lambda: self.evaluator(samples).logits(flat, tasks))

        def persisted():
            disk_key = None
            if cache is not None:
                disk_key = "memo/" + hashlib.sha256(
                    f"{ENGINE_VERSION}\n{self.fingerprint}\n{key!r}".encode()).hexdigest()
                stored = _unpack_logits(cache.get(disk_key), tasks, self.evaluator(samples))
                if stored is not None:
                    return stored
            value = produce()
            if disk_key is not None:
                cache.set(disk_key, _pack_logits(value))
            return value

        return _lru(self._logits, key, persisted, LOGITS_MEMO_SIZE)

    def individual(self, task: str, samples: int, cache: ResultCache | None = None) -> torch.Tensor:
        """Predictions of the individually fine-tuned encoder on its own task."""
        def finetuned():
            flat = self.base_flat
            stored = self.zoo.task_vectors.stored(task)
            for name, a, b in zip(self.layout.names, self.layout.offsets, self.layout.offsets[1:]):
                flat[a:b].add_(stored[name].reshape(-1))
            return flat
        return self.memo(("individual", task, samples), lambda: self.logits(
            finetuned(), [task], samples, cache=cache)[task].argmax(dim=1))

    def zeroshot(self, task: str, samples: int, cache: ResultCache | None = None) -> torch.Tensor:
        """Predictions of the base encoder (zero-shot heads) on a task."""
        return self.memo(("zeroshot", task, samples), lambda: self.logits(
            self.base_flat, [task], samples, cache=cache)[task].argmax(dim=1))


def _pack_logits(logits: Mapping[str, torch.Tensor]) -> dict:
    """JSON-safe, exact: each task's float32 logits as little-endian bytes in base64."""
    return {t: {"shape": list(z.shape), "f32": base64.b64encode(
        z.detach().float().contiguous().numpy().astype("<f4").tobytes()).decode()} for t, z in logits.items()}


def _unpack_logits(stored: Any, tasks: tuple[str, ...], ev: "evaluate.Evaluator") -> dict[str, torch.Tensor] | None:
    """The logits back, or None for anything that is not exactly what `_pack_logits` wrote for these tasks."""
    if not isinstance(stored, dict) or set(stored) != set(tasks):
        return None
    out = {}
    try:
        for t in tasks:
            n, c = (int(x) for x in stored[t]["shape"])
            want = (ev.slices[t].stop - ev.slices[t].start, ev.heads[t].shape[0])
            data = base64.b64decode(stored[t]["f32"], validate=True)
            if (n, c) != want or len(data) != 4 * n * c:
                return None
            out[t] = torch.from_numpy(np.frombuffer(data, dtype="<f4").astype(np.float32).reshape(n, c))
    except (KeyError, TypeError, ValueError):
        return None
    return out


def _lru(store: OrderedDict, key, compute, size: int):
    if key in store:
        store.move_to_end(key)
        return store[key]
    value = store[key] = compute()
    while len(store) > size:
        store.popitem(last=False)
    return value


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def register_zoo(zoo: Zoo, device: str | None = None) -> Engine:
    """Make an already loaded zoo available by its name (tests, uploaded zoos); `device` as in
    `evaluate.compute_device` (default $RMTLLMF_DEVICE, else cpu)."""
    with _engines_lock:
        _engines[zoo.name] = Engine.from_zoo(zoo, device)
        return _engines[zoo.name]


def get_engine(zoo_name: str = "tiny") -> Engine:
    """The engine of a zoo, loaded once per process."""
    with _engines_lock:
        if zoo_name not in _engines:
            from .zoo import load_zoo

            _engines[zoo_name] = Engine.from_zoo(load_zoo(zoo_name))
        return _engines[zoo_name]


def get_zoo(zoo_name: str = "tiny") -> Zoo:
    return get_engine(zoo_name).zoo


_default_cache: ResultCache | None = None


def default_cache() -> ResultCache:
    global _default_cache
    if _default_cache is None:
        _default_cache = ResultCache()
    return _default_cache


def result_key(scenario: Scenario, engine: Engine) -> str:
    payload = f"{ENGINE_VERSION}\n{engine.fingerprint}\n{scenario.canonical_json()}"
    return hashlib.sha256(payload.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------

def cached(scenario: Scenario | Mapping, *, cache: ResultCache | None = None) -> dict | None:
    """The stored result, or None; never computes."""
    scenario = Scenario.parse(scenario)
    engine = get_engine(scenario.zoo)
    return (cache if cache is not None else default_cache()).get(result_key(scenario, engine))


def run(
    scenario: Scenario | Mapping,
    *,
    cache: ResultCache | None = None,
    progress: Progress | None = None,
    use_cache: bool = True,
) -> dict:
    """Validate, look up, and if needed compute the whole pipeline for one scenario."""
    scenario = Scenario.parse(scenario)
    engine = get_engine(scenario.zoo)
    _check_tasks(scenario, engine.zoo)
    cache = cache if cache is not None else default_cache()
    key = result_key(scenario, engine)
    if use_cache:
        hit = cache.get(key)
        if hit is not None:
            return hit
    with engine.lock:
        result = compute(scenario, engine, progress=progress or (lambda f, m: None), cache=cache if use_cache else None)
    result["key"] = key
    if use_cache and not cache.set(key, result):
        result.setdefault("warnings", []).append(cache.last_error)
    return result


def _check_tasks(scenario: Scenario, zoo: Zoo) -> None:
    unknown = [t for t in scenario.tasks if t not in zoo.tasks]
    if unknown:
        raise InputError("tasks", f"unknown task {unknown[0]!r}; zoo {zoo.name!r} has {', '.join(zoo.task_names)}")


def choose_lambda(scenario: Scenario, engine: Engine, clean: "fusion.Slices", cache: ResultCache | None = None) -> float:
    """The fusion's lambda: fixed, the per-N heuristic, or the best clean fusion on validation data.

    Chosen once on the clean vectors and used for every condition, so conditions differ only in
    the noise and the defense.
    """
    f = scenario.fusion
    n_tasks = len(scenario.fused_tasks)
    if f.method == "average":
        return 1.0 / n_tasks
    if f.lambda_mode == "fixed":
        return f.lambda_
    if f.lambda_mode == "heuristic":
        return fusion.heuristic_lambda(n_tasks)

    def search():
        # two [P] buffers: the merged clean vector (lambda 1) and the candidate encoder
        ev = engine.evaluator(LAMBDA_VALIDATION_SAMPLES, split="val")
        layout = engine.layout
        merged = fusion.merge_into(clean, _plan(scenario, engine, clean, 1.0), layout,
                                   torch.empty(layout.numel, dtype=torch.float32))
        candidate = torch.empty_like(merged)
        scores = []
        for lam in fusion.LAMBDA_GRID:
            for i, (a, b) in enumerate(zip(layout.offsets, layout.offsets[1:])):
                torch.mul(merged[a:b], lam, out=candidate[a:b]).add_(engine.base_tensor(i))
            acc = ev.accuracy(candidate, scenario.fused_tasks)
            scores.append(float(np.mean(list(acc.values()))))
        return float(fusion.LAMBDA_GRID[int(np.argmax(scores))])

    opts = f.model_dump(exclude={"lambda_mode", "lambda_"})
    # only DARE's random drop depends on the seed; other methods share one search across seeds
    seed = scenario.seed if f.method == "dare" else None
    memo_key = ("lambda", scenario.fused_tasks, tuple(sorted(opts.items())), seed)
    if cache is None:
        return engine.memo(memo_key, search)
    # persisted too: the search is the slowest part of a cold run and depends only on zoo and fusion
    disk_key = "lambda/" + hashlib.sha256(f"{ENGINE_VERSION}{engine.fingerprint}{memo_key}".encode()).hexdigest()

    def persisted():
        stored = cache.get(disk_key)
        if isinstance(stored, float) and 0.0 <= stored <= 1.0:
            return stored
        value = search()
        cache.set(disk_key, value)
        return value

    return engine.memo(memo_key, persisted)


def _plan(scenario: Scenario, engine: Engine, slices: "fusion.Slices", lam: float) -> "fusion.MergePlan":
    f = scenario.fusion
    return fusion.plan_merge(
        slices, fusion.RECIPES[f.method], layout=engine.layout, n_tasks=len(scenario.fused_tasks), lambda_=lam,
        density=f.density, drop_rate=f.drop_rate, consensus_min_tasks=f.consensus_min_tasks,
        tall_mask_lambda=f.tall_mask_lambda, seed=sub_seed(scenario.seed, "fusion"),
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


def compute(scenario: Scenario, engine: Engine, *, progress: Progress, cache: ResultCache | None = None) -> dict:
    timing: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str, fraction: float):
        nonlocal clock
        now = time.perf_counter()
        timing[stage] = round(now - clock, 4)
        clock = now
        progress(fraction, stage)

    users, layout = list(scenario.tasks), engine.layout
    tasks = list(scenario.fused_tasks)  # the base station fuses these users' vectors
    fused_rows = [users.index(t) for t in tasks]
    n_eval = scenario.evaluation.samples_per_task
    d = scenario.defense

    # wireless: one drop of the uplink -> per-user MSE and the receiver's cross-user error covariance
    uplink = evaluate_uplink(scenario.wireless)
    mse = np.asarray(uplink.mse, dtype=float)
    lap("wireless", 0.05)

    # The stages stream the task vectors one parameter tensor at a time ([T, n_i] slices; fusion.Slices):
    # clean slices come from the zoo as stored, received ones are clean + that tensor's noise (perturb
    # is seeded per (user, tensor), so a slice can be recomputed for a second pass and is the same),
    # restored ones pass the received slice through the cheap defenses. A method with a per-row
    # statistic (TIES' threshold, layer-aware weights, trim) makes a first pass. Flat encoders are
    # built one at a time in a [P] buffer (two during the lambda search) and evaluated right away.
    p = scenario.perturb
    n_tensors = len(layout.names)
    clean = engine.clean_slices(tasks)
    clean_power = torch.zeros(len(tasks), n_tensors, dtype=torch.float64)
    clean_gram = _Gram(len(tasks))

    def clean_stats(i, x):
        clean_gram(i, x)
        if p.scale != "absolute":
            clean_power[:, i] = perturb.reference_square(x, p.scale)

    # fuse: lambda (chosen on the clean vectors, memoised), then the clean fusion in the same pass as the
    # clean statistics (the noise scale and the clean cosine)
    lam = choose_lambda(scenario, engine, clean, cache)
    lap("lambda", 0.2)
    fused_clean = engine.encoder_flat(clean, _plan(scenario, engine, clean, lam), each=clean_stats)
    clean_digest = flat_digest(fused_clean)

    # wireless + perturb: the drop's per-user MSE; the fused users' (rows of users `fused_rows`) noise
    link = perturb.link(mse, layout=layout, model=p.model, scale=p.scale, seed=sub_seed(scenario.seed, "perturb"),
                        power=clean_power if p.model != "digital" else None, users=fused_rows,
                        error_covariance=np.asarray(uplink.error_covariance), sinr_db=np.asarray(uplink.sinr_db),
                        bits_per_param=p.bits_per_param, gain_db=p.symbol_gain_db)

    def received(i):
        return perturb.perturb_slice_(clean(i), link, i)
    lap("perturb", 0.25)

    # the cheap defenses act on each received vector before fusion
    shrink_var = None
    if d.shrinkage:
        std = perturb.tensor_noise_std(clean_power, mse[fused_rows], layout, p.scale, p.symbol_gain_db).to(torch.float64)
        shrink_var = std.square()
    defended_differs = d.shrinkage or d.trim_keep_fraction < 1.0

    def shrunk(i):
        x = received(i)
        return defense.shrink_slice_(x, shrink_var[:, i]) if shrink_var is not None else x

    trim_plan = (defense.plan_trim(shrunk, n_tensors, len(tasks), layout.numel, d.trim_keep_fraction)
                 if d.trim_keep_fraction < 1.0 else None)

    def restored(i):
        x = shrunk(i)
        return defense.trim_slice_(x, trim_plan, i) if trim_plan is not None else x

    frozen_tensors = defense.frozen_tensors(layout, d.freeze_groups) if d.freeze else ()

    # the clean fusion's logits, then its buffer is released; then the attacked fusion (received cosine
    # in the same pass; the defended one too when no cheap defense changes the received vectors)
    logits: dict[str, dict[str, torch.Tensor]] = {"clean": engine.logits(fused_clean, tasks, n_eval, cache=cache)}
    del fused_clean
    received_gram = _Gram(len(tasks))
    defended_gram = _Gram(len(tasks), frozen_tensors)

    def received_stats(i, x):
        received_gram(i, x)
        if not defended_differs and d.freeze:
            defended_gram(i, x)

    fused = engine.encoder_flat(received, _plan(scenario, engine, received, lam), each=received_stats)
    lap("fuse", 0.3)
    logits["attacked"] = engine.logits(fused, tasks, n_eval)
    if defended_differs:
        fused = engine.encoder_flat(restored, _plan(scenario, engine, restored, lam), out=fused, each=defended_gram)

    # defend: R-MTLLMF's freeze (in place) then realign
    if d.freeze:
        defense.freeze_(fused, engine.zoo.base_state, layout, d.freeze_groups)
    frozen = layout.mask(d.freeze_groups) if d.freeze else torch.zeros(layout.numel, dtype=torch.bool)
    realign_opts = dict(shots_per_class=d.shots_per_class, steps=d.realign_steps, lr=d.realign_lr,
                        frozen_mask=frozen, seed=sub_seed(scenario.seed, "realign"))
    if d.realign:
        fused = defense.realign(engine.zoo, fused, layout, tasks, **realign_opts, inplace=True, device=engine.device,
                                progress=lambda f: progress(0.3 + 0.3 * f, "realign"))
    lap("defend", 0.6)
    logits["defended"] = (logits["attacked"] if not (defended_differs or d.freeze or d.realign)
                          else engine.logits(fused, tasks, n_eval))
    del fused

    # evaluate. What is memoised (by content, see Engine.logits) rather than computed per run: the
    # individual and zero-shot predictions, the clean fusion's logits (the same encoder for every seed
    # and channel unless the fusion is DARE) and the clean-realigned control; those three persist in
    # the disk cache. The attacked fusion is memoised in memory only (shared by the 'none' and
    # 'R-MTLLMF' points of a sweep); with no defense the defended encoder *is* the attacked one.
    ev = engine.evaluator(n_eval)
    individual = {t: engine.individual(t, n_eval, cache) for t in tasks}
    accuracy = {
        "finetuned": ev.accuracy_from_predictions(individual),
        "zeroshot": ev.accuracy_from_predictions({t: engine.zeroshot(t, n_eval, cache) for t in tasks}),
    }
    if d.realign and scenario.evaluation.clean_realign_control:
        # The control: the same realignment on the *clean* fusion (no noise, same frozen parts), with
        # the batch order of seed 0 (CONTROL_REALIGN_SEED): it depends on neither the channel nor the
        # noise seed, so moving a slider or drawing a new seed never recomputes it.
        def control():  # the clean fusion is rebuilt (its buffer was released after its evaluation)
            start = engine.encoder_flat(clean, _plan(scenario, engine, clean, lam))
            if d.freeze:
                defense.freeze_(start, engine.zoo.base_state, layout, d.freeze_groups)
            flat = defense.realign(engine.zoo, start, layout, tasks, **{**realign_opts, "seed": CONTROL_REALIGN_SEED},
                                   inplace=True, device=engine.device)
            return ev.logits(flat, tasks)
        recipe = d.model_dump(include={"freeze", "freeze_groups", "shots_per_class", "realign_steps", "realign_lr"})
        control_key = ("control", tuple(tasks), n_eval, clean_digest,
                       tuple(sorted(recipe.items())), CONTROL_REALIGN_SEED)
        logits["clean_realigned"] = engine.logits(torch.empty(0), tasks, n_eval, cache=cache, key=control_key,
                                                  compute=control)
    progress(0.9, "evaluate")

    preds = {cond: {t: l.argmax(dim=1) for t, l in lg.items()} for cond, lg in logits.items()}
    for cond, pr in preds.items():
        accuracy[cond] = ev.accuracy_from_predictions(pr)
    normalized = {cond: evaluate.normalized(acc, accuracy["finetuned"]) for cond, acc in accuracy.items()}
    wde = {cond: evaluate.disagreement(individual, preds[cond]) for cond in preds}
    alpha = scenario.evaluation.significance
    rejection = {cond: evaluate.rejection_rate(logits["clean"], logits[cond], alpha)
                 for cond in ("attacked", "defended")}

    # cosine similarity of clean, received and defended vectors (frozen parts reset: the base's own),
    # from the Gram matrices gathered during the fusion passes
    cosine = {"clean": clean_gram.cosine(), "received": received_gram.cosine()}
    if d.freeze or defended_differs:
        cosine["defended"] = defended_gram.cosine()
    else:
        cosine["defended"] = cosine["received"]
    lap("evaluate", 1.0)

    # a channel that leaves the task vectors as noise with no jammer says so (run() may append more)
    warnings = [w for w in (channel_warning(scenario.wireless, uplink),) if w]
    return {
        "engine_version": ENGINE_VERSION,
        "zoo": {"name": engine.zoo.name, "fingerprint": engine.zoo.fingerprint, "device": str(engine.device)},
        "scenario": scenario.to_dict(),
        "tasks": tasks,
        "wireless": uplink.to_dict(),
        "lambda": lam,
        "accuracy": accuracy,
        "normalized": normalized,
        "average_normalized": {cond: float(np.mean(list(v.values()))) for cond, v in normalized.items()},
        "wde": wde,
        "rejection_rate": rejection,
        "cosine": {name: m.tolist() for name, m in cosine.items()},
        "timing_s": timing,
        **({"warnings": warnings} if warnings else {}),
    }
