"""Vectorised numpy rendering primitives for the procedural tasks (batches of small RGB images).

Every function works on a whole batch at once: per-sample parameters are arrays of shape [N]
and images are float32 arrays [N, S, S, 3] in [0, 1]. Coordinates span [-1, 1] over the image
(y grows downwards). Edges are anti-aliased from signed distances so that small images stay clean.
Only numpy is used, with explicit Generators, so the output is byte-identical for a seed.
"""
from __future__ import annotations

import numpy as np

SIZE = 32

# 5x7 bitmap font (ours): digits and capital letters, '#' = ink.
_FONT_ROWS = {
    "0": [" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "],
    "1": ["  #  ", " ##  ", "# #  ", "  #  ", "  #  ", "  #  ", "#####"],
    "2": [" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"],
    "3": ["#####", "   # ", "  #  ", "   # ", "    #", "#   #", " ### "],
    "4": ["   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "],
    "5": ["#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "],
    "6": ["  ## ", " #   ", "#    ", "#### ", "#   #", "#   #", " ### "],
    "7": ["#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "],
    "8": [" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "],
    "9": [" ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  "],
    "A": [" ### ", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"],
    "B": ["#### ", "#   #", "#   #", "#### ", "#   #", "#   #", "#### "],
    "C": [" ### ", "#   #", "#    ", "#    ", "#    ", "#   #", " ### "],
    "D": ["#### ", "#   #", "#   #", "#   #", "#   #", "#   #", "#### "],
    "E": ["#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#####"],
    "F": ["#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#    "],
    "G": [" ### ", "#   #", "#    ", "# ###", "#   #", "#   #", " ####"],
    "H": ["#   #", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"],
    "I": [" ### ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "],
    "J": ["  ###", "   # ", "   # ", "   # ", "   # ", "#  # ", " ##  "],
    "K": ["#   #", "#  # ", "# #  ", "##   ", "# #  ", "#  # ", "#   #"],
    "L": ["#    ", "#    ", "#    ", "#    ", "#    ", "#    ", "#####"],
    "M": ["#   #", "## ##", "# # #", "# # #", "#   #", "#   #", "#   #"],
    "N": ["#   #", "#   #", "##  #", "# # #", "#  ##", "#   #", "#   #"],
    "O": [" ### ", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "],
    "P": ["#### ", "#   #", "#   #", "#### ", "#    ", "#    ", "#    "],
    "Q": [" ### ", "#   #", "#   #", "#   #", "# # #", "#  # ", " ## #"],
    "R": ["#### ", "#   #", "#   #", "#### ", "# #  ", "#  # ", "#   #"],
    "S": [" ####", "#    ", "#    ", " ### ", "    #", "    #", "#### "],
    "T": ["#####", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  "],
    "U": ["#   #", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "],
    "V": ["#   #", "#   #", "#   #", "#   #", "#   #", " # # ", "  #  "],
    "W": ["#   #", "#   #", "#   #", "# # #", "# # #", "# # #", " # # "],
    "X": ["#   #", "#   #", " # # ", "  #  ", " # # ", "#   #", "#   #"],
    "Y": ["#   #", "#   #", " # # ", "  #  ", "  #  ", "  #  ", "  #  "],
    "Z": ["#####", "    #", "   # ", "  #  ", " #   ", "#    ", "#####"],
    "!": ["  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "     ", "  #  "],
}
GLYPHS = "".join(_FONT_ROWS)
# [G, 9, 7] bitmaps with one pixel of empty border, float32
_FONT = np.zeros((len(GLYPHS), 9, 7), np.float32)
for _g, _ch in enumerate(GLYPHS):
    for _r, _row in enumerate(_FONT_ROWS[_ch]):
        for _c, _v in enumerate(_row):
            _FONT[_g, _r + 1, _c + 1] = 1.0 if _v == "#" else 0.0


def glyph_index(chars: str) -> np.ndarray:
    return np.array([GLYPHS.index(c) for c in chars], np.int64)


def grid(size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1]: X, Y of shape [1, S, S]."""
    t = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    Y, X = np.meshgrid(t, t, indexing="ij")
    return X[None], Y[None]


X, Y = grid()
PX = 2.0 / SIZE  # one pixel in coordinate units


def col(a) -> np.ndarray:
    """[N] -> [N, 1, 1] for broadcasting against [1, S, S] grids."""
    return np.asarray(a, np.float32).reshape(-1, 1, 1)


def rot(x, y, cx, cy, theta):
    """Coordinates relative to (cx, cy), rotated by -theta: (u along the rotated x axis, v)."""
    c, s = np.cos(col(theta)), np.sin(col(theta))
    dx, dy = x - col(cx), y - col(cy)
    return dx * c + dy * s, -dx * s + dy * c


def soft(d, width: float = PX):
    """Anti-aliased coverage from a signed distance (negative inside)."""
    return np.clip(0.5 - d / width, 0.0, 1.0).astype(np.float32)


def disc(cx, cy, r, x=X, y=Y):
    return soft(np.sqrt((x - col(cx)) ** 2 + (y - col(cy)) ** 2) - col(r))


def ellipse(cx, cy, rx, ry, theta=0.0, x=X, y=Y):
    u, v = rot(x, y, cx, cy, np.broadcast_to(np.asarray(theta, np.float32), np.shape(cx)))
    q = np.sqrt((u / col(rx)) ** 2 + (v / col(ry)) ** 2)
    return soft((q - 1.0) * np.minimum(col(rx), col(ry)))


def ring(cx, cy, r, w, x=X, y=Y):
    d = np.sqrt((x - col(cx)) ** 2 + (y - col(cy)) ** 2)
    return soft(np.abs(d - col(r)) - col(w) / 2)


def box(cx, cy, hw, hh, theta=0.0, x=X, y=Y):
    """Rectangle with half sizes hw, hh, rotated by theta."""
    th = np.broadcast_to(np.asarray(theta, np.float32), np.shape(np.asarray(cx)))
    u, v = rot(x, y, cx, cy, th)
    return soft(np.maximum(np.abs(u) - col(hw), np.abs(v) - col(hh)))


def ngon(cx, cy, r, n, theta=0.0, x=X, y=Y):
    """Regular polygon with n sides (n may vary per sample), circumradius r."""
    th = np.broadcast_to(np.asarray(theta, np.float32), np.shape(np.asarray(cx)))
    u, v = rot(x, y, cx, cy, th)
    n = col(n)
    a = np.arctan2(v, u)
    sector = 2 * np.pi / n
    a = np.mod(a + sector / 2, sector) - sector / 2
    rr = np.sqrt(u * u + v * v)
    return soft(rr * np.cos(a) - col(r) * np.cos(np.pi / n))


def triangle(cx, cy, r, theta=0.0, x=X, y=Y):
    """Equilateral triangle pointing up (theta=0) with circumradius r."""
    return ngon(cx, cy, r, np.full(np.shape(np.asarray(cx)), 3.0), np.asarray(theta) + np.pi / 2, x, y)


def star(cx, cy, r, theta=0.0, x=X, y=Y):
    th = np.broadcast_to(np.asarray(theta, np.float32), np.shape(np.asarray(cx)))
    u, v = rot(x, y, cx, cy, th)
    a = np.arctan2(v, u)
    rr = np.sqrt(u * u + v * v)
    edge = col(r) * (0.62 + 0.38 * np.cos(5 * a))
    return soft(rr - edge)


def halfplane(nx, ny, c, x=X, y=Y):
    """Coverage of n . p <= c (n unit)."""
    return soft(col(nx) * x + col(ny) * y - col(c))


def segment(x0, y0, x1, y1, w, x=X, y=Y):
    """Thick line segment from (x0, y0) to (x1, y1) with width w."""
    x0, y0, x1, y1 = col(x0), col(y0), col(x1), col(y1)
    dx, dy = x1 - x0, y1 - y0
    L2 = dx * dx + dy * dy + 1e-9
    t = np.clip(((x - x0) * dx + (y - y0) * dy) / L2, 0, 1)
    d = np.sqrt((x - x0 - t * dx) ** 2 + (y - y0 - t * dy) ** 2)
    return soft(d - col(w) / 2)


def glyph(idx, cx, cy, height, theta=0.0, shear=0.0, thickness=0.5, aspect=1.0, x=X, y=Y):
    """Render glyphs (font indices [N]) centred at (cx, cy), `height` = glyph height in coords.

    thickness in (0, 1): lower threshold on the bilinear-sampled bitmap gives thicker strokes.
    """
    idx = np.asarray(idx, np.int64)
    n = idx.shape[0]
    th = np.broadcast_to(np.asarray(theta, np.float32), (n,))
    u, v = rot(x, y, cx, cy, th)
    u = u - col(np.broadcast_to(np.asarray(shear, np.float32), (n,))) * v
    cell = col(height) / 7.0  # one font cell
    gx = u / (cell * col(np.broadcast_to(np.asarray(aspect, np.float32), (n,)))) + 3.5  # 0..7 over the glyph (with border)
    gy = v / cell + 4.5
    gx = np.clip(gx, 0, 6.999)
    gy = np.clip(gy, 0, 8.999)
    x0 = np.floor(gx).astype(np.int64)
    y0 = np.floor(gy).astype(np.int64)
    fx = (gx - x0).astype(np.float32)
    fy = (gy - y0).astype(np.float32)
    x1 = np.minimum(x0 + 1, 6)
    y1 = np.minimum(y0 + 1, 8)
    b = idx.reshape(-1, 1, 1)
    f = _FONT
    val = (f[b, y0, x0] * (1 - fx) * (1 - fy) + f[b, y0, x1] * fx * (1 - fy)
           + f[b, y1, x0] * (1 - fx) * fy + f[b, y1, x1] * fx * fy)
    t = col(1.0 - np.broadcast_to(np.asarray(thickness, np.float32), (n,)))
    return np.clip((val - t + 0.12) / 0.24, 0, 1).astype(np.float32)


def paint(img, alpha, color):
    """Composite `color` ([N, 3] or [3]) with coverage alpha [N, S, S] onto img [N, S, S, 3] in place."""
    color = np.asarray(color, np.float32)
    if color.ndim == 1:
        color = color[None]
    a = alpha[..., None]
    img *= 1.0 - a
    img += a * color[:, None, None, :]
    return img


def paint_field(img, alpha, field):
    """Composite a per-pixel colour field [N, S, S, 3] with coverage alpha."""
    a = alpha[..., None]
    img *= 1.0 - a
    img += a * field
    return img


def _interp_matrix(k: int, size: int = SIZE) -> np.ndarray:
    """[size, k] bilinear upsampling matrix (cell-centred)."""
    pos = (np.arange(size) + 0.5) / size * k - 0.5
    pos = np.clip(pos, 0, k - 1)
    i0 = np.floor(pos).astype(int)
    i1 = np.minimum(i0 + 1, k - 1)
    f = pos - i0
    A = np.zeros((size, k), np.float32)
    A[np.arange(size), i0] += 1 - f
    A[np.arange(size), i1] += f
    return A


_INTERP = {}


def noise(rng: np.random.Generator, n: int, k: int, channels: int = 1) -> np.ndarray:
    """Smooth noise: a k x k grid of N(0,1) values upsampled bilinearly to [n, S, S, channels]."""
    if k not in _INTERP:
        _INTERP[k] = _interp_matrix(k)
    A = _INTERP[k]
    g = rng.standard_normal((n, channels, k, k)).astype(np.float32)
    out = np.einsum("ik,nckl,jl->nijc", A, g, A, optimize=True)
    return out.astype(np.float32)


def fbm(rng: np.random.Generator, n: int, channels: int = 1, octaves=(3, 6, 12), gains=(1.0, 0.5, 0.25)):
    out = np.zeros((n, SIZE, SIZE, channels), np.float32)
    for k, g in zip(octaves, gains):
        out += g * noise(rng, n, k, channels)
    return out / np.sqrt(sum(g * g for g in gains))


def fill(n: int, color) -> np.ndarray:
    color = np.asarray(color, np.float32)
    if color.ndim == 1:
        color = np.broadcast_to(color, (n, 3))
    return np.broadcast_to(color[:, None, None, :], (n, SIZE, SIZE, 3)).copy()


def vgradient(top, bottom, n: int) -> np.ndarray:
    """Vertical colour gradient from top [N,3] to bottom [N,3]."""
    t = ((Y[0] + 1) / 2)[None, :, :, None]
    top = np.asarray(top, np.float32).reshape(-1, 1, 1, 3)
    bottom = np.asarray(bottom, np.float32).reshape(-1, 1, 1, 3)
    return np.broadcast_to(top * (1 - t) + bottom * t, (n, SIZE, SIZE, 3)).astype(np.float32).copy()


def jitter_color(rng, base, n, amount=0.08):
    base = np.asarray(base, np.float32)
    return np.clip(base + rng.uniform(-amount, amount, (n, 3)).astype(np.float32), 0, 1)


def pick_colors(rng, palette, n):
    palette = np.asarray(palette, np.float32)
    return palette[rng.integers(0, len(palette), n)]


def finish(img, rng, noise_std=0.02, brightness=(0.85, 1.15), contrast=(0.85, 1.15)) -> np.ndarray:
    """Global photometric jitter + pixel noise, then quantise to uint8 [N, S, S, 3]."""
    n = img.shape[0]
    b = rng.uniform(*brightness, n).astype(np.float32).reshape(-1, 1, 1, 1)
    c = rng.uniform(*contrast, n).astype(np.float32).reshape(-1, 1, 1, 1)
    m = img.mean(axis=(1, 2, 3), keepdims=True)
    img = (img - m) * c + m * b
    img = img + rng.standard_normal(img.shape, dtype=np.float32) * noise_std
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def select(mask_by_class: dict, labels: np.ndarray):
    """Indices of samples per class: {class: idx array}."""
    return {c: np.nonzero(labels == c)[0] for c in mask_by_class}
