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
from ml.decode.trajectory import (
    DecodedTrajectory,
    decode_video_to_trajectory,
    interpolate_by_travel_time,
    pixel_route,
    snap_route,
)

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
