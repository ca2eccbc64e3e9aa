"""A micro zoo for tests: a tiny random open_clip ViT CLIP, learnable toy tasks, real task vectors.

`make_micro_zoo()` builds, in well under 2 s and bit-for-bit the same for the same arguments,
a `Zoo` that honours the whole contract of `rmtllmf_core.zoo.types` without touching any file:

- model: open_clip `CLIP` with a 16x16 image, 8x8 patches (4 patches + class token), width 32,
  `layers` transformer blocks, embed dim 16, and a token-sized text tower (unused by the engine);
  randomly initialised under a forked RNG so the caller's global torch RNG is left untouched.
- data: task t, class c has a fixed random prototype image; a sample is the prototype times a
  random contrast plus Gaussian pixel noise, so classes are learnable but not trivial.
  Splits are generated once, lazily, from (seed, task, split); the first n are always the same.
- heads: random unit rows [classes, 16] per task (the CLIP "text" side is not needed here).
- task vectors: a few full-batch Adam steps of the encoder on the task's train split with the
  frozen head (deterministic, no sampling), minus the base weights.

Task names are the tiny zoo's (`TINY_TASKS`, as in `scenario.py`) so scenarios written for the real zoo
validate against this one; beyond eight tasks they are `task8`, `task9`, ...
"""
from __future__ import annotations

import hashlib
import json

import torch
import torch.nn.functional as F
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

from rmtllmf_core.zoo.model import INIT_LOCK
from rmtllmf_core.zoo.types import SPLITS, TaskInfo, Zoo

IMAGE_SIZE = 16
EMBED_DIM = 16
LOGIT_SCALE = 20.0  # a moderate temperature: the heads' cosine similarities times this are the logits
VISION_CFG = dict(layers=1, width=32, head_width=16, mlp_ratio=2.0, patch_size=8, image_size=IMAGE_SIZE)
TEXT_CFG = dict(context_length=8, vocab_size=64, width=16, heads=2, layers=1)
# the tiny zoo's task names (scenario.TINY_TASKS; repeated here so this helper imports nothing heavy)
TINY_TASKS = ("digits", "house_numbers", "traffic_signs", "textures", "land_cover", "aerial_scenes", "vehicles", "scenes")


def _task_names(n_tasks: int) -> tuple[str, ...]:
    return tuple(TINY_TASKS[i] if i < len(TINY_TASKS) else f"task{i}" for i in range(n_tasks))


def _generator(*parts: object) -> torch.Generator:
    """An independent, reproducible stream per (seed, task, split, purpose)."""
    digest = hashlib.sha256(json.dumps(parts).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def build_micro_clip(seed: int = 0, layers: int = 1) -> CLIP:
    """The tiny open_clip CLIP, randomly initialised from `seed` without touching the global RNG."""
    with INIT_LOCK, torch.random.fork_rng(devices=[]):  # no zoo loading on another thread draws meanwhile
        torch.manual_seed(seed)
        model = CLIP(EMBED_DIM, CLIPVisionCfg(**{**VISION_CFG, "layers": layers}), CLIPTextCfg(**TEXT_CFG))
    return model.eval().requires_grad_(False)


def make_micro_zoo(
    n_tasks: int = 3,
    classes: int = 4,
    seed: int = 0,
    *,
    layers: int = 1,
    split_sizes: dict[str, int] | None = None,
    finetune_steps: int = 25,
    finetune_lr: float = 3e-3,
    noise: float = 1.0,
) -> Zoo:
    """A deterministic micro `Zoo` (see the module docstring). `split_sizes` overrides the per-split
    sample counts (defaults: train 64, val 64, test 256, pool 20 per class)."""
    if n_tasks < 1 or classes < 2:
        raise ValueError("n_tasks >= 1 and classes >= 2")
    names = _task_names(n_tasks)
    sizes = {"train": 64, "val": 64, "test": 256, "pool": 20 * classes, **(split_sizes or {})}
    model = build_micro_clip(seed, layers)
    encoder = model.visual
    base_state = {n: p.detach().clone() for n, p in encoder.named_parameters()}

    prototypes = {
        t: torch.randn(classes, 3, IMAGE_SIZE, IMAGE_SIZE, generator=_generator(seed, t, "prototypes"))
        for t in names
    }
    heads = {}
    for t in names:
        h = torch.randn(classes, EMBED_DIM, generator=_generator(seed, t, "head"))
        heads[t] = h / h.norm(dim=1, keepdim=True)

    cache: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def full_split(task: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if (task, split) not in cache:
            g = _generator(seed, task, split, "samples")
            n = sizes[split]
            labels = (torch.arange(n) % classes)[torch.randperm(n, generator=g)]
            contrast = 0.5 + torch.rand(n, 1, 1, 1, generator=g)
            pixels = noise * torch.randn(n, 3, IMAGE_SIZE, IMAGE_SIZE, generator=g)
            cache[task, split] = (contrast * prototypes[task][labels] + pixels, labels)
        return cache[task, split]

    def data(task: str, split: str, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if task not in prototypes:
            raise KeyError(f"unknown task {task!r}; micro zoo has {names}")
        if split not in SPLITS:
            raise KeyError(f"unknown split {split!r}; one of {SPLITS}")
        images, labels = full_split(task, split)
        if n is not None and not 0 <= n <= len(labels):
            raise ValueError(f"{task}/{split} has {len(labels)} samples, asked for {n}")
        return (images, labels) if n is None else (images[:n], labels[:n])

    def logits(params: dict, task: str, images: torch.Tensor) -> torch.Tensor:
        feats = F.normalize(torch.func.functional_call(encoder, params, (images,)), dim=-1)
        return LOGIT_SCALE * feats @ heads[task].T

    def accuracy(params: dict, task: str) -> float:
        images, labels = data(task, "test")
        with torch.inference_mode():
            return float((logits(params, task, images).argmax(1) == labels).float().mean())

    # Task vectors: deterministic full-batch Adam on the train split, heads frozen.
    task_vectors, finetuned_accuracy, zeroshot_accuracy = {}, {}, {}
    for t in names:
        images, labels = data(t, "train")
        params = {n: p.clone().requires_grad_(True) for n, p in base_state.items()}
        opt = torch.optim.Adam(params.values(), lr=finetune_lr)
        for _ in range(finetune_steps):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(logits(params, t, images), labels).backward()
            opt.step()
        task_vectors[t] = {n: (params[n].detach() - base_state[n]) for n in base_state}
        finetuned_accuracy[t] = accuracy({n: p.detach() for n, p in params.items()}, t)
        zeroshot_accuracy[t] = accuracy(base_state, t)

    config = dict(n_tasks=n_tasks, classes=classes, seed=seed, layers=layers, sizes=sizes,
                  finetune_steps=finetune_steps, finetune_lr=finetune_lr, noise=noise, version=1)
    fingerprint = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    return Zoo(
        name=f"micro-{fingerprint[:8]}",
        fingerprint=fingerprint,
        card={"name": "micro", "config": config, "vision_cfg": VISION_CFG, "embed_dim": EMBED_DIM},
        model=model,
        base_state=base_state,
        task_vectors=task_vectors,
        heads=heads,
        logit_scale=LOGIT_SCALE,
        tasks={t: TaskInfo(t, f"Micro {t}", "random class prototypes plus pixel noise",
                           tuple(f"class{c}" for c in range(classes))) for t in names},
        finetuned_accuracy=finetuned_accuracy,
        zeroshot_accuracy=zeroshot_accuracy,
        data=data,
    )
