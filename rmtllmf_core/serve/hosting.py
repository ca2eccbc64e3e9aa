"""Hosting an instance others reach: host limits (caps), access control, the app's heavy-work door.

- `HostLimits`: per-request caps and queue sizes, from `.streamlit/secrets.toml`'s `[limits]`
  table and `RMTLLMF_<FIELD>` environment variables (the environment wins), defaults sane for
  a 2-core host. `check_scenario` / `check_sweep` / `check_work` raise `CapExceeded` naming the
  field and the host's limit.
- Access: off when nothing is configured (a laptop). `[access] password_hash = "scrypt$..."`
  (made by `python -m rmtllmf_core hash-password`) asks for a shared password; an `[auth]` table
  (Streamlit's own OpenID Connect settings) offers `st.login`; `access_config` reads them,
  `try_password` checks one attempt (server-wide failure window). A secrets file that exists but
  cannot be read keeps the door shut (fail closed), never open.
- `request(work)`: heavy work (a `work.Work`: one run or a sweep's points) checked against the caps
  once and looked up in the disk cache once; `submit` puts it in the process-wide compute queue
  (`jobs.py`) under the Work's key; `run_heavy` does both and waits. Cache hits skip the line.

No Streamlit here: the sign-in form is studio/access.py and the waiting room studio/waiting.py.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets as _secrets
import threading
import time
import tomllib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from pydantic import Field

from ..errors import CapExceeded, InputError, RmtllmfError
from . import jobs
from ..validation import Config

log = logging.getLogger(__name__)

ENV_PREFIX = "RMTLLMF_"


# ---- host limits --------------------------------------------------------------------------------

class HostLimits(Config):
    """What one request may ask of this host (defaults: a small 2-core machine)."""

    max_combinations: int = Field(247, ge=1, le=100_000, description="task combinations in one tasks sweep")
    max_realign_steps: int = Field(200, ge=1, le=500, description="realignment steps of one run")
    max_realign_batch_size: int = Field(64, ge=1, le=256, description="samples per realignment step")
    max_samples_per_task: int = Field(1000, ge=10, le=10_000, description="evaluation samples per task")
    max_sweep_points: int = Field(1500, ge=1, le=1_000_000, description="scenarios in one sweep")
    max_upload_bytes: int = Field(256 * 1024, ge=1024, le=2**30, description="an uploaded scenario file")
    max_vector_upload_bytes: int = Field(64 * 2**20, ge=1024, le=2**34, description="an uploaded task vector file")
    max_concurrent_jobs: int = Field(default_factory=lambda: default_concurrent_jobs(), ge=1, le=256,
                                     description="heavy jobs computing at once (default: one per two cores, "
                                                 "two on two cores)")
    max_queued_jobs: int = Field(64, ge=1, le=10_000, description="jobs waiting in line, all sessions")
    max_queued_per_session: int = Field(4, ge=1, le=1000, description="jobs waiting in line, one session")
    engine_processes: bool = Field(True, description="compute in engine processes of their own, each in a "
                                   "session of its own (False: in the server's threads)")
    pages_nice: int = Field(3, ge=0, le=19, description="CPU weight the pages give up to the engine processes "
                            "(Linux autogroup nice of the server's session, where the server leads one; 0: "
                            "equal shares)")
    warm_on_start: bool = Field(True, description="compute the landing view's and the Story's runs when the "
                                "server starts with a cache that lacks them")


def default_concurrent_jobs(cores: int | None = None) -> int:
    """One job per two cores, and two on a 2-core host: each job is an engine process with one torch
    thread there (`compute.default_threads`), so two computations take one core each and the pages keep
    whatever the two leave. Measured with bench_load (24 sessions, 2 cores): a burst of 12 distinct cold
    runs had p95 33.7 s one at a time, 30.3 s two at a time (27.4 and 27.6 s with both engine processes
    started with the server), with cache hits at p95 0.76, 0.71, 0.57 and 0.68 s."""
    cores = cores if cores is not None else jobs.available_cores()
    return min(cores, max(2, cores // 2))


def load_limits(secrets: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> HostLimits:
    """Defaults, overridden by `secrets["limits"]`, overridden by `RMTLLMF_MAX_...` variables."""
    data: dict[str, Any] = {}
    table = (secrets or {}).get("limits") or {}
    if not isinstance(table, Mapping):
        raise InputError("limits", "must be a table of limits, e.g. [limits] max_sweep_points = 500")
    data.update(table)
    env = os.environ if env is None else env
    for name in HostLimits.model_fields:
        value = env.get(ENV_PREFIX + name.upper())
        if value is not None and value.strip() != "":
            data[name] = value.strip()
    return HostLimits.parse(data, field="limits")


_limits: HostLimits | None = None
_limits_lock = threading.Lock()


def limits() -> HostLimits:
    """This process's limits (read once from secrets and the environment)."""
    global _limits
    with _limits_lock:
        if _limits is None:
            _limits = load_limits(read_secrets(strict=False))
        return _limits


