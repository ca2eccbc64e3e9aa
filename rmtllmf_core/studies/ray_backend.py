"""Sweeps on Ray (`--backend ray`): each point not yet in the cache is one Ray task.

- `address`: None or "local" starts a Ray on this machine with `workers` CPUs (no dashboard, nothing
  reached over the network); "auto" joins the cluster this machine belongs to; "HOST:PORT" a remote
  head. An unreachable address fails within `CONNECT_TIMEOUT_S` with an error naming it.
- Workers return the result's plain JSON and the driver writes it into its own disk cache, so the
  workers need not share the driver's disk; points already cached are skipped (resume).
- A worker that dies is retried by Ray (`MAX_RETRIES`); finished points are in the cache as they
  arrive, so nothing finished is lost. Ctrl-C cancels what is still running.
- The zoo: a built-in zoo is found by name on every node (the package ships it); a zoo directory must
  be at the same path on every node (a shared filesystem); a zoo that is neither (a test's) comes
  through `worker_setup`, a picklable callable each worker runs once.
- `gpus_per_point` > 0 asks Ray for that fraction of a GPU per task and runs its evaluation and
  realignment there (`RMTLLMF_DEVICE=cuda` in the task).
"""
from __future__ import annotations

import contextlib
import os
import socket
from typing import Any, Callable, Sequence

from ..errors import InputError
from ..experiment.scenario import Scenario

MAX_RETRIES = 3
CONNECT_TIMEOUT_S = 30.0
_setup_done: set = set()   # per worker process: the worker_setup callables already run


def _check_address(address: str | None) -> str | None:
    """None for a local Ray; "auto"; or HOST:PORT, whose TCP port must answer within the timeout."""
    if address in (None, "", "local"):
        return None
    if address == "auto":
        return "auto"
    host, sep, port = str(address).rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InputError("address", f"'auto', 'local' or HOST:PORT; got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise InputError("address", f"no Ray head answers at {address} ({exc.__class__.__name__}: {exc}); "
                                    "start one with `ray start --head`, or use --address local") from None
    return str(address)


def init(workers: int, address: str | None = None) -> bool:
    """Connect to (or start) Ray; True when this call started it (the caller shuts it down)."""
    try:
        import ray
    except ImportError:
        raise InputError("backend", "Ray is not installed here: pip install 'ray>=2.40,<3' (docs/cluster.md)") from None

    if ray.is_initialized():
        return False
    target = _check_address(address)
    kw: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if target is None:
        kw["num_cpus"] = max(1, int(workers))
        # the workers inherit the driver's environment: its cache folder, OpenMP policy and import path
        kw["runtime_env"] = {"env_vars": {k: v for k, v in os.environ.items()
                                          if k.startswith(("RMTLLMF_", "OMP_", "GOMP_")) or k == "PYTHONPATH"}}
    try:
        ray.init(address=target, **kw)
    except (ConnectionError, TimeoutError, RuntimeError) as exc:
        raise InputError("address", f"Ray did not start or connect at {address or 'local'}: {exc}") from None
    return True


@contextlib.contextmanager
def session(backend: str, workers: int, address: str | None):
    """Around a command that runs several sweeps: one Ray for all of them (nothing for the local backend)."""
    started = backend == "ray" and init(workers, address)
    try:
        yield
    finally:
        if started:
            import ray

            ray.shutdown()


def _point(data: dict, setup: Callable[[], Any] | None, gpu: bool) -> dict:
    """One point in a Ray worker: the result's JSON (the driver caches it)."""
    import torch

    from ..experiment import pipeline

    if gpu:
        os.environ["RMTLLMF_DEVICE"] = "cuda"
    torch.set_num_threads(1)  # Ray gives each task one CPU
    pipeline.SIDE_BRANCHES = False  # and a run's side branches would take more (the same bits without)
    if setup is not None and setup not in _setup_done:
        setup()
        _setup_done.add(setup)
    return pipeline.run(Scenario.parse(data), cache=None).to_json()


def run(points: Sequence[tuple[dict, Scenario]], todo: Sequence[int], keys: Sequence[str], cache,
        on_result: Callable[[int, dict], None], *, workers: int, address: str | None,
        worker_setup: Callable[[], Any] | None = None, gpus_per_point: float = 0.0) -> None:
    """Compute the points `todo` on Ray; `on_result(i, result_json)` as each arrives (after the driver
    stored it in `cache` under `keys[i]`)."""
    import ray

    if not 0.0 <= float(gpus_per_point) <= 1.0:
        raise InputError("gpus_per_point", f"a fraction of one GPU in [0, 1]; got {gpus_per_point!r}")
    started = init(workers, address)
    try:
        task = ray.remote(_point).options(num_cpus=1, num_gpus=float(gpus_per_point), max_retries=MAX_RETRIES,
                                          retry_exceptions=False)
        pending = {task.remote(points[i][1].to_dict(), worker_setup, gpus_per_point > 0): i for i in todo}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    i = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:  # our errors reach the caller as themselves
                        cause = getattr(exc, "cause", None)
                        raise (cause if isinstance(cause, Exception) else exc) from None
                    cache.set(keys[i], result)
                    on_result(i, result)
        except BaseException:  # Ctrl-C or a failed point: stop what is still running, keep what finished
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started:
            ray.shutdown()
