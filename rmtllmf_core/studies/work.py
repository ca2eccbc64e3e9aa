"""Heavy work as one plain value, and how it runs.

A `Work` is a single run or a sweep's (row, scenario) points, built once by whoever asks (a page,
a command, `sweeps.*_work`, `report.table_work`). The host keys it (`Work.key`), checks it against
its caps and looks it up in the disk cache (`Work.result_keys`, hashed once), queues it, and
`execute` runs it: a run answers its result, a sweep one row per point (`run_points`: serially or
in a pool of worker processes, with the same rows either way; every finished point lands in the
disk cache, so an interrupted sweep resumes where it stopped).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import statistics
import sys
import traceback
import types
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from functools import cached_property
from multiprocessing import get_context
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, TypedDict

from ..experiment import pipeline
from ..experiment.codec import link_query
from ..errors import AssetError, CapExceeded, InputError
from ..experiment.pipeline import run
from ..experiment.result import Condition, Result
from ..experiment.scenario import Scenario

Progress = Callable[[float, str], None]


@dataclass(frozen=True, eq=False)
class Work:
    """One run (`single`) or a sweep's points, as a plain value: what the host keys, caps, looks up in
    the cache and queues. `spread_control`: the sweep computed the clean-realigned control on one
    point (`sweeps._one_control`); every row of that defense gets its value (`spread_control`)."""
    points: tuple[tuple[Mapping, Scenario], ...]
    single: bool = False
    spread_control: bool = False

    def __post_init__(self):
        points = tuple((dict(row), Scenario.parse(s)) for row, s in self.points)
        if self.single and len(points) != 1:
            raise ValueError("a single run has exactly one point")
        object.__setattr__(self, "points", points)

    @classmethod
    def single_run(cls, scenario: Scenario | Mapping) -> "Work":
        """The work of one scenario's run (its answer: a Result)."""
        return cls((({}, Scenario.parse(scenario)),), single=True)

    @classmethod
    def sweep(cls, points: Iterable[tuple[Mapping, Scenario]], *, spread_control: bool = False) -> "Work":
        return cls(tuple(points), spread_control=spread_control)

    @property
    def scenarios(self) -> list[Scenario]:
        return [s for _, s in self.points]

    @property
    def preemptible(self) -> bool:
        """Sweeps give way to single runs in the host's queue."""
        return not self.single

    @cached_property
    def result_keys(self) -> tuple[str, ...]:
        """Each point's disk-cache key (loads each zoo once per process; hashed once per value)."""
        engines = {}
        for s in self.scenarios:
            if s.zoo not in engines:
                engines[s.zoo] = pipeline.get_engine(s.zoo)
            pipeline._check_tasks(s, engines[s.zoo].zoo)
        return tuple(pipeline.result_key(s, engines[s.zoo]) for s in self.scenarios)

    @cached_property
    def key(self) -> str:
        """Identical work, identical key (the points' rows and cache keys): the queue computes it once."""
        payload = "\n".join([f"single={self.single} spread={self.spread_control}"]
                             + [f"{sorted(row.items())!r} {k}" for (row, _), k in zip(self.points, self.result_keys)])
        return hashlib.sha256(payload.encode()).hexdigest()

    def missing(self, cache=None) -> int:
        """How many points the disk cache does not hold yet (no result is read)."""
        cache = cache if cache is not None else pipeline.default_cache()
        return sum(k not in cache for k in self.result_keys)

    def measured_seconds(self, cache=None, limit: int = 8) -> float | None:
        """The median compute time of this work's points that the disk cache holds (each result keeps the
        seconds of the run that computed it), from at most `limit` of them; None when none is cached."""
        cache = cache if cache is not None else pipeline.default_cache()
        seconds = []
        for k in self.result_keys:
            hit = cache.get(k) if k in cache else None
            timing = hit.get("timing_s") if isinstance(hit, dict) else None
            if isinstance(timing, dict) and timing:
                seconds.append(float(sum(v for v in timing.values() if isinstance(v, (int, float)))))
            if len(seconds) >= limit:
                break
        return float(statistics.median(seconds)) if seconds else None


