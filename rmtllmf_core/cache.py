"""The result cache: diskcache on a private folder, values stored as JSON, never pickled.

diskcache's default Disk unpickles whatever a row says is a pickle, so anyone who can write the
folder could run code (CVE-2025-69872). `SafeJSONDisk` writes zlib-compressed JSON and refuses
every row that is not raw bytes; a refused, corrupted or unreadable entry reads as a miss and
is recomputed. Writes that fail (a full disk) are reported, never raised.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import zlib
from pathlib import Path
from typing import Any

import diskcache
from diskcache.core import MODE_BINARY, MODE_RAW, UNKNOWN

log = logging.getLogger(__name__)

DEFAULT_SIZE_LIMIT_BYTES = 2 * 2**30
_ENV_DIR = "RMTLLMF_CACHE_DIR"


class UnsafeEntry(Exception):
    """A cache row that is not ours (a pickle, a non-string key): refused, treated as a miss."""


class SafeJSONDisk(diskcache.Disk):
    def put(self, key):
        if type(key) is not str:
            raise TypeError("cache keys are strings")
        return key, True

    def get(self, key, raw):
        if not raw:
            raise UnsafeEntry("pickled key")
        return key

    def store(self, value, read, key=UNKNOWN):
        if read:
            raise TypeError("streams are not cached")
        data = zlib.compress(json.dumps(value, separators=(",", ":")).encode(), 3)
        return super().store(data, False, key=key)

    def fetch(self, mode, filename, value, read):
        if mode not in (MODE_RAW, MODE_BINARY) or read:
            raise UnsafeEntry(f"row of mode {mode}")
        return json.loads(zlib.decompress(super().fetch(mode, filename, value, False)))


def default_cache_dir() -> Path:
    if os.environ.get(_ENV_DIR):
        return Path(os.environ[_ENV_DIR]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "rmtllmf-studio"


class ResultCache:
    """JSON results by key; private (0700), bounded (LRU eviction), shared safely between processes."""

    def __init__(self, directory: str | os.PathLike | None = None, size_limit_bytes: int = DEFAULT_SIZE_LIMIT_BYTES):
        self.directory = Path(directory) if directory else default_cache_dir()
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)  # mkdir's mode is masked by umask; and an old folder may be wider
        self._cache = diskcache.Cache(
            str(self.directory),
            disk=SafeJSONDisk,
            size_limit=int(size_limit_bytes),
            eviction_policy="least-recently-used",
            timeout=30,  # seconds to wait on SQLite's lock when another process writes
        )
        self.last_error: str | None = None

    def get(self, key: str) -> Any | None:
        try:
            return self._cache.get(key, default=None, retry=True)
        except (UnsafeEntry, zlib.error, ValueError, OSError, sqlite3.DatabaseError) as exc:
            log.warning("cache entry %s unreadable (%s): recomputing", key[:12], exc)
            self.discard(key)
            return None

    def set(self, key: str, value: Any) -> bool:
        """Store; False (and `last_error` set) when the disk refuses, e.g. when it is full."""
        try:
            self._cache.set(key, value, retry=True)
            self.last_error = None
            return True
        except (OSError, sqlite3.DatabaseError) as exc:
            self.last_error = f"result not cached ({exc}); free space in {self.directory}"
            log.warning(self.last_error)
            return False

    def discard(self, key: str) -> None:
        try:
            self._cache.delete(key, retry=True)
        except (OSError, sqlite3.DatabaseError):
            pass

    def __contains__(self, key: str) -> bool:
        try:
            return key in self._cache
        except (OSError, sqlite3.DatabaseError):
            return False

    def __len__(self) -> int:
        return len(self._cache)

    def volume_bytes(self) -> int:
        return self._cache.volume()

    def close(self) -> None:
        self._cache.close()
