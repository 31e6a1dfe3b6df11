"""Render a city's samples into training arrays, and read them back memory-mapped.

Layout (``docs/architecture.md``, "Rendered arrays"), in ``outputs/<city>/<profile>/render/r<res>_k<K>/``:

- ``index.parquet``: sample_id, split, shard, row, tile_crs, tile_x0, tile_y0, tile_size_m,
  resolution, frames, duration_s (+ n_records: serving records drawn);
- ``cond_<shard:04d>.npy``: uint8 ``(n, H, W, 3)``; ``video_<shard:04d>.npy``: uint8 ``(n, K, H, W, 3)``;
- ``tokens_<shard:04d>.npy``: float32 ``(n, R, 4)`` signaling records as tokens (the
  ``ml.models.tokens`` format: col/res, row/res of the record's position under the observation
  model (``ml.observation``: the city's learned footprints when given, else the hand-made model's cell
  coverage centre, handovers on the cell boundary) in the tile's pixel frame,
  time fraction in [0, 1], event id in ``ml.validation.contract.EVENTS`` order, ``len(EVENTS)``
  for an unknown event); ``R = cfg.max_token_records``, longer windows subsampled evenly in
  time, padding rows NaN;
- ``render_config.json``: the RenderConfig and colour constants used.

The folder is written atomically (:func:`ml.io.atomic_dir`): everything goes to a temporary
sibling folder that replaces the old one in one exchange at the end, so a failed run never leaves
a half-written folder and never destroys the previous complete one.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ml.observation import HandmadeObservationModel, ObservationModel, left_cells
from ml.observation.context import TowerTable
from ml.cities.network import RoadNetwork
from ml.geo.tile import Tile
from ml.io import atomic_dir
from ml.pixels import to_model_space, to_uint8
from ml.render import style
from ml.render.arrays import subsample_evenly
from ml.render.config import RenderConfig
from ml.render.image import prepare_road_rasters, render_condition_image, render_target_video
from ml.validation.contract import EVENTS

INDEX_COLUMNS = ("sample_id", "split", "shard", "row", "tile_crs", "tile_x0", "tile_y0", "tile_size_m",
                 "resolution", "frames", "duration_s")


@dataclass
class PreparedSample:
    """Everything needed to render one window (projected metres, seconds since t0)."""

    sample_id: str
    split: str
    tile: Tile
    duration_s: float
    record_xy: np.ndarray  # serving mast of each record (the polyline with RenderConfig.trace "serving_towers")
    record_obs_xy: np.ndarray  # (r, 2) each record's observation-model position (the tokens; the polyline with "records")
    record_t: np.ndarray
    tower_xy: np.ndarray
    truth_xy: np.ndarray
    truth_t: np.ndarray
    record_event: np.ndarray | None = None  # (r,) int8 ids in EVENTS order (len(EVENTS): unknown)


def event_ids(events: pd.Series | np.ndarray) -> np.ndarray:
    """Event names -> int8 ids in ``EVENTS`` order (the token format); unknown or missing -> ``len(EVENTS)``."""
    codes = pd.Categorical(np.asarray(events, dtype=object), categories=list(EVENTS)).codes.astype(np.int8)
    codes[codes < 0] = len(EVENTS)
    return codes


def sample_tokens(s: PreparedSample, resolution: int, max_records: int) -> np.ndarray:
    """float32 ``(max_records, 4)`` tokens of one window (see the module docstring), NaN padding."""
    out = np.full((max_records, 4), np.nan, dtype=np.float32)
    n = len(s.record_t)
    if n == 0 or max_records == 0:
        return out
    idx = subsample_evenly(n, max_records)
    m = len(idx)
    out[:m, :2] = s.tile.xy_to_pixel(s.record_obs_xy[idx], resolution) / resolution
    out[:m, 2] = np.clip(s.record_t[idx] / s.duration_s, 0.0, 1.0) if s.duration_s > 0 else 0.0
    out[:m, 3] = len(EVENTS) if s.record_event is None else s.record_event[idx]
    return out


def _ts_ns(s: pd.Series) -> np.ndarray:
    """Timestamps (tz-aware or naive, any unit) as int64 ns since the epoch (UTC)."""
    s = pd.to_datetime(s, utc=True)
    return s.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]").to_numpy().astype(np.int64)


def prepare_samples(
    net: RoadNetwork,
    samples_df: pd.DataFrame,
    signaling_df: pd.DataFrame,
    towers_df: pd.DataFrame,
    sample_truth_df: pd.DataFrame,
    cfg: RenderConfig,
    observation: ObservationModel | None = None,
) -> list[PreparedSample]:
    """Join the tables into per-window arrays (vectorised look-ups, one slice per sample). Records are
    placed by ``observation`` (default the hand-made model), as serving places them.

    Raises ``ValueError`` naming the table, column and rule when a signaling cell is not in
    ``towers`` or a sample has no ground truth.
    """
    for name, df, cols in (
        ("samples", samples_df, ("sample_id", "device_id", "t0", "t1", "split", "tile_crs", "tile_x0", "tile_y0", "tile_size_m")),
        ("signaling", signaling_df, ("device_id", "ts", "cell_id")),
        ("towers", towers_df, ("cell_id", "site_id", "lon", "lat")),
        ("sample_truth", sample_truth_df, ("sample_id", "ts", "lon", "lat")),
    ):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise ValueError(f"table '{name}': missing column(s) {missing} (rule: required by render_samples)")
    proj = net.projection
    tower_table = TowerTable(towers_df, net.crs)
    observation = observation or HandmadeObservationModel(tower_table)
    tower_xy_all = proj.to_xy(towers_df["lon"].to_numpy(), towers_df["lat"].to_numpy())
    cell_index = pd.Index(towers_df["cell_id"].to_numpy())
    # signaling of the sampled devices, sorted by (device, ts)
    dev_cat = pd.Categorical(samples_df["device_id"].astype(str).unique())
    sig = signaling_df[signaling_df["device_id"].astype(str).isin(dev_cat.categories)]
    dcode = pd.Categorical(sig["device_id"].astype(str), categories=dev_cat.categories).codes.astype(np.int64)
    sts = _ts_ns(sig["ts"]) if len(sig) else np.zeros(0, dtype=np.int64)
    order = np.lexsort((sts, dcode))
    dcode, sts = dcode[order], sts[order]
    cells = sig["cell_id"].to_numpy()[order]
    ev_names = (sig["event"].astype(str).to_numpy()[order] if "event" in sig.columns
                else np.full(len(order), "", dtype=object))
    evs = event_ids(ev_names) if "event" in sig.columns else np.full(len(order), len(EVENTS), dtype=np.int8)
    pos = cell_index.get_indexer(cells)
    if (pos < 0).any():
        bad = pd.unique(cells[pos < 0])[:5]
        raise ValueError(f"table 'signaling', column 'cell_id': values {list(bad)} not in towers.cell_id (rule: foreign key)")
    sig_xy = tower_xy_all[pos]
    sig_site = tower_table.site_of(cells)
    dev_start = np.searchsorted(dcode, np.arange(len(dev_cat.categories)), side="left")
    dev_end = np.searchsorted(dcode, np.arange(len(dev_cat.categories)), side="right")
    # truth sorted by (sample, ts)
    sid_cat = pd.Categorical(samples_df["sample_id"].astype(str))
    tcode = pd.Categorical(sample_truth_df["sample_id"].astype(str), categories=sid_cat.categories).codes.astype(np.int64)
    tts = _ts_ns(sample_truth_df["ts"])
    ok = tcode >= 0
    t_order = np.nonzero(ok)[0][np.lexsort((tts[ok], tcode[ok]))]
    tcode_s, tts_s = tcode[t_order], tts[t_order]
    truth_xy_all = proj.to_xy(sample_truth_df["lon"].to_numpy()[t_order], sample_truth_df["lat"].to_numpy()[t_order])
    t_start = np.searchsorted(tcode_s, np.arange(len(sid_cat.categories)), side="left")
    t_end = np.searchsorted(tcode_s, np.arange(len(sid_cat.categories)), side="right")

    s_dev = pd.Categorical(samples_df["device_id"].astype(str), categories=dev_cat.categories).codes
    s_sid = sid_cat.codes
    t0s, t1s = _ts_ns(samples_df["t0"]), _ts_ns(samples_df["t1"])
    out: list[PreparedSample] = []
    recs = samples_df[["sample_id", "split", "tile_crs", "tile_x0", "tile_y0", "tile_size_m"]].to_dict("records")
    for i, rec in enumerate(recs):
        t0, t1 = int(t0s[i]), int(t1s[i])
        a, b = dev_start[s_dev[i]], dev_end[s_dev[i]]
        lo = a + np.searchsorted(sts[a:b], t0, side="left")
        hi = a + np.searchsorted(sts[a:b], t1, side="right")
        rxy = sig_xy[lo:hi]
        rt = (sts[lo:hi] - t0) / 1e9
        ta, tb = t_start[s_sid[i]], t_end[s_sid[i]]
        if tb <= ta:
            raise ValueError(f"table 'sample_truth', column 'sample_id': no rows for sample '{rec['sample_id']}' "
                             "(rule: every sample has ground truth)")
        tile = Tile.from_record(rec)
        if cfg.towers == "all":
            inside = tile.contains(tower_xy_all)
            txy = np.unique(tower_xy_all[inside], axis=0)
        else:
            txy = np.unique(rxy, axis=0) if len(rxy) else np.zeros((0, 2))
        out.append(PreparedSample(
            sample_id=str(rec["sample_id"]), split=str(rec["split"]), tile=tile, duration_s=(t1 - t0) / 1e9,
            record_xy=rxy, record_t=rt, tower_xy=txy,
            truth_xy=truth_xy_all[ta:tb], truth_t=(tts_s[ta:tb] - t0) / 1e9, record_event=evs[lo:hi],
            # the window's records alone (as serving sees them), through the one observation model
            record_obs_xy=observation.positions(cells[lo:hi], left_cells(cells[lo:hi], ev_names[lo:hi])),
        ))
    return out


def render_prepared(net: RoadNetwork, s: PreparedSample, cfg: RenderConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(cond (H, W, 3), video (K, H, W, 3))`` uint8 of one prepared window."""
    cond = render_condition_image(net, s.tile, cfg.resolution, cfg.trace_xy(s.record_xy, s.record_obs_xy), s.tower_xy,
                                  s.record_t, cfg)
    video = render_target_video(cond, s.tile, cfg.resolution, s.truth_xy, s.truth_t, s.duration_s, cfg.frames, cfg)
    return cond, video