def execute(work: Work, progress: Progress | None = None, *, cache=None, use_cache: bool = True, workers: int = 1,
            worker_setup: Callable[[], Any] | None = None, **backend):
    """Run a Work: a single run answers its result (`pipeline.run`, here), a sweep its rows (`run_points`:
    `backend`, `address`, `gpus_per_point` choose where)."""
    if work.single:
        return run(work.scenarios[0], cache=cache, progress=progress, use_cache=use_cache, key=work.result_keys[0])
    rows = run_points(work.points, progress, workers=workers, worker_setup=worker_setup, cache=cache,
                      use_cache=use_cache, **backend)
    return spread_control(rows) if work.spread_control else rows


class Row(TypedDict, total=False):
    """A sweep row: the point's own labels (e.g. `attack`, `defense`, `jammer_dbm`: the sweep's axes, str
    keys of any type) and the run's summary below. Accuracies are fractions in [0, 1]; one row per
    point, written as one CSV line (`write_rows`)."""
    avg_normalized: float                    # the defended condition, averaged over the fused tasks
    avg_normalized_clean: float              # the fusion without noise
    avg_normalized_attacked: float           # the received fusion without any defense
    avg_normalized_clean_realigned: Optional[float]  # the control (None where not computed)
    mean_mse: float                          # the fused users' mean MSE
    mean_sinr_db: float                      # their mean SINR, dB
    rejection_rate: Optional[float]          # share of samples rejecting H0, defended
    rejection_rate_attacked: Optional[float]  # ... and without a defense
    airtime_factor: float                    # the link's airtime against one analogue symbol per parameter
    engine_version: str
    scenario: str                            # the run's share-link query: what produced the row
    key: str                                 # its cache key


def spread_control(rows: list[Row]) -> list[Row]:
    """The clean-realigned control, computed on one point of a defense, on every row of that defense."""
    control = {}
    for r in rows:
        if r.get("avg_normalized_clean_realigned") is not None:
            control.setdefault(r.get("defense"), r["avg_normalized_clean_realigned"])
    return [{**r, "avg_normalized_clean_realigned": control.get(r.get("defense"))} for r in rows]


def row_of(row: Mapping, result: Result) -> Row:
    """A sweep row: the point's labels and the run's summary (accuracies as fractions)."""
    avg = result.average_normalized
    rejection = result.rejection_rate
    return {
        **row,
        "avg_normalized": avg[Condition.DEFENDED],
        "avg_normalized_clean": avg[Condition.CLEAN],
        "mean_mse": result.mean_mse,
        "mean_sinr_db": result.mean_sinr_db,
        # the same run's received fusion without any defense, and the clean fusion realigned (the
        # control; None where the point did not compute it)
        "avg_normalized_attacked": avg[Condition.ATTACKED],
        "avg_normalized_clean_realigned": avg.get(Condition.CLEAN_REALIGNED),
        # the hypothesis test (H0: the noise does not alter the prediction) against the clean fusion
        "rejection_rate": rejection.get(Condition.DEFENDED),
        "rejection_rate_attacked": rejection.get(Condition.ATTACKED),
        "airtime_factor": result.airtime_factor,
        "engine_version": result.engine_version,
        "scenario": link_query(result.scenario),   # what produced the row: its share link's query
        "key": result.key,
    }


BACKENDS = ("local", "ray")


