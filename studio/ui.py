"""Small drawing helpers shared by the pages (no science, no engine calls)."""
from __future__ import annotations

import functools
import io
import json
from typing import Callable, Mapping, Sequence

import pandas as pd
import plotly.io as pio
import streamlit as st

from rmtllmf_core.errors import RmtllmfError
from rmtllmf_core.studies import plots as result_plots

from . import engine, plots, state

# The app's figures all wear one template (`plots.style`): as plotly's default it is added, already validated,
# when a figure is serialised, instead of validated anew on every figure (~7 ms each,
# `rmtllmf_core.studies.plots.themed`). Set after `import streamlit`, which makes its own theme the default.
pio.templates.default = result_plots.TEMPLATE

ATTACK_LABELS = {
    "none": "none (ideal channel)",
    "white": "white noise",
    "worst_sum_rate": "worst case: sum rate (P1)",
    "worst_strongest_user": "worst case: strongest user (P2)",
    "targeted": "targeted user",
    "worst_max_user_numeric": "worst case: best user's rate (numeric)",
}
PLOT_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


@st.cache_resource(show_spinner=False)
def favicon():
    """The app's icon, drawn locally (served by the app itself: no outside request)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.ellipse((2, 2, 62, 62), fill=(228, 87, 86, 255))
    draw.polygon([(32, 12), (46, 52), (18, 52)], fill=(255, 255, 255, 255))  # an antenna mast
    draw.ellipse((26, 6, 38, 18), fill=(255, 255, 255, 255))
    return img


PRESENTER_CSS = """
<style>
[data-testid="stMetricValue"] { font-size: 3.4rem; }
[data-testid="stMetricLabel"] p { font-size: 1.35rem; }
[data-testid="stMetricDelta"] { font-size: 1.2rem; }
.stMarkdown p, .stMarkdown li { font-size: 1.3rem; }
[data-testid="stMainBlockContainer"] { padding-top: 3.5rem; padding-bottom: 1rem; }
</style>
"""


def presenter_style() -> None:
    """Presenter mode's larger numbers and text (the plots grow through `plots.style`)."""
    st.html(PRESENTER_CSS)


def task_title(name: str, zoo: str | None = None) -> str:
    """A task's human title from the zoo card of `zoo` (default: the session's; its name when the card
    does not know it)."""
    try:
        titles = _task_titles(zoo or state.scenario().zoo)
    except RmtllmfError:  # a zoo that does not load: the page shows that error elsewhere
        return name
    return titles.get(name, name)


@functools.lru_cache(maxsize=16)
def _task_titles(zoo: str) -> dict[str, str]:
    """A served zoo's task titles, read once (pages ask for them per option of every task list)."""
    return {t: info.get("title", t) for t, info in engine.zoo_card(zoo)["tasks"].items() if isinstance(info, dict)}


def chart(fig, key: str) -> None:
    """A plotly figure as styled by `plots.style` (not re-themed: the page shows what Export saves). In
    presenter mode without plotly's toolbar: on a projector it covered the legends above the plots."""
    config = {**PLOT_CONFIG, "displayModeBar": False} if state.presenter() else PLOT_CONFIG
    st.plotly_chart(fig, key=key, config=config, width="stretch", theme=None)


def csv_bytes(rows: Sequence[Mapping] | pd.DataFrame, provenance: Mapping[str, str] | None = None) -> bytes:
    """A table as CSV (accuracies as fractions, as the engine gives them), each row with the `provenance`
    columns (the link that produced it, the engine's version)."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if provenance:
        frame = frame.assign(**dict(provenance))
    buf = io.StringIO()
    frame.to_csv(buf, index=False, float_format="%.6g")  # 97.0, not 97.00000286102295 (float32 noise)
    return buf.getvalue().encode()


def json_bytes(data) -> bytes:
    return json.dumps(data, indent=2, sort_keys=True, default=str).encode()


def export(name: str, *, tables: Mapping[str, object] | None = None, data: object = None,
           figures: Mapping[str, object] | None = None) -> None:
    """One 'Export' menu: tables as CSV (machine-readable: fractions, never percent; each row carries the
    view's share link and the engine version), the result as JSON (`data`, or a function that makes it),
    figures as self-contained HTML. Each file is made when its button is clicked, not on every run of
    every session."""
    from rmtllmf_core import ENGINE_VERSION

    provenance = {"scenario_link": state.share_link(), "engine_version": ENGINE_VERSION}
    with st.popover("Export", icon=":material/download:"):
        for label, rows in (tables or {}).items():
            st.download_button(f"{label} (CSV)", _later(lambda r: csv_bytes(r, provenance), rows),
                               file_name=f"{name}-{_slug(label)}.csv",
                               mime="text/csv", on_click="ignore", key=f"export.{name}.{_slug(label)}.csv")
        if data is not None:
            st.download_button("Result (JSON)", _later(lambda d: json_bytes(d() if callable(d) else d), data),
                               file_name=f"{name}.json",
                               mime="application/json", on_click="ignore", key=f"export.{name}.json")
        for label, fig in (figures or {}).items():
            st.download_button(f"{label} (HTML)", _html(fig), file_name=f"{name}-{_slug(label)}.html",
                               mime="text/html", on_click="ignore", key=f"export.{name}.{_slug(label)}.html")


def _html(fig) -> Callable[[], bytes]:
    return _later(plots.figure_html, fig)  # plotly.js alone is 4 MB


def _later(make: Callable, value) -> Callable[[], bytes]:
    return lambda: make(value)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def presenter() -> bool:
    return state.presenter()


def link_summary(slot, errors) -> None:
    """At the top of the page: every parameter the link had and the app refused, by its name in the link and
    its control's label, with the allowed values in the control's own words where it offers choices."""
    if not errors:
        return
    lines = []
    for exc in errors:
        field = getattr(exc, "field", None) or "link"
        control = state.control_of(field)
        lines.append(f"- `{field}`" + (f" ({control[0]})" if control else "") + f": {state.refusal(exc)}")
    slot.warning("**This link had values the app refused** (dropped from the link; the rest of it is kept):\n"
                 + "\n".join(lines), icon=":material/link_off:")