# Work shared with forked workers (set before the pool starts; never pickled).
_WORK: dict[str, Any] = {}


def _render_shard(shard: int, lo: int, hi: int, tmp: str) -> list[dict]:
    net, prepared, cfg = _WORK["net"], _WORK["prepared"], _WORK["cfg"]
    n, R, K = hi - lo, cfg.resolution, cfg.frames
    conds = np.empty((n, R, R, 3), dtype=np.uint8)
    videos = np.empty((n, K, R, R, 3), dtype=np.uint8)
    tokens = np.empty((n, cfg.max_token_records, 4), dtype=np.float32)
    rows = []
    for j, i in enumerate(range(lo, hi)):
        s = prepared[i]
        conds[j], videos[j] = render_prepared(net, s, cfg)
        tokens[j] = sample_tokens(s, R, cfg.max_token_records)
        rows.append({"sample_id": s.sample_id, "split": s.split, "shard": shard, "row": j, **s.tile.as_dict(),
                     "resolution": R, "frames": K, "duration_s": float(s.duration_s), "n_records": len(s.record_xy)})
    np.save(Path(tmp) / f"cond_{shard:04d}.npy", conds)
    np.save(Path(tmp) / f"video_{shard:04d}.npy", videos)
    np.save(Path(tmp) / f"tokens_{shard:04d}.npy", tokens)
    return rows


