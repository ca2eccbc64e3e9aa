"""The compute queue: bound, FIFO and positions, sharing identical requests, cancel / leave /
abandon, errors to every waiter, overload refusals, preemption of long sweeps.

Jobs here block on Events rather than sleeping, so the tests are fast and not timing-sensitive
(every wait has a generous timeout so a bug fails instead of hanging).
"""
from __future__ import annotations

import threading
import time

import pytest

from rmtllmf_core.errors import CapExceeded, InputError, RmtllmfError
from rmtllmf_core.serve.jobs import (CANCELLED, DONE, RUNNING, JobCancelled, JobFailed, JobQueue,
    default_max_running, in_job)

T = 10.0  # seconds: only reached when something is broken


class Gate:
    """A job that records itself, then waits until released."""

    def __init__(self, value=None, log=None):
        self.value = value
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls = 0
        self.log = log

    def __call__(self, progress):
        self.calls += 1
        if self.log is not None:
            self.log.append(self.value)
        self.started.set()
        assert self.release.wait(T)
        return self.value


def wait_until(cond, timeout=T):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not reached")
        time.sleep(0.005)


def test_default_bound_is_one_job_per_two_cores():
    assert [default_max_running(c) for c in (1, 2, 3, 4, 16)] == [1, 1, 1, 2, 8]
    assert JobQueue().max_running >= 1
    with pytest.raises(ValueError):
        JobQueue(0)


def test_at_most_max_running_at_once_fifo_and_positions():
    q = JobQueue(2)
    active, peak, lock = [0], [0], threading.Lock()
    order = []
    gates = []

    def make(i):
        g = Gate(i)

        def job(progress):
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
                order.append(i)
            try:
                return g(progress)
            finally:
                with lock:
                    active[0] -= 1
        gates.append(g)
        return job

    tickets = [q.submit(f"k{i}", make(i)) for i in range(5)]
    gates[0].started.wait(T), gates[1].started.wait(T)
    assert [t.position() for t in tickets] == [0, 0, 1, 2, 3]
    assert [t.state for t in tickets[:2]] == [RUNNING, RUNNING]
    assert q.stats()["running"] == 2 and q.stats()["waiting"] == 3
    gates[1].release.set()                      # a slot frees: the head of the line starts
    assert tickets[1].result(T) == 1
    gates[2].started.wait(T)
    assert [t.position() for t in tickets[2:]] == [0, 1, 2]
    for g in gates:
        g.release.set()
    assert [t.result(T) for t in tickets] == [0, 1, 2, 3, 4]
    assert peak[0] == 2
    assert order == [0, 1, 2, 3, 4]              # FIFO
    assert all(t.position() == 0 and t.state == DONE for t in tickets)


def test_identical_requests_in_flight_are_computed_once_and_shared():
    q = JobQueue(1)
    blocker = Gate("blocker")
    q.submit("blocker", blocker)
    blocker.started.wait(T)
    g = Gate({"answer": 42})
    first = q.submit("same", g)
    second = q.submit("same", lambda p: pytest.fail("must not be computed twice"))
    assert not first.shared and second.shared
    assert first.position() == second.position() == 1
    blocker.release.set()
    g.release.set()
    assert first.result(T) is second.result(T)   # one computation, one value for every waiter
    assert g.calls == 1
    # once finished, the same key starts afresh (the disk cache answers it in the app)
    assert q.run("same", lambda p: "again", timeout=T) == "again"


def test_cancel_while_waiting_removes_the_job_and_moves_the_line_up():
    q = JobQueue(1)
    blocker = Gate()
    q.submit("blocker", blocker)
    blocker.started.wait(T)
    never = q.submit("a", lambda p: pytest.fail("a cancelled job must not run"))
    later = q.submit("b", lambda p: "b")
    assert later.position() == 2
    assert never.cancel() is True
    assert never.state == CANCELLED and never.done()
    with pytest.raises(JobCancelled):
        never.result(0)
    assert later.position() == 1
    blocker.release.set()
    assert later.result(T) == "b"


def test_cancel_by_one_waiter_keeps_the_job_for_the_others():
    q = JobQueue(1)
    blocker = Gate()
    q.submit("blocker", blocker)
    blocker.started.wait(T)
    a = q.submit("same", lambda p: "shared")
    b = q.submit("same", lambda p: "never")
    assert a.cancel() is False               # b still waits for it
    blocker.release.set()
    assert b.result(T) == "shared"


