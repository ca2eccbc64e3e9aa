"""Every page runs inside the app's frame (app.py: gate, session, sidebar, URL), always.

Streamlit still honours its older `pages/` folder convention before `app.py` has called
`st.navigation` once in a server's life: the first request of a fresh server to a page's own
address (a shared link to /fusion, say) runs that page file by itself, and AppTest does the same
on every rerun. `ensure()`, the first line of each page, notices that the frame is missing and
runs `app.py`, which runs the page inside it; the bare run then stops.
"""
from __future__ import annotations

import contextvars
import runpy
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

APP = Path(__file__).resolve().parents[1] / "app.py"
_framed = contextvars.ContextVar("studio_framed", default=False)


@contextmanager
def framed():
    """app.py runs the chosen page inside this."""
    token = _framed.set(True)
    try:
        yield
    finally:
        _framed.reset(token)


def ensure() -> None:
    """The first line of every page: run the app around this page when Streamlit ran it bare."""
    if _framed.get():
        return
    runpy.run_path(str(APP), run_name="__main__")
    st.stop()
