"""Shared test setup: no test ever writes to the user's real result cache."""
import os
import tempfile

# Set before any engine module creates its default cache.
os.environ.setdefault("RMTLLMF_CACHE_DIR", tempfile.mkdtemp(prefix="rmtllmf-test-cache-"))
# Idle OpenMP threads sleep instead of spinning: on a busy 2-core machine spinning threads
# slow small torch ops by orders of magnitude (set before torch is imported; children inherit it).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
