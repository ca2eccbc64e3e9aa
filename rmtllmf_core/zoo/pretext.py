"""The pretext corpus for contrastive pretraining: synthetic compositions with captions.

Images are one or two objects at a size and a position, over a patterned, coloured background;
the caption says exactly that, e.g. "a small red triangle at the left and a large blue letter k
at the top on a dotted green background". An object is a coloured shape or capital letter or,
for a `concept_fraction` of the images, a *picture of a concept*: a scene, sign, texture, digit...
drawn by one of the eight task generators from the corpus's own random stream (never a sample
of a task's train / val / test / pool split), shrunk to 55-100% of the frame, slightly rotated
and pasted at its position, its caption naming it and not the background ("a large forest at the
top left").

Why concepts: web-scale captions name the things the downstream datasets show (real CLIP has
seen stop signs and forests, not GTSRB or EuroSAT), which is what gives it non-trivial zero-shot
accuracy and makes its fine-tuning a small, nearly linear step that task arithmetic can add up.
Without them (concept_fraction 0) the base is at chance on every task, fine-tuning has to learn
each task from scratch and the task vectors interfere (measured: 25% normalised fusion).
The shift between corpus and tasks (scale, crop, clutter, blur, distractor objects) keeps the
base's zero-shot accuracy well below the fine-tuned one.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from . import render as R
from . import tasks as T
from .render import X, Y, col

PRETEXT_VERSION = 2

COLORS = {
    "red": (0.85, 0.12, 0.12), "orange": (0.95, 0.55, 0.1), "yellow": (0.95, 0.9, 0.15),
    "green": (0.15, 0.65, 0.2), "cyan": (0.2, 0.8, 0.85), "blue": (0.15, 0.25, 0.85),
    "purple": (0.55, 0.2, 0.7), "pink": (0.95, 0.55, 0.7), "white": (0.95, 0.95, 0.95),
    "black": (0.06, 0.06, 0.06), "gray": (0.5, 0.5, 0.5), "brown": (0.5, 0.3, 0.15),
}
COLOR_NAMES = tuple(COLORS)
_PAL = np.array([COLORS[c] for c in COLOR_NAMES], np.float32)
SHAPES = ("circle", "square", "triangle", "ring", "cross", "star", "diamond", "bar", "hexagon", "heart")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
SIZES = ("small", "large")
POSITIONS = {"left": (-0.45, 0.0), "right": (0.45, 0.0), "top": (0.0, -0.45), "bottom": (0.0, 0.45),
             "center": (0.0, 0.0), "top left": (-0.45, -0.45), "top right": (0.45, -0.45),
             "bottom left": (-0.45, 0.45), "bottom right": (0.45, 0.45)}
POS_NAMES = tuple(POSITIONS)
_POS = np.array([POSITIONS[p] for p in POS_NAMES], np.float32)
BACKGROUNDS = ("plain", "gradient", "noisy", "striped", "dotted", "checkered", "wavy", "cloudy")


def _background(rng, kind, c1, c2):
    n = len(kind)
    img = R.fill(n, c1)
    th = rng.uniform(0, np.pi, n).astype(np.float32)
    f = rng.uniform(4, 8, n).astype(np.float32)
    u, v = R.rot(X, Y, np.zeros(n), np.zeros(n), th)
    F = col(f)
    m = np.zeros((n, 32, 32), np.float32)
    k = kind.reshape(-1, 1, 1)
    m = np.where(k == 1, (Y + 1) / 2 * np.ones_like(u), m)
    m = np.where(k == 3, (np.sin(u * F * np.pi) > 0).astype(np.float32), m)
    du, dv = np.mod(u * F * 0.5, 1.0) - 0.5, np.mod(v * F * 0.5, 1.0) - 0.5
    m = np.where(k == 4, (du ** 2 + dv ** 2 < 0.06).astype(np.float32), m)
    m = np.where(k == 5, (np.sin(u * F * 0.6 * np.pi) * np.sin(v * F * 0.6 * np.pi) > 0).astype(np.float32), m)
    m = np.where(k == 6, (np.sin(u * F * np.pi + 2 * np.sin(v * F * 0.7)) > 0).astype(np.float32), m)
    img = R.paint(img, m, c2)
    nz = R.fbm(rng, n, 3)
    img += np.where((kind == 2)[:, None, None, None], 0.25 * rng.standard_normal((n, 32, 32, 3)).astype(np.float32), 0.0)
    img += np.where((kind == 7)[:, None, None, None], 0.22 * nz, 0.0)
    return img


def _object(rng, img, shape, color, size, pos):
    """Paint one object per sample: shape index (0..9 shapes, 10..35 letters)."""
    n = len(shape)
    r = np.where(size == 0, rng.uniform(0.17, 0.26, n), rng.uniform(0.36, 0.5, n)).astype(np.float32)
    cx = _POS[pos, 0] + rng.uniform(-0.1, 0.1, n).astype(np.float32)
    cy = _POS[pos, 1] + rng.uniform(-0.1, 0.1, n).astype(np.float32)
    th = rng.uniform(-0.35, 0.35, n).astype(np.float32)
    a = np.zeros((n, 32, 32), np.float32)

    def mask(i, cx, cy, r, th):
        k = len(cx)
        if i == 0:
            return R.disc(cx, cy, r)
        if i == 1:
            return R.box(cx, cy, r * 0.8, r * 0.8, th)
        if i == 2:
            return R.triangle(cx, cy, r * 1.1, th)
        if i == 3:
            return R.ring(cx, cy, r * 0.8, r * 0.35)
        if i == 4:
            return np.maximum(R.box(cx, cy, r, r * 0.3, th), R.box(cx, cy, r * 0.3, r, th))
        if i == 5:
            return R.star(cx, cy, r * 1.1, th)
        if i == 6:
            return R.box(cx, cy, r * 0.72, r * 0.72, th + np.pi / 4)
        if i == 7:
            return R.box(cx, cy, r * 1.1, r * 0.25, th)
        if i == 8:
            return R.ngon(cx, cy, r, np.full(k, 6.0), th)
        return np.maximum(np.maximum(R.disc(cx - r * 0.38, cy - r * 0.2, r * 0.45), R.disc(cx + r * 0.38, cy - r * 0.2, r * 0.45)),
                          R.triangle(cx, cy + r * 0.15, r * 0.8, np.full(k, np.pi, np.float32)))

    thick = rng.uniform(0.5, 0.75, n).astype(np.float32)
    for i in range(10):
        idx = np.nonzero(shape == i)[0]
        if len(idx):
            a[idx] = mask(i, cx[idx], cy[idx], r[idx], th[idx])
    idx = np.nonzero(shape >= 10)[0]
    if len(idx):
        a[idx] = R.glyph(R.glyph_index(LETTERS)[shape[idx] - 10], cx[idx], cy[idx], r[idx] * 2.2, th[idx] * 0.5, 0.0, thick[idx])
    R.paint(img, a, color)


def _shape_name(i: int) -> str:
    return SHAPES[i] if i < 10 else f"letter {LETTERS[i - 10].lower()}"


def noise_per_task(caption_noise: float | Mapping[str, float]) -> np.ndarray:
    """`caption_noise` as one share per task, in TASK_NAMES order: a number for every task, or task ->
    share with "*" for the tasks not named (default 0)."""
    field = "recipe.pretext.caption_noise"
    if not isinstance(caption_noise, Mapping):
        caption_noise = {"*": caption_noise}
    unknown = sorted(set(caption_noise) - set(T.TASK_NAMES) - {"*"})
    if unknown:
        raise InputError(field, f"unknown task(s) {unknown}; allowed: {', '.join(T.TASK_NAMES)} and '*'")
    shares = [caption_noise.get(t, caption_noise.get("*", 0.0)) for t in T.TASK_NAMES]
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x <= 1 for x in shares):
        raise InputError(field, f"a share in [0, 1], or task -> share; got {dict(caption_noise)}")
    return np.array(shares, dtype=np.float64)


def _paste_concepts(rng, img, size, pos, noise: np.ndarray):
    """Replace object 0 of every sample by a concept picture; returns its caption words (for a share
    `noise[task]`, another class of the same task: web captions are often wrong)."""
    n = len(size)
    task = rng.integers(0, len(T.TASK_NAMES), n)
    label = rng.integers(0, 10, n)
    # the same draws whatever the shares, so a uniform share gives the same corpus as a number
    said = np.where(rng.uniform(0, 1, n) < noise[task], rng.integers(0, 10, n), label)
    pics = np.zeros((n, 32, 32, 3), np.float32)
    for ti, name in enumerate(T.TASK_NAMES):
        idx = np.nonzero(task == ti)[0]
        if len(idx):
            pics[idx] = T.TASKS[name].render(rng, label[idx]).astype(np.float32) / 255.0
    names = [T.TASKS[T.TASK_NAMES[t]].class_names[c] for t, c in zip(task, said)]
    scale = np.where(size == 0, rng.uniform(0.55, 0.7, n), rng.uniform(0.8, 1.0, n)).astype(np.float32)
    cx = _POS[pos, 0] * (1 - scale) / 0.55 + rng.uniform(-0.08, 0.08, n).astype(np.float32)
    cy = _POS[pos, 1] * (1 - scale) / 0.55 + rng.uniform(-0.08, 0.08, n).astype(np.float32)
    th = rng.uniform(-0.2, 0.2, n).astype(np.float32)
    # output pixel p samples the picture at R(-th) (p - c) / scale: an affine grid per image
    c, s = np.cos(th) / scale, np.sin(th) / scale
    theta = np.stack([np.stack([c, s, -(c * cx + s * cy)], 1), np.stack([-s, c, s * cx - c * cy], 1)], 1)
    grid = F.affine_grid(torch.from_numpy(theta), [n, 4, 32, 32], align_corners=False)
    src = torch.from_numpy(np.concatenate([pics, np.ones((n, 32, 32, 1), np.float32)], -1)).permute(0, 3, 1, 2)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out = out.permute(0, 2, 3, 1).numpy()
    alpha = out[..., 3:]
    return img * (1 - alpha) + out[..., :3] * alpha, names


def generate(seed: int, n: int, chunk: int = 1024, concept_fraction: float = 0.0,
             caption_noise: float | Mapping[str, float] = 0.0) -> tuple[np.ndarray, list[str]]:
    """(images uint8 [n, 32, 32, 3], captions) of the pretext corpus, deterministic in (seed, n-prefix)."""
    noise = noise_per_task(caption_noise)
    out = np.empty((n, 32, 32, 3), np.uint8)
    caps: list[str] = []
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([PRETEXT_VERSION, int(seed), 99, start // chunk])))
        bgk = rng.integers(0, len(BACKGROUNDS), m)
        c1i = rng.integers(0, len(COLOR_NAMES), m)
        c2i = (c1i + rng.integers(1, len(COLOR_NAMES), m)) % len(COLOR_NAMES)
        img = _background(rng, bgk, R.jitter_color(rng, _PAL[c1i], m, 0.05), R.jitter_color(rng, _PAL[c2i], m, 0.05))
        n_obj = rng.integers(1, 3, m)
        objs = []
        used_pos = np.full(m, -1)
        is_concept = np.zeros(m, dtype=bool)
        for j in range(2):
            shape = np.where(rng.uniform(0, 1, m) < 0.3, rng.integers(10, 36, m), rng.integers(0, 10, m))
            ci = rng.integers(0, len(COLOR_NAMES), m)
            ci = np.where(ci == c1i, (ci + 1) % len(COLOR_NAMES), ci)  # visible against the background
            size = rng.integers(0, 2, m)
            pos = rng.integers(0, len(POS_NAMES), m)
            pos = np.where(pos == used_pos, (pos + 1 + rng.integers(0, len(POS_NAMES) - 1, m)) % len(POS_NAMES), pos)
            if j == 0:
                used_pos = pos
            active = (n_obj > j)
            tmp = img.copy()
            _object(rng, tmp, shape, R.jitter_color(rng, _PAL[ci], m, 0.05), size, pos)
            if j == 0 and concept_fraction > 0:
                # a stream of its own, so the shapes of the corpus do not depend on concept_fraction
                crng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(
                    [PRETEXT_VERSION, int(seed), 77, start // chunk])))
                is_concept = crng.uniform(0, 1, m) < concept_fraction
                pasted, concept_names = _paste_concepts(crng, img, size, pos, noise)  # instead of the shape
                tmp = np.where(is_concept[:, None, None, None], pasted, tmp)
            img = np.where(active[:, None, None, None], tmp, img)
            objs.append((shape, ci, size, pos, active))
        out[start:start + m] = R.finish(img, rng, noise_std=0.02)
        for i in range(m):
            parts = []
            for j, (shape, ci, size, pos, active) in enumerate(objs):
                if j == 0 and is_concept[i]:
                    parts.append(f"a {SIZES[size[i]]} {concept_names[i]} at the {POS_NAMES[pos[i]]}")
                elif active[i]:
                    parts.append(f"a {SIZES[size[i]]} {COLOR_NAMES[ci[i]]} {_shape_name(int(shape[i]))} at the {POS_NAMES[pos[i]]}")
            bg = BACKGROUNDS[bgk[i]]
            bgtxt = f"{bg} {COLOR_NAMES[c1i[i]]}" if bg in ("plain", "noisy", "cloudy") else f"{bg} {COLOR_NAMES[c1i[i]]} and {COLOR_NAMES[c2i[i]]}"
            if is_concept[i]:
                # no background words: with them a batch is told apart by colours alone and the
                # model never has to recognise the concept (the contrastive loss falls anyway)
                caps.append(" and ".join(parts))
            else:
                caps.append(" and ".join(parts) + f" on a {bgtxt} background")
    return out, caps
