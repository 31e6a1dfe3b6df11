"""Cut accepted pairs into fixed-duration samples with ground truth, splits and tiles."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ml.geo import CityProjection, choose_tile
from ml.render.config import RenderConfig
from ml.pairing.config import SampleConfig
from ml.pairing.pairing import DAY_S, EPOCH, cell_positions
from ml.simulate.tables import make_table, seconds_to_ts, stable_int, ts_to_seconds
from ml.geo.track import interpolate_positions

SPLITS = ("train", "val", "test")


def assign_splits(groups: list[tuple[str, str]], fractions: tuple[float, float, float], seed: int) -> dict:
    """Split (day, vehicle) groups so that no taxi-day straddles splits.

    Groups are shuffled with ``seed`` and counted out: at least one group in val and test when
    there are three or more groups (so small worlds still have every split), the rest in train.
    """
    groups = sorted(set(groups))
    n = len(groups)
    rng = np.random.default_rng([seed, 707])
    perm = [groups[i] for i in rng.permutation(n)]
    if n >= 3:
        n_test = max(1, int(round(fractions[2] * n)))
        n_val = max(1, int(round(fractions[1] * n)))
        n_test, n_val = min(n_test, n - 2), min(n_val, n - 1 - min(n_test, n - 2))
    else:
        n_test, n_val = (1 if n == 2 else 0), 0
    out = {}
    for i, g in enumerate(perm):
        out[g] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return out


def cut_samples(pairs: pd.DataFrame, signaling: pd.DataFrame, towers: pd.DataFrame, gps: pd.DataFrame, crs: str,
                cfg: SampleConfig, seed: int, zoom_sizes_m: Sequence[float] = RenderConfig().zoom_sizes_m,
                margin_m: float = RenderConfig().margin_m,
                split_of: dict[tuple[str, str], str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Samples and their ground truth (contract tables ``samples`` and ``sample_truth``).

    Windows ``[t0, t0 + window_s]`` start on a ``stride_s`` grid (from midnight UTC) inside the
    span where the device has records and the taxi has GPS. A window is kept when it holds at
    least ``min_records`` records, the first within ``max_edge_gap_s`` of t0 and the last within
    ``max_edge_gap_s`` of t1, the taxi's GPS has no gap over ``max_gps_gap_s`` and travels at
    least ``min_movement_m``. Truth = the taxi's GPS interpolated every ``eval_interval_s`` from t0
    to t1 inclusive. Splits by (day, vehicle) group. The tile comes from
    :func:`ml.geo.choose_tile` on the serving-tower positions of the window's records only; the
    GPS truth is never used for it. ``zoom_sizes_m`` and ``margin_m`` come from the
    :class:`~ml.render.RenderConfig` (the one owner of tile choice, also used at inference).
    ``sample_id = f"{device_id}-{t0:%Y%m%dT%H%M%S}"``. ``split_of`` ((day, vehicle) -> split) is given
    when ``pairs`` is one bucket of a larger day (``ml.scale``): splits are drawn over all its pairs.
    """
    proj = CityProjection(crs)
    sample_cols = ("sample_id", "device_id", "vehicle_id", "t0", "t1", "split", "n_records", "tile_crs",
                   "tile_x0", "tile_y0", "tile_size_m")
    if len(pairs) == 0:
        return (make_table("samples", {c: [] for c in sample_cols}),
                make_table("sample_truth", {c: [] for c in ("sample_id", "ts", "lon", "lat")}))
    if split_of is None:
        split_of = assign_splits(list(zip(pairs["day"], pairs["vehicle_id"])), cfg.split_fractions, seed)
    sig = signaling[signaling["device_id"].isin(set(pairs["device_id"]))].sort_values(["device_id", "ts"], kind="stable")
    s_t = ts_to_seconds(sig["ts"], EPOCH)
    s_xy = cell_positions(towers, sig["cell_id"].to_numpy(np.int64), proj)
    s_dev = sig["device_id"].to_numpy(dtype=object)
    g = gps[gps["vehicle_id"].isin(set(pairs["vehicle_id"]))].sort_values(["vehicle_id", "ts"], kind="stable")
    g_t = ts_to_seconds(g["ts"], EPOCH)
    g_xy = proj.to_xy(g["lon"].to_numpy(), g["lat"].to_numpy())
    g_veh = g["vehicle_id"].to_numpy(dtype=object)
    dev_bounds = _bounds(s_dev)
    veh_bounds = _bounds(g_veh)
    n_eval = int(np.floor(cfg.window_s / cfg.eval_interval_s + 1e-9)) + 1
    eval_offsets = np.arange(n_eval) * cfg.eval_interval_s
    if eval_offsets[-1] < cfg.window_s - 1e-9:  # include t1 itself
        eval_offsets = np.append(eval_offsets, cfg.window_s)

    samples: list[dict] = []
    truth_t: list[np.ndarray] = []
    truth_xy: list[np.ndarray] = []
    truth_id: list[np.ndarray] = []
    for pair in pairs.itertuples(index=False):
        if pair.device_id not in dev_bounds or pair.vehicle_id not in veh_bounds:
            continue
        day0 = (np.datetime64(pair.day, "D") - EPOCH).astype(np.int64) * DAY_S
        da, db = dev_bounds[pair.device_id]
        rt, rxy = s_t[da:db], s_xy[da:db]
        rm = (rt >= day0) & (rt < day0 + DAY_S)
        rt, rxy = rt[rm], rxy[rm]
        va, vb = veh_bounds[pair.vehicle_id]
        vt, vxy = g_t[va:vb], g_xy[va:vb]
        vm = (vt >= day0) & (vt < day0 + DAY_S)
        vt, vxy = vt[vm], vxy[vm]
        if len(rt) == 0 or len(vt) < 2:
            continue
        lo, hi = max(rt[0], vt[0]), min(rt[-1], vt[-1])
        k0 = np.ceil((lo - day0) / cfg.stride_s)
        k1 = np.floor((hi - cfg.window_s - day0) / cfg.stride_s)
        if k1 < k0:
            continue
        t0 = day0 + np.arange(k0, k1 + 1) * cfg.stride_s
        t1 = t0 + cfg.window_s
        r0 = np.searchsorted(rt, t0, side="left")
        r1 = np.searchsorted(rt, t1, side="right")
        n_rec = r1 - r0
        # records must reach both ends of the window (else the tile, built from them, misses the path)
        first_rec = rt[np.clip(r0, 0, len(rt) - 1)]
        last_rec = rt[np.clip(r1 - 1, 0, len(rt) - 1)]
        spans = (first_rec - t0 <= cfg.max_edge_gap_s) & (t1 - last_rec <= cfg.max_edge_gap_s)
        # GPS quality and movement inside each window (vectorised over windows)
        step = np.hypot(*np.diff(vxy, axis=0).T)
        cum = np.concatenate([[0.0], np.cumsum(step)])
        gap = np.diff(vt)
        i0 = np.searchsorted(vt, t0, side="right") - 1  # fix at or before t0
        i1 = np.searchsorted(vt, t1, side="left")  # fix at or after t1
        inside = (i0 >= 0) & (i1 < len(vt))
        i0c, i1c = np.clip(i0, 0, len(vt) - 1), np.clip(i1, 0, len(vt) - 1)
        max_gap = np.array([gap[a:b].max() if b > a else np.inf for a, b in zip(i0c, i1c)])
        moved = cum[i1c] - cum[i0c]
        keep = inside & spans & (n_rec >= cfg.min_records) & (max_gap <= cfg.max_gps_gap_s) & (moved >= cfg.min_movement_m)
        idx = np.flatnonzero(keep)
        if cfg.max_samples_per_pair is not None and len(idx) > cfg.max_samples_per_pair:
            rng = np.random.default_rng([seed, 708, stable_int(pair.device_id), int(day0 // DAY_S)])
            idx = np.sort(rng.choice(idx, cfg.max_samples_per_pair, replace=False))
        split = split_of[(pair.day, pair.vehicle_id)]
        for w in idx:
            a = np.searchsorted(rt, t0[w], side="left")
            b = np.searchsorted(rt, t1[w], side="right")
            tile = choose_tile(rxy[a:b], crs, zoom_sizes_m, margin_m)  # serving towers only
            t0_ts = seconds_to_ts(np.array([t0[w]]), EPOCH)[0]
            sid = f"{pair.device_id}-{pd.Timestamp(t0_ts):%Y%m%dT%H%M%S}"
            samples.append({"sample_id": sid, "device_id": pair.device_id, "vehicle_id": pair.vehicle_id,
                            "t0": t0_ts, "t1": seconds_to_ts(np.array([t1[w]]), EPOCH)[0], "split": split,
                            "n_records": int(b - a), **tile.as_dict()})
            et = t0[w] + eval_offsets
            truth_t.append(et)
            truth_xy.append(interpolate_positions(vt, vxy, et))
            truth_id.append(np.full(len(et), sid, dtype=object))
    if not samples:
        return (make_table("samples", {c: [] for c in sample_cols}),
                make_table("sample_truth", {c: [] for c in ("sample_id", "ts", "lon", "lat")}))
    sdf = pd.DataFrame(samples)
    samples_df = make_table("samples", {c: sdf[c].to_numpy() for c in sample_cols})
    lonlat = proj.to_lonlat(np.vstack(truth_xy))
    truth_df = make_table("sample_truth", {"sample_id": np.concatenate(truth_id),
                                           "ts": seconds_to_ts(np.concatenate(truth_t), EPOCH),
                                           "lon": lonlat[:, 0], "lat": lonlat[:, 1]})
    return samples_df.sort_values("sample_id", ignore_index=True), truth_df.sort_values(
        ["sample_id", "ts"], ignore_index=True, kind="stable")


def _bounds(ids: np.ndarray) -> dict:
    """id -> (start, end) row range in an array sorted by id."""
    if len(ids) == 0:
        return {}
    brk = np.r_[0, np.flatnonzero(ids[1:] != ids[:-1]) + 1, len(ids)]
    return {ids[a]: (int(a), int(b)) for a, b in zip(brk[:-1], brk[1:])}
