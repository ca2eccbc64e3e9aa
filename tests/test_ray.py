"""Sweeps on a local Ray (no network): the same rows as the local backend, resume, a killed worker
loses nothing, an unreachable head is a clear error."""
from __future__ import annotations

import functools
import os
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from rmtllmf_core.experiment import pipeline  # noqa: E402
from rmtllmf_core.studies import ray_backend, sweeps, work
from rmtllmf_core.cache import ResultCache  # noqa: E402
from rmtllmf_core.errors import InputError  # noqa: E402
from rmtllmf_core.experiment.presets import preset_scenario  # noqa: E402

TESTS = Path(__file__).resolve().parent


def register_micro_zoo(task_vectors):
    """Worker setup: the parent's micro zoo, built again with the parent's task vectors."""
    import dataclasses

    from micro_zoo import make_micro_zoo

    pipeline.register_zoo(dataclasses.replace(make_micro_zoo(n_tasks=3), task_vectors=task_vectors))


def die_once(marker: str, task_vectors):
    """Worker setup that kills its worker in the middle of its first point, once per sweep."""
    register_micro_zoo(task_vectors)
    real = pipeline.compute

    def compute(*a, **k):
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)          # the worker process dies mid-point, as a lost node would
        return real(*a, **k)

    pipeline.compute = compute


def test_an_unreachable_head_is_a_clear_error_within_the_timeout():
    start = time.monotonic()
    with pytest.raises(InputError, match="no Ray head answers at 127.0.0.1:9"):
        ray_backend._check_address("127.0.0.1:9")
    assert time.monotonic() - start < ray_backend.CONNECT_TIMEOUT_S
    with pytest.raises(InputError, match="HOST:PORT"):
        ray_backend._check_address("nowhere")
    assert ray_backend._check_address("local") is None and ray_backend._check_address("auto") == "auto"


@pytest.fixture(scope="module")
def local_ray(registered_micro_zoo):
    mp = pytest.MonkeyPatch()
    mp.setenv("PYTHONPATH", os.pathsep.join([str(TESTS.parent), str(TESTS), os.environ.get("PYTHONPATH", "")]))
    started = ray_backend.init(2)   # one local Ray for the module: each run_points joins it
    yield registered_micro_zoo
    if started:
        ray.shutdown()
    mp.undo()


def points(zoo):
    base = preset_scenario("paper_worst_sum_rate", tasks=zoo.task_names, zoo=zoo.name).replace(
        **{"evaluation.samples_per_task": 30, "defense.realign_steps": 3})
    return sweeps.snr_points(base, [-140.0, -130.0], ["worst_sum_rate", "none"], ["none", "rmtllmf"], control=False)


@pytest.mark.slow
def test_ray_gives_the_local_rows_resumes_and_keeps_finished_points_when_a_worker_dies(local_ray, tmp_path):
    import torch

    zoo = local_ray
    pts = points(zoo)
    tvs = {t: dict(v) for t, v in zoo.task_vectors.items()}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the workers
    try:
        pipeline.register_zoo(zoo)
        local = work.run_points(pts, cache=ResultCache(tmp_path / "local"))
    finally:
        torch.set_num_threads(threads)

    cache = ResultCache(tmp_path / "ray")
    seen = []
    rows = work.run_points(pts, cache=cache, workers=2, backend="ray",
                           worker_setup=functools.partial(register_micro_zoo, tvs), progress=lambda f, m: seen.append(f))
    assert rows == local and seen[-1] == 1.0
    assert all(cache.get(r["key"]) is not None for r in rows)   # the driver wrote every result

    # resume: half the points gone from the driver's cache; the rest come back the same
    for r in rows[::2]:
        cache.discard(r["key"])
    assert work.run_points(pts, cache=cache, workers=2, backend="ray",
                           worker_setup=functools.partial(register_micro_zoo, tvs)) == local

    # new points, and a worker that dies in the middle of its first one: Ray retries it, nothing is lost
    fresh = [(row, s.replace(seed=1)) for row, s in pts]
    torch.set_num_threads(1)
    try:
        local_fresh = work.run_points(fresh, cache=ResultCache(tmp_path / "local1"))
    finally:
        torch.set_num_threads(threads)
    marker = tmp_path / "died"
    again = work.run_points(fresh, cache=cache, workers=2, backend="ray",
                            worker_setup=functools.partial(die_once, str(marker), tvs))
    assert marker.exists(), "the worker was not killed"
    assert again == local_fresh
    assert all(cache.get(r["key"]) is not None for r in again)


def test_bad_backend_settings_name_their_field(local_ray, tmp_path):
    with pytest.raises(InputError, match="backend"):
        work.run_points(points(local_ray)[:1], backend="slurm")
    with pytest.raises(InputError, match="gpus_per_point"):
        work.run_points(points(local_ray)[:1], backend="ray", gpus_per_point=2.0, cache=ResultCache(tmp_path / "c"))


def test_the_commands_take_the_backend_and_refuse_an_address_without_it(capsys):
    from rmtllmf_core.commands import main

    assert main(["sweep", "--kind", "ablation", "--address", "auto"]) == 2
    assert "--address and --gpus-per-point need --backend ray" in capsys.readouterr().err
    for command in ("sweep", "paper", "leaderboard", "warm"):
        with pytest.raises(SystemExit):
            main([command, "--backend", "slurm"])
        assert "invalid choice: 'slurm'" in capsys.readouterr().err
