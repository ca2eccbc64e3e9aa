"""One way to validate configs: frozen pydantic models whose errors become `InputError`.

Every config of the engine derives from `Config`: immutable, unknown keys refused, NaN and
infinities refused, and `parse()` turns pydantic's error into one message naming the field.
"""
from __future__ import annotations

import re
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import InputError

T = TypeVar("T", bound="Config")
_FIELD_PREFIX = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*): (.+)$", re.S)


class Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, validate_default=True)

    @classmethod
    def parse(cls: type[T], data: Any, *, field: str = "") -> T:
        """Validate plain data (a dict from JSON, a URL, a widget) into this config."""
        if isinstance(data, cls):
            return data
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise input_error(exc, field) from None

    def to_dict(self) -> dict:
        """Plain JSON-ready data; `parse(to_dict())` gives back an equal value."""
        return self.model_dump(mode="json")


def input_error(exc: ValidationError, prefix: str = "") -> InputError:
    """The first problem of a pydantic error, as an InputError naming the field path."""
    first = exc.errors(include_url=False)[0]
    parts = [prefix] if prefix else []
    parts += [str(p) for p in first.get("loc", ())]
    field = ".".join(parts) or (prefix or "value")
    message = first.get("msg", "invalid value")
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    named = _FIELD_PREFIX.match(message)
    if named:  # a cross-field check says which field it is about: "fuse: must ..."
        field = ".".join(parts + [named.group(1)])
        message = named.group(2)
    given = first.get("input")
    if first.get("type") not in ("missing", "extra_forbidden") and not isinstance(given, (dict, list)):
        text = repr(given)
        message += f" (got {text[:60] + '...' if len(text) > 60 else text})"
    return InputError(field, message)


def read_json_object(path: str, field: str = "scenario") -> dict:
    """A JSON object from a file ('-' = standard input); unreadable or non-object input is an InputError."""
    import json
    import sys
    from pathlib import Path

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise InputError(field, f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(field, f"{path} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise InputError(field, "must be a JSON object")
    return data
