"""The sidebar every page shares: presets, presenter mode, the scenario as a file, the share link."""
from __future__ import annotations

import json

import streamlit as st

from rmtllmf_core.serve import uploads
from rmtllmf_core.errors import InputError, RmtllmfError
from rmtllmf_core.experiment import codec
from rmtllmf_core.experiment.scenario import Scenario

from . import presets, state

UPLOAD_KEY = "studio.upload"
UPLOAD_ERROR = "studio.upload_error"


def _apply_preset(name: str) -> None:
    try:
        state.set_scenario(presets.apply(name, state.scenario()), from_outside=True)
        st.session_state.pop(UPLOAD_ERROR, None)
    except InputError as exc:  # a preset that does not fit the current choice of tasks
        st.session_state[UPLOAD_ERROR] = exc


def _reset() -> None:
    state.set_scenario(state.default_scenario(), from_outside=True)


def load_scenario_bytes(data: bytes) -> Scenario:
    """An uploaded scenario file through the core's one upload path (the host's size cap, JSON without
    NaN, Scenario.parse, the host's caps); InputError / CapExceeded say what is wrong."""
    return state.accept(uploads.load_scenario_json(data))


def _upload() -> None:
    file = st.session_state.get(UPLOAD_KEY)
    st.session_state.pop(UPLOAD_ERROR, None)
    if file is None:
        return
    try:
        state.set_scenario(load_scenario_bytes(file.getvalue()), from_outside=True)
    except RmtllmfError as exc:  # a bad file, or one over the host's caps
        st.session_state[UPLOAD_ERROR] = exc


ACTIVE_DRAWN = "studio.active_preset"


def draw():
    """Draw the sidebar's controls (before the page: they are there even when a page stops early);
    returns the slot that `share` fills after the page has run."""
    sb = st.sidebar
    sb.toggle("Presenter mode", key=state.PRESENTER,
              help="Hides advanced controls and enlarges plots, for a projector.")
    sb.markdown("**Presets**")
    on = st.session_state[ACTIVE_DRAWN] = presets.active(state.scenario())
    for name in presets.NAMES:
        sb.button(presets.LABELS[name], key=f"preset.{name}", on_click=_apply_preset, args=(name,),
                  help=presets.HELP[name] + (": the current scenario" if name == on else ""), width="stretch",
                  type="primary" if name == on else "secondary", icon=":material/check:" if name == on else None)
    sb.button("Reset to the default scenario", key="preset.reset", on_click=_reset, width="stretch")
    return sb.container()


def share(slot) -> None:
    """The share link and the scenario file, drawn after the page so they carry its last edit (not in
    presenter mode: a projector shows the story, not the plumbing)."""
    scn = state.scenario()
    if presets.active(scn) != st.session_state.get(ACTIVE_DRAWN):
        st.rerun()  # the page's edit made (or unmade) a preset: mark it now (rare: only on that change)
    if state.presenter():
        return
    with slot:
        st.markdown("**Share this view**")
        st.code(state.share_link() or "?", language=None, wrap_lines=True)
        st.caption("The link holds the whole scenario: copy it with the button at the box's right.")
        st.download_button("Download the scenario (JSON)", json.dumps(codec.file_dict(scn), indent=2, sort_keys=True),
                           file_name="scenario.json", mime="application/json", on_click="ignore",
                           key="download.scenario", width="stretch")
        st.file_uploader("Load a scenario (JSON)", type=["json"], key=UPLOAD_KEY, on_change=_upload,
                         max_upload_size=1)
        err = st.session_state.get(UPLOAD_ERROR)
        if err is not None:
            st.error(f"`{err.field}`: {err.reason}", icon=":material/error:")
