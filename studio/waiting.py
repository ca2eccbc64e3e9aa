"""The app's waiting room for heavy work: a session's place in line, the job's progress, Cancel.

The request itself (caps, key, cache check, the queue) is the core's (`rmtllmf_core.serve.hosting`); this
module only waits for it inside a Streamlit session. A rerun or a closed tab while still in line
drops the request; a started job finishes and lands in the disk cache.
"""
from __future__ import annotations

from typing import Any, Callable

import streamlit as st

from rmtllmf_core.serve import hosting, jobs

POLL_S = 0.25
CANCELLED = "rmtllmf.jobs.cancelled"


def _session_owner() -> Any:
    try:
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        ctx = get_script_run_ctx(suppress_warning=True)
        return ctx.session_id if ctx is not None else None
    except Exception:  # pragma: no cover - streamlit internals moved
        return None


def wait_for(req: hosting.HeavyRequest, progress: Callable[[float, str], None] | None = None) -> Any:
    """Wait for a request the caller has already checked and looked up (`hosting.request`) through the
    core's one door (`hosting.run_heavy`): at once for a cache hit or inside a job, else in line with
    this session's place, progress and Cancel."""
    owner = None if req.cached else _session_owner()
    if owner is None:  # a cache hit, or not in a session: the core's plain wait
        return hosting.run_heavy(req, progress)
    if _take_cancelled(req.key):
        # the rerun that a click on Cancel causes: say so instead of starting the same work again
        raise jobs.JobCancelled("cancelled; change a setting or run it again to compute it")
    return hosting.run_heavy(req, progress, owner=owner, wait=lambda ticket, queue: _wait(ticket, queue, progress))


def _cancel_clicked(queue, key: str) -> None:
    """The Cancel button's callback, at the start of the rerun the click causes (with fast reruns
    the interrupted run may still hold its ticket: this session's tickets are let go here): stop the
    job unless another session waits for it, and remember the click so this rerun does not submit
    the same work again."""
    queue.cancel(key, owner=_session_owner())
    st.session_state.setdefault(CANCELLED, set()).add(key)


def _take_cancelled(key: str) -> bool:
    cancelled = st.session_state.get(CANCELLED)
    if cancelled and key in cancelled:
        cancelled.discard(key)
        return True
    return False


def _wait(ticket, queue, progress: Callable[[float, str], None] | None) -> Any:
    slot = None
    last = None
    try:
        while not ticket.wait(POLL_S):
            if slot is None:
                slot = st.empty()
                slot.button("Cancel", key=f"rmtllmf.cancel.{ticket.id}", on_click=_cancel_clicked,
                            args=(queue, ticket.key), help="Stop this computation (finished sweep points stay cached)")
            pos = ticket.position()
            if pos:
                wait = queue.wait_estimate(ticket)
                state = (0.0, f"waiting in line: {'next' if pos == 1 else f'{pos - 1} ahead of you'}"
                              + ("" if wait is None else f", about {_seconds(wait)} to wait") +
                              f" ({queue.max_running} computation{'s' if queue.max_running > 1 else ''} "
                              "run at once on this server)")
            else:
                state = ticket.progress
            if progress is not None and state != last:
                progress(*state)
                last = state
            st.session_state.get(CANCELLED)  # a yield point: a pending rerun or stop raises here
        if slot is not None:
            slot.empty()
        return ticket.result(0)
    except BaseException:
        if not ticket.done():
            ticket.abandon()
        raise


def _seconds(s: float) -> str:
    """A wait as people say it: "5 s", "2 min"."""
    return f"{max(1, round(s))} s" if s < 90 else f"{round(s / 60)} min"
