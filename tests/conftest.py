"""Shared test setup: no test ever writes to the user's real result cache."""
import os
import tempfile

# Set before any engine module creates its default cache.
os.environ.setdefault("RMTLLMF_CACHE_DIR", tempfile.mkdtemp(prefix="rmtllmf-test-cache-"))
