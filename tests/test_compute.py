"""Engine processes (rmtllmf_core/serve/compute.py): a Work computed in a process of its own gives the
result the host expects and stores it in the cache; progress comes back; Cancel, errors of ours and
a dead process are handled; the queue's park (a sweep's checkpoint) holds the process, not the run."""
import os
import signal
import threading

import pytest

from rmtllmf_core.serve import compute, jobs
from rmtllmf_core.experiment import pipeline
from rmtllmf_core.errors import InputError
from rmtllmf_core.experiment.presets import preset_scenario
from rmtllmf_core.experiment.result import Result
from rmtllmf_core.studies.work import Work


def light(**changes):
    return preset_scenario("paper_ideal", tasks=("digits", "textures")).replace(
        **{"evaluation.samples_per_task": 20, "defense.realign_steps": 3, "fusion.lambda_mode": "heuristic",
           "evaluation.clean_realign_control": False, **changes})


@pytest.fixture(scope="module")
def pool():
    p = compute.EnginePool(2, torch_threads=1)
    yield p
    p.close()


def test_a_run_in_an_engine_process_comes_back_and_is_cached(pool):
    pool.warm("tiny", count=5)   # as many as may compute at once, started ahead of the first jobs
    assert len(pool._all) == len(pool._free) == 2
    work = Work.single_run(light(seed=11))
    seen = []
    res = pool.run(work, lambda f, m: seen.append((f, m)))
    assert isinstance(res, Result) and res.key == work.result_keys[0]
    assert pipeline.stored(pipeline.default_cache(), work.result_keys[0]) == res   # the process wrote it
    assert seen and seen[-1][0] == pytest.approx(1.0) and all(0 <= f <= 1 for f, _ in seen)


def test_cancel_stops_the_run_and_the_process_serves_the_next(pool):
    def cancel(fraction, message):
        raise jobs.JobCancelled("the computation was cancelled")

    work = Work.single_run(light(seed=12))
    with pytest.raises(jobs.JobCancelled):
        pool.run(work, cancel)
    assert pipeline.stored(pipeline.default_cache(), work.result_keys[0]) is None
    assert isinstance(pool.run(Work.single_run(light(seed=13))), Result)


def test_errors_of_ours_come_back_by_name(pool):
    # the schema accepts it; the zoo refuses it at run time: more test samples than the split holds
    with pytest.raises(InputError) as err:
        pool.run(Work.single_run(light(**{"evaluation.samples_per_task": 5000})))
    assert err.value.field == "evaluation.samples_per_task"


@pytest.mark.slow
def test_a_dead_process_fails_its_job_by_name_and_is_replaced():
    pool = compute.EnginePool(1, torch_threads=1)
    try:
        started = threading.Event()

        def kill(fraction, message):
            if not started.is_set():
                started.set()
                os.kill(pool._all[0].process.pid, signal.SIGKILL)

        with pytest.raises(jobs.JobFailed, match="engine process"):
            pool.run(Work.single_run(light(seed=14, **{"defense.realign_steps": 50})), kill)
        assert isinstance(pool.run(Work.single_run(light(seed=15))), Result)   # a fresh process
    finally:
        pool.close()


@pytest.mark.slow
def test_a_sweep_waits_at_its_checkpoints_for_the_server():
    # the queue parks a sweep inside its progress call: the process waits there (holding no slot)
    # and a single run meanwhile takes another process, even where one process is the most that
    # computes at once (the parked one does not count: else the two would wait for each other)
    pool = compute.EnginePool(1, torch_threads=1)
    try:
        parked, resume = threading.Event(), threading.Event()
        rows = {}

        def checkpoint(fraction, message):
            if not parked.is_set():
                parked.set()
                resume.wait(120)

        sweep = Work.sweep([({"seed": s}, light(seed=s)) for s in (21, 22)])
        t = threading.Thread(target=lambda: rows.setdefault("rows", pool.run(sweep, checkpoint)))
        t.start()
        assert parked.wait(120)
        assert isinstance(pool.run(Work.single_run(light(seed=23))), Result)  # passes the parked sweep
        resume.set()
        t.join(120)
        assert [r["seed"] for r in rows["rows"]] == [21, 22]
        assert len(pool._free) == 1 and len(pool._all) == 1   # the surplus process was closed
    finally:
        pool.close()


def test_yield_to_engines_lowers_only_a_session_of_its_own(tmp_path, monkeypatch):
    """The server gives up CPU weight (autogroup nice) to the engine processes only where it leads its own
    session and the kernel shares the CPU by session; it never raises its weight, and a shell's session
    it was started from is left alone."""
    group, enabled = tmp_path / "autogroup", tmp_path / "enabled"
    group.write_text("/autogroup-42 nice 0\n")
    enabled.write_text("1\n")
    monkeypatch.setattr(compute, "AUTOGROUP", group)
    monkeypatch.setattr(compute, "AUTOGROUP_ENABLED", enabled)
    monkeypatch.setattr(compute.os, "getsid", lambda pid: 1)            # a shell leads the session
    assert "shares its session" in compute.yield_to_engines(3)
    assert group.read_text().endswith("nice 0\n")
    monkeypatch.setattr(compute.os, "getsid", lambda pid: os.getpid())  # the server leads it
    assert compute.yield_to_engines(0).startswith("pages at the engines' priority")
    assert group.read_text().endswith("nice 0\n")
    assert compute.yield_to_engines(3) == "pages at autogroup nice 3, engine processes at 0"
    assert group.read_text() == "3"
    group.write_text("/autogroup-42 nice 7\n")                          # already lower: kept
    assert compute.yield_to_engines(3) == "pages at autogroup nice 7, engine processes at 0"
    assert group.read_text().endswith("nice 7\n")
    enabled.write_text("0\n")
    assert "does not share the CPU by session" in compute.yield_to_engines(3)
    group.unlink()
    enabled.write_text("1\n")
    assert "not usable" in compute.yield_to_engines(3)
