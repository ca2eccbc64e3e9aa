"""Model zoos: the embedded tiny CLIP zoo and real open_clip zoos, all through one loader.

    from rmtllmf_core.zoo import load_zoo
    zoo = load_zoo("tiny")                 # the shipped default under assets/tiny
    x, y = zoo.split("digits", "test", 200)

The runtime's public face is this module: the built-in zoos (`BUILTIN`), a built-in zoo's card
without loading any weights (`builtin_card`), its sample sheets (`sample_sheets`), `load_zoo` and
the `Zoo` value. Building zoos (`build`, `clip`, `importer`, `pretext`, `train`, `evaluation`) is
the commands' business (`python -m rmtllmf_core zoo ...`); the app never imports those.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import AssetError
from .types import SPLITS, TaskInfo, Zoo

__all__ = ["BUILTIN", "CARD", "builtin_card", "builtin_fingerprint", "fingerprint", "sample_sheets", "load_zoo", "Zoo", "TaskInfo", "SPLITS",
           "TASK_NAMES"]

ASSETS = Path(__file__).resolve().parents[2] / "assets"
CARD = "card.json"
BUILTIN: dict[str, Path] = {"tiny": ASSETS / "tiny"}   # name -> directory; the only zoos a hosted app serves


def builtin_card(name: str) -> dict:
    """A built-in zoo's card (plain JSON: its tasks, titles, accuracies, samples) without loading weights."""
    if name not in BUILTIN:
        raise AssetError(name, f"not a built-in zoo; the built-in zoos are {', '.join(BUILTIN)}")
    path = BUILTIN[name] / CARD
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
        card["tasks"].items()
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise AssetError(str(path), f"the zoo card is missing or unreadable ({type(exc).__name__}); "
                                    f"rebuild the zoo: python -m rmtllmf_core zoo build {name}") from None
    return card


def fingerprint(parts: list[bytes]) -> str:
    """A zoo's fingerprint from the bytes that define it (a zoo directory's: its card, which holds every
    file's hash): it joins every cache key."""
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()[:16]


def builtin_fingerprint(name: str) -> str:
    """A built-in zoo's fingerprint from its card alone, without loading any weights (the loader gives the
    same value; a card whose files do not match it fails when the zoo loads)."""
    if name not in BUILTIN:
        raise AssetError(name, f"not a built-in zoo; the built-in zoos are {', '.join(BUILTIN)}")
    path = BUILTIN[name] / CARD
    try:
        return fingerprint([path.read_bytes()])
    except OSError as exc:
        raise AssetError(str(path), f"the zoo card is unreadable ({type(exc).__name__}); "
                                    f"rebuild the zoo: python -m rmtllmf_core zoo build {name}") from None


def sample_sheets(name: str, card) -> dict[str, Path]:
    """task -> its sample sheet image (one row per class) of a built-in zoo, for the tasks that have one."""
    root = BUILTIN.get(name)
    if root is None:
        return {}
    return {t: root / meta["file"] for t, meta in dict(card.get("samples") or {}).items()
            if t in card.get("tasks", {}) and (root / meta["file"]).is_file()}


def __getattr__(name):  # lazy: importing the package must not pay for torch/open_clip
    if name == "load_zoo":
        from .loader import load_zoo

        return load_zoo
    if name == "TASK_NAMES":
        from .tasks import TASK_NAMES

        return TASK_NAMES
    raise AttributeError(name)
