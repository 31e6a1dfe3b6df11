"""Per-sample trajectory metrics (DESIGN section 11), vectorised with numpy / shapely.

Conventions
-----------
* ``pred_xy`` and ``true_xy`` are ``(n, 2)`` projected metres (the city's UTM CRS) at the same
  evaluation times. Point errors are haversine metres (positions converted to lon/lat with the
  city's projection), as in the literature; shape metrics (TME, route precision/recall, DTW,
  Frechet) use projected metres, whose scale error inside a UTM zone is below 0.1 %.
* Missing predictions (NaN rows) are filled by holding the nearest finite prediction in time
  (forward, then backward fill); a prediction with no finite row yields NaN metrics.
* Route metrics compare the polylines through the points in time order. A part of one polyline
  counts as "on" the other when it lies within ``tol_m`` (default :data:`ROUTE_TOL_M` = 25 m)
  of it: this absorbs GPS noise (about 5 m), the lateral offset of two carriageways of one
  street, and the corner cutting of a truth sampled at the evaluation interval, without letting
  the parallel street of a 100 m block count.
"""

from __future__ import annotations

import numpy as np
import shapely

from ml.cities.network import RoadNetwork
from ml.geo import CityProjection, haversine_m

ROUTE_TOL_M: float = 25.0  # polyline matching tolerance for TME and route precision/recall
ROAD_ADHERENCE_M: float = 15.0  # a predicted point within this of a drivable road is on-road


def fill_missing(xy: np.ndarray) -> np.ndarray:
    """Hold the nearest finite row in time for NaN rows (forward fill, then backward fill)."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    ok = np.isfinite(xy).all(axis=1)
    if ok.all() or not ok.any():
        return xy.copy()
    idx = np.where(ok, np.arange(len(xy)), -1)
    idx = np.maximum.accumulate(idx)
    first = int(np.argmax(ok))
    idx[idx < 0] = first
    return xy[idx]


def point_errors_m(pred_xy: np.ndarray, true_xy: np.ndarray, crs: str | CityProjection) -> np.ndarray:
    """Haversine distance (m) between predicted and true positions, element-wise."""
    proj = crs if isinstance(crs, CityProjection) else CityProjection(crs)
    p = proj.to_lonlat(pred_xy)
    q = proj.to_lonlat(true_xy)
    return haversine_m(p[:, 0], p[:, 1], q[:, 0], q[:, 1])


def error_stats(errors_m: np.ndarray) -> dict[str, float]:
    """mean, median, p90 and RMSE of a set of point errors (NaN-aware)."""
    e = np.asarray(errors_m, dtype=np.float64)
    e = e[np.isfinite(e)]
    if len(e) == 0:
        return {"mean_error_m": np.nan, "median_error_m": np.nan, "p90_error_m": np.nan, "rmse_m": np.nan}
    return {
        "mean_error_m": float(e.mean()),
        "median_error_m": float(np.median(e)),
        "p90_error_m": float(np.percentile(e, 90)),
        "rmse_m": float(np.sqrt(np.mean(e**2))),
    }


def _line(xy: np.ndarray) -> shapely.Geometry:
    """A LineString through the distinct consecutive points (a Point when there is only one)."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    xy = xy[np.isfinite(xy).all(axis=1)]
    if len(xy) == 0:
        return shapely.Point()
    keep = np.ones(len(xy), dtype=bool)
    keep[1:] = np.any(np.diff(xy, axis=0) != 0, axis=1)
    xy = xy[keep]
    return shapely.Point(xy[0]) if len(xy) == 1 else shapely.LineString(xy)


def route_overlap(pred_xy: np.ndarray, true_xy: np.ndarray, tol_m: float = ROUTE_TOL_M) -> dict[str, float]:
    """TME and route precision / recall / F1 by length (see the module docstring for ``tol_m``).

    * ``tme_pct`` = (length of the true route farther than ``tol_m`` from the predicted route +
      length of the predicted route farther than ``tol_m`` from the true route) / true length x 100.
    * ``route_precision`` = predicted length within ``tol_m`` of the truth / predicted length;
      ``route_recall`` = true length within ``tol_m`` of the prediction / true length; F1 their
      harmonic mean. Undefined ratios (a zero-length route) are NaN, except that a zero-length
      prediction has precision 1 when it lies within ``tol_m`` of the truth.
    """
    p, q = _line(pred_xy), _line(true_xy)
    lp, lq = float(shapely.length(p)), float(shapely.length(q))
    if p.is_empty or q.is_empty:
        return {"tme_pct": np.nan, "route_precision": np.nan, "route_recall": np.nan, "route_f1": np.nan,
                "pred_length_m": lp, "true_length_m": lq}
    q_out = float(shapely.length(shapely.difference(q, shapely.buffer(p, tol_m)))) if lq > 0 else 0.0
    p_out = float(shapely.length(shapely.difference(p, shapely.buffer(q, tol_m)))) if lp > 0 else 0.0
    tme = (q_out + p_out) / lq * 100.0 if lq > 0 else np.nan
    recall = (lq - q_out) / lq if lq > 0 else np.nan
    if lp > 0:
        precision = (lp - p_out) / lp
    else:
        precision = 1.0 if float(shapely.distance(p, q)) <= tol_m else 0.0
    if np.isfinite(precision) and np.isfinite(recall) and precision + recall > 0:
        f1 = 2 * precision * recall / (precision + recall)
    elif np.isfinite(precision) and np.isfinite(recall):
        f1 = 0.0
    else:
        f1 = np.nan
    return {"tme_pct": float(tme), "route_precision": float(precision), "route_recall": float(recall),
            "route_f1": float(f1), "pred_length_m": lp, "true_length_m": lq}


