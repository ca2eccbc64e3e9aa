"""Checks for what people upload: a scenario file, and their own task vectors.

- `load_scenario_json(data)`: size limit, UTF-8 JSON without NaN/Infinity, then `Scenario.parse`
  (the one validation place) and the host's caps. A result file exported by the app (which
  carries its scenario under "scenario") is accepted too.
- `load_task_vector(data, zoo)`: size limit, **safetensors only** (the header is read and
  checked as plain JSON before any tensor is built; pickles and torch.save archives are refused
  by their first bytes and never unpickled), tensor names and shapes equal to the zoo's encoder
  (`base_state`), floating dtypes only, every value finite and of a sane magnitude.

Every refusal is an InputError (CapExceeded for an oversize file) naming the file or the tensor.
"""
from __future__ import annotations

import json
import math
from typing import Any, Mapping

import torch

from ..errors import CapExceeded, InputError

FLOAT_DTYPES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}
MAX_HEADER_BYTES = 16 * 2**20
DEFAULT_MAX_ABS = 1e4   # task vectors are small differences of weights; 1e4 is far beyond any real one


def _bytes_of(data: Any, max_bytes: int, field: str) -> bytes:
    """bytes / str / a file-like (Streamlit's UploadedFile): read at most max_bytes + 1."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    elif hasattr(data, "getvalue"):
        data = data.getvalue()
    elif hasattr(data, "read"):
        data = data.read(max_bytes + 1)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputError(field, f"expected the file's bytes (got {type(data).__name__})")
    data = bytes(data)
    if len(data) > max_bytes:
        raise CapExceeded(field, f"this host accepts files of at most {_size(max_bytes)} (got {_size(len(data))})")
    return data


def _size(n: int) -> str:
    for unit, scale in (("MB", 2**20), ("kB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _limits(lim):
    if lim is not None:
        return lim
    from .hosting import limits

    return limits()


# ---- scenario files -----------------------------------------------------------------------------

def load_scenario_json(data: Any, *, lim=None, field: str = "file"):
    """A Scenario from an uploaded JSON file (within the host's size limit and caps)."""
    from .hosting import check_scenario
    from ..experiment.presets import with_zoo_tasks
    from ..experiment.scenario import Scenario
    from ..zoo import BUILTIN

    lim = _limits(lim)
    raw = _bytes_of(data, lim.max_upload_bytes, field)
    try:
        payload = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = str(exc) if isinstance(exc, ValueError) and "JSON allows" in str(exc) else type(exc).__name__
        raise InputError(field, f"not a JSON scenario file ({reason[:80]})") from None
    if not isinstance(payload, dict):
        raise InputError(field, f"a scenario file holds one JSON object (got {type(payload).__name__})")
    if isinstance(payload.get("scenario"), dict) and "tasks" not in payload:
        payload = payload["scenario"]  # a result file exported from the app carries its scenario
    zoo = payload.get("zoo", "tiny")
    if "tasks" not in payload and isinstance(zoo, str) and zoo in BUILTIN:  # every task of an embedded zoo,
        payload = with_zoo_tasks(payload)                                    # as the CLI reads such a file
    scenario = Scenario.parse(payload)
    check_scenario(scenario, lim)
    return scenario


# ---- task vectors -------------------------------------------------------------------------------

def _sniff_unsafe(data: bytes) -> str | None:
    """What a file that is not safetensors looks like (only used to word the refusal)."""
    if data[:1] == b"\x80" and len(data) > 1 and 2 <= data[1] <= 5:
        return "a Python pickle"
    if data[:4] == b"PK\x03\x04":
        return "a zip archive (torch.save)"
    return None


def _not_safetensors(data: bytes, field: str, why: str) -> InputError:
    unsafe = _sniff_unsafe(data)
    if unsafe:
        return InputError(field, f"this is {unsafe}; only .safetensors files are accepted (pickles can run code)")
    return InputError(field, f"not a safetensors file ({why})")


def read_safetensors_header(data: bytes, field: str = "file") -> tuple[dict, int]:
    """The header (name -> {dtype, shape, data_offsets}) and the byte offset of the data."""
    if len(data) < 10:
        raise _not_safetensors(data, field, "too short")
    n = int.from_bytes(data[:8], "little")
    if n < 2 or n > min(len(data) - 8, MAX_HEADER_BYTES) or data[8:9] != b"{":
        raise _not_safetensors(data, field, "bad header")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _not_safetensors(data, field, "header is not JSON") from None
    if not isinstance(header, dict):
        raise InputError(field, "not a safetensors file (header is not an object)")
    return header, 8 + n


def load_task_vector(data: Any, zoo_or_state: Any, *, kind: str = "task_vector", lim=None,
                     max_abs: float = DEFAULT_MAX_ABS, field: str = "file") -> dict[str, torch.Tensor]:
    """A user's task vector, checked against the zoo's encoder, as float32 tensors in its order.

    kind="task_vector": the file holds fine-tuned minus base weights; kind="finetuned": it holds
    the fine-tuned encoder's weights and the base is subtracted here."""
    if kind not in ("task_vector", "finetuned"):
        raise InputError("kind", f"must be 'task_vector' or 'finetuned' (got {kind!r:.40})")
    base: Mapping[str, torch.Tensor] = getattr(zoo_or_state, "base_state", zoo_or_state)
    lim = _limits(lim)
    raw = _bytes_of(data, lim.max_vector_upload_bytes, field)
    header, start = read_safetensors_header(raw, field)
    entries = {k: v for k, v in header.items() if k != "__metadata__"}

    missing = [k for k in base if k not in entries]
    unexpected = [k for k in entries if k not in base]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {missing[0]!r:.80})")
        if unexpected:
            parts.append(f"{len(unexpected)} not in the zoo's encoder (e.g. {unexpected[0]!r:.80})")
        raise InputError(field, "tensor names differ from the zoo's image encoder: " + "; ".join(parts))

    body = len(raw) - start
    for name, ref in base.items():
        entry = entries[name]
        where = f"{field}[{name}]"
        if not isinstance(entry, dict):
            raise InputError(where, "not a tensor entry")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in FLOAT_DTYPES:
            raise InputError(where, f"dtype must be one of {', '.join(FLOAT_DTYPES)} (got {str(dtype)[:20]!r})")
        if not (isinstance(shape, list) and all(type(s) is int and s >= 0 for s in shape)):
            raise InputError(where, "shape must be a list of non-negative integers")
        if tuple(shape) != tuple(ref.shape):
            raise InputError(where, f"shape {tuple(shape)} differs from the zoo's {tuple(ref.shape)}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
            raise InputError(where, "data_offsets must be two integers")
        lo, hi = offsets
        if not (0 <= lo <= hi <= body and hi - lo == math.prod(shape) * FLOAT_DTYPES[dtype]):
            raise InputError(where, "data_offsets do not match the shape and the file size")

    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    try:
        tensors = st_load(raw)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise InputError(field, f"not a valid safetensors file ({str(exc)[:80]})") from None

    out: dict[str, torch.Tensor] = {}
    for name, ref in base.items():
        t = tensors[name].to(torch.float32)
        where = f"{field}[{name}]"
        if not bool(torch.isfinite(t).all()):
            raise InputError(where, "contains NaN or infinite values (or values beyond float32)")
        if kind == "finetuned":
            t = t - ref.to(torch.float32)
        if t.numel() and float(t.abs().max()) > max_abs:
            raise InputError(where, f"values up to {float(t.abs().max()):.3g}; a task vector stays within "
                                    f"+-{max_abs:g} (did you upload the weights themselves? use kind='finetuned')")
        out[name] = t.contiguous()
    return out
