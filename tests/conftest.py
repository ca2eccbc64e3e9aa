"""Shared test setup: no test ever writes to the user's real result cache."""
import os
import tempfile

import pytest

# Set before any engine module creates its default cache.
os.environ.setdefault("RMTLLMF_CACHE_DIR", tempfile.mkdtemp(prefix="rmtllmf-test-cache-"))
# Idle OpenMP threads sleep instead of spinning: on a busy 2-core machine spinning threads
# slow small torch ops by orders of magnitude (set before torch is imported; children inherit it).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GOMP_SPINCOUNT", "10000")  # as rmtllmf_core sets it: a short spin before sleeping
# The app's runs compute in this process, where tests can count and patch them (and registered test
# zoos exist); the engine processes have their own tests (test_compute.py).
os.environ.setdefault("RMTLLMF_ENGINE_PROCESSES", "false")
# ... and a test server does not compute the Story's runs in the background on its start (the tests that
# want them cached compute them)
os.environ.setdefault("RMTLLMF_WARM_ON_START", "false")


@pytest.fixture(scope="session")
def registered_micro_zoo():
    """The 3-task micro zoo, registered with the engine under its own name (shared by test files)."""
    from micro_zoo import make_micro_zoo
    from rmtllmf_core.experiment import pipeline

    zoo = make_micro_zoo(n_tasks=3)
    pipeline.register_zoo(zoo)
    return zoo
