"""Engine processes: the server's heavy work runs in processes of its own, not in its page threads.

A Streamlit server renders every session in threads of one interpreter, so a run computed in a
thread of that interpreter shares one GIL with every page being drawn: under 24 sessions a cold run
got a sliver of it and took minutes. Here each job of the host's queue (`jobs.JobQueue`) hands its
`work.Work` to an engine process (started once, its zoo loaded once, reused for the server's life)
and the queue thread only relays messages:

- progress from inside a run is sent as it comes (at most every `PROGRESS_EVERY_S`), never waited
  on: the run does not slow down when the server is busy;
- a sweep's checkpoints between points wait for the server's answer ("go on" or "stop"): that is
  where the queue cancels a job or parks a sweep to let a single run pass; the parked sweep's
  process waits idle, and the run takes another process (`EnginePool` starts one when none is free);
- a Cancel reaches the process at its next progress call; a process that dies (killed, out of
  memory) fails its job with a named error and is replaced on the next job;
- errors of ours come back as they are; anything else is logged in the process and comes back as
  `jobs.JobFailed`;
- every message is JSON (a Work as its scenarios, a result as its JSON form): neither side ever
  unpickles what the other sends. The socket only accepts the process that proves the one-time key.

Engine processes run with `torch_threads` threads each (default: the cores but one, shared among
the host's concurrent jobs), at the server's own CPU priority (at nice 5 the 24-session load test
starved them: cold runs took two minutes) and in a session of their own, so that a kernel that
shares the CPU among sessions (Linux's autogroup) gives each computation as much as the pages.
A server that leads its own session (a service manager's start, `setsid`) can then yield a little
more (`yield_to_engines`, the host's `pages_nice`): a computation is what its user waits for, and a
cached page needs a few milliseconds of CPU.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Client, Listener
from pathlib import Path
from typing import Any, Callable

from ..errors import RmtllmfError
from .jobs import JobCancelled, JobFailed, available_cores
from ..experiment.result import Result
from ..studies.work import rebuild_error

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 0.2
DEFAULT_NICE = 0
START_TIMEOUT_S = 300.0
AUTHKEY_ENV = "RMTLLMF_ENGINE_AUTHKEY"


class EngineProcess:
    """One engine process (`python -m rmtllmf_core.serve.compute`, connected back over a local socket with a
    one-time key) that runs Works, one at a time. Not multiprocessing's spawn: that would import the
    server's main script (the app) again in the child and run it there."""

    def __init__(self, *, torch_threads: int = 1, nice: int = DEFAULT_NICE):
        key = os.urandom(32)
        with Listener(authkey=key) as listener:
            env = {**os.environ, AUTHKEY_ENV: key.hex()}
            self.process = subprocess.Popen(
                [sys.executable, "-m", "rmtllmf_core.serve.compute", str(listener.address), str(int(torch_threads)),
                 str(int(nice))], env=env, stdin=subprocess.DEVNULL,
                # a session of its own: where the kernel shares CPU among sessions (autogroup), the
                # computations get a share equal to the whole server's instead of a part of it
                start_new_session=True)
            self._conn = _accept(listener, self.process)
        self.at_checkpoint = False  # waiting for the server's go-ahead (a parked sweep waits here)
        self.broken = False         # its connection failed: never used again, whatever poll() says yet

    def warm(self, zoo: str) -> None:
        _send(self._conn, ["warm", zoo])

    def alive(self) -> bool:
        return not self.broken and self.process.poll() is None

    def run(self, work, progress: Callable[[float, str], None] | None = None) -> Any:
        """`work.execute(work, progress)` in the process. `progress` may raise (JobCancelled): the
        process stops at its next checkpoint and the exception reaches the caller."""
        self._send(["work", {"points": [[row, s.to_dict()] for row, s in work.points], "single": work.single,
                             "spread_control": work.spread_control}])
        stop: BaseException | None = None
        while True:
            try:
                if not self._conn.poll(0.5):
                    if self.process.poll() is None:
                        continue
                    raise EOFError
                kind, *payload = _recv(self._conn)
            except (EOFError, OSError):
                self.broken = True
                raise JobFailed("the engine process stopped during the computation (out of memory or "
                                "killed); the server log may say more") from None
            if kind == "progress":
                fraction, message, answer = payload
                if stop is None and progress is not None:
                    self.at_checkpoint = answer
                    try:
                        progress(fraction, message)   # the queue's checkpoint: may park (preempt) or raise
                    except BaseException as exc:      # a cancel (or the session going away): stop the process
                        stop = exc
                    finally:
                        self.at_checkpoint = False
                if answer or stop is not None:
                    self._send(["stop"] if stop is not None else ["go"])
            elif kind == "done":
                if stop is not None:
                    raise stop
                return Result.from_json(payload[0]) if work.single else payload[0]
            elif kind == "error":
                error = _rebuilt(payload[0])
                raise (stop if stop is not None and isinstance(error, JobCancelled) else error)

    def _send(self, message) -> None:
        try:
            _send(self._conn, message)
        except OSError:
            self.broken = True
            raise JobFailed("the engine process stopped (out of memory or killed); the next computation "
                            "starts a new one") from None

    def close(self) -> None:
        try:
            _send(self._conn, ["exit"])
        except (OSError, ValueError):
            pass
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


