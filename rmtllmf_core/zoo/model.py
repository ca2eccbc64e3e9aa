"""The open_clip side: register our model configs, create models, preprocess images."""
from __future__ import annotations

import json
import logging
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F

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

@dataclass(frozen=True)
class _VitSpec:
    """What `_vit_features` needs to know of an open_clip VisionTransformer beyond its parameters."""
    patch: tuple[int, int]  # conv1's stride (= its kernel: one token per patch)
    width: int
    heads: int
    layers: int
    eps: float
    quick_gelu: bool
    layer_scale: bool
    project: bool


def _vit_spec(encoder: torch.nn.Module) -> _VitSpec | None:
    """The spec of a plain open_clip VisionTransformer whose output reads the class token of the last
    block alone (pool 'tok', LayerNorm after the blocks, no attentional pool, plain pre-norm self-attention
    blocks with packed q/k/v, no dropout): `_vit_features` computes its features. None for any other
    encoder, which then runs its own forward."""
    try:
        from open_clip.transformer import LayerNorm, LayerScale, QuickGELU, ResidualAttentionBlock, Transformer, \
            VisionTransformer
    except ImportError:
        return None
    if not (isinstance(encoder, VisionTransformer) and hasattr(encoder, "_embeds") and hasattr(encoder, "_pool")):
        return None
    blocks = list(getattr(encoder.transformer, "resblocks", ()))
    plain = (getattr(encoder, "pool_type", None) == "tok" and getattr(encoder, "attn_pool", None) is None
             and not getattr(encoder, "final_ln_after_pool", False) and not encoder.output_tokens
             and type(encoder.transformer) is Transformer and encoder.transformer.batch_first
             and not encoder.transformer.grad_checkpointing and len(blocks) > 0
             and encoder.conv1.bias is None and encoder.conv1.stride == encoder.conv1.kernel_size
             and encoder.conv1.padding == (0, 0) and type(encoder.patch_dropout) is torch.nn.Identity)
    if not plain:
        return None
    norms = [encoder.ln_pre, encoder.ln_post] + [n for b in blocks for n in (b.ln_1, b.ln_2)]
    acts = {type(b.mlp.gelu) for b in blocks}
    scales = {(type(b.ls_1), type(b.ls_2)) for b in blocks}
    ok = (all(type(b) is ResidualAttentionBlock and not hasattr(b, "ln_1_kv") and b.attn.batch_first
              and b.attn._qkv_same_embed_dim and b.attn.in_proj_bias is not None and b.attn.bias_k is None
              and not b.attn.add_zero_attn and b.attn.dropout == 0.0 for b in blocks)
          and all(type(n) is LayerNorm and n.elementwise_affine and n.bias is not None and n.eps == norms[0].eps
                  for n in norms)
          and (acts == {QuickGELU} or (acts == {torch.nn.GELU} and blocks[0].mlp.gelu.approximate == "none"))
          and scales in ({(torch.nn.Identity, torch.nn.Identity)}, {(LayerScale, LayerScale)})
          and all(not isinstance(b.ls_1, LayerScale) or not (b.ls_1.inplace or b.ls_2.inplace) for b in blocks))
    if not ok:
        return None
    return _VitSpec(patch=tuple(encoder.conv1.stride), width=encoder.conv1.out_channels, heads=blocks[0].attn.num_heads,
                    layers=len(blocks), eps=norms[0].eps, quick_gelu=acts == {QuickGELU},
                    layer_scale=scales == {(LayerScale, LayerScale)}, project=encoder.proj is not None)


_SPECS: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[_VitSpec | None]]" = weakref.WeakKeyDictionary()


def _spec_of(encoder: torch.nn.Module) -> _VitSpec | None:
    """`_vit_spec`, once per encoder (a dropped encoder's entry goes with it)."""
    hit = _SPECS.get(encoder)
    if hit is None:
        hit = _SPECS[encoder] = (_vit_spec(encoder),)
    return hit[0]


def _pools_class_token(encoder: torch.nn.Module) -> bool:
    """Whether `features` computes this encoder's features itself (`_vit_features`)."""
    return _spec_of(encoder) is not None


