"""Run reconstruction methods on sample windows and score them with ``ml.metrics``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ml.baselines import SampleContext
from ml.geo import CityProjection
from ml.metrics import aggregate, evaluate_sample, timed

log = logging.getLogger(__name__)


@dataclass
class MethodRun:
    """One method's predictions on a list of samples (projected xy at each sample's eval times)."""

    method: str
    track: str
    predictions: dict[str, np.ndarray]  # sample_id -> (n_eval, 2)
    latency_ms: dict[str, float]
    failures: dict[str, str] = field(default_factory=dict)  # sample_id -> error text (counted, never hidden)
    extra: dict[str, pd.DataFrame] = field(default_factory=dict)  # e.g. per-sample rewards for video methods


def run_method(name: str, track: str, fn: Callable[[SampleContext], np.ndarray],
               contexts: Sequence[SampleContext], progress: Callable[[str], None] | None = None) -> MethodRun:
    """Apply ``fn`` to every context; a failing sample yields NaNs and is counted in ``failures``."""
    run = MethodRun(name, track, {}, {})
    for i, ctx in enumerate(contexts):
        try:
            xy, ms = timed(fn, ctx)
            xy = np.asarray(xy, dtype=np.float64).reshape(ctx.n_eval, 2)
        except Exception as exc:  # noqa: BLE001 - one bad window must not stop the evaluation; it is counted
            run.failures[ctx.sample_id] = f"{type(exc).__name__}: {exc}"
            xy, ms = np.full((ctx.n_eval, 2), np.nan), float("nan")
            log.warning("%s failed on %s: %s", name, ctx.sample_id, exc)
        run.predictions[ctx.sample_id] = xy
        run.latency_ms[ctx.sample_id] = ms
        if progress and (i + 1) % 10 == 0:
            progress(f"{track}/{name}: {i + 1}/{len(contexts)} samples")
    return run


def score_run(run: MethodRun, contexts: Sequence[SampleContext]) -> pd.DataFrame:
    """Per-sample metrics of a run (one row per sample, ``errors_m`` kept for exact pooling)."""
    rows = []
    for ctx in contexts:
        pred = run.predictions[ctx.sample_id]
        m = evaluate_sample(pred, ctx.truth_xy, ctx.net, ctx.crs, latency_ms=run.latency_ms[ctx.sample_id])
        m.update(sample_id=ctx.sample_id, method=run.method, track=run.track,
                 failed=ctx.sample_id in run.failures)
        rows.append(m)
    return pd.DataFrame(rows)


def summarise(per_sample: pd.DataFrame) -> dict:
    """Aggregate one method's per-sample rows; adds the failure count and reward means if present."""
    out = aggregate(per_sample)
    out["n_failed"] = int(per_sample.get("failed", pd.Series(dtype=bool)).sum())
    for k in ("reward_distance", "reward_direction", "reward_connectivity", "head_detect_rate", "head_error_px",
              "path_iou"):
        if k in per_sample.columns:
            out[k] = float(pd.to_numeric(per_sample[k], errors="coerce").mean())  # NaN rows (no dot) left out
    return out


def predictions_frame(run: MethodRun, contexts: Sequence[SampleContext]) -> pd.DataFrame:
    """Long table of a run: sample_id, ts, t_s, x, y, lon, lat, latency_ms, failed (built at once, not a frame
    per window: batch reconstruction calls it for every batch of windows)."""
    if not contexts:
        return pd.DataFrame(columns=["sample_id", "ts", "t_s", "x", "y", "lon", "lat", "latency_ms", "failed"])
    proj = CityProjection(contexts[0].crs)
    n = np.array([len(ctx.eval_t) for ctx in contexts])
    xy = np.concatenate([np.asarray(run.predictions[ctx.sample_id], dtype=np.float64).reshape(-1, 2)
                         for ctx in contexts])
    finite = np.isfinite(xy).all(axis=1)
    lonlat = proj.to_lonlat(np.nan_to_num(xy, nan=0.0))
    lonlat[~finite] = np.nan
    t_s = np.concatenate([np.asarray(ctx.eval_t) for ctx in contexts])
    t0 = pd.DatetimeIndex([ctx.t0 for ctx in contexts]).repeat(n)
    ids = [ctx.sample_id for ctx in contexts]
    return pd.DataFrame({
        "sample_id": np.repeat(np.array(ids, dtype=object), n), "ts": t0 + pd.to_timedelta(t_s, unit="s"),
        "t_s": t_s, "x": xy[:, 0], "y": xy[:, 1], "lon": lonlat[:, 0], "lat": lonlat[:, 1],
        "latency_ms": np.repeat(np.array([run.latency_ms[i] for i in ids], dtype=np.float64), n),
        "failed": np.repeat(np.array([i in run.failures for i in ids]), n),
    })


def run_from_frame(method: str, track: str, df: pd.DataFrame, contexts: Sequence[SampleContext]) -> MethodRun:
    """Rebuild a :class:`MethodRun` from its saved predictions table."""
    run = MethodRun(method, track, {}, {})
    groups = {k: g for k, g in df.groupby("sample_id", sort=False)}
    for ctx in contexts:
        g = groups.get(ctx.sample_id)
        if g is None:
            run.predictions[ctx.sample_id] = np.full((ctx.n_eval, 2), np.nan)
            run.latency_ms[ctx.sample_id] = float("nan")
            run.failures[ctx.sample_id] = "no prediction saved"
            continue
        run.predictions[ctx.sample_id] = g[["x", "y"]].to_numpy(dtype=np.float64)
        run.latency_ms[ctx.sample_id] = float(g["latency_ms"].iloc[0])
        if bool(g["failed"].iloc[0]):
            run.failures[ctx.sample_id] = "failed at prediction time"
    return run