def set_limits(value: HostLimits | None) -> None:
    """Replace this process's limits (tests; None: read again on next use)."""
    global _limits
    with _limits_lock:
        _limits = value


def _too_big(field: str, what: str, limit: int, got: int, setting: str) -> CapExceeded:
    return CapExceeded(field, f"this host allows at most {limit} {what} (got {got}); lower it, "
                              f"or ask the host to raise limits.{setting}")


def check_scenario(scenario, lim: HostLimits | None = None) -> None:
    """Raise CapExceeded when one run asks more than this host allows."""
    lim = lim or limits()
    n = scenario.evaluation.samples_per_task
    if n > lim.max_samples_per_task:
        raise _too_big("evaluation.samples_per_task", "evaluation samples per task", lim.max_samples_per_task, n,
                       "max_samples_per_task")
    d = scenario.defense
    if d.realign and d.realign_steps > lim.max_realign_steps:
        raise _too_big("defense.realign_steps", "realignment steps per run", lim.max_realign_steps,
                       d.realign_steps, "max_realign_steps")
    if d.realign and d.realign_batch_size > lim.max_realign_batch_size:
        raise _too_big("defense.realign_batch_size", "samples per realignment step", lim.max_realign_batch_size,
                       d.realign_batch_size, "max_realign_batch_size")


def check_sweep(points: Sequence, lim: HostLimits | None = None) -> None:
    """Points: scenarios or (row, scenario) pairs as built by `sweeps.*_points`."""
    lim = lim or limits()
    if len(points) > lim.max_sweep_points:
        raise _too_big("sweep", "points per sweep", lim.max_sweep_points, len(points), "max_sweep_points")
    combos = {p[0]["tasks"] for p in points if isinstance(p, tuple) and isinstance(p[0], Mapping) and "tasks" in p[0]}
    if len(combos) > lim.max_combinations:
        raise _too_big("sizes", "task combinations per sweep", lim.max_combinations, len(combos), "max_combinations")
    for p in points:
        check_scenario(p[1] if isinstance(p, tuple) else p, lim)


def check_work(work, lim: HostLimits | None = None) -> None:
    """Caps for one `work.Work`: a single run's, or a sweep's (its size, combinations and every point)."""
    if work.single:
        check_scenario(work.scenarios[0], lim)
    else:
        check_sweep(work.points, lim)


# ---- passwords ----------------------------------------------------------------------------------

SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_LEN = 2**14, 8, 1, 32
MAX_PASSWORD_CHARS = 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, salt: bytes | None = None) -> str:
    """`scrypt$N$r$p$salt$hash` with a random 16-byte salt (store this, never the password)."""
    if not isinstance(password, str) or not password:
        raise InputError("password", "must be a non-empty string")
    if len(password) > MAX_PASSWORD_CHARS:
        raise InputError("password", f"at most {MAX_PASSWORD_CHARS} characters")
    salt = _secrets.token_bytes(16) if salt is None else bytes(salt)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=SCRYPT_LEN)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of `password` against a `hash_password` string; False if malformed."""
    try:
        scheme, n, r, p, salt, digest = str(stored).strip().split("$")
        n, r, p = int(n), int(r), int(p)
        if scheme != "scrypt" or not (2**10 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
            return False
        salt_b, want = _unb64(salt), _unb64(digest)
        if not (8 <= len(salt_b) <= 64 and 16 <= len(want) <= 64):
            return False
    except (ValueError, TypeError):
        return False
    if not isinstance(password, str) or len(password) > MAX_PASSWORD_CHARS:
        return False
    got = hashlib.scrypt(password.encode(), salt=salt_b, n=n, r=r, p=p, dklen=len(want),
                         maxmem=128 * r * n * p + 2**20)
    return hmac.compare_digest(got, want)


class FailureWindow:
    """Failed sign-ins over the last `window_s` seconds, server-wide: past `max_failures` every
    attempt is refused until the window clears (slows a password guesser to a crawl)."""

    def __init__(self, max_failures: int = 20, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.max_failures, self.window_s, self.clock = max_failures, window_s, clock
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def _trim(self) -> None:
        while self._times and self.clock() - self._times[0] > self.window_s:
            self._times.popleft()

    def blocked_for(self) -> float:
        """Seconds until attempts are accepted again (0: accepted now)."""
        with self._lock:
            self._trim()
            if len(self._times) < self.max_failures:
                return 0.0
            return max(0.0, self.window_s - (self.clock() - self._times[0]))

    def record_failure(self) -> None:
        with self._lock:
            self._times.append(self.clock())
            self._trim()


_failures = FailureWindow()
_verify_lock = threading.Lock()  # one scrypt at a time: guessing cannot use every core


# ---- secrets and access -------------------------------------------------------------------------

class SecretsUnreadable(RmtllmfError):
    """A secrets file exists but cannot be read: access stays shut until it is fixed."""


def secrets_files() -> list[Path]:
    """Where Streamlit looks for secrets by default: the user's, then the app folder's (which wins)."""
    return [Path.home() / ".streamlit" / "secrets.toml", Path.cwd() / ".streamlit" / "secrets.toml"]


def read_secrets(*, strict: bool = True, files: Sequence[Path] | None = None) -> dict:
    """The host's secrets as plain dicts, read with tomllib ({} when there is no secrets file; a later
    file's tables replace an earlier one's).

    A file that exists but does not parse raises SecretsUnreadable (strict) or gives {} (not strict:
    limits fall back to their defaults; access uses strict and stays shut)."""
    out: dict = {}
    for path in secrets_files() if files is None else files:
        try:
            with open(path, "rb") as fh:
                out.update(tomllib.load(fh))
        except FileNotFoundError:
            continue
        except (OSError, tomllib.TOMLDecodeError) as exc:
            log.error("secrets unreadable: %s: %s", path, exc)
            if strict:
                raise SecretsUnreadable("the server's secrets file cannot be read; ask the host to fix it") from None
            return {}
    return out


@dataclass(frozen=True)
class AccessConfig:
    password_hash: str | None = None
    oidc: bool = False                     # an [auth] table is configured (st.login)
    provider: str | None = None            # a named [auth.<provider>] to sign in with (None: the default)
    allowed_emails: frozenset[str] = frozenset()
    allowed_domains: frozenset[str] = frozenset()

    @property
    def enabled(self) -> bool:
        return bool(self.password_hash) or self.oidc


def access_config(secrets: Mapping[str, Any]) -> AccessConfig:
    """Read `[access]` (password_hash, provider, allowed_emails, allowed_domains) and `[auth]`."""
    access = secrets.get("access") or {}
    if not isinstance(access, Mapping):
        raise InputError("access", "must be a table: [access] password_hash = \"scrypt$...\"")
    unknown = set(access) - {"password_hash", "provider", "allowed_emails", "allowed_domains"}
    if unknown:
        raise InputError(f"access.{sorted(unknown)[0]}", "unknown setting")
    pw = access.get("password_hash")
    if pw is not None and (not isinstance(pw, str) or not pw.startswith("scrypt$")):
        raise InputError("access.password_hash", "must be the line printed by `python -m rmtllmf_core hash-password`")
    auth = secrets.get("auth")
    provider = access.get("provider")

    def names(key: str) -> frozenset[str]:
        value = access.get(key) or []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise InputError(f"access.{key}", "must be a list of strings")
        return frozenset(v.strip().lower().lstrip("@") for v in value if v.strip())

    return AccessConfig(password_hash=pw or None, oidc=isinstance(auth, Mapping) and bool(auth),
                        provider=str(provider) if provider else None,
                        allowed_emails=names("allowed_emails"), allowed_domains=names("allowed_domains"))


def email_allowed(cfg: AccessConfig, email: str | None) -> bool:
    if not cfg.allowed_emails and not cfg.allowed_domains:
        return True
    email = (email or "").strip().lower()
    return bool(email) and (email in cfg.allowed_emails or email.rpartition("@")[2] in cfg.allowed_domains)


def granted_token(cfg: AccessConfig) -> str:
    """What a signed-in session holds: bound to the configured hash, so changing the password signs
    every session out."""
    return hashlib.sha256((cfg.password_hash or "").encode()).hexdigest()[:16]


def try_password(cfg: AccessConfig, password: str) -> tuple[bool, float]:
    """(accepted, seconds the server is blocked for) for one sign-in attempt; failures count server-wide."""
    wait = _failures.blocked_for()
    if wait > 0:
        return False, wait
    with _verify_lock:
        ok = verify_password(password or "", cfg.password_hash)
    if not ok:
        _failures.record_failure()
    return ok, 0.0


# ---- the app's door for heavy work --------------------------------------------------------------

@dataclass(frozen=True)
class HeavyRequest:
    """A Work the host accepted: within the caps, and whether the disk cache answers it alone (`missing`:
    how many of its runs the cache lacked when it was looked up; None where nobody looked)."""
    work: Any  # work.Work
    cached: bool
    missing: int | None = None

    @property
    def key(self) -> str:
        return self.work.key

    def run(self, progress: Callable[[float, str], None] | None = None) -> Any:
        """In this process (a cache hit, a call from inside a job), or a sweep on the configured Ray cluster."""
        from ..studies.work import execute

        address = None if self.work.single or self.cached else ray_address()
        if address:  # a configured cluster takes the host's sweeps; single runs stay here
            return execute(self.work, progress, backend="ray", address=address)
        return execute(self.work, progress)

    def compute(self, progress: Callable[[float, str], None] | None = None) -> Any:
        """What the queue runs: in an engine process (`compute.py`) when the host has them, so the
        computation does not share the pages' interpreter; else `run`."""
        if not self.cached and limits().engine_processes and (self.work.single or not ray_address()):
            from ..experiment.runtime import note_run_seconds

            todo = self.missing if self.missing is not None else self.work.missing()  # looked up once, in `request`
            start = time.perf_counter()
            out = engine_pool().run(self.work, progress)
            for _ in range(min(todo, 8)):  # the engine process's runs, as this server's estimates read them
                note_run_seconds((time.perf_counter() - start) / todo)
            return out
        return self.run(progress)


