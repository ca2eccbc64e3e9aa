"""Training and evaluation primitives of the zoo build: contrastive pretraining, zero-shot heads,
fine-tuning with a frozen head, accuracy, task arithmetic. Pure functions of their inputs and seeds.
Data stays uint8 on the CPU; each batch goes to the model's device (a GPU rebuild: `--device cuda`).
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .model import features
from .model import to_input

EMBEDDING_NAMES = ("token_embedding", "positional_embedding", "class_embedding")


def cosine_lr(step: int, total: int, warmup: int, lr: float, final_frac: float = 0.0) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return lr * (final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * p)))


# the image encoder's stem: what reads the pixels and positions before the first block
STEM_PREFIXES = ("conv1.", "class_embedding", "positional_embedding", "ln_pre.")


def _param_groups(named, wd, stem_lr_scale: float = 1.0):
    """AdamW groups (no decay on norms, biases, embeddings); each has an `lr_scale`, which is
    `stem_lr_scale` for the stem's parameters and 1 for the rest."""
    groups = {}
    for n, p in named:
        if not p.requires_grad:
            continue
        no_decay = p.ndim < 2 or any(e in n for e in EMBEDDING_NAMES) or "ln" in n or "bias" in n or "logit_scale" in n
        scale = stem_lr_scale if n.startswith(STEM_PREFIXES) else 1.0
        groups.setdefault((scale != 1.0, no_decay), {"params": [], "weight_decay": 0.0 if no_decay else wd,
                                                     "lr_scale": scale})["params"].append(p)
    return [groups[k] for k in sorted(groups) if groups[k]["params"]]