def render_samples(
    net: RoadNetwork,
    samples_df: pd.DataFrame,
    signaling_df: pd.DataFrame,
    towers_df: pd.DataFrame,
    sample_truth_df: pd.DataFrame,
    cfg: RenderConfig,
    out_dir: str | Path,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    observation: ObservationModel | None = None,
) -> pd.DataFrame:
    """Render every sample and write the arrays to ``out_dir`` atomically; returns the index.

    Args:
        net: the city's road network.
        samples_df, signaling_df, towers_df, sample_truth_df: data-contract tables.
        cfg: sizes (resolution, frames, widths, shard size).
        out_dir: destination folder (usually ``CityPaths.render_dir(res, K)``); replaced only
            when the whole run succeeded.
        workers: processes (default ``cfg.workers``); shards are rendered in parallel by forked
            workers that share the prepared inputs and the city road rasters. Shards hold at most
            ``cfg.shard_size`` rows (fewer for small runs, so that work spreads over workers).
        progress: optional callback ``(shards_done, shards_total)``.
        observation: how records are placed for the tokens (the city's learned footprints; default the
            hand-made model); serving must place them the same way.
    """
    out_dir = Path(out_dir)
    workers = int(workers or cfg.workers)
    t_start = time.perf_counter()
    prepared = prepare_samples(net, samples_df, signaling_df, towers_df, sample_truth_df, cfg, observation)
    try:
        with atomic_dir(out_dir) as tmp:
            n = len(prepared)
            # at most cfg.shard_size rows a shard, and at least ~8 shards for load balancing (but not
            # tiny ones); the layout depends on n and cfg only, never on the number of workers
            size = min(cfg.shard_size, max(-(-n // 8), 32))
            bounds = [(k, lo, min(lo + size, n)) for k, lo in enumerate(range(0, n, size))]
            # city road rasters per zoom level, built once here and shared with the forked workers
            prepare_road_rasters(net, {p.tile.size_m for p in prepared}, cfg.resolution, cfg)
            _WORK.update(net=net, prepared=prepared, cfg=cfg)
            rows: list[dict] = []
            if workers <= 1 or len(bounds) <= 1:
                for k, (shard, lo, hi) in enumerate(bounds):
                    rows += _render_shard(shard, lo, hi, str(tmp))
                    if progress:
                        progress(k + 1, len(bounds))
            else:
                ctx = mp.get_context("fork")
                with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                    futs = [pool.submit(_render_shard, shard, lo, hi, str(tmp)) for shard, lo, hi in bounds]
                    for k, f in enumerate(futs):
                        rows += f.result()
                        if progress:
                            progress(k + 1, len(futs))
            index = pd.DataFrame(rows, columns=list(INDEX_COLUMNS) + ["n_records"])
            index = index.astype({"shard": np.int64, "row": np.int64, "resolution": np.int64, "frames": np.int64,
                                  "n_records": np.int64})
            index.to_parquet(tmp / "index.parquet", index=False)
            meta = {"config": cfg.model_dump(mode="json"), "n_samples": n, "render_s": time.perf_counter() - t_start,
                    "colours": {k: list(getattr(style, k)) for k in ("BACKGROUND", "RAMP_START", "RAMP_END", "TOWER", "PATH", "HEAD")},
                    "road_grey": list(style.ROAD_GREY)}
            (tmp / "render_config.json").write_text(json.dumps(meta, indent=2))
    finally:
        _WORK.clear()
    return index


def video_to_model_space(video: np.ndarray) -> np.ndarray:
    """uint8 ``(..., K, H, W, 3)`` -> float32 ``(..., 3, K, H, W)`` in [-1, 1]."""
    return np.moveaxis(to_model_space(video), -1, -4)


def image_to_model_space(image: np.ndarray) -> np.ndarray:
    """uint8 ``(..., H, W, 3)`` -> float32 ``(..., 3, H, W)`` in [-1, 1]."""
    return np.moveaxis(to_model_space(image), -1, -3)


def video_from_model_space(x: np.ndarray) -> np.ndarray:
    """float ``(..., 3, K, H, W)`` in [-1, 1] -> uint8 ``(..., K, H, W, 3)``."""
    return to_uint8(np.moveaxis(np.asarray(x), -4, -1))
