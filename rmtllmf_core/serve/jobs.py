"""The compute queue: heavy work (cold runs, sweeps) runs here, a bounded number at a time.

One process-wide queue (`default_queue()`) serves every session of the server. Streamlit runs
each session's script in its own thread; a session `submit`s a job and waits on its `Ticket`
while the job runs in a worker thread of the queue:

- at most `max_running` jobs compute at once (default: one per two cores); the rest wait in
  FIFO order and `ticket.position()` says where (1 = next);
- identical requests (same key) in flight are computed once: the second submit joins the first
  job and every waiter gets the same result (treat it as read-only);
- `ticket.cancel()` removes a waiting job (when nobody else waits for it) or stops a running one
  at its next progress checkpoint; `ticket.leave()` stops waiting but lets the job finish, so
  its results still land in the disk cache for when the session comes back;
- a job's errors of ours (`RmtllmfError`) reach every waiter as they are; anything else (a bug)
  is logged with its traceback and reaches the waiters as `JobFailed`;
- a *preemptible* job (a sweep, whose progress callback runs between points and never inside
  an engine lock) gives its slot to the next job in line at a checkpoint once it has held it for
  `slice_s`, and goes to the back of the line: a long sweep never starves a one-off run.

A job is a callable `fn(progress)`, `progress(fraction, message)` being its checkpoint.
Nothing here imports Streamlit or the host's settings: `hosting` sizes the queue, `studio/waiting.py`
is the Streamlit side.
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections import deque
from typing import Any, Callable, Hashable

from ..errors import CapExceeded, RmtllmfError

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
JobFn = Callable[[Progress], Any]

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
DEFAULT_MAX_WAITING = 64
DEFAULT_MAX_WAITING_PER_OWNER = 4
DEFAULT_SLICE_S = 5.0


class JobCancelled(RmtllmfError):
    """The job was cancelled before it finished; what it had finished (sweep points) stays cached."""


class JobFailed(RmtllmfError):
    """The job raised an error that is not one of ours (a bug); the server log has the traceback."""


_local = threading.local()


def in_job() -> bool:
    """True on a queue's worker thread: work submitted from inside a job must run inline (queueing
    it behind the job that waits for it would deadlock a one-slot queue)."""
    return getattr(_local, "job", None) is not None


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_max_running(cores: int | None = None) -> int:
    """One job per two cores, at least one."""
    return max(1, (cores if cores is not None else available_cores()) // 2)


class _Job:
    def __init__(self, key: Hashable, fn: JobFn, seq: int, owner: Hashable | None, preemptible: bool):
        self.key = key
        self.fn = fn
        self.seq = seq
        self.owner = owner
        self.preemptible = preemptible
        self.state = QUEUED
        self.tickets: set[Ticket] = set()      # attached waiters
        self.done = threading.Event()
        self.resume = threading.Event()         # a parked (preempted) job waits on this for its slot
        self.thread: threading.Thread | None = None
        self.value: Any = None
        self.error: RmtllmfError | None = None
        self.progress: tuple[float, str] = (0.0, "waiting in line")
        self.cancel_requested = False
        self.submitted = time.monotonic()
        self.started: float | None = None
        self.slice_start = 0.0
        self.finished: float | None = None


class Ticket:
    """One session's claim on a job: where it is in line, its progress, its result."""

    _ids = itertools.count(1)

    def __init__(self, queue: "JobQueue", job: _Job, owner: Hashable | None, shared: bool):
        self.id = next(Ticket._ids)
        self._queue = queue
        self._job = job
        self.owner = owner
        self.shared = shared      # True when this request joined an identical one already in flight
        self.attached = True

    @property
    def key(self) -> Hashable:
        return self._job.key

    @property
    def state(self) -> str:
        return self._job.state

    @property
    def progress(self) -> tuple[float, str]:
        """(fraction in [0, 1], message) as last reported by the running job."""
        return self._job.progress

    def position(self) -> int:
        """1-based place in line while waiting (1 = next to run); 0 once running or finished."""
        return self._queue._position(self._job)

    def done(self) -> bool:
        return self._job.done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has finished (True) or `timeout` seconds passed (False)."""
        return self._job.done.wait(timeout)

    def result(self, timeout: float | None = None) -> Any:
        """The job's value; raises its RmtllmfError, JobCancelled, or TimeoutError after `timeout`."""
        if not self._job.done.wait(timeout):
            raise TimeoutError(f"job still {self._job.state} after {timeout} s")
        job = self._job
        if job.state == DONE:
            return job.value
        if job.state == CANCELLED:
            raise JobCancelled("the computation was cancelled")
        raise job.error.with_traceback(None)

    def cancel(self) -> bool:
        """Stop waiting; the job itself is cancelled only if no other session waits for it.

        Returns True when the job will not run (or will stop at its next checkpoint)."""
        return self._queue._release(self, cancel=True)

    def leave(self) -> None:
        """Stop waiting but let the job finish (its results land in the disk cache)."""
        self._queue._release(self, cancel=False)

    def abandon(self) -> None:
        """The waiting session went away (rerun, closed tab): a job still waiting in line with no
        one else attached is dropped (it computed nothing yet); a running one finishes."""
        with self._queue._lock:
            queued = self._job.state == QUEUED and self._job.thread is None
        self._queue._release(self, cancel=queued)

    def __repr__(self) -> str:
        return f"Ticket(key={str(self.key)[:16]!r}, state={self.state}, position={self.position()})"


