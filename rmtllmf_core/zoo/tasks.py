"""Eight procedural image-classification tasks, one per domain of the paper's datasets.

Each task is a `TaskSpec`: names, a one-sentence description, class names (what the zero-shot
heads read) and a vectorised generator `render(rng, labels) -> uint8 [N, 32, 32, 3]`.
`generate(task, seed, split, n)` is the one entry point: labels are interleaved (sample i has
class i % C), so every prefix of C*k samples holds exactly k per class, and the output is
byte-identical for the same (seed, task, split, n) on the same numpy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import render as R
from .render import X, Y, col

GENERATOR_VERSION = 2
SPLIT_INDEX = {"train": 0, "val": 1, "test": 2, "pool": 3}


@dataclass(frozen=True)
class TaskSpec:
    name: str
    title: str
    description: str
    class_names: tuple[str, ...]
    templates: tuple[str, ...]
    render: Callable[[np.random.Generator, np.ndarray], np.ndarray]


# ---------------------------------------------------------------- helpers

def _u(rng, lo, hi, n):
    return rng.uniform(lo, hi, n).astype(np.float32)


def _by_class(labels, n_classes):
    return [np.nonzero(labels == c)[0] for c in range(n_classes)]


def _contrasting(rng, bg, n, min_diff=0.4):
    """Random colours whose luminance differs from bg [N,3] by at least min_diff."""
    lum = bg @ np.array([0.3, 0.59, 0.11], np.float32)
    out = rng.uniform(0, 1, (n, 3)).astype(np.float32)
    ol = out @ np.array([0.3, 0.59, 0.11], np.float32)
    # push the luminance away from the background's
    target = np.where(lum > 0.5, np.minimum(ol, lum - min_diff), np.maximum(ol, lum + min_diff))
    out = np.clip(out + (target - ol)[:, None], 0, 1)
    return out


# ---------------------------------------------------------------- 1. digits (MNIST-like)

def _digits(rng, labels):
    n = len(labels)
    img = np.zeros((n, 32, 32, 3), np.float32)
    a = R.glyph(R.glyph_index("0123456789")[labels], _u(rng, -0.12, 0.12, n), _u(rng, -0.1, 0.1, n),
                _u(rng, 1.05, 1.45, n), _u(rng, -0.3, 0.3, n), _u(rng, -0.3, 0.3, n),
                _u(rng, 0.45, 0.75, n), _u(rng, 0.85, 1.25, n))
    R.paint(img, a, _u(rng, 0.85, 1.0, n)[:, None].repeat(3, 1))
    return R.finish(img, rng, noise_std=0.015, brightness=(0.95, 1.05), contrast=(0.95, 1.05))


# ---------------------------------------------------------------- 2. house numbers (SVHN-like)

def _house(rng, labels):
    n = len(labels)
    bg = rng.uniform(0.05, 0.95, (n, 3)).astype(np.float32)
    img = R.fill(n, bg) + 0.12 * R.noise(rng, n, 3, 3) + 0.1 * Y[..., None] * _u(rng, -1, 1, n)[:, None, None, None]
    fg = _contrasting(rng, bg, n, 0.35)
    h = _u(rng, 1.0, 1.3, n)  # the centre digit fills half to two thirds of the frame height
    gap = h * _u(rng, 0.72, 0.85, n)
    cx = _u(rng, -0.08, 0.08, n)
    cy = _u(rng, -0.12, 0.12, n)
    th = _u(rng, -0.15, 0.15, n)
    thick = _u(rng, 0.5, 0.75, n)
    for side in (-1, 1):  # neighbouring digits, partly cut by the frame
        other = rng.integers(0, 10, n)
        present = rng.uniform(0, 1, n) < 0.5
        a = R.glyph(R.glyph_index("0123456789")[other], cx + side * gap, cy, h, th, 0.0, thick)
        R.paint(img, a * present[:, None, None], fg)
    a = R.glyph(R.glyph_index("0123456789")[labels], cx, cy, h, th, _u(rng, -0.2, 0.2, n), thick)
    R.paint(img, a, fg)
    return R.finish(img, rng, noise_std=0.04)


# ---------------------------------------------------------------- 3. traffic signs (GTSRB-like)

RED = np.array([0.8, 0.1, 0.1], np.float32)
WHITE = np.array([0.95, 0.95, 0.95], np.float32)
BLACK = np.array([0.05, 0.05, 0.05], np.float32)
BLUE = np.array([0.1, 0.3, 0.75], np.float32)
YELLOW = np.array([0.95, 0.8, 0.1], np.float32)


def _signs(rng, labels):
    n = len(labels)
    sky = R.jitter_color(rng, [0.5, 0.6, 0.65], n, 0.2)
    img = R.fill(n, sky) + 0.18 * R.fbm(rng, n, 3, octaves=(2, 5, 10))
    cx, cy = _u(rng, -0.1, 0.1, n), _u(rng, -0.1, 0.1, n)
    r = _u(rng, 0.6, 0.82, n)
    sx = _u(rng, 0.88, 1.0, n)  # slight perspective squeeze
    x = X / col(sx)
    y = Y
    for c, idx in enumerate(_by_class(labels, 10)):
        if len(idx) == 0:
            continue
        k = len(idx)
        sub = img[idx]
        px, py, pr = cx[idx], cy[idx], r[idx]
        xs, ys = x[idx] if x.shape[0] == n else x, y
        if c in (0, 1, 2):  # speed limits: red ring, white disc, two black digits
            R.paint(sub, R.disc(px, py, pr, xs, ys), RED)
            R.paint(sub, R.disc(px, py, pr * 0.74, xs, ys), WHITE)
            d = {0: "3", 1: "5", 2: "8"}[c]
            h = pr * 0.75
            R.paint(sub, R.glyph(R.glyph_index(d * k), px - pr * 0.27, py, h, 0.0, 0.0, 0.6, 0.9, xs, ys), BLACK)
            R.paint(sub, R.glyph(R.glyph_index("0" * k), px + pr * 0.27, py, h, 0.0, 0.0, 0.6, 0.9, xs, ys), BLACK)
        elif c == 3:  # stop: red octagon, white band
            R.paint(sub, R.ngon(px, py, pr, np.full(k, 8.0), np.full(k, np.pi / 8, np.float32), xs, ys), WHITE)
            R.paint(sub, R.ngon(px, py, pr * 0.9, np.full(k, 8.0), np.full(k, np.pi / 8, np.float32), xs, ys), RED)
            R.paint(sub, R.box(px, py, pr * 0.62, pr * 0.13, 0.0, xs, ys), WHITE)
        elif c == 4:  # yield: inverted triangle, red border, white inside
            R.paint(sub, R.triangle(px, py - pr * 0.1, pr * 1.05, np.full(k, np.pi, np.float32), xs, ys), RED)
            R.paint(sub, R.triangle(px, py - pr * 0.1 - pr * 0.0, pr * 0.62, np.full(k, np.pi, np.float32), xs, ys), WHITE)
        elif c == 5:  # no entry: red disc, white horizontal bar
            R.paint(sub, R.disc(px, py, pr, xs, ys), RED)
            R.paint(sub, R.box(px, py, pr * 0.7, pr * 0.17, 0.0, xs, ys), WHITE)
        elif c == 6:  # priority road: white-bordered yellow diamond
            R.paint(sub, R.box(px, py, pr * 0.72, pr * 0.72, np.full(k, np.pi / 4, np.float32), xs, ys), WHITE)
            R.paint(sub, R.box(px, py, pr * 0.5, pr * 0.5, np.full(k, np.pi / 4, np.float32), xs, ys), YELLOW)
        elif c == 7:  # general caution: triangle, red border, black "!"
            R.paint(sub, R.triangle(px, py + pr * 0.1, pr * 1.05, 0.0, xs, ys), RED)
            R.paint(sub, R.triangle(px, py + pr * 0.1, pr * 0.66, 0.0, xs, ys), WHITE)
            R.paint(sub, R.glyph(R.glyph_index("!" * k), px, py + pr * 0.22, pr * 0.62, 0.0, 0.0, 0.7, 1.0, xs, ys), BLACK)
        else:  # 8 turn right ahead, 9 ahead only: blue disc, white arrow
            R.paint(sub, R.disc(px, py, pr, xs, ys), BLUE)
            u, v = R.rot(xs, ys, px, py, np.full(k, 0.0 if c == 9 else np.pi / 2, np.float32))
            s = col(pr)
            # arrow pointing to -v (up) in its own frame
            shaft = R.soft(np.maximum(np.abs(u) - 0.12 * s, np.abs(v - 0.2 * s) - 0.42 * s))
            head = R.soft(np.maximum.reduce([-(v + 0.65 * s), v + 0.15 * s, np.abs(u) - 0.8 * (v + 0.65 * s)]))
            R.paint(sub, np.maximum(shaft, head), WHITE)
        img[idx] = sub
    return R.finish(img, rng, noise_std=0.03, brightness=(0.45, 1.2), contrast=(0.6, 1.1))


# ---------------------------------------------------------------- 4. textures (DTD-like)

def _textures(rng, labels):
    n = len(labels)
    c1 = rng.uniform(0, 1, (n, 3)).astype(np.float32)
    c2 = _contrasting(rng, c1, n, 0.3)
    th = _u(rng, 0, np.pi, n)
    f = _u(rng, 2.5, 4.5, n)  # stripes per unit: a period of 7-13 pixels, about one 8-pixel patch
    ph = _u(rng, 0, 2 * np.pi, n)
    u, v = R.rot(X, Y, np.zeros(n), np.zeros(n), th)
    F = col(f)
    P = col(ph)
    a = np.zeros((n, 32, 32), np.float32)
    for c, idx in enumerate(_by_class(labels, 10)):
        if len(idx) == 0:
            continue
        uu, vv, FF, PP = u[idx], v[idx], F[idx], P[idx]
        k = len(idx)
        if c == 0:  # banded
            val = np.sin(FF * uu * np.pi + PP)
            m = np.clip(val * 3, -1, 1) * 0.5 + 0.5
        elif c == 1:  # dotted
            g = FF * 0.8
            du = np.mod(uu * g + PP, 2.0) - 1.0
            dv = np.mod(vv * g + PP, 2.0) - 1.0
            d = np.sqrt(du ** 2 + dv ** 2) - col(_u(rng, 0.35, 0.55, k))
            m = np.clip(0.5 - d * g * 4, 0, 1)
        elif c == 2:  # chequered
            val = np.sin(FF * 0.6 * uu * np.pi + PP) * np.sin(FF * 0.6 * vv * np.pi + PP)
            m = np.clip(val * 6, -1, 1) * 0.5 + 0.5
        elif c == 3:  # zigzagged
            tri = np.abs(np.mod(vv * FF * 0.6, 2.0) - 1.0) * 2 - 1
            val = np.sin(FF * uu * np.pi * 0.9 + tri * 2.5 + PP)
            m = np.clip(val * 3, -1, 1) * 0.5 + 0.5
        elif c == 4:  # grid
            w = 0.25
            lu = np.abs(np.mod(uu * FF * 0.5 + PP, 1.0) - 0.5) < w * 0.5
            lv = np.abs(np.mod(vv * FF * 0.5 + PP, 1.0) - 0.5) < w * 0.5
            m = (lu | lv).astype(np.float32)
        elif c == 5:  # wavy
            val = np.sin(FF * uu * np.pi + 2.2 * np.sin(vv * FF * 0.7 + PP) + PP)
            m = np.clip(val * 3, -1, 1) * 0.5 + 0.5
        elif c == 6:  # marbled
            turb = R.fbm(rng, k, 1, octaves=(3, 6), gains=(1.0, 0.5))[..., 0]
            val = np.sin(FF * 0.5 * uu * np.pi + 3.0 * turb + PP)
            m = 0.5 + 0.5 * val
        elif c == 7:  # crosshatched: thin lines in two directions 60 degrees apart (a diamond lattice,
            # unlike the square `grid`, whatever the rotation)
            l1 = np.abs(np.mod(uu * FF * 0.6 + PP, 1.0) - 0.5) < 0.1
            l2 = np.abs(np.mod((0.5 * uu + 0.866 * vv) * FF * 0.6 + PP, 1.0) - 0.5) < 0.1
            m = (l1 | l2).astype(np.float32)
        elif c == 8:  # concentric
            ccx, ccy = _u(rng, -0.6, 0.6, k), _u(rng, -0.6, 0.6, k)
            rr = np.sqrt((X - col(ccx)) ** 2 + (Y - col(ccy)) ** 2)
            val = np.sin(rr * FF * np.pi + PP)
            m = np.clip(val * 3, -1, 1) * 0.5 + 0.5
        else:  # speckled
            m = (rng.uniform(0, 1, (k, 32, 32)) < _u(rng, 0.12, 0.3, k)[:, None, None]).astype(np.float32)
        a[idx] = m
    img = R.fill(n, c1)
    R.paint(img, a, c2)
    return R.finish(img, rng, noise_std=0.03)


# ---------------------------------------------------------------- 5. land cover (EuroSAT-like)

def _landcover(rng, labels):
    n = len(labels)
    img = np.zeros((n, 32, 32, 3), np.float32)
    for c, idx in enumerate(_by_class(labels, 10)):
        k = len(idx)
        if k == 0:
            continue
        nz = R.fbm(rng, k, 1)  # [k,32,32,1]
        green = R.jitter_color(rng, [0.3, 0.45, 0.2], k, 0.06)
        if c == 0:  # annual crop: parallel field strips
            th = _u(rng, 0, np.pi, k)
            u, v = R.rot(X, Y, np.zeros(k), np.zeros(k), th)
            strip = np.floor((u + 1.5) * col(_u(rng, 2.0, 4.0, k))).astype(np.int64)
            pal = np.array([[0.55, 0.5, 0.3], [0.4, 0.55, 0.25], [0.65, 0.6, 0.35], [0.35, 0.45, 0.2], [0.6, 0.45, 0.3]], np.float32)
            ids = (strip + rng.integers(0, 5, (k, 1, 1))) % 5
            sub = pal[ids] + 0.04 * nz
            rows = 0.03 * np.sin(v * 40)[..., None]
            sub = sub + rows
        elif c == 1:  # forest
            sub = R.fill(k, R.jitter_color(rng, [0.12, 0.28, 0.12], k, 0.04)) + 0.06 * R.fbm(rng, k, 1, (8, 16), (1.0, 1.0))
        elif c == 2:  # herbaceous vegetation
            sub = R.fill(k, R.jitter_color(rng, [0.45, 0.55, 0.3], k, 0.06)) + 0.1 * nz * np.array([1.0, 0.8, 0.5], np.float32)
        elif c == 3:  # highway
            sub = R.fill(k, green) + 0.06 * nz
            th = _u(rng, 0, np.pi, k)
            R.paint(sub, R.box(_u(rng, -0.3, 0.3, k), _u(rng, -0.3, 0.3, k), np.full(k, 2.0), _u(rng, 0.07, 0.12, k), th), R.jitter_color(rng, [0.6, 0.6, 0.6], k, 0.05))
        elif c == 4:  # industrial
            sub = R.fill(k, R.jitter_color(rng, [0.55, 0.55, 0.55], k, 0.05)) + 0.03 * nz
            for _ in range(5):
                R.paint(sub, R.box(_u(rng, -0.8, 0.8, k), _u(rng, -0.8, 0.8, k), _u(rng, 0.15, 0.4, k), _u(rng, 0.1, 0.3, k)),
                        R.jitter_color(rng, [0.75, 0.75, 0.78], k, 0.15))
        elif c == 5:  # pasture
            sub = R.fill(k, R.jitter_color(rng, [0.45, 0.62, 0.3], k, 0.05)) + 0.025 * nz
        elif c == 6:  # permanent crop: orchard rows of tree dots
            sub = R.fill(k, R.jitter_color(rng, [0.55, 0.48, 0.32], k, 0.05)) + 0.03 * nz
            th = _u(rng, 0, np.pi, k)
            u, v = R.rot(X, Y, np.zeros(k), np.zeros(k), th)
            g = col(_u(rng, 3.5, 5.0, k))
            du = np.mod(u * g, 1.0) - 0.5
            dv = np.mod(v * g, 1.0) - 0.5
            R.paint(sub, np.clip(0.5 - (np.sqrt(du ** 2 + dv ** 2) - 0.27) * 6, 0, 1), R.jitter_color(rng, [0.2, 0.38, 0.15], k, 0.04))
        elif c == 7:  # residential: roads and dense little roofs
            sub = R.fill(k, R.jitter_color(rng, [0.5, 0.5, 0.45], k, 0.05))
            th = _u(rng, 0, np.pi / 2, k)
            u, v = R.rot(X, Y, np.zeros(k), np.zeros(k), th)
            g = col(_u(rng, 3.0, 4.5, k))
            cu, cv = np.mod(u * g, 1.0), np.mod(v * g, 1.0)
            roof = ((cu > 0.2) & (cu < 0.8) & (cv > 0.25) & (cv < 0.75)).astype(np.float32)
            R.paint(sub, roof, R.jitter_color(rng, [0.7, 0.35, 0.3], k, 0.1))
        elif c == 8:  # river
            sub = R.fill(k, green) + 0.07 * nz
            th = _u(rng, 0, np.pi, k)
            u, v = R.rot(X, Y, np.zeros(k), np.zeros(k), th)
            path = col(_u(rng, 0.2, 0.4, k)) * np.sin(u * col(_u(rng, 2, 4, k)) + col(_u(rng, 0, 6, k))) + col(_u(rng, -0.3, 0.3, k))
            R.paint(sub, R.soft(np.abs(v - path) - col(_u(rng, 0.08, 0.15, k))), R.jitter_color(rng, [0.15, 0.3, 0.45], k, 0.05))
        else:  # sea or lake
            sub = R.fill(k, R.jitter_color(rng, [0.1, 0.22, 0.38], k, 0.05)) + 0.03 * nz
            th = _u(rng, 0, 2 * np.pi, k)
            shore = R.halfplane(np.cos(th), np.sin(th), _u(rng, -1.6, -0.6, k))
            R.paint(sub, shore, R.jitter_color(rng, [0.4, 0.45, 0.3], k, 0.06))
        img[idx] = sub
    return R.finish(img, rng, noise_std=0.02, brightness=(0.85, 1.15))


# ---------------------------------------------------------------- 6. aerial scenes (RESISC45-like)

def _aerial(rng, labels):
    n = len(labels)
    img = np.zeros((n, 32, 32, 3), np.float32)
    for c, idx in enumerate(_by_class(labels, 10)):
        k = len(idx)
        if k == 0:
            continue
        nz = R.fbm(rng, k, 1, (4, 8), (1.0, 0.5))
        th = _u(rng, 0, 2 * np.pi, k)
        cx, cy = _u(rng, -0.2, 0.2, k), _u(rng, -0.2, 0.2, k)
        grass = R.jitter_color(rng, [0.35, 0.5, 0.28], k, 0.06)
        tarmac = R.jitter_color(rng, [0.45, 0.45, 0.47], k, 0.06)
        if c == 0:  # airplane
            sub = R.fill(k, tarmac) + 0.04 * nz
            col_ = R.jitter_color(rng, [0.9, 0.9, 0.92], k, 0.06)
            s = _u(rng, 0.7, 1.0, k)
            u, v = R.rot(X, Y, cx, cy, th)
            fus = R.soft(np.maximum(np.abs(u) - 0.09 * col(s), np.abs(v) - 0.75 * col(s)))
            wing = R.soft(np.maximum(np.abs(u) - 0.7 * col(s) + 0.5 * (v + 0.05), np.abs(v + 0.05 * col(s)) - 0.12 * col(s)))
            tail = R.soft(np.maximum(np.abs(u) - 0.28 * col(s), np.abs(v - 0.62 * col(s)) - 0.07 * col(s)))
            R.paint(sub, np.maximum.reduce([fus, wing, tail]), col_)
        elif c == 1:  # baseball diamond
            sub = R.fill(k, grass) + 0.04 * nz
            u, v = R.rot(X, Y, cx, cy, th)
            fan = R.soft(np.maximum(np.sqrt(u ** 2 + v ** 2) - 0.85, np.abs(u) - (-v)))  # quarter disc
            R.paint(sub, fan * (v < 0.05), R.jitter_color(rng, [0.7, 0.5, 0.32], k, 0.05))
            R.paint(sub, R.box(cx, cy, np.full(k, 0.22), np.full(k, 0.22), th + np.pi / 4), grass)
        elif c == 2:  # tennis court
            sub = R.fill(k, R.jitter_color(rng, [0.5, 0.5, 0.45], k, 0.08)) + 0.03 * nz
            court = R.jitter_color(rng, [0.2, 0.45, 0.35], k, 0.1)
            R.paint(sub, R.box(cx, cy, np.full(k, 0.42), np.full(k, 0.75), th), court)
            u, v = R.rot(X, Y, cx, cy, th)
            lines = (np.abs(np.abs(u) - 0.36) < 0.035) | (np.abs(np.abs(v) - 0.68) < 0.035) | (np.abs(v) < 0.03) | ((np.abs(u) < 0.025) & (np.abs(v) < 0.4)) | ((np.abs(np.abs(v) - 0.4) < 0.03) & (np.abs(u) < 0.36))
            R.paint(sub, (lines & (np.abs(u) < 0.39) & (np.abs(v) < 0.71)).astype(np.float32), WHITE)
        elif c == 3:  # storage tanks
            sub = R.fill(k, R.jitter_color(rng, [0.62, 0.58, 0.5], k, 0.06)) + 0.04 * nz
            for j in range(4):
                ok = (j < rng.integers(2, 5, k)).astype(np.float32)[:, None, None]
                tx, ty, tr = _u(rng, -0.6, 0.6, k), _u(rng, -0.6, 0.6, k), _u(rng, 0.18, 0.3, k)
                R.paint(sub, R.disc(tx + 0.06, ty + 0.06, tr) * ok, np.array([0.25, 0.25, 0.25], np.float32))
                R.paint(sub, R.disc(tx, ty, tr) * ok, R.jitter_color(rng, [0.88, 0.88, 0.88], k, 0.05))
                R.paint(sub, R.ring(tx, ty, tr * 0.6, np.full(k, 0.04)) * ok, np.array([0.7, 0.7, 0.7], np.float32))
        elif c == 4:  # circular farmland
            sub = R.fill(k, R.jitter_color(rng, [0.6, 0.52, 0.38], k, 0.05)) + 0.04 * nz
            step = _u(rng, 0.95, 1.15, k)
            for gx in (-1, 0, 1):
                for gy in (-1, 0, 1):
                    R.paint(sub, R.disc(cx + gx * step, cy + gy * step, step * 0.47),
                            R.jitter_color(rng, [0.35, 0.55, 0.25], k, 0.12))
        elif c == 5:  # parking lot
            sub = R.fill(k, tarmac * 0.8) + 0.03 * nz
            u, v = R.rot(X, Y, cx, cy, th)
            cu, cv = np.mod(u * 4.0, 1.0), np.mod(v * 8.0, 1.0)
            slot_id = np.floor(u * 4.0) * 16 + np.floor(v * 8.0)
            occ = (np.sin(slot_id * 12.9898 + col(_u(rng, 0, 100, k))) * 43758.5453) % 1.0 > 0.3
            car = ((cu > 0.1) & (cu < 0.75) & (cv > 0.18) & (cv < 0.82) & occ).astype(np.float32)
            carcol = (np.abs(np.sin(slot_id[..., None] * np.array([1.3, 2.1, 3.7], np.float32) + col(_u(rng, 0, 9, k))[..., None])))
            R.paint_field(sub, car, carcol.astype(np.float32))
        elif c == 6:  # runway
            sub = R.fill(k, grass) + 0.05 * nz
            R.paint(sub, R.box(cx, cy, np.full(k, 3.0), _u(rng, 0.2, 0.28, k), th), tarmac * 0.75)
            u, v = R.rot(X, Y, cx, cy, th)
            dash = ((np.abs(v) < 0.03) & (np.mod(u * 4, 1.0) < 0.5)).astype(np.float32)
            R.paint(sub, dash, WHITE)
        elif c == 7:  # roundabout
            sub = R.fill(k, grass) + 0.05 * nz
            for j in range(4):
                a = th + j * np.pi / 2
                R.paint(sub, R.segment(cx, cy, cx + 2 * np.cos(a), cy + 2 * np.sin(a), np.full(k, 0.16)), tarmac)
            R.paint(sub, R.ring(cx, cy, _u(rng, 0.42, 0.55, k), np.full(k, 0.18)), tarmac)
            R.paint(sub, R.disc(cx, cy, np.full(k, 0.3)), grass * 1.1)
        elif c == 8:  # harbor: water, pier, moored boats
            sub = R.fill(k, R.jitter_color(rng, [0.12, 0.3, 0.42], k, 0.05)) + 0.03 * nz
            u, v = R.rot(X, Y, cx, cy, th)
            R.paint(sub, R.soft(v - 0.0 + 0.5), R.jitter_color(rng, [0.6, 0.6, 0.58], k, 0.05))  # quay
            pier = ((np.abs(np.mod(u * 2.5, 1.0) - 0.5) < 0.06) & (v > -0.5)).astype(np.float32)
            R.paint(sub, pier, np.array([0.7, 0.7, 0.68], np.float32))
            boat = ((np.abs(np.mod(u * 2.5 + 0.25, 1.0) - 0.5) < 0.12) & (np.mod(v * 2.2, 1.0) < 0.6) & (v > -0.4)).astype(np.float32)
            R.paint(sub, boat, R.jitter_color(rng, [0.92, 0.92, 0.92], k, 0.05))
        else:  # bridge: river crossed by a road
            sub = R.fill(k, grass) + 0.05 * nz
            R.paint(sub, R.box(cx, cy, np.full(k, 3.0), _u(rng, 0.25, 0.4, k), th), R.jitter_color(rng, [0.15, 0.3, 0.42], k, 0.05))
            R.paint(sub, R.box(cx, cy, np.full(k, 3.0), np.full(k, 0.1), th + np.pi / 2 + _u(rng, -0.3, 0.3, k)), R.jitter_color(rng, [0.75, 0.72, 0.68], k, 0.05))
        img[idx] = sub
    return R.finish(img, rng, noise_std=0.02)


# ---------------------------------------------------------------- 7. vehicles (Stanford-Cars-like)

# body types in car units: (length, body height, cabin [x0, x1, top x0, top x1, height], wheel radius, ride)
_CARS = {
    0: dict(L=2.0, H=0.35, cab=(-0.55, 0.45, -0.3, 0.2, 0.33), wr=0.16),   # sedan
    1: dict(L=1.6, H=0.38, cab=(-0.65, 0.4, -0.6, 0.12, 0.36), wr=0.16),   # hatchback
    2: dict(L=2.0, H=0.55, cab=(-0.85, 0.5, -0.85, 0.3, 0.42), wr=0.22),   # suv
    3: dict(L=2.2, H=0.42, cab=(-0.2, 0.55, -0.15, 0.4, 0.4), wr=0.2),     # pickup truck
    4: dict(L=2.0, H=0.7, cab=(-0.95, 0.7, -0.95, 0.55, 0.35), wr=0.17),   # van
    5: dict(L=2.0, H=0.25, cab=(-0.35, 0.35, -0.2, 0.05, 0.2), wr=0.15),   # sports car
    6: dict(L=2.8, H=0.95, cab=(-1.35, 1.35, -1.35, 1.35, 0.0), wr=0.18),  # bus
    7: dict(L=1.9, H=0.33, cab=None, wr=0.16),                              # convertible
    8: dict(L=2.9, H=0.33, cab=(-0.95, 0.8, -0.8, 0.6, 0.3), wr=0.16),     # limousine
    9: dict(L=2.6, H=0.5, cab=(0.55, 1.25, 0.6, 1.05, 0.42), wr=0.2),      # box truck (cab in front)
}


def _vehicles(rng, labels):
    n = len(labels)
    sky = R.jitter_color(rng, [0.62, 0.75, 0.88], n, 0.12)
    horizon = _u(rng, 0.05, 0.35, n)
    img = R.fill(n, sky)
    ground = (Y > col(horizon)).astype(np.float32)
    R.paint(img, ground, R.jitter_color(rng, [0.4, 0.4, 0.4], n, 0.1))
    img += 0.04 * R.fbm(rng, n, 1)
    for c, idx in enumerate(_by_class(labels, 10)):
        k = len(idx)
        if k == 0:
            continue
        sp = _CARS[c]
        scale = _u(rng, 0.72, 0.88, k) * (2.0 / max(sp["L"], 2.0)) ** 0.7
        flip = np.where(rng.uniform(0, 1, k) < 0.5, -1.0, 1.0).astype(np.float32)
        cx = _u(rng, -0.1, 0.1, k)
        base_y = _u(rng, 0.35, 0.55, k)
        # car frame: x along the car (front at +), y up
        xc = (X - col(cx)) / col(scale * flip)
        yc = (col(base_y) - Y) / col(scale)
        L, H, wr = sp["L"], sp["H"], sp["wr"]
        body_col = rng.uniform(0.05, 0.95, (k, 3)).astype(np.float32)
        sub = img[idx]
        body = R.soft(np.maximum(np.abs(xc) - L / 2, np.abs(yc - wr - H / 2) - H / 2) * col(scale))
        R.paint(sub, body, body_col)
        if sp["cab"] is not None:
            x0, x1, t0, t1, ch = sp["cab"]
            y0 = wr + H
            tt = np.clip((yc - y0) / max(ch, 1e-3), 0, 1)
            left = x0 + (t0 - x0) * tt
            right = x1 + (t1 - x1) * tt
            cab = R.soft(np.maximum.reduce([left - xc, xc - right, y0 - yc, yc - (y0 + ch)]) * col(scale))
            R.paint(sub, cab, body_col)
            win = R.soft(np.maximum.reduce([left + 0.08 - xc, xc - right + 0.08, y0 + 0.05 - yc, yc - (y0 + ch - 0.06)]) * col(scale))
            R.paint(sub, win, np.array([0.65, 0.8, 0.9], np.float32))
        if c == 6:  # bus windows row
            wrow = ((np.abs(yc - (wr + H * 0.72)) < H * 0.14) & (np.mod(xc * 3.2, 1.0) < 0.7) & (np.abs(xc) < L / 2 - 0.1)).astype(np.float32)
            R.paint(sub, wrow, np.array([0.65, 0.8, 0.9], np.float32))
        if c == 9:  # cargo box behind the cab
            cargo = R.soft(np.maximum(np.abs(xc + 0.35) - 0.9, np.abs(yc - wr - 0.55) - 0.55) * col(scale))
            R.paint(sub, cargo, R.jitter_color(rng, [0.85, 0.85, 0.85], k, 0.1))
        for wx in (-L / 2 + wr + 0.15, L / 2 - wr - 0.15):
            wx_world = col(cx) + wx * col(scale * flip)
            wy_world = col(base_y) - wr * col(scale)
            R.paint(sub, R.disc(wx_world[:, 0, 0], wy_world[:, 0, 0], wr * scale), BLACK)
            R.paint(sub, R.disc(wx_world[:, 0, 0], wy_world[:, 0, 0], wr * scale * 0.45), np.array([0.6, 0.6, 0.6], np.float32))
        img[idx] = sub
    return R.finish(img, rng, noise_std=0.025)


# ---------------------------------------------------------------- 8. everyday scenes (SUN397-like)

def _scenes(rng, labels):
    n = len(labels)
    img = np.zeros((n, 32, 32, 3), np.float32)
    for c, idx in enumerate(_by_class(labels, 10)):
        k = len(idx)
        if k == 0:
            continue
        hz = _u(rng, -0.3, 0.2, k)  # horizon
        nz = R.fbm(rng, k, 1, (3, 8), (1.0, 0.4))
        below = (Y > col(hz)).astype(np.float32)
        sky = R.vgradient(R.jitter_color(rng, [0.35, 0.55, 0.85], k, 0.08), R.jitter_color(rng, [0.7, 0.8, 0.92], k, 0.06), k)
        if c == 0:  # beach
            sub = sky
            R.paint(sub, below, R.jitter_color(rng, [0.15, 0.4, 0.6], k, 0.06))
            shore = Y > col(hz) + col(_u(rng, 0.2, 0.4, k)) + 0.08 * np.sin(X * 5 + col(_u(rng, 0, 6, k)))
            R.paint(sub, shore.astype(np.float32), R.jitter_color(rng, [0.85, 0.78, 0.6], k, 0.05))
        elif c == 1:  # desert dunes
            sub = R.vgradient(R.jitter_color(rng, [0.7, 0.8, 0.9], k, 0.05), R.jitter_color(rng, [0.9, 0.85, 0.75], k, 0.05), k)
            for j in range(3):
                edge = col(hz) + 0.25 * j + 0.12 * np.sin(X * col(_u(rng, 2, 4, k)) + col(_u(rng, 0, 6, k)))
                R.paint(sub, (Y > edge).astype(np.float32), R.jitter_color(rng, [0.85 - 0.07 * j, 0.62 - 0.06 * j, 0.35], k, 0.04))
        elif c == 2:  # forest
            sub = R.fill(k, R.jitter_color(rng, [0.15, 0.32, 0.15], k, 0.05)) + 0.12 * nz
            for j in range(5):
                tx = _u(rng, -1, 1, k)
                R.paint(sub, R.box(tx, np.zeros(k), _u(rng, 0.03, 0.07, k), np.full(k, 1.2)), R.jitter_color(rng, [0.3, 0.2, 0.12], k, 0.05))
            R.paint(sub, (Y > 0.75).astype(np.float32) * np.ones((k, 1, 1), np.float32), R.jitter_color(rng, [0.3, 0.25, 0.15], k, 0.05))
        elif c == 3:  # mountains
            sub = sky
            for j in range(3):
                px, ph = _u(rng, -0.9, 0.9, k), _u(rng, 0.6, 1.1, k)
                mtn = (Y > col(hz + 0.4 - ph) + np.abs(X - col(px)) * 1.1).astype(np.float32)
                rock = R.jitter_color(rng, [0.42, 0.4, 0.42], k, 0.06)
                R.paint(sub, mtn, rock)
                snow = mtn * (Y < col(hz + 0.4 - ph) + 0.25).astype(np.float32)
                R.paint(sub, snow, WHITE)
            R.paint(sub, (Y > col(hz) + 0.45).astype(np.float32), R.jitter_color(rng, [0.3, 0.5, 0.25], k, 0.05))
        elif c == 4:  # city skyline
            sub = sky
            for j in range(7):
                bx, bh = _u(rng, -1.1, 1.1, k), _u(rng, 0.3, 1.2, k)
                bw = _u(rng, 0.1, 0.22, k)
                bld = ((np.abs(X - col(bx)) < col(bw)) & (Y > col(hz + 0.5 - bh))).astype(np.float32)
                R.paint(sub, bld, R.jitter_color(rng, [0.35, 0.35, 0.4], k, 0.1))
                win = bld * ((np.mod(X * 10, 1.0) < 0.4) & (np.mod(Y * 10, 1.0) < 0.4))
                R.paint(sub, win * (rng.uniform(0, 1, (k, 1, 1)) < 0.7), np.array([0.9, 0.85, 0.55], np.float32))
        elif c == 5:  # meadow field with flowers
            sub = sky
            R.paint(sub, below, R.jitter_color(rng, [0.35, 0.62, 0.25], k, 0.06))
            fl = (rng.uniform(0, 1, (k, 32, 32)) < 0.06) * below
            R.paint(sub, fl.astype(np.float32), R.jitter_color(rng, [0.95, 0.85, 0.2], k, 0.1))
        elif c == 6:  # snowfield with dark trees
            sub = R.vgradient(R.jitter_color(rng, [0.75, 0.8, 0.85], k, 0.05), R.jitter_color(rng, [0.9, 0.92, 0.95], k, 0.03), k)
            R.paint(sub, below, R.jitter_color(rng, [0.94, 0.95, 0.97], k, 0.03))
            for j in range(4):
                tx = _u(rng, -1, 1, k)
                R.paint(sub, R.triangle(tx, hz + 0.02, _u(rng, 0.1, 0.2, k)), R.jitter_color(rng, [0.1, 0.2, 0.15], k, 0.03))
        elif c == 7:  # night sky
            sub = R.vgradient(R.jitter_color(rng, [0.02, 0.03, 0.1], k, 0.02), R.jitter_color(rng, [0.08, 0.1, 0.22], k, 0.03), k)
            stars = (rng.uniform(0, 1, (k, 32, 32)) < 0.04).astype(np.float32) * (1 - below)
            R.paint(sub, stars, WHITE)
            R.paint(sub, R.disc(_u(rng, -0.7, 0.7, k), _u(rng, -0.8, -0.3, k), _u(rng, 0.1, 0.18, k)), np.array([0.95, 0.93, 0.8], np.float32))
            R.paint(sub, below, R.jitter_color(rng, [0.03, 0.04, 0.05], k, 0.02))
        elif c == 8:  # indoor corridor: perspective room
            vx, vy = _u(rng, -0.3, 0.3, k), _u(rng, -0.3, 0.1, k)
            s = _u(rng, 0.25, 0.45, k)
            sub = R.fill(k, R.jitter_color(rng, [0.82, 0.78, 0.68], k, 0.08))  # walls
            dx, dy = X - col(vx), Y - col(vy)
            floor = (dy > np.abs(dx) * 0.8).astype(np.float32) * (dy > col(s) * 0.6)
            ceil = (-dy > np.abs(dx) * 0.8).astype(np.float32) * (-dy > col(s) * 0.6)
            R.paint(sub, floor, R.jitter_color(rng, [0.5, 0.35, 0.22], k, 0.06))
            R.paint(sub, ceil, R.jitter_color(rng, [0.92, 0.92, 0.9], k, 0.03))
            R.paint(sub, R.box(vx, vy, s * 0.75, s * 0.6), R.jitter_color(rng, [0.3, 0.28, 0.25], k, 0.06))  # far end
        else:  # sunset over the sea
            sub = R.vgradient(R.jitter_color(rng, [0.55, 0.25, 0.35], k, 0.08), R.jitter_color(rng, [0.98, 0.6, 0.25], k, 0.05), k)
            R.paint(sub, R.disc(_u(rng, -0.5, 0.5, k), hz - 0.05, _u(rng, 0.15, 0.25, k)), np.array([1.0, 0.85, 0.4], np.float32))
            R.paint(sub, below, R.jitter_color(rng, [0.15, 0.1, 0.2], k, 0.05))
        img[idx] = sub
    return R.finish(img, rng, noise_std=0.025)


# ---------------------------------------------------------------- registry

# Prompt templates in the pretext captions' own grammar ("a <size> <thing> at the <where> on a <pattern>
# background"): the text tower then reads the class name in the slot it learned to discriminate, which
# keeps the frozen heads of one task apart (generic "a photo of a {}." prompts gave rows with cos ~0.95).
TEMPLATES = ("a large {} at the center", "a small {} at the center on a plain background",
             "a large {} at the left on a noisy background")

TASKS: dict[str, TaskSpec] = {t.name: t for t in (
    TaskSpec("digits", "Digits (MNIST-like)",
             "Handwriting-like white digits 0-9 on black, randomly scaled, slanted, rotated and thickened.",
             ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
             TEMPLATES, _digits),
    TaskSpec("house_numbers", "House numbers (SVHN-like)",
             "A centred digit on a coloured plaque with neighbouring digits cut by the frame; the label is the centre digit.",
             ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9"),
             TEMPLATES, _house),
    TaskSpec("traffic_signs", "Traffic signs (GTSRB-like)",
             "Ten road-sign types (shape, colour and symbol) under varied lighting, size and perspective.",
             ("speed limit 30", "speed limit 50", "speed limit 80", "stop", "yield", "no entry",
              "priority road", "general caution", "turn right ahead", "ahead only"),
             TEMPLATES, _signs),
    TaskSpec("textures", "Textures (DTD-like)",
             "Two-colour procedural textures in ten pattern families at random scale, angle and phase.",
             ("banded", "dotted", "chequered", "zigzagged", "grid", "wavy", "marbled", "crosshatched",
              "concentric", "speckled"),
             TEMPLATES, _textures),
    TaskSpec("land_cover", "Land cover (EuroSAT-like)",
             "Satellite-style land-cover patches: crops, forest, vegetation, roads, industry, pasture, orchards, housing, rivers, sea.",
             ("annual crop land", "forest", "herbaceous vegetation", "highway", "industrial buildings",
              "pasture land", "permanent crop land", "residential buildings", "river", "sea or lake"),
             TEMPLATES, _landcover),
    TaskSpec("aerial_scenes", "Aerial scenes (RESISC45-like)",
             "Close aerial views of man-made objects: airplanes, sports fields, tanks, farmland, parking, runways, roundabouts, harbours, bridges.",
             ("airplane", "baseball diamond", "tennis court", "storage tanks", "circular farmland",
              "parking lot", "runway", "roundabout", "harbor", "bridge"),
             TEMPLATES, _aerial),
    TaskSpec("vehicles", "Vehicles (Stanford-Cars-like)",
             "Side views of ten vehicle body types in random colours, direction and size on a road.",
             ("sedan", "hatchback", "suv", "pickup truck", "van", "sports car", "bus", "convertible",
              "limousine", "box truck"),
             TEMPLATES, _vehicles),
    TaskSpec("scenes", "Everyday scenes (SUN397-like)",
             "Scene layouts: beach, desert, forest, mountains, city skyline, meadow, snowfield, night sky, corridor, sunset.",
             ("beach", "desert", "forest", "mountain", "city skyline", "meadow", "snowfield", "night sky",
              "corridor", "sunset over the sea"),
             TEMPLATES, _scenes),
)}
TASK_NAMES = tuple(TASKS)


def split_sizes(per_class: dict[str, int], n_classes: int) -> dict[str, int]:
    return {s: k * n_classes for s, k in per_class.items()}


CHUNK = 64  # samples per seeded stream: a split is a sequence of chunks, each generated on its own


def generate(task: str, seed: int, split: str, n: int, chunk: int = CHUNK,
             start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [n - start, 32, 32, 3], labels int64 [n - start]): samples start..n-1 of a task split;
    deterministic in its arguments.

    Generated in chunks of `chunk` samples, each with its own seeded stream, so that the first
    samples do not depend on n (a prefix of a longer split is the shorter split), and a split can grow
    by its missing chunks alone: `start` is a multiple of `chunk`.
    """
    if start % chunk or not 0 <= start <= n:
        raise ValueError(f"start must be a multiple of {chunk} in [0, {n}], got {start}")
    spec = TASKS[task]
    C = len(spec.class_names)
    labels = (np.arange(start, n) % C).astype(np.int64)
    out = np.empty((n - start, 32, 32, 3), np.uint8)
    t_idx = TASK_NAMES.index(task)
    for first in range(start, n, chunk):
        stop = min(n, first + chunk)
        full = np.arange(first, first + chunk) % C
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(
            [GENERATOR_VERSION, int(seed), t_idx, SPLIT_INDEX[split], first // chunk])))
        imgs = spec.render(rng, full.astype(np.int64))
        out[first - start:stop - start] = imgs[: stop - first]
    return out, labels
