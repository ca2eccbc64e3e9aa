"""Scenario <-> URL query parameters.

A link carries only what differs from the default scenario: one parameter per dotted path
(`wireless.attack=white`, `fusion.lambda=0.4`, `tasks=["digits","textures"]`), the value as
JSON. A string that is not itself valid JSON travels bare (`white` rather than `"white"`);
decoding tries JSON first and falls back to the bare string, so the round trip is exact.
Parameters listed in `UI_PARAMS` are view settings, not part of the scenario. Powers travel in dBm,
as the app shows them (`wireless.jammer_power_dbm=-130`, the schema's aliases), written with the
fewest digits that give back the very same watts; a power no dBm number gives back exactly, and
every link made before, travel in watts.

Decoding never trusts the link: sizes are bounded here and every value goes through
`Scenario.parse`, whose InputError names the offending field. `from_query` refuses a link with
any bad value; `from_query_keeping` keeps every valid parameter and refuses only the bad ones,
each with its own InputError (what the app does with a link it is opened with).
"""
from __future__ import annotations

import copy
import json
import math
from typing import Any, Mapping

from ..errors import InputError
from ..science.wireless.config import DBM_ALIASES, dbm_to_w

UI_PARAMS = ("presenter",)      # view settings that share the query string with the scenario
MAX_PARAMS = 200
MAX_VALUE_CHARS = 20_000
MAX_KEY_CHARS = 200
SHOWN_VALUE_CHARS = 60  # a refused value is quoted up to this length
_MISSING = object()


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}, "c": [1, 2]} -> {"a.b": 1, "c": [1, 2]}; lists and empty dicts are leaves."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def set_path(data: dict, path: str, value: Any) -> None:
    """Set a dotted path in nested dicts, replacing any non-dict on the way."""
    node = data
    *parents, leaf = path.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[leaf] = value


def encode_value(value: Any) -> str:
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value  # bare: decoding falls back to exactly this string
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def decode_value(text: str) -> Any:
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except ValueError:
        return text
    return value


def _refuse_constant(name: str):
    # NaN / Infinity are not JSON; keep them as text so the Scenario refuses them by type
    raise ValueError(name)


