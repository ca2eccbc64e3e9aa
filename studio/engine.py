"""The app's only door to the engine: the zoo once per server, and heavy work (a `work.Work`: one
run or a sweep's points) through the host's caps and queue (`studio/waiting.py`), answered from the
disk cache at once or computed under a status and a progress bar.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable

import streamlit as st

from rmtllmf_core.studies import sweeps
from rmtllmf_core.errors import RmtllmfError
from rmtllmf_core.experiment.pipeline import default_cache
from rmtllmf_core.experiment.result import Result
from rmtllmf_core.experiment.scenario import Scenario
from rmtllmf_core.studies.work import Work

@st.cache_resource(show_spinner="Loading the model zoo (once per server)...")
def zoo(name: str = "tiny"):
    from rmtllmf_core.experiment import pipeline

    return pipeline.get_zoo(name)


@st.cache_resource(show_spinner=False)
def zoo_card(name: str = "tiny") -> dict:
    """A served zoo's card (plain JSON): its tasks and their titles without loading any weights,
    so the Scenario page does not wait for the zoo."""
    from rmtllmf_core.zoo import builtin_card

    return builtin_card(name)


_warming: set[str] = set()
_warming_lock = threading.Lock()


WARM_UP_DELAY_S = 3.0  # let the browser draw the first page before the load takes the CPU


def warm_up(name: str) -> None:
    """Load the zoo in the background (once per server), so the first model page finds it ready."""
    from rmtllmf_core.experiment import pipeline

    with _warming_lock:
        if name in _warming:
            return
        _warming.add(name)
    threading.Thread(target=_load_quietly, args=(pipeline.get_engine, name), name=f"warm-{name}", daemon=True).start()


def _load_quietly(load: Callable, name: str) -> None:
    time.sleep(WARM_UP_DELAY_S)
    try:
        from rmtllmf_core.serve import hosting

        lim = hosting.limits()
        if lim.engine_processes:  # the first cold runs find their engine processes ready; they import torch
            try:                  # and load the zoo while we do
                hosting.engine_pool().warm(name, count=lim.max_concurrent_jobs)
            except Exception:  # the server still loads the zoo; a cold run starts them and says what fails
                pass
        load(name)
        import gc

        gc.freeze()  # the zoo, torch and the libraries live as long as the server: no collection walks them again
        if lim.warm_on_start:
            _warm_story(name)
    except Exception:  # the page that needs the zoo shows the error when it asks for it
        pass


def _warm_story(name: str) -> None:
    """The landing view's and the Story's runs, computed once on a server whose cache lacks them
    (`python -m rmtllmf_core warm` fills them beforehand). Each goes through the host's door as the
    single run a page would ask for, so a visitor asking the same run meanwhile shares it."""
    from rmtllmf_core.serve import hosting
    from rmtllmf_core.studies import story

    for scn in story.scenarios(name):
        work = Work.single_run(scn)
        if work.missing():
            hosting.run_heavy(work)


def stored(scn: Scenario) -> Result | None:
    """The scenario's result if the disk cache holds it (one read; never computes)."""
    from rmtllmf_core.experiment.pipeline import cached

    try:
        return cached(scn)
    except RmtllmfError:
        return None


def uplink(cfg) -> dict:
    """One drop of the uplink of a WirelessConfig, as plain data (instant; memoised per config)."""
    return _uplink(json.dumps(cfg.to_dict(), sort_keys=True))


@st.cache_data(show_spinner=False, max_entries=512)
def _uplink(canonical: str) -> dict:
    from rmtllmf_core.science.wireless import WirelessConfig, evaluate_uplink

    return evaluate_uplink(WirelessConfig.parse(json.loads(canonical))).to_dict()


def channel_warning(cfg) -> str | None:
    """The core's warning when a WirelessConfig's channel alone leaves the task vectors unusable
    (`rmtllmf_core.science.wireless.channel_warning`), else None; memoised per config."""
    return _channel_warning(json.dumps(cfg.to_dict(), sort_keys=True))


@st.cache_data(show_spinner=False, max_entries=512)
def _channel_warning(canonical: str) -> str | None:
    from rmtllmf_core.science.wireless import WirelessConfig, channel_warning

    cfg = WirelessConfig.parse(json.loads(canonical))
    return channel_warning(cfg, _uplink(canonical) if cfg.attack == "none" else None)


