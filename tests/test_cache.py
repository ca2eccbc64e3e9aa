"""The result cache: JSON only, corrupted or forged rows read as misses, private folder, shared safely."""
import errno
import multiprocessing as mp
import os
import pickle
import sqlite3
import stat

import pytest

from rmtllmf_core.cache import ResultCache


@pytest.fixture
def cache(tmp_path):
    c = ResultCache(tmp_path / "c", size_limit_bytes=2**24)
    yield c
    c.close()


def test_hit_and_miss(cache):
    assert cache.get("k") is None
    value = {"a": [1.5, 2], "b": {"c": "x"}, "n": None}
    assert cache.set("k", value)
    assert cache.get("k") == value
    assert "k" in cache and len(cache) == 1


def test_large_values_round_trip_through_files(cache):
    value = {"m": [[float(i * j) for j in range(200)] for i in range(200)]}
    cache.set("big", value)
    assert cache.get("big") == value


def test_folder_is_private(tmp_path):
    d = tmp_path / "wide"
    d.mkdir(mode=0o777)
    os.chmod(d, 0o777)
    ResultCache(d).close()
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700


def _raw_db(cache):
    return sqlite3.connect(str(cache.directory / "cache.db"))


def test_forged_pickle_row_is_never_unpickled(cache, tmp_path):
    marker = tmp_path / "pwned"

    class Boom:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    cache.set("k", {"ok": 1})
    with _raw_db(cache) as db:  # an attacker with write access rewrites the row as a pickle
        db.execute("UPDATE Cache SET mode=4, value=? WHERE key='k'", (sqlite3.Binary(pickle.dumps(Boom())),))
    assert cache.get("k") is None
    assert not marker.exists()
    assert "k" not in cache  # the bad row was dropped so the result is recomputed


def test_corrupted_entry_reads_as_miss_then_recomputes(cache):
    cache.set("k", {"ok": 1})
    with _raw_db(cache) as db:
        db.execute("UPDATE Cache SET value=? WHERE key='k'", (sqlite3.Binary(b"\x00not zlib"),))
    assert cache.get("k") is None
    assert cache.set("k", {"ok": 2}) and cache.get("k") == {"ok": 2}


def test_full_disk_is_reported_not_raised(cache, monkeypatch):
    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache._cache, "set", full)
    assert cache.set("k", {"x": 1}) is False
    assert "No space left" in cache.last_error


def test_size_is_bounded(tmp_path):
    c = ResultCache(tmp_path / "small", size_limit_bytes=200_000)
    for i in range(60):
        c.set(f"k{i}", {"blob": os.urandom(8000).hex()})  # ~16 kB each, incompressible
    c._cache.cull()
    assert c.volume_bytes() < 400_000
    assert c.get("k59") is not None
    c.close()


def _writer(directory, start, n):
    c = ResultCache(directory)
    for i in range(start, start + n):
        c.set(f"k{i}", {"i": i})
    c.close()


@pytest.mark.slow
def test_two_processes_share_the_folder(tmp_path):
    d = tmp_path / "shared"
    ResultCache(d).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(d, s, 40)) for s in (0, 40)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    c = ResultCache(d)
    assert [c.get(f"k{i}")["i"] for i in range(80)] == list(range(80))
    c.close()
