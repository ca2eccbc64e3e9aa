"""A sweep on a page: how many of its runs the disk cache already holds, a button to run the rest
under a progress bar, and resume on return.

Every finished run lands in the engine's disk cache as it completes, so a sweep that was left
(another page, a closed tab) loses nothing: coming back resumes it, the cached points instantly.
"""
from __future__ import annotations

import streamlit as st

from rmtllmf_core.errors import RmtllmfError
from rmtllmf_core.studies.work import Work

from . import engine


def run_sweep(name: str, work: Work, *, label: str, button: str = "Run the sweep") -> list[dict] | None:
    """The sweep's rows when they are at hand (this session, or every point cached), else after the
    person asks for them; None until then. The session keeps them under the Work's own key: the same
    points, the same rows, whatever page settings led to them."""
    try:
        key = f"studio.sweep.{name}.{engine.key(work)[:16]}"   # also checks every point against its zoo
        rows = st.session_state.get(key)
        if rows is not None:
            return rows
        total = len(work.points)
        done = total - engine.missing(work)
    except RmtllmfError as exc:
        st.error(str(exc))
        return None
    pending = st.session_state.get(key + ".pending", False)
    if done < total:
        waiting = st.empty()  # cleared once the sweep has run: no stale counts above its result
        with waiting.container():
            guess = engine.estimate(total - done, work)
            st.caption(f"{total} runs; {done} already in the disk cache" + (f"; {guess}" if guess else "")
                       + (" (resuming where it stopped)" if pending else ""))
            start = st.button(button, key=f"{name}.run", icon=":material/play_arrow:", type="primary")
        if not (start or pending):
            return None
        waiting.empty()
    elif total == 0:
        return None
    st.session_state[key + ".pending"] = True  # kept if the person leaves mid-way: resume on return
    try:
        rows = engine.sweep(work, label=label)
    except RmtllmfError as exc:
        st.session_state.pop(key + ".pending", None)
        st.error(f"`{exc.field}`: {exc.reason}" if getattr(exc, "field", None) else str(exc))
        return None
    except Exception:  # a bug: do not retry it on every visit (leaving the page is not an Exception)
        st.session_state.pop(key + ".pending", None)
        raise
    st.session_state.pop(key + ".pending", None)
    st.session_state[key] = rows
    return rows
