"""Nothing lost: kill a worker process in the middle of a sweep, start again, and every finished
point is still in the shared cache folder while the rest resumes.

The worker is this file run as a script (`python tests/test_resume.py CACHE_DIR [--stall-at N]`)
on the micro zoo: it runs a 6-point SNR sweep whose every point is one cached `run`. With
`--stall-at N` it hangs inside the N-th computation (after the earlier points were stored), and
the test SIGKILLs it there: no clean-up, no chance to flush anything.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
POWERS_DBM = [-140.0, -130.0, -120.0, -110.0, -100.0, -90.0]


def worker(cache_dir: str, stall_at: int | None) -> None:
    import torch

    torch.set_num_threads(1)
    from micro_zoo import make_micro_zoo

    from rmtllmf_core.experiment import pipeline
    from rmtllmf_core.studies import sweeps
    from rmtllmf_core.cache import ResultCache
    from rmtllmf_core.experiment.presets import preset_scenario

    zoo = make_micro_zoo(n_tasks=3)
    pipeline.register_zoo(zoo)
    cache = ResultCache(cache_dir)
    base = preset_scenario("paper_worst_sum_rate", tasks=zoo.task_names, zoo=zoo.name).replace(
        **{"evaluation.samples_per_task": 40})
    points = sweeps.snr_points(base, POWERS_DBM, ["worst_sum_rate"], ["none"])
    print("cached", json.dumps([pipeline.cached(s, cache=cache) is not None for _, s in points]), flush=True)

    computed = []
    real_compute = pipeline.compute

    def compute(scenario, engine, **kw):
        computed.append(scenario.key)
        if stall_at is not None and len(computed) == stall_at:
            print("stalled", flush=True)
            time.sleep(120)  # killed here, mid-computation
        return real_compute(scenario, engine, **kw)

    pipeline.compute = compute

    def progress(fraction, message):
        print("done", message, flush=True)

    rows = sweeps.snr_sweep(base, POWERS_DBM, ["worst_sum_rate"], ["none"], cache=cache, progress=progress)
    print("computed", len(computed), flush=True)
    print("rows", json.dumps(rows), flush=True)


def start(cache_dir: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), str(cache_dir), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))


def read_until(proc: subprocess.Popen, prefix: str, timeout: float = 240.0) -> list[str]:
    lines, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
        if line.startswith(prefix):
            return lines
    proc.kill()
    raise AssertionError(f"worker never printed {prefix!r}; got {lines}; stderr: {proc.stderr.read()[-2000:]}")


@pytest.mark.slow
def test_killed_sweep_keeps_finished_points_and_resumes(tmp_path):
    cache_dir = tmp_path / "shared-cache"

    first = start(cache_dir, "--stall-at", "3")
    lines = read_until(first, "stalled")
    assert lines[0] == "cached " + json.dumps([False] * 6)
    assert [l for l in lines if l.startswith("done")] == ["done 1/6", "done 2/6"]
    first.send_signal(signal.SIGKILL)           # mid-way through point 3, inside the engine
    first.wait(30)
    assert first.returncode == -signal.SIGKILL
    assert os.stat(cache_dir).st_mode & 0o777 == 0o700

    second = start(cache_dir)
    lines = read_until(second, "rows")
    second.wait(60)
    assert second.returncode == 0, second.stderr.read()[-2000:]
    # the two finished points survived the kill; the one in flight was not half-stored
    assert lines[0] == "cached " + json.dumps([True, True, False, False, False, False])
    assert "computed 4" in lines                # only the missing points were computed
    rows = json.loads(lines[-1][len("rows "):])
    assert [r["jammer_power_dbm"] for r in rows] == POWERS_DBM
    assert all(0.0 <= r["avg_normalized"] <= 2.0 for r in rows)

    third = start(cache_dir)                    # and now the whole sweep is a cache hit
    lines = read_until(third, "rows")
    third.wait(60)
    assert lines[0] == "cached " + json.dumps([True] * 6) and "computed 0" in lines
    assert json.loads(lines[-1][len("rows "):]) == rows


if __name__ == "__main__":
    args = sys.argv[1:]
    stall = int(args[args.index("--stall-at") + 1]) if "--stall-at" in args else None
    worker(args[0], stall)