class EnginePool:
    """Engine processes for the host's queue: a free one per job, started on demand, at most
    `max_processes` computing at once. A parked sweep keeps its process, waiting at a checkpoint; it
    does not count, so the job that passes it always gets one (else slots held by jobs waiting for a
    process, and processes held by sweeps waiting for a slot, would wait for each other forever).
    At most `max_processes` idle ones are kept."""

    def __init__(self, max_processes: int, *, torch_threads: int = 1, nice: int = DEFAULT_NICE):
        self.max_processes = max(1, int(max_processes))
        self.torch_threads = torch_threads
        self.nice = nice
        self._free: list[EngineProcess] = []
        self._all: list[EngineProcess] = []
        self._lock = threading.Condition()

    def run(self, work, progress: Callable[[float, str], None] | None = None) -> Any:
        proc = self._take()
        try:
            return proc.run(work, progress)
        finally:
            self._give_back(proc)

    def warm(self, zoo: str, count: int = 1) -> None:
        """Start `count` processes (at most `max_processes`) and load `zoo` in each ahead of the first jobs:
        seconds of imports and loading that a burst of first requests would otherwise wait for."""
        procs = []
        try:
            for _ in range(min(max(1, count), self.max_processes)):
                procs.append(self._take())
                procs[-1].warm(zoo)
        finally:
            for proc in procs:
                self._give_back(proc)

    def _take(self) -> EngineProcess:
        with self._lock:
            while True:
                self._all = [p for p in self._all if p.alive()]
                self._free = [p for p in self._free if p.alive()]
                if self._free:
                    return self._free.pop()
                if sum(not p.at_checkpoint for p in self._all) < self.max_processes:
                    proc = EngineProcess(torch_threads=self.torch_threads, nice=self.nice)
                    self._all.append(proc)
                    return proc
                self._lock.wait(1.0)

    def _give_back(self, proc: EngineProcess) -> None:
        with self._lock:
            if proc.alive() and len(self._free) < self.max_processes:
                self._free.append(proc)
            elif proc.alive():  # one started beside parked sweeps, now surplus
                self._all.remove(proc)
                proc.close()
            self._lock.notify()

    def close(self) -> None:
        with self._lock:
            for p in self._all:
                p.close()
            self._all, self._free = [], []


AUTOGROUP = Path("/proc/self/autogroup")            # this session's CPU share under autogroup
AUTOGROUP_ENABLED = Path("/proc/sys/kernel/sched_autogroup_enabled")


def yield_to_engines(nice: int) -> str:
    """Lower the CPU weight of this server's session to `nice` (Linux autogroup), so that the engine
    processes, each in a session of its own at nice 0, get more of the CPU while the pages are busy.
    Only where this process leads its own session: a server started from a shell shares the shell's
    session, whose other programs it must not slow down. Raising one's own nice needs no privilege.
    Returns what happened, for the server log."""
    if nice <= 0:
        return "pages at the engines' priority (pages_nice = 0)"
    if os.getsid(0) != os.getpid():
        return "pages at the engines' priority: the server shares its session (started from a shell)"
    try:
        if AUTOGROUP_ENABLED.read_text().strip() != "1":
            return "pages at the engines' priority: the kernel does not share the CPU by session"
        current = int(AUTOGROUP.read_text().rsplit("nice", 1)[1])
        if current < nice:
            AUTOGROUP.write_text(str(int(nice)))
    except (OSError, ValueError, IndexError) as exc:
        return f"pages at the engines' priority: {AUTOGROUP} not usable ({exc})"
    return f"pages at autogroup nice {max(current, nice)}, engine processes at 0"


