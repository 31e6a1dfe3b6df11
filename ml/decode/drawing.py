"""Pixel-level scores of a generated drawing against the rendered truth (validation, evaluation, benchmarks)."""

from __future__ import annotations

import numpy as np

from ml.decode.heads import decode_head_positions, decode_heads_from_layer, decode_path_mask, decode_path_mask_from_layer


def drawing_metrics(gen: np.ndarray, truth: np.ndarray, gen_layer: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-video pixel metrics of generated against true uint8 videos (B, K, H, W, 3), each (B,), the
    generated heads and path read from ``gen_layer`` (B, K, H, W, 2) when the model draws a layer
    (as the decoder reads them):

    ``head_detect_rate`` (share of the frames with a true head dot where a generated one is decoded),
    ``head_error_px`` (mean pixel distance of the decoded dots over those frames, NaN when none) and
    ``path_iou`` (intersection over union of the last frame's decoded path masks).
    """
    det, err, iou = [], [], []
    for i, (g, t) in enumerate(zip(gen, truth)):
        gp = decode_head_positions(g) if gen_layer is None else decode_heads_from_layer(gen_layer[i]).xy
        tp = decode_head_positions(t)
        has_t = np.isfinite(tp).all(1)
        both = has_t & np.isfinite(gp).all(1)
        det.append(both.sum() / max(1, has_t.sum()))
        err.append(float(np.linalg.norm(gp[both] - tp[both], axis=1).mean()) if both.any() else np.nan)
        gm = decode_path_mask(g[-1]) if gen_layer is None else decode_path_mask_from_layer(gen_layer[i][-1])
        tm = decode_path_mask(t[-1])
        union = (gm | tm).sum()
        iou.append((gm & tm).sum() / union if union else np.nan)
    return {"head_detect_rate": np.asarray(det, float), "head_error_px": np.asarray(err, float),
            "path_iou": np.asarray(iou, float)}