def _antidiagonal_dp(cost: np.ndarray, frechet: bool) -> float:
    """DTW (sum) or discrete Frechet (max) dynamic programme, vectorised along anti-diagonals."""
    n, m = cost.shape
    if n == 0 or m == 0:
        return np.nan
    D = np.full((n + 1, m + 1), np.inf)
    D[0, 0] = 0.0
    for k in range(n + m - 1):
        i = np.arange(max(0, k - m + 1), min(n - 1, k) + 1)
        j = k - i
        best = np.minimum(np.minimum(D[i, j + 1], D[i + 1, j]), D[i, j])  # up, left, diagonal
        c = cost[i, j]
        D[i + 1, j + 1] = np.maximum(c, best) if frechet else c + best
    return float(D[n, m])


def _cost(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 2)
    a = a[np.isfinite(a).all(axis=1)]
    b = b[np.isfinite(b).all(axis=1)]
    return np.hypot(a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1])


def dtw_m(a: np.ndarray, b: np.ndarray) -> float:
    """Dynamic time warping distance (sum of matched Euclidean distances, metres)."""
    return _antidiagonal_dp(_cost(a, b), frechet=False)


def frechet_m(a: np.ndarray, b: np.ndarray) -> float:
    """Discrete Frechet distance (metres) between two point sequences."""
    return _antidiagonal_dp(_cost(a, b), frechet=True)


def road_adherence(pred_xy: np.ndarray, net: RoadNetwork, radius_m: float = ROAD_ADHERENCE_M) -> float:
    """Share of (finite) predicted points within ``radius_m`` of a drivable road edge."""
    xy = np.asarray(pred_xy, dtype=np.float64).reshape(-1, 2)
    xy = xy[np.isfinite(xy).all(axis=1)]
    if len(xy) == 0:
        return np.nan
    c = net.edge_candidates(xy, radius_m, max_per_point=1)
    return float(len(np.unique(c.point)) / len(xy))


def evaluate_sample(
    pred_xy: np.ndarray,
    true_xy: np.ndarray,
    net: RoadNetwork,
    crs: str | CityProjection,
    latency_ms: float | None = None,
    tol_m: float = ROUTE_TOL_M,
) -> dict:
    """All per-sample metrics for one predicted trajectory at the evaluation times.

    Returns a flat dict: ``mean_error_m``, ``median_error_m``, ``p90_error_m``, ``rmse_m``,
    ``tme_pct``, ``route_precision``, ``route_recall``, ``route_f1``, ``dtw_m``, ``frechet_m``,
    ``road_adherence``, ``latency_ms``, ``n_points``, ``missing_share``, ``pred_length_m``,
    ``true_length_m`` and ``errors_m`` (the per-point errors, an array, which :func:`aggregate`
    pools to compute exact medians and percentiles over all points).
    """
    pred = np.asarray(pred_xy, dtype=np.float64).reshape(-1, 2)
    true = np.asarray(true_xy, dtype=np.float64).reshape(-1, 2)
    if pred.shape != true.shape:
        raise ValueError(f"evaluate_sample: pred_xy {pred.shape} and true_xy {true.shape} must match (eval times)")
    missing = float((~np.isfinite(pred).all(axis=1)).mean()) if len(pred) else np.nan
    pred_f = fill_missing(pred)
    errors = point_errors_m(pred_f, true, crs) if len(pred) else np.zeros(0)
    out: dict = dict(error_stats(errors))
    out.update(route_overlap(pred_f, true, tol_m))
    out["dtw_m"] = dtw_m(pred_f, true)
    out["frechet_m"] = frechet_m(pred_f, true)
    out["road_adherence"] = road_adherence(pred, net)
    out["latency_ms"] = float(latency_ms) if latency_ms is not None else np.nan
    out["n_points"] = int(len(pred))
    out["missing_share"] = missing
    out["errors_m"] = errors
    return out
