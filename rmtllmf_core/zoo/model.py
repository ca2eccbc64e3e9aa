"""The open_clip side: register our model configs, create models, preprocess images."""
from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from typing import Mapping

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


# ---------------------------------------------------------------- the forward pass with given parameters

def _pools_class_token(encoder: torch.nn.Module) -> bool:
    """An open_clip VisionTransformer whose output reads the class token of the last block alone
    (pool 'tok', no attentional pool, plain self-attention blocks): `features` may skip the rest."""
    try:
        from open_clip.transformer import ResidualAttentionBlock, Transformer, VisionTransformer
    except ImportError:
        return False
    if not (isinstance(encoder, VisionTransformer) and hasattr(encoder, "_embeds") and hasattr(encoder, "_pool")):
        return False
    blocks = getattr(encoder.transformer, "resblocks", ())
    return (getattr(encoder, "pool_type", None) == "tok" and getattr(encoder, "attn_pool", None) is None
            and not encoder.output_tokens and type(encoder.transformer) is Transformer
            and encoder.transformer.batch_first and not encoder.transformer.grad_checkpointing
            and len(blocks) > 0
            and all(type(b) is ResidualAttentionBlock and not hasattr(b, "ln_1_kv") for b in blocks))


class _ClassTokenForward(torch.nn.Module):
    """The encoder's own forward pass, except that its last block computes its attention query,
    residuals and MLP for the class token only: the pooled output reads no other token there, so
    the features are the same (up to float rounding, see tests) for a sixth less work on the tiny
    zoo (4 blocks of 17 tokens; about a twelfth less on ViT-B/32). Keys, values and every earlier
    block still see all tokens. Parameters are the encoder's, under the prefix 'visual.'."""

    def __init__(self, visual: torch.nn.Module):
        super().__init__()
        self.visual = visual

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        visual = self.visual
        x = visual._embeds(images)
        *blocks, last = visual.transformer.resblocks
        for block in blocks:
            x = block(x)
        kv = last.ln_1(x)
        y = x[:, :1] + last.ls_1(last.attention(q_x=kv[:, :1], k_x=kv, v_x=kv))
        y = y + last.ls_2(last.mlp(last.ln_2(y)))
        pooled, _ = visual._pool(y)
        return pooled if visual.proj is None else pooled @ visual.proj


def features(encoder: torch.nn.Module, params: Mapping[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """encoder(images) with `params` in place of its parameters (`torch.func.functional_call`, no
    copy of the model), through `_ClassTokenForward` where the encoder pools its class token.
    Not normalised; the caller holds `module_lock(encoder)`."""
    if _pools_class_token(encoder):
        return torch.func.functional_call(_ClassTokenForward(encoder), {f"visual.{k}": v for k, v in params.items()},
                                          (images,))
    return torch.func.functional_call(encoder, params, (images,))