def ldpc_tables() -> dict[str, dict]:
    """The coded link's simulated BER/BLER tables of the resilience sweep's codes (none is simulated here)."""
    return sweeps.ldpc_tables(default_cache())


def key(work: Work) -> str:
    """A Work's key (its zoos loaded once per server first: the cache keys include their fingerprints)."""
    for name in {sc.zoo for sc in work.scenarios}:
        zoo(name)
    return work.key


def missing(work: Work) -> int:
    """How many of a Work's runs the disk cache does not hold yet (no result is read)."""
    key(work)
    return work.missing()


def _with_progress(label: str, req, done: Callable[[Any, float], str], keep_status: bool = True):
    """Run heavy work under a status box with a progress bar (`waiting.wait_for`: the queue, Cancel); the
    finished status stays ("done in 12 s") unless `keep_status` is False (a projector's story)."""
    from . import waiting

    slot = st.empty()
    with slot.status(f"{label}...", expanded=True) as status:
        bar = st.progress(0.0, text="starting")
        start = time.perf_counter()
        pace = Pace(start)

        def progress(fraction: float, message: str) -> None:
            fraction = min(max(float(fraction), 0.0), 1.0)
            bar.progress(fraction, text=f"{label}: {message}{pace.left(time.perf_counter(), fraction)}")

        try:
            out = waiting.wait_for(req, progress)
        except RmtllmfError:
            status.update(label=f"{label}: stopped (see the message)", state="error", expanded=False)
            raise
        status.update(label=done(out, time.perf_counter() - start), state="complete", expanded=False)
    if not keep_status:
        slot.empty()
    return out


class Pace:
    """The time left of a job from its pace since it started computing: the progress that arrives within
    the first second (the cached points of a resumed sweep, reported at once) is not pace, and no
    estimate is said before a tenth of the rest is done and two seconds have passed."""

    INSTANT_S = 1.0

    def __init__(self, start_s: float):
        self.start_s, self.base_s, self.base = start_s, start_s, 0.0

    def left(self, now_s: float, fraction: float) -> str:
        if now_s - self.start_s <= self.INSTANT_S:   # what arrives at once: the baseline
            self.base_s, self.base = now_s, fraction
            return ""
        done, spent = fraction - self.base, now_s - self.base_s
        if fraction >= 1.0 or spent < 2.0 or done < 0.1 * (1.0 - self.base):
            return ""
        return f" · about {duration(spent / done * (1.0 - fraction))} left"


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def estimate(runs: int, work: Work | None = None) -> str:
    """How long `runs` cold runs take on this server: from its recent runs (the engine processes report
    theirs), else from the seconds the cached points of `work` took, else from the Home page's runs."""
    from rmtllmf_core.experiment.runtime import typical_run_seconds
    from rmtllmf_core.studies import story

    if not runs:
        return ""
    typical, source = typical_run_seconds(), "this server's recent runs"
    if typical is None and work is not None:
        typical, source = work.measured_seconds(), "its points already computed"
    if typical is None:
        try:
            typical = Work.sweep([({}, s) for s in story.scenarios(work.scenarios[0].zoo if work else "tiny")]
                                 ).measured_seconds()
        except RmtllmfError:
            typical = None
        source = "the Home page's runs"
    if typical is None:
        return "no run measured on this server yet: the first ones will tell"
    return f"about {duration(runs * typical)} ({typical:.1f} s a run, from {source})"


def run(scn: Scenario, *, label: str = "Computing the fused models", keep_status: bool = True) -> tuple[Result, bool]:
    """One scenario's result and whether the disk cache answered it: a hit at once (one read), a
    cold run under a status and a progress bar (raises RmtllmfError)."""
    from rmtllmf_core.serve import hosting

    work = Work.single_run(scn)
    key(work)                      # the zoo, loaded once per server
    req = hosting.request(work)    # the caps, and one lookup of the key
    if req.cached:
        return req.run(), True
    return _with_progress(label, req, done=lambda out, s: f"{label}: done in {s:.1f} s", keep_status=keep_status), False


def sweep(work: Work, *, label: str) -> list[dict]:
    """A sweep's rows (each point lands in the disk cache as it finishes), under a status and a
    progress bar."""
    from rmtllmf_core.serve import hosting

    key(work)
    req = hosting.request(work)
    if req.cached:
        return req.run()
    return _with_progress(label, req, done=lambda rows, s: f"{label}: {len(rows)} points in {s:.1f} s")