def run_points(points: Sequence[tuple[dict, Scenario]], progress: Progress | None = None, *, workers: int = 1,
               worker_setup: Callable[[], Any] | None = None, backend: str = "local", address: str | None = None,
               gpus_per_point: float = 0.0, **run_kw) -> list[Row]:
    """One row per point, in the order of `points`; every point is one cached `run`.

    `workers` > 1 runs the points not yet in the cache in that many worker processes (spawned, one
    torch thread each, each loading the engine once; the results go to the same disk cache, so a
    killed pool keeps its finished points). Points that share work go to the same worker in one
    batch (see `_batches`). `worker_setup` (a picklable callable) runs first in every worker, e.g. to
    register a zoo that is not loadable by name. The rows equal the serial path's (tested), as long
    as the serial process also runs torch on one thread: floating-point sums may depend on the
    thread count.

    `backend="ray"` runs the points not yet cached as Ray tasks instead (`ray_backend.py`: a local Ray
    with `workers` CPUs, or the cluster at `address`); the rows are the same.
    """
    points = list(points)
    if backend not in BACKENDS:
        raise InputError("backend", f"one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend == "ray":
        return _run_ray(points, progress, workers, worker_setup, address, gpus_per_point, **run_kw)
    if workers <= 1 or len(points) <= 1:
        return _run_serial(points, progress, **run_kw)
    return _run_pool(points, progress, workers, worker_setup, **run_kw)


def _run_serial(points, progress, **run_kw) -> list[Row]:
    rows = []
    for i, (row, scenario) in enumerate(points):
        rows.append(row_of(row, run(scenario, **run_kw)))
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


def _run_pool(points, progress, workers: int, worker_setup, *, cache=None, use_cache: bool = True) -> list[Row]:
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
                                raise rebuild_error(outcome["error"])
                            results[i] = outcome["result"]
                            done += 1
                        report()
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
    return [row_of(row, result) for (row, _), result in zip(points, results)]


def _run_ray(points, progress, workers, worker_setup, address, gpus_per_point, *, cache=None,
             use_cache: bool = True) -> list[Row]:
    from . import ray_backend

    cache = cache if cache is not None else pipeline.default_cache()
    work = Work.sweep(points)
    keys = work.result_keys                                  # also checks every point's tasks first
    results: list = [pipeline.stored(cache, k) if use_cache else None for k in keys]   # resume
    done = sum(r is not None for r in results)
    todo = [i for i, r in enumerate(results) if r is None]
    if progress and done:
        progress(done / len(points), f"{done}/{len(points)}")

    def arrived(i: int, data: dict) -> None:
        nonlocal done
        results[i] = Result.from_json({**data, "key": keys[i]})
        done += 1
        if progress:
            progress(done / len(points), f"{done}/{len(points)}")

    if todo:
        ray_backend.run(points, todo, keys, cache, arrived, workers=workers, address=address,
                        worker_setup=worker_setup, gpus_per_point=gpus_per_point)
    return [row_of(row, result) for (row, _), result in zip(points, results)]


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

    from ..experiment import pipeline

    torch.set_num_threads(1)  # the pool is the parallelism; one thread per worker does not oversubscribe
    pipeline.SIDE_BRANCHES = False  # nor do a run's side branches (the same bits: pipeline._branches)
    if setup is not None:
        setup()


_worker_caches: dict[str, Any] = {}


def _worker_run(items: list[tuple[int, dict]], cache_dir: str, use_cache: bool) -> list[tuple[int, dict]]:
    from ..cache import ResultCache

    cache = _worker_caches.get(cache_dir)
    if cache is None:
        cache = _worker_caches[cache_dir] = ResultCache(cache_dir)
    out = []
    for i, data in items:
        try:
            out.append((i, {"result": run(Scenario.parse(data), cache=cache, use_cache=use_cache)}))
        except Exception as exc:  # sent as its parts (plain data), rebuilt by `rebuild_error`
            out.append((i, {"error": error_record(exc)}))
            break
    return out


def error_record(exc: BaseException) -> dict:
    """An exception as plain data (JSON-able): what a worker or an engine process sends back."""
    return {"type": type(exc).__name__, "text": str(exc), "field": getattr(exc, "field", None),
            "path": getattr(exc, "path", None), "reason": getattr(exc, "reason", None),
            "traceback": traceback.format_exc()}


def rebuild_error(e: Mapping) -> Exception:
    if e["type"] in ("InputError", "CapExceeded") and e["field"] is not None:
        return (CapExceeded if e["type"] == "CapExceeded" else InputError)(e["field"], e["reason"])
    if e["type"] == "AssetError" and e["path"] is not None:
        return AssetError(e["path"], e["reason"])
    return RuntimeError(f"a sweep worker failed: {e['text']}\n{e['traceback']}")


