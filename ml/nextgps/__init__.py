"""Next-GPS prediction (issue 13 item 3): from a window's signaling and the GPS of its first part, the
positions at fixed horizons after it, by the video model continuing its drawing and by baselines.

Entry points: :func:`predict_next_gps` (every method on some windows), :func:`next_gps_report` (choices on
val, test scored once), :func:`write_next_gps`; the config is :class:`NextGPSConfig` (stage ``next_gps``).
"""

from ml.nextgps.config import NextGPSConfig
from ml.nextgps.predict import (constant_velocity_road, continuation_sample, industrial_hmm_joined, known_frame_count,
                                known_prefix, last_position, prefix_only, seq2seq_at_targets, video_at_targets)
from ml.nextgps.report import (load_next_gps, markdown_section, next_gps_report, predict_next_gps, score_next_gps,
                               summarise_next_gps, write_next_gps)
from ml.nextgps.road import RoadPosition, RoadWalker

__all__ = [
    "NextGPSConfig", "RoadPosition", "RoadWalker", "constant_velocity_road", "continuation_sample",
    "industrial_hmm_joined", "known_frame_count", "known_prefix", "last_position", "load_next_gps", "markdown_section",
    "next_gps_report", "predict_next_gps", "prefix_only", "score_next_gps", "seq2seq_at_targets", "summarise_next_gps",
    "video_at_targets", "write_next_gps",
]
