"""R-MTLLMF Studio core engine.

scenario -> wireless -> perturb -> fuse -> defend -> evaluate; see README and docs.
"""
from .errors import AssetError, CapExceeded, InputError, RmtllmfError

ENGINE_VERSION = "0.1.0"

__all__ = ["AssetError", "CapExceeded", "ENGINE_VERSION", "InputError", "RmtllmfError"]