def ray_address(env: Mapping[str, str] | None = None, secrets: Mapping[str, Any] | None = None) -> str | None:
    """The Ray cluster the host sends its sweeps to: `RMTLLMF_RAY_ADDRESS`, else `[compute] ray_address`
    in the secrets, else None (sweeps run on this server)."""
    env = os.environ if env is None else env
    if env.get(ENV_PREFIX + "RAY_ADDRESS"):
        return env[ENV_PREFIX + "RAY_ADDRESS"]
    compute = (read_secrets(strict=False) if secrets is None else secrets).get("compute") or {}
    value = compute.get("ray_address") if isinstance(compute, Mapping) else None
    return str(value) if value else None


def request(work) -> HeavyRequest:
    """Check a Work against the host's caps (CapExceeded) and look it up in the disk cache."""
    check_work(work)
    missing = work.missing()
    return HeavyRequest(work, cached=missing == 0, missing=missing)


def compute_queue() -> "jobs.JobQueue":
    """The process-wide compute queue, sized from this host's limits on first use."""
    def make():
        lim = limits()
        return jobs.JobQueue(lim.max_concurrent_jobs, max_waiting=lim.max_queued_jobs,
                             max_waiting_per_owner=lim.max_queued_per_session)
    return jobs.default_queue(make)


_pool = None
_pool_lock = threading.Lock()


def engine_pool():
    """The process-wide engine processes (`compute.EnginePool`), sized from this host's limits: one
    computing per concurrent job (parked sweeps wait in theirs, uncounted); the cores shared among them."""
    global _pool
    from .compute import EnginePool, default_threads, yield_to_engines

    with _pool_lock:
        if _pool is None:
            lim = limits()
            _pool = EnginePool(lim.max_concurrent_jobs, torch_threads=default_threads(lim.max_concurrent_jobs))
            log.info("CPU priority: %s", yield_to_engines(lim.pages_nice))
        return _pool


def submit(req: HeavyRequest, owner: Any = None):
    """Put a request in the process-wide compute queue; returns its ticket."""
    return compute_queue().submit(req.key, req.compute, owner=owner, preemptible=req.work.preemptible)


def run_heavy(work, progress: Callable[[float, str], None] | None = None, *, owner: Any = None,
              wait: Callable[[Any, "jobs.JobQueue"], Any] | None = None) -> Any:
    """The one door for heavy work: `work` (a Work, or a HeavyRequest already checked by `request`) runs
    within this host's caps and queue, and the result comes back. Cache hits and calls from inside a
    queued job run at once; everything else takes a place in the queue as `owner` (a session) and is
    waited for by `wait(ticket, queue)` (the app's waiting room, studio/waiting.py: place in line,
    Cancel) or plainly. Raises CapExceeded / the job's RmtllmfError."""
    checked = hasattr(work, "cached")  # a HeavyRequest (or the tests' stand-in): caps and cache already looked at
    if jobs.in_job():  # called from inside a queued job: it already holds a slot
        return (work if checked else HeavyRequest(work, cached=False)).run(progress)
    req = work if checked else request(work)
    if req.cached:
        return req.run(progress)
    ticket = submit(req, owner=owner)
    return ticket.result() if wait is None else wait(ticket, compute_queue())
