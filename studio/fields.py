"""Widget bounds, choices and help text read from the Scenario's pydantic fields.

The configs in `rmtllmf_core` are the single source of truth for ranges; the app never repeats
a number that a Field already states.
"""
from __future__ import annotations

import typing
from functools import lru_cache

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo


def _model_of(annotation) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):  # Optional[Model] and friends
        model = _model_of(arg)
        if model is not None:
            return model
    return None


def _lookup(model: type[BaseModel], name: str) -> FieldInfo:
    if name in model.model_fields:
        return model.model_fields[name]
    for info in model.model_fields.values():
        if info.alias == name:
            return info
    raise KeyError(name)


@lru_cache(maxsize=None)
def field_info(root: type[BaseModel], path: str) -> FieldInfo:
    """The FieldInfo of a dotted path, e.g. field_info(Scenario, "fusion.lambda")."""
    model: type[BaseModel] | None = root
    info: FieldInfo | None = None
    for part in path.split("."):
        if model is None:
            raise KeyError(path)
        info = _lookup(model, part)
        model = _model_of(info.annotation)
    assert info is not None
    return info


def bounds(root: type[BaseModel], path: str) -> dict[str, float]:
    """{"min_value": .., "max_value": ..} from ge/gt/le/lt constraints (exclusive ends kept as the
    widget's end: the Scenario itself refuses the end value with a message)."""
    out: dict[str, float] = {}
    for meta in field_info(root, path).metadata:
        if isinstance(meta, (at.Ge, at.Gt)):
            out["min_value"] = getattr(meta, "ge", getattr(meta, "gt", None))
        elif isinstance(meta, (at.Le, at.Lt)):
            out["max_value"] = getattr(meta, "le", getattr(meta, "lt", None))
        elif isinstance(meta, at.Interval):
            lo = meta.ge if meta.ge is not None else meta.gt
            hi = meta.le if meta.le is not None else meta.lt
            if lo is not None:
                out["min_value"] = lo
            if hi is not None:
                out["max_value"] = hi
    return out


def choices(root: type[BaseModel], path: str) -> tuple:
    """The allowed values of a Literal field (or of the items of a tuple of Literals)."""
    annotation = field_info(root, path).annotation
    return _literal_args(annotation)


def _literal_args(annotation) -> tuple:
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    for arg in typing.get_args(annotation):
        found = _literal_args(arg)
        if found:
            return found
    return ()


def help_text(root: type[BaseModel], path: str) -> str | None:
    return field_info(root, path).description
