"""R-MTLLMF Studio core engine.

scenario -> wireless -> perturb -> fuse -> defend -> evaluate; see README and docs.
"""
import os

# Idle OpenMP threads sleep instead of spinning. On a small shared host (the app's 2 cores, a
# server also running other sessions) spinning threads slow small torch ops by orders of
# magnitude. Only takes effect when this package is imported before torch, as the app and CLI do.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .errors import AssetError, CapExceeded, InputError, RmtllmfError  # noqa: E402

ENGINE_VERSION = "0.4.0"

__all__ = ["AssetError", "CapExceeded", "ENGINE_VERSION", "InputError", "RmtllmfError"]
