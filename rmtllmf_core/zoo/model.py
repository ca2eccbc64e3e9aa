"""The open_clip side: register our model configs, create models, preprocess images."""
from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import numpy as np
import torch

from . import BUILTIN

TINY_DIR = BUILTIN["tiny"]
TINY_MODEL = "rmtllmf-tiny"
TINY_CONFIG = TINY_DIR / f"{TINY_MODEL}.json"

# open_clip's default (OpenAI CLIP) normalisation; our images are 32x32 already, no resize
MEAN = torch.tensor((0.48145466, 0.4578275, 0.40821073)).view(1, 3, 1, 1)
STD = torch.tensor((0.26862954, 0.26130258, 0.27577711)).view(1, 3, 1, 1)

_registered: set[str] = set()


def register_config(path: Path) -> str:
    """Register an open_clip model config file (its stem is the model name); returns the name."""
    import open_clip

    path = Path(path)
    key = str(path.resolve())
    if key not in _registered:
        open_clip.add_model_config(path)
        _registered.add(key)
    return path.stem


def read_config(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# open_clip initialises weights from torch's global RNG, which every thread shares: model construction
# takes this lock, so a zoo loading on a background thread (the app's warm-up) cannot shift the draws
# of a seeded init running beside it
INIT_LOCK = threading.RLock()


def create(model_name: str, pretrained: str | None = None, seed: int | None = None) -> torch.nn.Module:
    """open_clip.create_model on CPU; with `seed`, the random init is deterministic. Either way the
    caller's global RNG stream is left as it was."""
    import open_clip

    prev = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # "no pretrained weights loaded" is expected here
    try:
        with INIT_LOCK, torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            model = open_clip.create_model(model_name, pretrained=pretrained, device="cpu")
    finally:
        logging.getLogger().setLevel(prev)
    return model.eval()


def tokenizer(model_name: str):
    import open_clip

    return open_clip.get_tokenizer(model_name)


def to_input(images_u8: np.ndarray, mean: torch.Tensor = MEAN, std: torch.Tensor = STD) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> normalised float32 [N, 3, H, W]."""
    x = torch.from_numpy(np.ascontiguousarray(images_u8)).permute(0, 3, 1, 2).float().div_(255.0)
    return (x - mean) / std