def diff(scenario_dict: Mapping[str, Any], default_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted paths whose value differs from the default (values as plain data)."""
    base = flatten(default_dict)
    changed = {k: v for k, v in flatten(scenario_dict).items() if base.get(k, _MISSING) != v}
    return changed


def to_query(scenario, default) -> dict[str, str]:
    """The query parameters of a scenario: differences from `default`, sorted for stable links."""
    changed = diff(scenario.to_dict(), default.to_dict())
    for key in [k for k in changed if k in _IN_DBM]:
        dbm = _as_dbm(changed[key])
        if dbm is not None:
            changed[_IN_DBM[key]] = dbm
            del changed[key]
    return {k: encode_value(changed[k]) for k in sorted(changed)}


# a power in watts -> its dBm alias (WirelessConfig's; decoding goes through its own conversion)
_IN_DBM = {f"wireless.{w}": f"wireless.{dbm}" for dbm, w in DBM_ALIASES.items()}
_IN_W = {dbm: w for w, dbm in _IN_DBM.items()}


def _as_dbm(watts: Any) -> Any:
    """The shortest dBm number (or list of them) that converts back to exactly `watts`; None if none does."""
    if isinstance(watts, list):
        out = [_as_dbm(w) for w in watts]
        return None if not out or any(v is None for v in out) else out
    if not isinstance(watts, float) or not watts > 0 or not math.isfinite(watts):
        return None
    exact = 10.0 * math.log10(watts) + 30.0
    for digits in range(1, 18):
        dbm = float(f"{exact:.{digits}g}")
        if dbm_to_w(dbm) == watts:
            return int(dbm) if dbm.is_integer() and abs(dbm) < 1e15 else dbm
    return None


def file_dict(scenario) -> dict:
    """A scenario as a downloaded file holds it: the powers in dBm, as the app shows them, wherever a dBm
    number reads back to the very same watts (else in watts); the file reopens to the same scenario."""
    data = scenario.to_dict()
    wireless = data["wireless"]
    for dbm_name, w_name in DBM_ALIASES.items():
        dbm = _as_dbm(wireless.get(w_name))
        if dbm is not None:
            del wireless[w_name]
            wireless[dbm_name] = dbm
    return data


def _decoded(params: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(dotted key, value) per parameter, each checked for size and form (InputError names the key)."""
    items = [(k, v) for k, v in params.items() if k not in UI_PARAMS]
    if len(items) > MAX_PARAMS:
        raise InputError("url", f"at most {MAX_PARAMS} parameters (got {len(items)})")
    return [_decode_item(k, raw) for k, raw in items]


def _decode_item(key, raw) -> tuple[str, Any]:
    if isinstance(raw, (list, tuple)):  # a repeated key: the last one wins, as in st.query_params
        raw = raw[-1] if raw else ""
    key = str(key)
    if not key or len(key) > MAX_KEY_CHARS or any(not p for p in key.split(".")):
        raise InputError(_cut(key) or "url", "not a field name")
    text = str(raw)
    if len(text) > MAX_VALUE_CHARS:
        raise InputError(key, f"value longer than {MAX_VALUE_CHARS} characters")
    value = decode_value(text)
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(key, f"must be a finite number; got {_cut(text)}")
    return key, value


def _cut(text: str) -> str:
    text = str(text)
    return text if len(text) <= SHOWN_VALUE_CHARS else text[:SHOWN_VALUE_CHARS] + "..."


def _build(default, items: list[tuple[str, Any]]):
    data = copy.deepcopy(default.to_dict())
    for key, value in items:
        set_path(data, key, value)
        # a power given in one unit replaces the default's in the other (the schema takes one of the two)
        other = _IN_W.get(key) or _IN_DBM.get(key)
        if other:
            parent = data
            for part in other.split(".")[:-1]:
                parent = parent.get(part) if isinstance(parent, dict) else None
            if isinstance(parent, dict):
                parent.pop(other.split(".")[-1], None)
    _users_follow_tasks(data, {k for k, _ in items})
    return type(default).parse(data)


def from_query(params: Mapping[str, Any], default):
    """Rebuild a Scenario from query parameters (raises InputError naming the field)."""
    return _build(default, _decoded(params))


def from_query_keeping(params: Mapping[str, Any], default) -> tuple[Any, list[InputError]]:
    """The scenario of every valid parameter, and one InputError per refused one (its key, its value cut
    to a sane length, what is wrong). Parameters are taken in order, each kept if the scenario with it
    is valid; a second pass retries the refused ones (one may need a later one, e.g. tasks and their
    users' distances)."""
    try:
        return from_query(params, default), []
    except InputError:
        pass
    kept: list[tuple[str, Any]] = []
    pending: list[tuple[str, Any, str]] = []
    errors: dict[str, InputError] = {}
    for key, raw in params.items():
        if key in UI_PARAMS:
            continue
        try:
            k, v = _decode_item(key, raw)
        except InputError as exc:
            errors[str(key)] = exc
            continue
        pending.append((k, v, str(raw)))
        if len(pending) + len(kept) > MAX_PARAMS:
            return default, [InputError("url", f"at most {MAX_PARAMS} parameters")]
    for _ in range(2):
        still = []
        for k, v, raw in pending:
            try:
                _build(default, [*kept, (k, v)])
                kept.append((k, v))
                errors.pop(k, None)
            except InputError as exc:
                where = "" if exc.field in (k, "") else f"{exc.field}: "
                errors[k] = InputError(k, f"{_cut(raw)!r} refused ({where}{exc.reason})")
                still.append((k, v, raw))
        pending = still
    return _build(default, kept), list(errors.values())


# what places the users (a link that sets none of these lets them follow its tasks)
_USER_KEYS = ("wireless.num_users", "wireless.distances_m", "wireless.channel", "wireless.tx_power_w",
              "wireless.tx_power_dbm")


def _users_follow_tasks(data: dict, keys: set[str]) -> None:
    """The schema's rule for a partial scenario, kept when changes land on a whole one (whose user count
    is already filled): a link that sets the tasks but does not place the users gets one user per task.
    A valid scenario always has one user per task, so this never changes a link's round trip."""
    wireless, tasks = data.get("wireless"), data.get("tasks")
    if ("tasks" in keys and isinstance(tasks, list) and isinstance(wireless, dict) and not keys & set(_USER_KEYS)
            and wireless.get("distances_m") is None and wireless.get("channel") is None
            and not isinstance(wireless.get("tx_power_w", wireless.get("tx_power_dbm")), list)):
        wireless["num_users"] = len(tasks)


def link_query(scenario_data: Mapping[str, Any]) -> str:
    """The query string of a scenario's share link (its differences from its zoo's default scenario), e.g.
    `wireless.attack=worst_sum_rate&seed=1`: what a machine-readable row carries to say what produced it."""
    from urllib.parse import urlencode

    from .presets import default_scenario
    from .scenario import Scenario

    scenario = Scenario.parse(scenario_data)
    return urlencode(to_query(scenario, default_scenario(scenario.zoo)))
