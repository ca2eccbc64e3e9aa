"""The session's scenario: one validated value in session state, mirrored into the URL.

- On a session's first run the scenario comes from the link (`st.query_params`), else the default.
- Widgets never own the scenario: they are drawn from it and their edits go through
  `Scenario.replace` (see `editor.py`). Replacing it from outside (a preset, an upload) bumps a
  revision that is part of every widget key, so all widgets redraw from the new value.
- After each run the query string is rewritten to the scenario's difference from the default.
"""
from __future__ import annotations

from urllib.parse import urlencode

import streamlit as st

from rmtllmf_core.errors import InputError
from rmtllmf_core.experiment.scenario import Scenario

from . import codec

SCENARIO = "studio.scenario"
REVISION = "studio.revision"
LINK_ERROR = "studio.link_error"     # the InputErrors of the parameters the session's link had refused
PRESENTER = "presenter"              # also a query parameter: presenter=1


@st.cache_resource(show_spinner=False)
def default_scenario(zoo: str = "tiny") -> Scenario:
    """The one default, the base of every link: the engine's default preset on all the zoo's tasks
    (as `rmtllmf_core.experiment.presets.default_scenario`, with the tasks read from the zoo's card, so the
    first page does not wait for the weights to load)."""
    from rmtllmf_core.experiment.presets import DEFAULT_PRESET, preset_scenario

    from . import engine

    return preset_scenario(DEFAULT_PRESET, tasks=tuple(engine.zoo_card(zoo)["tasks"]), zoo=zoo)


def served_zoos() -> tuple[str, ...]:
    """The zoos this app serves: the embedded ones. A link or a file naming anything else (a model
    name, a path, a hub address) is refused: loading it could read the disk or the network."""
    from rmtllmf_core.zoo import BUILTIN

    return tuple(BUILTIN)


def accept(scn: Scenario) -> Scenario:
    """A scenario from outside the app (a link, a file), checked for what only the app knows."""
    if scn.zoo not in served_zoos():
        raise InputError("zoo", f"this app serves the zoo(s) {', '.join(served_zoos())}; got {scn.zoo[:60]!r}")
    return scn


def init_session() -> None:
    """First run of a session: the scenario from the link, refusing (and saying) what is wrong."""
    ss = st.session_state
    if SCENARIO in ss:
        return
    params = st.query_params.to_dict()
    default = default_scenario()
    refused = []
    if "zoo" in params:  # only the served zoos; the rest of the link is still read
        try:
            accept(default.replace(zoo=str(params["zoo"])[:200]))
        except InputError as exc:
            refused.append(exc)
            params.pop("zoo")
    # every valid parameter is kept; each refused one is said beside its control
    scn, bad = codec.from_query_keeping(params, default)
    if scn != default:  # what only the zoo can refuse (e.g. more test samples than it holds), refused alike
        scn, bad = _fitting(scn, params, default, bad)
    ss[SCENARIO] = scn
    ss[LINK_ERROR] = [*refused, *bad] or None
    ss[REVISION] = 0
    ss[PRESENTER] = params.get(PRESENTER) in ("1", "true")


def _fitting(scn: Scenario, params: dict, default: Scenario, bad: list) -> tuple[Scenario, list]:
    """The link's scenario without the parameters the zoo refuses (each one named, the rest kept)."""
    from rmtllmf_core.experiment.pipeline import check_fits

    params, refused = dict(params), []
    for _ in range(len(params)):
        try:
            check_fits(scn)
            break
        except InputError as exc:
            if exc.field not in params:  # not one parameter's doing: the link's values stand, the run will say
                break
            refused.append(InputError(exc.field, f"{str(params.pop(exc.field))[:60]!r} refused ({exc.reason})"))
            scn, bad = codec.from_query_keeping(params, default)
    return scn, [*bad, *refused]


def scenario() -> Scenario:
    return st.session_state[SCENARIO]


def revision() -> int:
    return st.session_state[REVISION]


def presenter() -> bool:
    return bool(st.session_state.get(PRESENTER, False))


def set_scenario(new: Scenario, *, from_outside: bool = False) -> None:
    """Make `new` the session's scenario; from_outside=True redraws every widget from it."""
    ss = st.session_state
    if from_outside or new != ss[SCENARIO]:
        ss[LINK_ERROR] = None
    ss[SCENARIO] = new
    if from_outside:
        ss[REVISION] += 1


QUERY_MEMO = "studio.query_memo"    # (the scenario it was made from, its link parameters)


def query() -> dict[str, str]:
    """The link parameters of the session's scenario (its difference from the default). Made once per
    scenario: the sidebar's share link, the Export menu and the URL all ask for it on every run."""
    scn = scenario()
    memo = st.session_state.get(QUERY_MEMO)
    if memo is None or memo[0] is not scn:
        memo = st.session_state[QUERY_MEMO] = (scn, codec.to_query(scn, default_scenario()))
    params = dict(memo[1])
    if presenter():
        params[PRESENTER] = "1"
    return params


def sync_url() -> None:
    """Rewrite the query string when it differs from the scenario (no message when it does not)."""
    params = query()
    if st.query_params.to_dict() != params:
        st.query_params.from_dict(params)


def share_link() -> str:
    """The full link of this view (the page's address plus the scenario's parameters)."""
    base = st.context.url or ""
    params = query()
    return f"{base}?{urlencode(params)}" if params else base


def link_errors() -> list[InputError]:
    return list(st.session_state.get(LINK_ERROR) or [])


LABELS = "studio.labels"  # dotted field -> (the control's label, its choices in its own words, or None)


def remember(path: str, label: str, choices: list[str] | None = None) -> None:
    """What the control bound to `path` is called on screen (the bad-link summary names fields so)."""
    st.session_state.setdefault(LABELS, {})[path] = (label, choices)


def control_of(path: str) -> tuple[str, list[str] | None] | None:
    return (st.session_state.get(LABELS) or {}).get(path)


def refusal(exc: InputError) -> str:
    """A refused link value's reason, with a choice's allowed values in its control's own words."""
    reason = getattr(exc, "reason", str(exc))
    control = control_of(getattr(exc, "field", None) or "")
    if control and control[1] and "Input should be" in reason:
        return reason.split(" refused")[0] + " refused; allowed: " + ", ".join(control[1])
    return reason
