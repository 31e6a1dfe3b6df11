"""Verifiable rewards of Traj-GDPO (DESIGN section 9): distance, direction, connectivity.

All three score a *generated* video against the truth, using only what can be decoded from pixels:

- **distance** - at the first, the last and three evenly spaced intermediate frames, the distance
  in metres between the generated and the true head dot. Pixel positions are turned into metres
  with the tile's scale (``metres_per_pixel = tile_size_m / resolution``): tiles are squares in the
  city's projected (UTM) CRS, so ``Tile.pixel_to_xy`` is an affine map with the same scale on both
  axes and the Euclidean distance in projected metres *is* the geodesic distance to within the UTM
  scale error (< 0.1 %). Mapping: ``r_f = exp(-d_f / d0)`` (``RewardConfig.distance_scale_m``), so
  the reward lies in [0, 1], is 1 for a perfect dot and decays smoothly; a frame whose generated
  dot is missing scores 0, the worst value. Frames whose *true* dot is missing are left out; the
  reward is the mean over the scored frames (0 if there are none).
- **direction** - cosine between the generated and true start-to-end displacements (head dot at
  the first frame -> head dot at the last frame), in [-1, 1]. A missing generated dot at the first
  or last frame scores -1 (the worst value). A displacement shorter than
  ``min_displacement_px`` (a generated dot that did not move, or a true vehicle that did not) has
  no direction and scores 0. The true endpoints fall back to the first/last frames where the true
  dot was found.
- **connectivity** - 1 when the last frame's path mask is exactly one 8-connected component whose
  skeleton (``skimage.morphology.skeletonize``) has exactly two endpoints (skeleton pixels with
  exactly one 8-neighbour), else 0. Empty masks, broken (several components), branched (more than
  two endpoints) and closed (no endpoint) paths score 0.

Head dots and path masks come from :mod:`ml.decode` (``decode_head_positions(video) -> (K, 2)``
pixel (col, row) with NaN where missing; ``decode_path_mask(frame) -> bool (H, W)``); other
decoders with the same signatures can be passed in.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from skimage.measure import label

from ml.rewards.config import RewardConfig

REWARD_KEYS: tuple[str, ...] = ("distance", "direction", "connectivity")

HeadDecoder = Callable[[np.ndarray], np.ndarray]
PathDecoder = Callable[[np.ndarray], np.ndarray]


def distance_frame_indices(n_frames: int, n_scored: int = 5) -> np.ndarray:
    """Indices of the frames the distance reward scores: first, last and evenly spaced between.

    >>> distance_frame_indices(9).tolist()
    [0, 2, 4, 6, 8]
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    return np.unique(np.round(np.linspace(0, n_frames - 1, max(int(n_scored), 2))).astype(np.int64))