def test_cancel_a_running_job_stops_it_at_its_next_checkpoint():
    q = JobQueue(1)
    started, steps = threading.Event(), []

    def long_job(progress):
        for i in range(10_000):
            progress(i / 10_000, f"step {i}")
            steps.append(i)
            started.set()
            time.sleep(0.001)
        return "finished"

    t = q.submit("long", long_job)
    started.wait(T)
    assert t.cancel() is True
    with pytest.raises(JobCancelled):
        t.result(T)
    assert len(steps) < 10_000
    assert q.run("next", lambda p: "next runs", timeout=T) == "next runs"  # the slot was freed


def test_progress_is_visible_to_the_waiter():
    q = JobQueue(1)
    halfway, go_on = threading.Event(), threading.Event()

    def job(progress):
        progress(0.5, "realign")
        halfway.set()
        assert go_on.wait(T)
        return 1

    t = q.submit("p", job)
    halfway.wait(T)
    assert t.progress == (0.5, "realign")
    go_on.set()
    t.result(T)
    assert t.progress == (1.0, "done")


def test_leave_lets_a_running_job_finish_for_the_cache():
    q = JobQueue(1)
    cache = {}
    g = Gate("value")

    def job(progress):
        v = g(progress)
        cache["k"] = v          # what pipeline.run does: the result lands in the disk cache
        return v

    t = q.submit("k", job)
    g.started.wait(T)
    t.leave()                   # the session went away
    g.release.set()
    wait_until(lambda: "k" in cache)
    assert cache["k"] == "value"


def test_abandon_drops_a_waiting_job_but_not_a_running_one():
    q = JobQueue(1)
    running = Gate("ran")
    r = q.submit("running", running)
    running.started.wait(T)
    waiting = q.submit("waiting", lambda p: pytest.fail("abandoned while in line: must not run"))
    waiting.abandon()
    r.abandon()
    assert waiting.state == CANCELLED
    running.release.set()
    wait_until(lambda: running.calls == 1 and q.stats()["running"] == 0)
    assert r.state == DONE


def test_queue_cancel_by_key_only_when_nobody_waits():
    q = JobQueue(1)
    g = Gate()
    t = q.submit("k", g)
    g.started.wait(T)
    assert q.cancel("k") is False        # a session still waits for it
    t.leave()
    assert q.cancel("k") is True
    g.release.set()                      # it never reports progress: it simply finishes
    wait_until(lambda: q.stats()["running"] == 0)
    assert q.cancel("unknown") is False


def test_cancel_by_key_for_one_owner_keeps_a_job_other_sessions_wait_for():
    q = JobQueue(1)
    g = Gate()
    mine = q.submit("k", g, owner="me")
    g.started.wait(T)
    theirs = q.submit("k", lambda p: None, owner="them")
    assert q.cancel("k", owner="me") is False and not mine.attached   # they still wait for it
    theirs.leave()
    q.submit("k", lambda p: None, owner="me")
    assert q.cancel("k", owner="me") is True
    g.release.set()
    wait_until(lambda: q.stats()["running"] == 0)


def test_errors_of_ours_reach_every_waiter_and_bugs_become_jobfailed(caplog):
    q = JobQueue(1)
    blocker = Gate()
    q.submit("blocker", blocker)
    blocker.started.wait(T)

    def bad_input(progress):
        raise InputError("defense.realign_steps", "too many")

    a, b = q.submit("bad", bad_input), q.submit("bad", bad_input)
    c = q.submit("bug", lambda p: 1 / 0)
    blocker.release.set()
    for t in (a, b):
        with pytest.raises(InputError) as err:
            t.result(T)
        assert err.value.field == "defense.realign_steps"
    with pytest.raises(JobFailed, match="ZeroDivisionError"):
        c.result(T)
    assert isinstance(JobFailed("x"), RmtllmfError)
    assert "bug" in caplog.text or "failed" in caplog.text
    assert q.run("ok", lambda p: "still serving", timeout=T) == "still serving"


