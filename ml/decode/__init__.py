"""Decode rendered or generated videos: head dots, path masks, skeletons, GPS trajectories."""

from ml.decode.heads import (
    HeadDecode,
    as_video_255,
    decode_head_positions,
    decode_heads,
    decode_heads_from_layer,
    decode_path_mask,
    decode_path_mask_from_layer,
    default_prune_px,
    prune_spurs,
    skeleton_endpoints,
    skeletonize_path,
)
from ml.decode.drawing import drawing_metrics

# the trajectory decoder (road snapping: the geo and map-matching stack) is imported on first use, so that
# rewards and validation, which read only heads and paths, keep the training path light
_LAZY = {name: "ml.decode.trajectory" for name in
         ("DecodedTrajectory", "decode_video_to_trajectory", "interpolate_by_travel_time", "pixel_route", "snap_route")}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ml.decode' has no attribute '{name}'")


__all__ = [
    "HeadDecode",
    "as_video_255",
    "decode_head_positions",
    "decode_heads",
    "drawing_metrics",
    "decode_heads_from_layer",
    "decode_path_mask",
    "decode_path_mask_from_layer",
    "default_prune_px",
    "prune_spurs",
    "skeleton_endpoints",
    "skeletonize_path",
    "DecodedTrajectory",
    "decode_video_to_trajectory",
    "pixel_route",
    "snap_route",
    "interpolate_by_travel_time",
]
