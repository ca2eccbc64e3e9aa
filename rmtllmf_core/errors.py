"""Errors of ours: every bad input and every bad asset surfaces as one of these.

The app and the CLI catch `RmtllmfError` and show its message; anything else is a bug.
"""
from __future__ import annotations


class RmtllmfError(Exception):
    """Base class of every error the engine raises on purpose."""


class InputError(RmtllmfError, ValueError):
    """A value that reaches the engine is out of type or range.

    `field` is the dotted path of the offending value (e.g. ``wireless.tx_power_w``);
    the message says what is allowed.
    """

    def __init__(self, field: str, message: str):
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}")


class AssetError(RmtllmfError):
    """A zoo file is missing, truncated or does not match its card; says how to rebuild."""

    def __init__(self, path: str, message: str):
        self.path = path
        self.reason = message
        super().__init__(f"{path}: {message}")


class CapExceeded(InputError):
    """A request is valid but larger than this host allows (see the host caps)."""