class JobQueue:
    """A bounded, FIFO, de-duplicating, cancellable compute queue (see the module docstring)."""

    def __init__(self, max_running: int | None = None, *, max_waiting: int = DEFAULT_MAX_WAITING,
                 max_waiting_per_owner: int | None = DEFAULT_MAX_WAITING_PER_OWNER,
                 slice_s: float = DEFAULT_SLICE_S, name: str = "rmtllmf-job"):
        self.max_running = int(max_running) if max_running is not None else default_max_running()
        if self.max_running < 1:
            raise ValueError("max_running must be at least 1")
        self.max_waiting = int(max_waiting)
        self.max_waiting_per_owner = max_waiting_per_owner
        self.slice_s = float(slice_s)
        self.name = name
        self._lock = threading.RLock()
        self._waiting: deque[_Job] = deque()
        self._running: set[_Job] = set()
        self._inflight: dict[Hashable, _Job] = {}
        self._seq = itertools.count(1)
        self.completed = 0  # jobs finished (any outcome), for stats
        # seconds the last jobs took, single runs and sweeps apart: what a wait estimate is made of
        self._durations: dict[bool, deque[float]] = {False: deque(maxlen=20), True: deque(maxlen=20)}

    # ---- public --------------------------------------------------------------------------------
    def submit(self, key: Hashable, fn: JobFn, *, owner: Hashable | None = None,
               preemptible: bool = False) -> Ticket:
        """Queue `fn(progress)` under `key`, or join the identical job already in flight.

        Raises CapExceeded (field `queue`) when the line is full, or when `owner` already has
        `max_waiting_per_owner` jobs waiting."""
        with self._lock:
            job = self._inflight.get(key)
            shared = job is not None
            if job is None:
                if len(self._waiting) >= self.max_waiting:
                    raise CapExceeded("queue", f"the server has {len(self._waiting)} computations waiting "
                                               f"(its limit); try again in a minute")
                if owner is not None and self.max_waiting_per_owner is not None:
                    mine = sum(1 for j in self._waiting if any(t.owner == owner for t in j.tickets))
                    if mine >= self.max_waiting_per_owner:
                        raise CapExceeded("queue", f"you already have {mine} computations waiting (this host "
                                                   f"allows {self.max_waiting_per_owner}); wait or cancel one")
                job = _Job(key, fn, next(self._seq), owner, preemptible)
                self._inflight[key] = job
                self._waiting.append(job)
            ticket = Ticket(self, job, owner, shared)
            job.tickets.add(ticket)
            self._dispatch()
        return ticket

    def run(self, key: Hashable, fn: JobFn, *, timeout: float | None = None, **submit_kw) -> Any:
        """Submit and wait (a convenience for scripts and tests)."""
        ticket = self.submit(key, fn, **submit_kw)
        try:
            return ticket.result(timeout)
        except BaseException:
            if not ticket.done():
                ticket.abandon()
            raise

    def cancel(self, key: Hashable, *, owner: Hashable | None = None) -> bool:
        """Cancel the in-flight job of `key` once no session waits for it: `owner`'s own tickets
        are let go first (a Cancel button clicked while its session's run is being interrupted)."""
        with self._lock:
            job = self._inflight.get(key)
            if job is None:
                return False
            if owner is not None:
                for t in [t for t in job.tickets if t.owner == owner]:
                    t.attached = False
                    job.tickets.discard(t)
            if job.tickets:
                return False
            return self._cancel_job(job)

    def wait_estimate(self, ticket: "Ticket") -> float | None:
        """Seconds until `ticket`'s job starts, estimated from the last jobs' durations: what the running
        jobs have left (from their progress, else their kind's typical time) and the typical time of
        each job ahead, shared among the slots. None while the queue has no history to go by."""
        now = time.monotonic()
        with self._lock:
            typical = {k: (sum(v) / len(v) if v else None) for k, v in self._durations.items()}
            ahead = []
            for j in self._waiting:
                if j is ticket._job:
                    break
                ahead.append(j)
            else:
                if ticket._job.state != QUEUED:
                    return 0.0
            left = []
            for j in [*self._running, *ahead]:
                t = typical[j.preemptible] if typical[j.preemptible] is not None else typical[not j.preemptible]
                fraction, elapsed = j.progress[0], now - (j.started or now)
                if j.state == RUNNING and fraction > 0.05:
                    left.append(elapsed * (1 - fraction) / fraction)
                elif t is None:
                    return None
                else:
                    left.append(max(t - (elapsed if j.state == RUNNING else 0.0), 0.0))
            return sum(left) / self.max_running

    def stats(self) -> dict:
        with self._lock:
            return {"running": len(self._running), "waiting": len(self._waiting),
                    "max_running": self.max_running, "completed": self.completed}

    # ---- internals -------------------------------------------------------------------------------
    def _position(self, job: _Job) -> int:
        with self._lock:
            if job.state != QUEUED:
                return 0
            for i, j in enumerate(self._waiting, 1):
                if j is job:
                    return i
            return 0

    def _dispatch(self) -> None:
        """Start (or resume) jobs from the head of the line while a slot is free. Lock held."""
        while self._waiting and len(self._running) < self.max_running:
            job = self._waiting.popleft()
            job.state = RUNNING
            job.slice_start = time.monotonic()
            job.started = job.started or job.slice_start
            self._running.add(job)
            if job.thread is None:
                job.thread = threading.Thread(target=self._execute, args=(job,), daemon=True,
                                              name=f"{self.name}-{job.seq}")
                job.thread.start()
            else:
                job.resume.set()

    def _release(self, ticket: Ticket, *, cancel: bool) -> bool:
        with self._lock:
            if not ticket.attached:
                return False
            ticket.attached = False
            job = ticket._job
            job.tickets.discard(ticket)
            if not cancel or job.tickets or job.done.is_set():
                return False
            return self._cancel_job(job)

    def _cancel_job(self, job: _Job) -> bool:
        """Lock held, nobody attached."""
        if job.done.is_set():
            return False
        if self._inflight.get(job.key) is job:
            del self._inflight[job.key]  # a new identical request starts afresh
        job.cancel_requested = True
        if job.state == QUEUED:
            try:
                self._waiting.remove(job)
            except ValueError:
                pass
            if job.thread is None:  # never started: done now
                self._finish(job, CANCELLED)
            else:                   # parked by preemption: wake it to stop at its checkpoint
                job.resume.set()
        return True

    def _finish(self, job: _Job, state: str) -> None:
        """Lock held."""
        job.state = state
        job.finished = time.monotonic()
        self._running.discard(job)
        if self._inflight.get(job.key) is job:
            del self._inflight[job.key]
        self.completed += 1
        if state == DONE and job.started is not None:
            self._durations[job.preemptible].append(job.finished - job.started)
        job.done.set()

    def _checkpoint(self, job: _Job, fraction: float, message: str) -> None:
        """The job's progress callback: record, honour a cancel, yield the slot if preemptible."""
        if job.cancel_requested:
            raise JobCancelled("the computation was cancelled")
        job.progress = (min(max(float(fraction), 0.0), 1.0), str(message))
        if not job.preemptible or time.monotonic() - job.slice_start < self.slice_s:
            return
        with self._lock:
            if not self._waiting or job.cancel_requested:
                return
            # give the slot to the head of the line and go to the back
            self._running.discard(job)
            job.state = QUEUED
            job.resume.clear()
            self._waiting.append(job)
            self._dispatch()
        job.resume.wait()
        if job.cancel_requested:
            raise JobCancelled("the computation was cancelled")

    def _execute(self, job: _Job) -> None:
        state, value, error = FAILED, None, None
        _local.job = job
        try:
            value = job.fn(lambda fraction, message="": self._checkpoint(job, fraction, message))
            state = DONE
        except JobCancelled:
            state = CANCELLED
        except RmtllmfError as exc:
            error = exc
        except BaseException as exc:  # a bug: keep the server up, tell every waiter
            log.exception("job %s failed", str(job.key)[:32])
            error = JobFailed(f"the computation failed with an internal error ({type(exc).__name__}); "
                              "the server log has the details")
        finally:
            _local.job = None
        with self._lock:
            job.value, job.error = value, error
            if state == DONE:
                job.progress = (1.0, "done")
            self._finish(job, state)
            self._dispatch()


_default: JobQueue | None = None
_default_lock = threading.Lock()


def default_queue(make: Callable[[], JobQueue] | None = None) -> JobQueue:
    """The process-wide queue. The first call builds it with `make` (`hosting.compute_queue` passes one
    sized from the host's limits; this module imports nothing above it), else with the defaults."""
    global _default
    with _default_lock:
        if _default is None:
            _default = make() if make is not None else JobQueue()
        return _default


def set_default_queue(queue: JobQueue | None) -> None:
    """Replace the process-wide queue (tests; a host that reconfigures)."""
    global _default
    with _default_lock:
        _default = queue