def image_features(visual: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """visual(x) through `model.features`, whose last block works on the class token alone (the
    only token the output reads): the same features and gradients for a sixth less training time."""
    return features(visual, dict(visual.named_parameters()), x)


def pretrain(model, images_u8: np.ndarray, tokens: torch.Tensor, *, steps: int, batch: int, lr: float,
             wd: float, warmup: int, seed: int, progress: bool = True, desc: str = "pretrain") -> list[float]:
    """Contrastive (CLIP) pretraining on image-caption pairs; returns the loss curve."""
    model.train()
    device = model.logit_scale.device
    opt = torch.optim.AdamW(_param_groups(model.named_parameters(), wd), lr=lr, betas=(0.9, 0.98), eps=1e-6)
    g = np.random.Generator(np.random.PCG64(seed))
    n = len(images_u8)
    order = g.permutation(n)
    pos = 0
    losses = []
    bar = tqdm(range(steps), desc=desc, disable=not progress, mininterval=1.0)
    for step in bar:
        if pos + batch > n:
            order, pos = g.permutation(n), 0
        idx = np.sort(order[pos:pos + batch])
        pos += batch
        for grp in opt.param_groups:
            grp["lr"] = cosine_lr(step, steps, warmup, lr)
        img = to_input(images_u8[idx]).to(device)
        txt = tokens[idx].to(device)
        fi = F.normalize(image_features(model.visual, img), dim=-1)
        ft = F.normalize(model.encode_text(txt), dim=-1)
        scale = model.logit_scale.exp()
        logits = scale * fi @ ft.T
        target = torch.arange(len(idx), device=device)
        # captions can repeat inside a batch: treat identical captions as positives too
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(float(loss.detach()))
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    model.eval()
    return losses


@torch.no_grad()
def zero_shot_heads(model, tokenizer, class_names: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """[C, D] unit rows: the mean normalised text embedding of each class over the templates."""
    rows = []
    for c in class_names:
        t = tokenizer([tpl.format(c) for tpl in templates]).to(model.logit_scale.device)
        e = F.normalize(model.encode_text(t).float(), dim=-1).mean(0)
        rows.append(F.normalize(e, dim=-1))
    return torch.stack(rows).cpu()


def finetune(visual: torch.nn.Module, head: torch.Tensor, logit_scale: float, images_u8: np.ndarray,
             labels: np.ndarray, *, steps: int, batch: int, lr: float, wd: float, warmup: int, seed: int,
             stem_lr_scale: float = 1.0, anchor_images_u8: np.ndarray | None = None, drift_weight: float = 0.0,
             progress: bool = True, desc: str = "finetune") -> list[float]:
    """Fine-tune `visual` in place on one task with its head frozen (AdamW, cosine schedule); the stem
    (patch, class and positional embeddings, ln_pre) learns at `stem_lr_scale` times the rate.

    With `drift_weight` > 0 each step also pays `drift_weight` times the mean squared distance between
    the unit features of `batch` of `anchor_images_u8` (public images off the task, the base's own
    pretext corpus) and their features under the starting weights: the task vector may change the
    model only where its task needs it, so vectors of other tasks add without disturbing it."""
    visual.train()
    device = next(visual.parameters()).device
    head = head.to(device)
    anchored = drift_weight > 0 and anchor_images_u8 is not None and len(anchor_images_u8) > 0
    if anchored:
        with torch.no_grad():
            ref = torch.cat([F.normalize(image_features(visual, to_input(anchor_images_u8[i:i + 512]).to(device)), dim=-1)
                             for i in range(0, len(anchor_images_u8), 512)])
        g_anchor = np.random.Generator(np.random.PCG64([seed, 1]))
        n_anchor = len(anchor_images_u8)
    opt = torch.optim.AdamW(_param_groups(visual.named_parameters(), wd, stem_lr_scale), lr=lr, betas=(0.9, 0.98), eps=1e-6)
    g = np.random.Generator(np.random.PCG64(seed))
    n = len(images_u8)
    order = g.permutation(n)
    pos = 0
    losses = []
    lab = torch.as_tensor(labels, dtype=torch.int64).to(device)
    bar = tqdm(range(steps), desc=desc, disable=not progress, mininterval=1.0, leave=False)
    for step in bar:
        if pos + batch > n:
            order, pos = g.permutation(n), 0
        idx = np.sort(order[pos:pos + batch])
        pos += batch
        for grp in opt.param_groups:
            grp["lr"] = cosine_lr(step, steps, warmup, lr) * grp["lr_scale"]
        f = F.normalize(image_features(visual, to_input(images_u8[idx]).to(device)), dim=-1)
        loss = F.cross_entropy(logit_scale * f @ head.T, lab[torch.from_numpy(idx).to(device)])
        if anchored:
            a = np.sort(g_anchor.choice(n_anchor, min(batch, n_anchor), replace=False))
            fa = F.normalize(image_features(visual, to_input(anchor_images_u8[a]).to(device)), dim=-1)
            loss = loss + drift_weight * (fa - ref[torch.from_numpy(a).to(device)]).square().sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    visual.eval()
    return losses


@torch.inference_mode()
def predict(visual: torch.nn.Module, head: torch.Tensor, x: torch.Tensor, batch: int = 400) -> torch.Tensor:
    device = next(visual.parameters()).device
    head = head.to(device)
    out = []
    for i in range(0, len(x), batch):
        out.append((F.normalize(visual(x[i:i + batch].to(device)), dim=-1) @ head.T).argmax(-1).cpu())
    return torch.cat(out)


def accuracy(visual, head, x, y) -> float:
    return float((predict(visual, head, x) == y).float().mean())


def flat(state: Mapping[str, torch.Tensor], keys: Sequence[str]) -> torch.Tensor:
    return torch.cat([state[k].reshape(-1).float() for k in keys])


def set_state(visual: torch.nn.Module, base: Mapping[str, torch.Tensor],
              deltas: Sequence[tuple[float, Mapping[str, torch.Tensor]]] = ()) -> None:
    """Load base + sum(coef * delta) into visual (in place, no new module)."""
    with torch.no_grad():
        for k, p in visual.named_parameters():
            v = base[k].to(p.device, copy=True)
            for coef, d in deltas:
                v.add_(d[k].to(p.device), alpha=coef)
            p.copy_(v)


def eval_tasks(visual, base, deltas, heads, data: Callable[[str], tuple[torch.Tensor, torch.Tensor]],
               tasks: Sequence[str]) -> dict[str, float]:
    set_state(visual, base, deltas)
    return {t: accuracy(visual, heads[t], *data(t)) for t in tasks}
