"""Aggregation of per-sample metrics into the report figures of DESIGN section 11."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

REPORT_KEYS: tuple[str, ...] = (
    "median_error_m",
    "mean_error_m",
    "p90_error_m",
    "rmse_m",
    "tme_pct",
    "route_f1",
    "road_adherence",
    "latency_ms",
    "n",
)


def _nanmean(s: pd.Series) -> float:
    v = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else float("nan")


def aggregate(per_sample: pd.DataFrame) -> dict[str, Any]:
    """Aggregate one method's per-sample rows (from :func:`ml.metrics.evaluate_sample`).

    * Point errors are pooled over all evaluation points of all samples when the ``errors_m``
      column (arrays) is present: ``mean_error_m``, ``median_error_m``, ``p90_error_m`` and
      ``rmse_m`` are then exact over the pooled points. Without it, ``mean_error_m`` and
      ``rmse_m`` are pooled exactly from the per-sample values weighted by ``n_points`` and
      ``median_error_m`` / ``p90_error_m`` are the median of the per-sample values.
    * ``tme_pct``, ``route_f1``, ``route_precision``, ``route_recall``, ``dtw_m``, ``frechet_m``
      and ``road_adherence``: mean over samples (NaN samples skipped).
    * ``latency_ms``: median over samples (per trajectory). ``n``: number of samples.
    """
    df = per_sample
    out: dict[str, Any] = {"n": int(len(df))}
    if len(df) == 0:
        out.update({k: float("nan") for k in REPORT_KEYS if k != "n"})
        return out
    if "errors_m" in df.columns:
        parts = [np.asarray(e, dtype=np.float64).ravel() for e in df["errors_m"] if e is not None]
        e = np.concatenate(parts) if parts else np.zeros(0)
        e = e[np.isfinite(e)]
        if len(e):
            out.update(
                mean_error_m=float(e.mean()),
                median_error_m=float(np.median(e)),
                p90_error_m=float(np.percentile(e, 90)),
                rmse_m=float(np.sqrt(np.mean(e**2))),
            )
        else:
            out.update(mean_error_m=np.nan, median_error_m=np.nan, p90_error_m=np.nan, rmse_m=np.nan)
    else:
        w = df.get("n_points", pd.Series(np.ones(len(df)), index=df.index)).to_numpy(dtype=np.float64)
        me = df["mean_error_m"].to_numpy(dtype=np.float64)
        rm = df["rmse_m"].to_numpy(dtype=np.float64)
        ok = np.isfinite(me) & np.isfinite(rm) & (w > 0)
        out["mean_error_m"] = float((me[ok] * w[ok]).sum() / w[ok].sum()) if ok.any() else np.nan
        out["rmse_m"] = float(np.sqrt((rm[ok] ** 2 * w[ok]).sum() / w[ok].sum())) if ok.any() else np.nan
        out["median_error_m"] = float(df["median_error_m"].median())
        out["p90_error_m"] = float(df["p90_error_m"].median())
    for k in ("tme_pct", "route_f1", "route_precision", "route_recall", "dtw_m", "frechet_m", "road_adherence"):
        if k in df.columns:
            out[k] = _nanmean(df[k])
    for k in ("tme_pct", "route_f1", "road_adherence"):
        out.setdefault(k, float("nan"))
    if "latency_ms" in df.columns:
        lat = pd.to_numeric(df["latency_ms"], errors="coerce").dropna()
        out["latency_ms"] = float(lat.median()) if len(lat) else float("nan")
    else:
        out["latency_ms"] = float("nan")
    return {k: out[k] for k in REPORT_KEYS} | {k: v for k, v in out.items() if k not in REPORT_KEYS}


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """Call ``fn`` and return ``(result, wall milliseconds)`` (the per-trajectory latency)."""
    t0 = time.perf_counter()
    res = fn(*args, **kwargs)
    return res, (time.perf_counter() - t0) * 1e3
