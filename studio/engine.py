"""The app's only door to the engine: the zoo once per server, results from the disk cache,
cold runs with a status and a progress bar, and one hook for how heavy work runs.

`app.py` installs the run-wrapper (`set_runner`): every heavy call (a pipeline run, a sweep)
goes through it, so a compute queue or per-request caps can be added in one place.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable

import streamlit as st

from rmtllmf_core.errors import RmtllmfError
from rmtllmf_core.scenario import Scenario

Runner = Callable[..., Any]


def _direct(job: Callable, /, *args, **kwargs):
    return job(*args, **kwargs)


_runner: Runner = _direct


def set_runner(runner: Runner | None) -> None:
    """Install the wrapper every heavy engine call goes through (None: call directly)."""
    global _runner
    _runner = runner or _direct


def heavy(job: Callable, /, *args, **kwargs):
    return _runner(job, *args, **kwargs)


@st.cache_resource(show_spinner="Loading the model zoo (once per server)...")
def zoo(name: str = "tiny"):
    from rmtllmf_core import pipeline

    return pipeline.get_zoo(name)


@st.cache_resource(show_spinner=False)
def zoo_card(name: str = "tiny") -> dict:
    """A served zoo's card (plain JSON): its tasks and their titles without loading any weights,
    so the Scenario page does not wait for the zoo."""
    from rmtllmf_core.errors import AssetError
    from rmtllmf_core.zoo.loader import BUILTIN, CARD

    path = BUILTIN[name] / CARD
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
        card["tasks"].items()
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise AssetError(str(path), f"the zoo card is missing or unreadable ({type(exc).__name__}); "
                                    f"rebuild the zoo: python -m rmtllmf_core zoo build {name}") from None
    return card


_warming: set[str] = set()
_warming_lock = threading.Lock()


WARM_UP_DELAY_S = 3.0  # let the browser draw the first page before the load takes the CPU


def warm_up(name: str) -> None:
    """Load the zoo in the background (once per server), so the first model page finds it ready."""
    from rmtllmf_core import pipeline

    with _warming_lock:
        if name in _warming:
            return
        _warming.add(name)
    threading.Thread(target=_load_quietly, args=(pipeline.get_engine, name), name=f"warm-{name}", daemon=True).start()


def _load_quietly(load: Callable, name: str) -> None:
    time.sleep(WARM_UP_DELAY_S)
    try:
        load(name)
    except Exception:  # the page that needs the zoo shows the error when it asks for it
        pass


def uplink(cfg) -> dict:
    """One drop of the uplink of a WirelessConfig, as plain data (instant; memoised per config)."""
    return _uplink(json.dumps(cfg.to_dict(), sort_keys=True))


@st.cache_data(show_spinner=False, max_entries=512)
def _uplink(canonical: str) -> dict:
    from rmtllmf_core.wireless import WirelessConfig, evaluate_uplink

    return evaluate_uplink(WirelessConfig.parse(json.loads(canonical))).to_dict()


def channel_warning(cfg) -> str | None:
    """The core's warning when a WirelessConfig's channel alone leaves the task vectors unusable
    (`rmtllmf_core.wireless.channel_warning`), else None; memoised per config."""
    return _channel_warning(json.dumps(cfg.to_dict(), sort_keys=True))


@st.cache_data(show_spinner=False, max_entries=512)
def _channel_warning(canonical: str) -> str | None:
    from rmtllmf_core.wireless import WirelessConfig, channel_warning

    cfg = WirelessConfig.parse(json.loads(canonical))
    return channel_warning(cfg, _uplink(canonical) if cfg.attack == "none" else None)


def cached_result(scn: Scenario) -> dict | None:
    from rmtllmf_core import pipeline

    zoo(scn.zoo)  # loaded once per server; the cache key includes its fingerprint
    return pipeline.cached(scn)


def is_cached(scn: Scenario) -> bool:
    """Whether the disk cache holds this scenario's result (no read of the result itself)."""
    from rmtllmf_core import pipeline

    return pipeline.result_key(scn, zoo(scn.zoo)) in pipeline.default_cache()


def _with_progress(label: str, job: Callable, *args, done: Callable[[Any, float], str], **kwargs):
    """Run a heavy call under a status box with a progress bar (its `progress` callback)."""
    with st.status(f"{label}...", expanded=True) as status:
        bar = st.progress(0.0, text="starting")

        def progress(fraction: float, message: str) -> None:
            bar.progress(min(max(float(fraction), 0.0), 1.0), text=f"{label}: {message}")

        start = time.perf_counter()
        try:
            out = heavy(job, *args, progress=progress, **kwargs)
        except RmtllmfError:
            status.update(label=f"{label}: stopped (see the message)", state="error", expanded=False)
            raise
        status.update(label=done(out, time.perf_counter() - start), state="complete", expanded=False)
    return out


def compute(scn: Scenario, *, label: str = "Computing the fused models") -> dict:
    """A cold run of one scenario under a status and a progress bar (raises RmtllmfError)."""
    from rmtllmf_core import pipeline

    return _with_progress(label, pipeline.run, scn, done=lambda out, s: f"{label}: done in {s:.1f} s")


def sweep(fn: Callable, /, *args, label: str, **kwargs) -> list[dict]:
    """Run a sweep `fn(*args, progress=..., **kwargs)` (each point lands in the disk cache as it
    finishes) under a status and a progress bar. Pass the engine's own function, not a wrapper:
    the run-wrapper may look at which sweep it is (caps, fair sharing)."""
    return _with_progress(label, fn, *args, **kwargs,
                          done=lambda rows, s: f"{label}: {len(rows)} points in {s:.1f} s")
