"""Pixel-level decoding of (rendered or generated) videos: head dots, path masks, skeletons.

Colour rules come from :mod:`ml.render.style`: head pixels have ``B - max(R, G)`` above
``BLUENESS_THRESHOLD``, path pixels ``R - max(G, B)`` above ``REDNESS_THRESHOLD``. Both are
relative scores, so a uniform brightness shift or mild colour drift leaves them unchanged, and
blur only lowers the peak of a dot (the thresholds sit at about a third of the nominal scores).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.measure import label
from scipy.ndimage import binary_opening
from skimage.morphology import skeletonize

from ml.pixels import unit_to_255
from ml.render import style

_OPEN_FOOTPRINT = np.ones((2, 2), dtype=bool)


def as_video_255(video: np.ndarray) -> np.ndarray:
    """A video as float32 ``(K, H, W, 3)`` in [0, 255].

    Accepts uint8 ``(K, H, W, 3)``; float in [0, 255], [0, 1] or [-1, 1] (model space; detected
    by a negative minimum); channels-first ``(3, K, H, W)`` (model layout); a single frame
    ``(H, W, 3)`` becomes ``K = 1``.
    """
    v = np.asarray(video)
    if v.ndim == 3:
        v = v[None]
    if v.ndim != 4:
        raise ValueError(f"video must be (K, H, W, 3) or (3, K, H, W), got shape {v.shape}")
    if v.shape[-1] != 3 and v.shape[0] == 3:
        v = np.moveaxis(v, 0, -1)
    if v.shape[-1] != 3:
        raise ValueError(f"video must have 3 colour channels last (K, H, W, 3), got shape {v.shape}")
    if v.dtype == np.uint8:
        return v.astype(np.float32)
    v = v.astype(np.float32)
    finite = v[np.isfinite(v)]
    if finite.size == 0:
        return np.zeros(v.shape, dtype=np.float32)
    v = np.nan_to_num(v, nan=0.0, posinf=255.0, neginf=0.0)
    lo, hi = float(finite.min()), float(finite.max())
    if lo < -0.01 and hi <= 1.5:
        v = unit_to_255(v)
    elif hi <= 1.5:
        v = v * 255.0
    return np.clip(v, 0.0, 255.0)


@dataclass
class HeadDecode:
    """Per-frame head-dot decoding details."""

    xy: np.ndarray  # (K, 2) pixel (col, row), NaN where missing
    area: np.ndarray  # (K,) pixels of the chosen component (0 where missing)
    n_components: np.ndarray  # (K,) candidate components after the opening
    touches_border: np.ndarray  # (K,) the chosen component touches the image border


def decode_heads(
    video: np.ndarray,
    threshold: float = style.BLUENESS_THRESHOLD,
    min_area: int = 2,
) -> HeadDecode:
    """Head dot of every frame: blueness mask, 2x2 opening, connected components, best component.

    The best component has the largest blueness mass; when the opening removes everything (a
    very small or faint dot) the unopened mask is used. The position is the blueness-weighted
    centroid of the component in continuous pixel coordinates (pixel centres at ``i + 0.5``).
    """
    V = as_video_255(video)
    return _heads_from_score(style.blueness(V), np.full(V.shape[0], float(threshold)), min_area)


def decode_heads_from_layer(layer: np.ndarray, min_peak: float = 0.2, min_area: int = 2) -> HeadDecode:
    """Head of every frame read from a drawing layer's head channel (uint8 ``(K, H, W, 2)``, or float in [0, 1]).

    The channel is a soft blob, so its strength varies between samples: a frame's head is the part
    above half its peak (frames whose peak is below ``min_peak`` have none), and its position the
    weighted centroid, as for a rendered dot.
    """
    h = _layer_alpha(layer)[..., style.HEAD_CHANNEL]
    peak = h.reshape(len(h), -1).max(axis=1)
    thr = np.where(peak >= min_peak, 0.5 * peak, np.inf)
    return _heads_from_score(h, thr, min_area)


def _layer_alpha(layer: np.ndarray) -> np.ndarray:
    a = np.asarray(layer)
    if a.ndim != 4 or a.shape[-1] != 2:
        raise ValueError(f"a drawing layer must be (K, H, W, 2), got shape {a.shape}")
    return a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else np.clip(a.astype(np.float32), 0.0, 1.0)


def _heads_from_score(B: np.ndarray, threshold: np.ndarray, min_area: int) -> HeadDecode:
    """Per-frame best component of ``score > threshold[k]`` (``(K, H, W)`` scores): see :func:`decode_heads`."""
    K, H, W = B.shape
    out = HeadDecode(np.full((K, 2), np.nan), np.zeros(K, dtype=np.int64), np.zeros(K, dtype=np.int64),
                     np.zeros(K, dtype=bool))
    prev = None
    for k in range(K):
        if not np.isfinite(threshold[k]):
            continue
        m = B[k] > threshold[k]
        if not m.any():
            continue
        mo = binary_opening(m, structure=_OPEN_FOOTPRINT)
        if not mo.any():
            mo = m
        lab = label(mo, connectivity=2)
        n = int(lab.max())
        out.n_components[k] = n
        flat = lab.ravel()
        w = np.clip(B[k].ravel() - 0.5 * threshold[k], 0.0, None)
        area = np.bincount(flat, minlength=n + 1)
        mass = np.bincount(flat, weights=w, minlength=n + 1)
        area[0] = 0
        mass[0] = -1.0
        mass[area < min_area] = -1.0
        if prev is not None and n > 1:
            # prefer, among components of similar mass, the one nearest the previous head
            rr, cc = np.divmod(np.arange(H * W), W)
            cy = np.bincount(flat, weights=rr + 0.5, minlength=n + 1) / np.maximum(area, 1)
            cx = np.bincount(flat, weights=cc + 0.5, minlength=n + 1) / np.maximum(area, 1)
            d = np.hypot(cx - prev[0], cy - prev[1])
            mass = mass / (1.0 + d / max(H, W))
        best = int(np.argmax(mass))
        if mass[best] <= 0:
            continue
        sel = flat == best
        rr, cc = np.divmod(np.nonzero(sel)[0], W)
        ww = w[sel]
        if ww.sum() <= 0:
            ww = np.ones_like(ww)
        out.xy[k] = ((cc + 0.5) * ww).sum() / ww.sum(), ((rr + 0.5) * ww).sum() / ww.sum()
        out.area[k] = int(sel.sum())
        out.touches_border[k] = bool(rr.min() == 0 or cc.min() == 0 or rr.max() == H - 1 or cc.max() == W - 1)
        prev = out.xy[k]
    return out


def decode_head_positions(video: np.ndarray) -> np.ndarray:
    """Head-dot position of each frame: ``(K, 2)`` continuous pixel ``(col, row)``, NaN where missing.

    ``video``: uint8 ``(K, H, W, 3)`` or float (see :func:`as_video_255`).
    """
    return decode_heads(video).xy


def decode_path_mask(
    frame: np.ndarray,
    threshold: float = style.REDNESS_THRESHOLD,
    include_head: bool = True,
    min_size: int = 3,
) -> np.ndarray:
    """Bool ``(H, W)`` mask of the drawn path in one frame (red pixels, plus the head dot by default).

    Components smaller than ``min_size`` pixels (isolated noise) are removed.
    """
    F = as_video_255(frame)[-1]
    m = style.redness(F) > threshold
    if include_head:
        m |= style.blueness(F) > style.BLUENESS_THRESHOLD
    return _drop_small(m, min_size)


def decode_path_mask_from_layer(frame_layer: np.ndarray, threshold: float = 0.5, min_size: int = 3) -> np.ndarray:
    """Bool ``(H, W)`` path mask of one frame of a drawing layer (``(H, W, 2)``): path or head channel above
    ``threshold``; components smaller than ``min_size`` pixels removed (as :func:`decode_path_mask`)."""
    a = _layer_alpha(np.asarray(frame_layer)[None])[0]
    m = (a > threshold).any(axis=-1)
    return _drop_small(m, min_size)


def _drop_small(m: np.ndarray, min_size: int) -> np.ndarray:
    """The mask without its 8-connected components smaller than ``min_size`` pixels."""
    if min_size <= 1 or not m.any():
        return m
    lab = label(m, connectivity=2)
    size = np.bincount(lab.ravel())
    size[0] = 0
    return size[lab] >= min_size


def skeletonize_path(mask: np.ndarray, prune_px: int = 0) -> np.ndarray:
    """One-pixel-wide skeleton (bool ``(H, W)``) of a path mask (``skimage.morphology.skeletonize``).

    ``prune_px > 0`` removes spurs: branches of at most ``prune_px`` pixels that run from an
    endpoint to a junction (skeletonising the blocky ends of a line wider than one pixel, or the
    head dot, leaves such 1-3 px forks). The two ends of a path without junctions are kept.
    """
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return m.copy()
    skel = skeletonize(m)
    if prune_px > 0:
        skel = prune_spurs(skel, prune_px)
    return skel


def default_prune_px(resolution: int) -> int:
    """Spur length worth pruning at a resolution: 0 while the path is drawn 1 px wide (pruning then
    also eats true ends that touch the path), else the path width + 1 (measured on rendered truth:
    exact-topology share at 128 px goes from 0.80 to 0.97)."""
    from ml.render.config import RenderConfig

    w = RenderConfig().scaled(RenderConfig().path_width_px, resolution)
    return 0 if w < 2 else int(np.ceil(w)) + 1


def _neighbour_count(s: np.ndarray) -> np.ndarray:
    p = np.pad(s, 1).astype(np.int8)
    H, W = s.shape
    return sum(p[1 + dr : 1 + dr + H, 1 + dc : 1 + dc + W] for dr in (-1, 0, 1) for dc in (-1, 0, 1)
               if (dr, dc) != (0, 0))


def prune_spurs(skel: np.ndarray, max_len: int) -> np.ndarray:
    """Remove skeleton branches of at most ``max_len`` pixels ending at a junction (one pass)."""
    s = np.asarray(skel, dtype=bool).copy()
    H, W = s.shape
    nb = _neighbour_count(s)
    junction = s & (nb >= 3)
    if not junction.any():
        return s
    remove: list[tuple[int, int]] = []
    for r, c in np.argwhere(s & (nb == 1)):
        chain, prev, cur = [(int(r), int(c))], None, (int(r), int(c))
        hit = False
        for _ in range(max_len):
            nxt = [(cur[0] + dr, cur[1] + dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)
                   if (dr, dc) != (0, 0) and 0 <= cur[0] + dr < H and 0 <= cur[1] + dc < W
                   and s[cur[0] + dr, cur[1] + dc] and (cur[0] + dr, cur[1] + dc) != prev
                   and (cur[0] + dr, cur[1] + dc) not in chain]
            if not nxt:
                break
            if any(junction[q] for q in nxt):
                hit = True
                break
            prev, cur = cur, nxt[0]
            chain.append(cur)
        if hit:
            remove += chain
    for q in remove:
        s[q] = False
    return s


def skeleton_endpoints(skel: np.ndarray) -> np.ndarray:
    """``(n, 2)`` (row, col) of skeleton pixels with exactly one 8-neighbour."""
    s = np.asarray(skel, dtype=bool)
    return np.argwhere(s & (_neighbour_count(s) == 1))
