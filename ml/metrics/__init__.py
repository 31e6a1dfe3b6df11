"""Per-sample trajectory metrics and their aggregation (DESIGN section 11).

``evaluate_sample(pred_xy, true_xy, net, crs, latency_ms=None) -> dict`` and
``aggregate(per_sample_df) -> dict`` with the report keys in :data:`REPORT_KEYS`.
"""

from ml.metrics.aggregate import REPORT_KEYS, aggregate, timed
from ml.metrics.trajectory import (
    ROAD_ADHERENCE_M,
    ROUTE_TOL_M,
    dtw_m,
    error_stats,
    evaluate_sample,
    fill_missing,
    frechet_m,
    point_errors_m,
    road_adherence,
    route_overlap,
)

__all__ = [
    "REPORT_KEYS", "aggregate", "timed", "ROAD_ADHERENCE_M", "ROUTE_TOL_M", "dtw_m", "error_stats",
    "evaluate_sample", "fill_missing", "frechet_m", "point_errors_m", "road_adherence", "route_overlap",
]