def default_threads(max_running: int, cores: int | None = None) -> int:
    """Torch threads per engine process: the cores but one (the pages') shared among the jobs that run
    at once. On 2 cores, one: two threads of one run stall each other whenever a page takes a core."""
    return max(1, ((cores or available_cores()) - 1) // max(1, max_running))


def _send(conn, message: list) -> None:
    conn.send_bytes(json.dumps(message).encode())


def _recv(conn) -> list:
    return json.loads(conn.recv_bytes())


def _rebuilt(record: dict) -> RmtllmfError:
    """An error the engine process sent as plain data (`work.error_record`), as the server raises it."""
    if record["type"] == "JobCancelled":
        return JobCancelled(record["text"])
    error = rebuild_error(record)
    if isinstance(error, RmtllmfError):
        return error
    return (JobFailed if record["type"] == "JobFailed" else RmtllmfError)(record["text"])


def _accept(listener, process: subprocess.Popen, timeout_s: float = START_TIMEOUT_S):
    """The engine process's connection, or an error if it exits (or never calls) first."""
    box: dict = {}
    waiter = threading.Thread(target=lambda: box.setdefault("conn", listener.accept()), daemon=True)
    waiter.start()
    end = time.monotonic() + timeout_s
    while waiter.is_alive():
        waiter.join(0.1)
        if process.poll() is not None or time.monotonic() > end:
            process.kill()
            raise JobFailed("the engine process did not start; the server log may say why")
    return box["conn"]


# ---- the engine process's side ----------------------------------------------------------------------

def _serve(conn, torch_threads: int, nice: int) -> None:
    try:
        os.nice(nice)
    except OSError:
        pass
    from . import jobs as _jobs  # noqa: F401  (sets the OpenMP wait policy before torch loads)
    import torch

    torch.set_num_threads(max(1, int(torch_threads)))
    from ..studies.work import Work, error_record, execute

    while True:
        try:
            kind, *payload = _recv(conn)
        except (EOFError, OSError):
            return
        if kind == "exit":
            return
        if kind == "warm":  # load the zoo ahead of the first job
            try:
                from ..experiment.pipeline import get_engine

                get_engine(payload[0])
            except Exception:  # the job that needs it reports the error
                pass
            continue
        if kind != "work":
            continue
        try:
            try:
                data = payload[0]
                work = Work(tuple((row, s) for row, s in data["points"]), single=data["single"],
                            spread_control=data["spread_control"])
                value = execute(work, _progress(conn, answer=not work.single))
                reply = ["done", value.to_json() if work.single else value]
            except RmtllmfError as exc:
                reply = ["error", error_record(exc)]
            except OSError:
                raise
            except Exception as exc:  # a bug: its traceback goes to this process's log, the server gets a name
                log.exception("engine process: a job failed")
                reply = ["error", error_record(JobFailed(f"the computation failed with an internal error "
                                                         f"({type(exc).__name__}); the server log has the details"))]
            _send(conn, reply)
        except OSError:  # the server is gone (its end of the connection closed): so is this process
            return


def _progress(conn, *, answer: bool) -> Callable[[float, str], None]:
    """The run's progress callback in the engine process. `answer`: wait for the server's go-ahead
    (a sweep's checkpoint between points); else send at most every PROGRESS_EVERY_S and go on,
    stopping if the server has said so meanwhile."""
    last = [0.0]

    def progress(fraction: float, message: str = "") -> None:
        now = time.monotonic()
        if answer:
            _send(conn, ["progress", float(fraction), str(message), True])
            if _recv(conn)[0] == "stop":
                raise JobCancelled("the computation was cancelled")
            return
        if conn.poll() and _recv(conn)[0] == "stop":
            raise JobCancelled("the computation was cancelled")
        if now - last[0] >= PROGRESS_EVERY_S or fraction >= 1.0:
            last[0] = now
            _send(conn, ["progress", float(fraction), str(message), False])

    return progress


if __name__ == "__main__":  # the engine process: python -m rmtllmf_core.serve.compute ADDRESS THREADS NICE
    logging.basicConfig(level=logging.WARNING)
    _address, _threads, _nice = sys.argv[1:4]
    _key = bytes.fromhex(os.environ.pop(AUTHKEY_ENV))
    _serve(Client(_address, authkey=_key), int(_threads), int(_nice))