def _vit_features(spec: _VitSpec, p: Mapping[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """The open_clip VisionTransformer forward pass written as plain tensor functions of the parameters
    `p` (the encoder's names), with one saving: the last block computes its attention query, residuals
    and MLP for the class token alone, the only token the pooled output reads (keys, values and every
    earlier block still see all tokens). The same arithmetic as the module's (up to float rounding, see
    tests) without swapping parameters into modules or nn.MultiheadAttention's Python path: a tenth of
    a realignment step on the tiny zoo (20.1 -> 18.1 ms a step of 16 samples, 2 threads); an evaluation
    of 8 x 200 images takes 0.32 s against the module's 0.42 s (with `_attention`)."""
    w, h = spec.width, spec.heads
    act = (lambda x: x * torch.sigmoid(1.702 * x)) if spec.quick_gelu else F.gelu
    x = F.conv2d(images, p["conv1.weight"], stride=spec.patch).flatten(2).transpose(1, 2)  # [B, grid^2, W]
    cls = p["class_embedding"].to(x.dtype).expand(x.shape[0], 1, w)
    x = torch.cat([cls, x], dim=1) + p["positional_embedding"].to(x.dtype)
    x = F.layer_norm(x, (w,), p["ln_pre.weight"], p["ln_pre.bias"], spec.eps)
    for i in range(spec.layers):
        b = f"transformer.resblocks.{i}."
        last = i == spec.layers - 1
        y = F.layer_norm(x, (w,), p[b + "ln_1.weight"], p[b + "ln_1.bias"], spec.eps)
        wqkv, bqkv = p[b + "attn.in_proj_weight"], p[b + "attn.in_proj_bias"]
        if last:  # the query of the class token alone
            q = F.linear(y[:, :1], wqkv[:w], bqkv[:w])
            k, v = F.linear(y, wqkv[w:], bqkv[w:]).chunk(2, dim=-1)
        else:
            q, k, v = F.linear(y, wqkv, bqkv).chunk(3, dim=-1)
        q, k, v = (t.unflatten(-1, (h, w // h)).transpose(1, 2) for t in (q, k, v))  # [B, heads, tokens, W/heads]
        a = _attention(q, k, v).transpose(1, 2).flatten(2)
        a = F.linear(a, p[b + "attn.out_proj.weight"], p[b + "attn.out_proj.bias"])
        if spec.layer_scale:
            a = a * p[b + "ls_1.gamma"]
        x = (x[:, :1] if last else x) + a
        y = F.layer_norm(x, (w,), p[b + "ln_2.weight"], p[b + "ln_2.bias"], spec.eps)
        y = F.linear(act(F.linear(y, p[b + "mlp.c_fc.weight"], p[b + "mlp.c_fc.bias"])),
                     p[b + "mlp.c_proj.weight"], p[b + "mlp.c_proj.bias"])
        if spec.layer_scale:
            y = y * p[b + "ls_2.gamma"]
        x = x + y
    pooled = F.layer_norm(x[:, 0], (w,), p["ln_post.weight"], p["ln_post.bias"], spec.eps)
    return pooled @ p["proj"] if spec.project else pooled


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v. Without gradients, as three plain products: on a ViT's short sequences
    (17 tokens on the tiny zoo) torch's fused CPU kernel takes 3x their time; with gradients the fused
    kernel's backward is the faster one."""
    if torch.is_grad_enabled():
        return F.scaled_dot_product_attention(q, k, v)
    return ((q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)).softmax(-1) @ v


def features(encoder: torch.nn.Module, params: Mapping[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """encoder(images) with `params` in place of its parameters: `_vit_features` where the encoder is a
    plain open_clip ViT that pools its class token, else `torch.func.functional_call` (no copy of the
    model). Not normalised; the caller holds `module_lock(encoder)`."""
    spec = _spec_of(encoder)
    if spec is not None:
        return _vit_features(spec, params, images)
    return torch.func.functional_call(encoder, params, (images,))
