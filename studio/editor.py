"""Widgets bound to dotted paths of the session's scenario.

    ed = Editor("fusion")                           # at the top of a page
    ed.number("wireless.num_rx_antennas", "Antennas")
    scn = ed.commit()                               # validated scenario (or the last valid one)

Each widget starts from the scenario's value; only values the person changed are applied, all
at once through `Scenario.replace`. An InputError is shown as `st.error` right under the widget
named by its `field` (or at the top of the page when that control is not on this page), and the
last valid scenario stays in force. Bounds, choices and help come from the Field metadata.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import streamlit as st

from rmtllmf_core.errors import InputError, RmtllmfError
from rmtllmf_core.experiment.scenario import Scenario

from . import fields, state


def _fragment_rerun() -> bool:
    """True while only a fragment reruns (it may not draw into slots outside itself)."""
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    ctx = get_script_run_ctx()
    return bool(ctx is not None and ctx.fragment_ids_this_run)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(float(a) - float(b)) <= 1e-12 * max(1.0, abs(float(a)), abs(float(b)))
        except (TypeError, ValueError):
            return False
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


class Editor:
    def __init__(self, scope: str) -> None:
        self.scope = scope           # the page: widget keys are per page
        self.base: Scenario = state.scenario()
        self.rev = state.revision()
        self.changes: dict[str, Any] = {}
        self.slots: dict[str, Any] = {}
        self.aliases: dict[str, str] = {}
        self.top = st.container()    # errors whose control is not on this page
        self._data = self.base.to_dict()
        # Error slots under the widgets, only where an error can land: a widget reports an edit only on a
        # run after the one that drew it, so a page's first run in a session (a new tab, a shared link) has
        # none to show but the link's refusals. Without the ~25 empty slots a cached Fusion page is cheaper
        # to serve (bench_load: server CPU per session).
        drawn = f"studio.editor_drawn.{scope}.{self.rev}"
        self.with_slots = drawn in st.session_state or bool(state.link_errors())
        st.session_state[drawn] = True

    # ---- binding ---------------------------------------------------------------------------
    def key(self, path: str) -> str:
        return f"{self.scope}.{path}.{self.rev}"

    def get(self, path: str) -> Any:
        node: Any = self._data
        for part in path.split("."):
            node = node[part]
        return node

    def _bind(self, path: str, widget: Callable, shown: Any, *, to_value: Callable = lambda v: v,
              aliases: Iterable[str] = (), compare: Any = ..., **kwargs) -> Any:
        """Draw `widget` showing `shown`; a value unlike `compare` (default: `shown`) is an edit."""
        if "help" not in kwargs:
            try:
                kwargs["help"] = fields.help_text(Scenario, path)
            except KeyError:
                kwargs["help"] = None
        value = widget(shown, key=self.key(path), **kwargs)
        if self.with_slots:
            self.slots[path] = st.empty()  # the error slot, right under the widget
        for alias in aliases:
            self.aliases[alias] = path
        if not _same(value, shown if compare is ... else compare):
            self.changes[path] = to_value(value)
        return value

    def number(self, path: str, label: str, *, shown: Any = None, to_value: Callable | None = None,
               scale: float = 1.0, use_bounds: bool = True, aliases: Iterable[str] = (), **kwargs) -> Any:
        """A number input; `scale` shows the value in other units (shown = value / scale)."""
        state.remember(path, label)
        current = self.get(path) if shown is None else shown
        if scale != 1.0:
            current = None if current is None else float(current) / scale
        if to_value is None:
            to_value = (lambda v: v) if scale == 1.0 else (lambda v: None if v is None else float(v) * scale)
        if use_bounds:
            for k, v in fields.bounds(Scenario, path).items():
                kwargs.setdefault(k, v if scale == 1.0 else float(v) / scale)
        if isinstance(current, int) and not isinstance(current, bool) and isinstance(kwargs.get("min_value", 0), int):
            kwargs.setdefault("step", 1)
        else:
            current = None if current is None else float(current)
            for k in ("min_value", "max_value"):
                if k in kwargs and kwargs[k] is not None:
                    kwargs[k] = float(kwargs[k])
        return self._bind(path, lambda v, **kw: st.number_input(label, value=v, **kw), current,
                          to_value=to_value, aliases=aliases, **kwargs)

    def slider(self, path: str, label: str, **kwargs) -> Any:
        state.remember(path, label)
        current = self.get(path)
        for k, v in fields.bounds(Scenario, path).items():
            kwargs.setdefault(k, type(current)(v))
        return self._bind(path, lambda v, **kw: st.slider(label, value=v, **kw), current, **kwargs)

    def select(self, path: str, label: str, *, options: Iterable | None = None, format_func=str,
               radio: bool = False, default: Any = None, **kwargs) -> Any:
        """A selectbox (or radio) over the field's Literal choices; `default` is shown (and applied)
        while the scenario holds None."""
        actual = self.get(path)
        current = default if actual is None and default is not None else actual
        opts = list(options if options is not None else fields.choices(Scenario, path))
        if current not in opts:
            opts.append(current)
        state.remember(path, label, [str(format_func(o)) for o in opts if o is not None])
        kwargs["compare"] = actual
        draw = (lambda v, **kw: st.radio(label, opts, index=opts.index(v), format_func=format_func, **kw)) if radio \
            else (lambda v, **kw: st.selectbox(label, opts, index=opts.index(v), format_func=format_func, **kw))
        return self._bind(path, draw, current, **kwargs)

    def toggle(self, path: str, label: str, **kwargs) -> bool:
        state.remember(path, label)
        return self._bind(path, lambda v, **kw: st.toggle(label, value=v, **kw), bool(self.get(path)), **kwargs)

    def multiselect(self, path: str, label: str, *, options: Iterable, format_func=str,
                    to_value: Callable = lambda v: v, shown: Any = None, **kwargs) -> list:
        current = list(self.get(path) if shown is None else shown)
        opts = list(dict.fromkeys([*options, *current]))
        state.remember(path, label, [str(format_func(o)) for o in opts])
        return self._bind(path, lambda v, **kw: st.multiselect(label, opts, default=v, format_func=format_func, **kw),
                          current, to_value=to_value, **kwargs)

    def change(self, path: str, value: Any) -> None:
        """A change made by page logic rather than by one widget (e.g. a table edit)."""
        self.changes[path] = value

    def slot(self, path: str) -> None:
        """An error slot for a path edited by a custom control (drawn just before this call)."""
        if self.with_slots:
            self.slots[path] = st.empty()

    # ---- validation ------------------------------------------------------------------------
    def commit(self, fixup: Callable[[Scenario, dict], dict] | None = None) -> Scenario:
        """Apply the edits (one validation for all), show the error if any, return the scenario."""
        changes = dict(self.changes)
        if changes:
            try:
                if fixup is not None:
                    changes = fixup(self.base, changes)
                new = self.base.replace(**changes)
            except InputError as exc:
                self.show_error(exc)
                return self.base
            state.set_scenario(new)
            self.base = new
        for link_error in state.link_errors():
            self.show_error(InputError(link_error.field, state.refusal(link_error)) if isinstance(link_error, InputError)
                            else link_error, prefix="The link's value was refused (the rest of the link is kept): ")
        return self.base

    def slot_for(self, field: str):
        field = self.aliases.get(field, field)
        best = None
        for path in self.slots:
            if field == path or field.startswith(path + ".") or path.startswith(field + "."):
                if best is None or len(path) > len(best):
                    best = path
        return self.slots.get(best) if best else None

    def show_error(self, exc: RmtllmfError, *, prefix: str = "") -> None:
        """The message beside the control it names, or at the top of the page."""
        field = getattr(exc, "field", None)
        reason = getattr(exc, "reason", str(exc))
        slot = self.slot_for(field) if field and not _fragment_rerun() else None
        if slot is not None:
            slot.error(f"{prefix}{reason}", icon=":material/error:")
        else:  # a fragment rerun may only draw inside itself
            where = f"`{field}`: " if field else ""
            (st if _fragment_rerun() else self.top).error(f"{prefix}{where}{reason}", icon=":material/error:")


def users_follow_tasks(base: Scenario, changes: dict) -> dict:
    """When the tasks (one user each) change, keep every per-user value with its task."""
    if "tasks" not in changes:
        return changes
    old, new = list(base.tasks), list(changes["tasks"])
    w = base.wireless
    out = {**changes, "wireless.num_users": len(new)}

    def follow(values, fill):
        by_task = dict(zip(old, values))
        return [by_task.get(t, fill) for t in new]

    if w.distances_m is not None:
        out["wireless.distances_m"] = follow(w.distances_m, (w.d_min_m + w.d_max_m) / 2)
        if w.angles_deg is not None:
            out["wireless.angles_deg"] = follow(w.angles_deg, 0.0)
    if isinstance(w.tx_power_w, list):
        out["wireless.tx_power_w"] = follow(w.tx_power_w, max(w.tx_power_w))
    if w.target_user is not None:
        target = old[w.target_user]
        out["wireless.target_user"] = new.index(target) if target in new else (0 if new and w.attack == "targeted" else None)
    if base.fuse is not None:
        out["fuse"] = [t for t in base.fuse if t in new] or None
    return out