def _as_batch(head_px: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(head_px, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[-1] != 2:
        raise ValueError(f"{name}: expected (K, 2) or (B, K, 2) pixel (col, row) positions, got shape {a.shape}")
    return a


def distance_reward(
    gen_head_px: np.ndarray,
    true_head_px: np.ndarray,
    metres_per_pixel: float | np.ndarray,
    cfg: RewardConfig | None = None,
) -> np.ndarray:
    """Distance reward, shape (B,) (B = 1 for unbatched (K, 2) input); see the module docstring.

    ``gen_head_px``, ``true_head_px``: (B, K, 2) or (K, 2) pixel (col, row), NaN where missing.
    ``metres_per_pixel``: scalar or (B,).
    """
    cfg = cfg or RewardConfig()
    gen, true = _as_batch(gen_head_px, "gen_head_px"), _as_batch(true_head_px, "true_head_px")
    if gen.shape != true.shape:
        raise ValueError(f"gen_head_px {gen.shape} and true_head_px {true.shape} differ in shape")
    mpp = np.broadcast_to(np.asarray(metres_per_pixel, dtype=np.float64), (gen.shape[0],))
    idx = distance_frame_indices(gen.shape[1], cfg.n_distance_frames)
    g, t = gen[:, idx], true[:, idx]
    d_m = np.linalg.norm(g - t, axis=-1) * mpp[:, None]  # (B, F), NaN where either is missing
    r = np.exp(-d_m / cfg.distance_scale_m)
    true_ok = np.isfinite(t).all(-1)
    gen_ok = np.isfinite(g).all(-1)
    r = np.where(gen_ok, r, 0.0)  # missing generated dot -> worst value
    r = np.where(true_ok, r, 0.0)
    n = true_ok.sum(-1)
    return np.where(n > 0, r.sum(-1) / np.maximum(n, 1), 0.0)


def _first_last_valid(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For (B, K, 2): the first and last finite positions per row (NaN when fewer than one)."""
    ok = np.isfinite(pts).all(-1)  # (B, K)
    k = pts.shape[1]
    first = np.where(ok.any(-1), ok.argmax(-1), 0)
    last = np.where(ok.any(-1), k - 1 - ok[:, ::-1].argmax(-1), 0)
    rows = np.arange(pts.shape[0])
    a, b = pts[rows, first].copy(), pts[rows, last].copy()
    a[~ok.any(-1)] = np.nan
    b[~ok.any(-1)] = np.nan
    return a, b


def direction_reward(
    gen_head_px: np.ndarray,
    true_head_px: np.ndarray,
    cfg: RewardConfig | None = None,
) -> np.ndarray:
    """Direction reward in [-1, 1], shape (B,); see the module docstring."""
    cfg = cfg or RewardConfig()
    gen, true = _as_batch(gen_head_px, "gen_head_px"), _as_batch(true_head_px, "true_head_px")
    if gen.shape != true.shape:
        raise ValueError(f"gen_head_px {gen.shape} and true_head_px {true.shape} differ in shape")
    dg = gen[:, -1] - gen[:, 0]
    t0, t1 = _first_last_valid(true)
    dt = t1 - t0
    ng, nt = np.linalg.norm(dg, axis=-1), np.linalg.norm(dt, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (dg * dt).sum(-1) / (ng * nt)
    gen_missing = ~np.isfinite(dg).all(-1)
    no_direction = ~np.isfinite(nt) | (nt < cfg.min_displacement_px) | (ng < cfg.min_displacement_px)
    out = np.where(no_direction, 0.0, np.clip(np.nan_to_num(cos, nan=0.0), -1.0, 1.0))
    return np.where(gen_missing, -1.0, out)


def path_topology(path_mask: np.ndarray, prune_px: int | None = None) -> tuple[int, int]:
    """(number of 8-connected components of the mask, number of endpoints of its skeleton).

    The skeleton comes from ``ml.decode.skeletonize_path``; ``prune_px`` (default: what suits
    the mask's resolution, ``ml.decode.default_prune_px``) removes the tiny spurs that a path
    drawn wider than one pixel leaves at its blocky ends, so truth scores as connected.
    """
    from ml.decode import default_prune_px, skeleton_endpoints, skeletonize_path

    m = np.asarray(path_mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"path_mask must be (H, W), got shape {m.shape}")
    if not m.any():
        return 0, 0
    n_comp = int(label(m, connectivity=2).max())
    prune = default_prune_px(m.shape[1]) if prune_px is None else prune_px
    n_end = len(skeleton_endpoints(skeletonize_path(m, prune)))
    return n_comp, n_end


def connectivity_reward(path_mask: np.ndarray) -> float:
    """1.0 when the path is one 8-connected component with exactly two skeleton endpoints, else 0.0."""
    n_comp, n_end = path_topology(path_mask)
    return float(n_comp == 1 and n_end == 2)


def _default_decoders() -> tuple[HeadDecoder, PathDecoder]:
    from ml.decode import decode_head_positions, decode_path_mask

    return decode_head_positions, decode_path_mask


def compute_rewards(
    gen_videos: np.ndarray,
    truth: np.ndarray,
    metres_per_pixel: float | np.ndarray,
    cfg: RewardConfig | None = None,
    head_decoder: HeadDecoder | None = None,
    path_decoder: PathDecoder | None = None,
) -> dict[str, np.ndarray]:
    """Score a batch of generated videos against the truth.

    Args:
        gen_videos: uint8 (B, K, H, W, 3) generated videos (RGB).
        truth: either the true head dots, float (B, K, 2) pixel (col, row) with NaN where missing,
            or the true videos, uint8 (B, K, H, W, 3), whose head dots are decoded.
        metres_per_pixel: scalar or (B,), the tile scale of each sample.
        cfg: reward parameters (defaults: :class:`RewardConfig`).
        head_decoder, path_decoder: default to ``ml.decode.decode_head_positions`` and
            ``ml.decode.decode_path_mask``.

    Returns:
        ``{"distance": (B,), "direction": (B,), "connectivity": (B,)}`` float64 arrays.
    """
    cfg = cfg or RewardConfig()
    gen_videos = np.asarray(gen_videos)
    if gen_videos.ndim != 5 or gen_videos.shape[-1] != 3:
        raise ValueError(f"gen_videos must be uint8 (B, K, H, W, 3), got shape {gen_videos.shape}")
    b, k = gen_videos.shape[:2]
    if head_decoder is None or path_decoder is None:
        dh, dp = _default_decoders()
        head_decoder, path_decoder = head_decoder or dh, path_decoder or dp
    truth = np.asarray(truth)
    if truth.ndim == 5:
        true_head = np.stack([np.asarray(head_decoder(v), dtype=np.float64) for v in truth])
    elif truth.ndim == 3 and truth.shape[-1] == 2:
        true_head = truth.astype(np.float64)
    else:
        raise ValueError(f"truth must be (B, K, 2) head positions or (B, K, H, W, 3) videos, got shape {truth.shape}")
    if true_head.shape != (b, k, 2):
        raise ValueError(f"truth gives head positions of shape {true_head.shape}, expected {(b, k, 2)}")
    gen_head = np.stack([np.asarray(head_decoder(v), dtype=np.float64) for v in gen_videos])
    conn = np.array([connectivity_reward(path_decoder(v[-1])) for v in gen_videos], dtype=np.float64)
    return {
        "distance": distance_reward(gen_head, true_head, metres_per_pixel, cfg),
        "direction": direction_reward(gen_head, true_head, cfg),
        "connectivity": conn,
    }
