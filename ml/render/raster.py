"""Vectorised rasterisation primitives (numpy only): thick segments, disks, squares.

Coordinates are continuous pixel coordinates ``(col, row)`` as in :class:`ml.geo.Tile` (pixel
``(r, c)`` covers ``[c, c+1) x [r, r+1)``, its centre at ``(c + 0.5, r + 0.5)``). Functions return
flat pixel indices ``row * W + col`` (inside the image only), so layers can be combined and
painted with one fancy-indexing assignment.
"""

from __future__ import annotations

import numpy as np

SAMPLE_STEP_PX = 0.25
"""Spacing of the points sampled along segments before stamping."""


def sample_segments(a: np.ndarray, b: np.ndarray, step: float = SAMPLE_STEP_PX) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points every ``<= step`` pixels along segments ``a -> b`` (both ends included).

    Returns ``(pts (N, 2), seg (N,) segment index, frac (N,) position in [0, 1] along it)``.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 2)
    if len(a) == 0:
        return np.zeros((0, 2)), np.zeros(0, dtype=np.int64), np.zeros(0)
    d = b - a
    length = np.hypot(d[:, 0], d[:, 1])
    n = np.ceil(length / step).astype(np.int64) + 1  # points per segment (>= 1 step)
    n = np.maximum(n, 2)
    seg = np.repeat(np.arange(len(a)), n)
    start = np.cumsum(n) - n
    local = np.arange(len(seg)) - start[seg]
    frac = local / (n[seg] - 1)
    pts = a[seg] + frac[:, None] * d[seg]
    return pts, seg, frac


def _disk_offsets(radius: float) -> np.ndarray:
    r = int(np.ceil(radius + 0.5))
    g = np.arange(-r, r + 1)
    dc, dr = np.meshgrid(g, g)
    return np.column_stack([dc.ravel(), dr.ravel()])


def stamp_disks(pts: np.ndarray, radius: float, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixels whose centre lies within ``radius`` of any point (``radius <= 0.5``: the pixel holding it).

    Returns ``(flat pixel index (M,), index of the stamping point (M,))``; pixels outside the image
    are dropped. A thin line (``radius <= 0.5``) sampled densely becomes a 4-connected pixel chain.
    """
    H, W = shape
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    base = np.floor(pts).astype(np.int64)
    if radius <= 0.5:
        c, r = base[:, 0], base[:, 1]
        ok = (c >= 0) & (c < W) & (r >= 0) & (r < H)
        idx = np.nonzero(ok)[0]
        return r[idx] * W + c[idx], idx
    off = _disk_offsets(radius)
    cand = base[:, None, :] + off[None, :, :]  # (N, O, 2)
    d2 = ((cand + 0.5 - pts[:, None, :]) ** 2).sum(axis=2)
    ok = (d2 <= radius * radius) & (cand[..., 0] >= 0) & (cand[..., 0] < W) & (cand[..., 1] >= 0) & (cand[..., 1] < H)
    pi, oi = np.nonzero(ok)
    cc = cand[pi, oi]
    return cc[:, 1] * W + cc[:, 0], pi


def stamp_squares(pts: np.ndarray, side: float, shape: tuple[int, int]) -> np.ndarray:
    """Flat indices of the pixels whose centre lies in an axis-aligned square of ``side`` around each point."""
    H, W = shape
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    half = max(side, 1.0) / 2.0
    r = int(np.ceil(half + 0.5))
    g = np.arange(-r, r + 1)
    dc, dr = np.meshgrid(g, g)
    off = np.column_stack([dc.ravel(), dr.ravel()])
    base = np.floor(pts).astype(np.int64)
    cand = base[:, None, :] + off[None]
    dd = np.abs(cand + 0.5 - pts[:, None, :])
    ok = (dd.max(axis=2) <= half + 1e-9) & (cand[..., 0] >= 0) & (cand[..., 0] < W) & (cand[..., 1] >= 0) & (cand[..., 1] < H)
    cc = cand[ok]
    return cc[:, 1] * W + cc[:, 0]


def line_pixels(a: np.ndarray, b: np.ndarray, width: float, shape: tuple[int, int]) -> np.ndarray:
    """Flat indices (unique) of the pixels covered by thick segments ``a -> b`` of ``width`` pixels."""
    pts, _, _ = sample_segments(a, b)
    pix, _ = stamp_disks(pts, width / 2.0, shape)
    return np.unique(pix)


def clip_segments_to_box(
    a: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clip segments ``a -> b`` to the box ``[lo, hi]`` (Liang-Barsky).

    Returns ``(a', b', kept)``: the clipped ends of the segments that meet the box and their
    indices in the input.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 2)
    keep = np.nonzero((np.maximum(a, b) >= lo).all(axis=1) & (np.minimum(a, b) <= hi).all(axis=1))[0]
    a, b = a[keep], b[keep]
    d = b - a
    t0 = np.zeros(len(a))
    t1 = np.ones(len(a))
    for k in range(2):
        for p, q in ((-d[:, k], a[:, k] - lo[k]), (d[:, k], hi[k] - a[:, k])):
            par = np.abs(p) < 1e-12
            with np.errstate(divide="ignore", invalid="ignore"):
                r = q / p
            t0 = np.where(~par & (p < 0), np.maximum(t0, r), t0)
            t1 = np.where(~par & (p > 0), np.minimum(t1, r), t1)
            t1 = np.where(par & (q < 0), -1.0, t1)
    ok = t0 <= t1
    a2 = a[ok] + t0[ok, None] * d[ok]
    b2 = a[ok] + t1[ok, None] * d[ok]
    return a2, b2, keep[ok]