def test_full_line_and_per_session_limit_are_refused_with_a_message():
    q = JobQueue(1, max_waiting=3, max_waiting_per_owner=2)
    blocker = Gate()
    q.submit("blocker", blocker)
    blocker.started.wait(T)
    q.submit("a1", lambda p: 1, owner="alice")
    q.submit("a2", lambda p: 1, owner="alice")
    with pytest.raises(CapExceeded) as err:
        q.submit("a3", lambda p: 1, owner="alice")
    assert err.value.field == "queue" and "2" in str(err.value)
    q.submit("a1", lambda p: 1, owner="bob")         # joining an identical request is always fine
    q.submit("b1", lambda p: 1, owner="bob")
    with pytest.raises(CapExceeded, match="waiting"):
        q.submit("c1", lambda p: 1, owner="carol")
    blocker.release.set()


def test_timeout_on_result():
    q = JobQueue(1)
    g = Gate()
    t = q.submit("slow", g)
    with pytest.raises(TimeoutError):
        t.result(0.01)
    g.release.set()
    assert t.result(T) is None


def test_a_preemptible_sweep_lets_a_short_job_through():
    q = JobQueue(1, slice_s=0.0)
    order, go = [], threading.Event()

    def sweep(progress):
        for i in range(6):
            order.append(f"point{i}")
            progress((i + 1) / 6, f"{i + 1}/6")   # between points: a safe place to yield
            if i == 1:
                go.set()
                wait_until(lambda: q.stats()["waiting"] == 1 or "short" in order)
        return "sweep done"

    s = q.submit("sweep", sweep, preemptible=True)
    go.wait(T)
    short = q.submit("short", lambda p: order.append("short") or "short done")
    assert short.result(T) == "short done"
    assert s.result(T) == "sweep done"
    assert order.index("short") < order.index("point5")  # it did not wait for the whole sweep
    assert order.count("short") == 1 and [o for o in order if o != "short"] == [f"point{i}" for i in range(6)]


def test_a_parked_sweep_can_be_cancelled():
    q = JobQueue(1, slice_s=0.0)
    parked, release = threading.Event(), threading.Event()
    blocker = Gate()

    def sweep(progress):
        while True:
            progress(0.5, "point")
            parked.set()

    s = q.submit("sweep", sweep, preemptible=True)
    parked.wait(T)
    b = q.submit("blocker", blocker)              # takes the slot at the sweep's next checkpoint
    blocker.started.wait(T)
    assert s.state != DONE and s.position() == 1
    assert s.cancel() is True
    with pytest.raises(JobCancelled):
        s.result(T)
    blocker.release.set()
    b.result(T)
    release.set()


def test_work_submitted_from_inside_a_job_runs_inline_not_deadlocked(monkeypatch):
    from rmtllmf_core.serve import hosting, jobs
    from rmtllmf_core.studies import work
    from rmtllmf_core.experiment.scenario import Scenario

    monkeypatch.setattr(work, "execute", lambda w, progress=None: "inner ran")
    q = JobQueue(1)
    jobs.set_default_queue(q)
    try:
        def outer(progress):
            assert in_job()
            # a one-slot queue: queueing this would wait forever
            return hosting.run_heavy(work.Work.single_run(Scenario.parse({"tasks": ["digits"]})))

        assert not in_job()
        assert q.run("outer", outer, timeout=T) == "inner ran"
    finally:
        jobs.set_default_queue(None)


def test_the_wait_estimate_comes_from_the_last_jobs_durations():
    q = JobQueue(1)
    first, second, third = Gate(1), Gate(2), Gate(3)
    t1 = q.submit("a", first)
    first.started.wait(T)
    t2, t3 = q.submit("b", second), q.submit("c", third)
    assert q.wait_estimate(t3) is None                 # no history yet: no number rather than a guess
    q._durations[False].extend([4.0, 6.0])             # single runs have taken 5 s
    est = q.wait_estimate(t3)
    assert 9.0 < est <= 10.0                           # the running one's 5 s less its few ms, then b's 5 s
    assert q.wait_estimate(t1) == 0.0                  # running: nothing to wait for
    first.release.set(), second.release.set(), third.release.set()
    for t in (t1, t2, t3):
        t.result(T)
    assert len(q._durations[False]) == 5               # the three finished jobs joined the history
