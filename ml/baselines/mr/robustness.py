"""Robustness of the MR methods to missing measurement reports (the paper's missing-data study).

:func:`robustness_study` drops a fraction of each window's report times (whole reports, random,
seeded), runs every method and scores it against ``ctx.truth_xy`` with ``ml.metrics``
(``rmse_m``, ``tme_pct``, ...); one row per (method, drop fraction, seed, sample) so the report
can plot error against drop rate (:func:`summarise_robustness` gives the means).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ml.baselines.mr.synthetic import drop_reports
from ml.metrics import evaluate_sample

DEFAULT_DROP_FRACS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def _score(pred: np.ndarray, ctx: Any) -> dict[str, float]:
    m = evaluate_sample(pred, ctx.truth_xy, ctx.net, ctx.crs)
    return {k: float(m[k]) for k in ("rmse_m", "mean_error_m", "median_error_m", "p90_error_m", "tme_pct", "route_f1")}


def robustness_study(
    contexts: Sequence[Any],
    methods: Mapping[str, Callable[[Any], np.ndarray]],
    drop_fracs: Iterable[float] = DEFAULT_DROP_FRACS,
    seeds: Iterable[int] = (0,),
) -> pd.DataFrame:
    """TME and RMSE of each method against the share of dropped MR reports.

    Returns a DataFrame with columns ``method, drop_frac, seed, sample_id, rmse_m, tme_pct,
    mean_error_m, median_error_m, ...`` and ``latency_ms``. A method that raises on a window is
    recorded with NaN metrics and the error text in ``error`` (so one failure does not hide the
    rest of the study).
    """
    rows: list[dict[str, Any]] = []
    for frac in drop_fracs:
        for seed in seeds:
            for i, ctx in enumerate(contexts):
                c = drop_reports(ctx, float(frac), seed=int(seed) * 100_003 + i) if frac > 0 else ctx
                for name, fn in methods.items():
                    row: dict[str, Any] = {"method": name, "drop_frac": float(frac), "seed": int(seed),
                                           "sample_id": ctx.sample_id}
                    t = time.perf_counter()
                    try:
                        pred = np.asarray(fn(c), dtype=np.float64)
                        row["latency_ms"] = 1000.0 * (time.perf_counter() - t)
                        row.update(_score(pred, c))
                        row["error"] = ""
                    except Exception as exc:  # noqa: BLE001 - recorded, see docstring
                        row.update({"rmse_m": np.nan, "tme_pct": np.nan, "latency_ms": np.nan,
                                    "error": f"{type(exc).__name__}: {exc}"})
                    rows.append(row)
    return pd.DataFrame(rows)


def summarise_robustness(df: pd.DataFrame) -> pd.DataFrame:
    """Mean RMSE and TME per method and drop fraction (rows: drop_frac; columns: (metric, method))."""
    return df.groupby(["drop_frac", "method"])[["rmse_m", "tme_pct"]].mean().unstack("method")
