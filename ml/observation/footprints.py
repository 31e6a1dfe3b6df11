"""Cell footprints: where each cell's phones really were, learned from the train windows' paired GPS.

For every cell, and every (left, entered) pair of cells of a handover, the true positions of its
records in the **train** windows (the paired taxi's GPS, interpolated to the record times) are
counted on road points (every ``point_spacing_m`` metres along the network). The table keeps, per
key, those counts as weights that sum to one, with the key's record count, mean and spread. It is
data, not weights: :class:`ml.observation.learned.LearnedObservationModel` turns it into a
likelihood (a kernel density over the road points, shrunk toward the hand-made model by count).

Only windows whose ``split`` is ``train`` are read (:func:`build_cell_footprints` filters, whatever
it is given), and the table has no device, vehicle or sample id.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from ml.cities.network import RoadNetwork
from ml.geo import CityProjection
from ml.geo.track import interpolate_positions
from ml.observation.config import FootprintConfig
from ml.observation.context import SampleContext, TowerTable
from ml.observation.handmade import left_cells

FOOTPRINT_SPLIT = "train"  # the only split footprints are ever learned from
NO_CELL = -1  # left_cell_id of a plain cell footprint (not a handover)

FOOTPRINT_COLUMNS = ["kind", "cell_id", "left_cell_id", "n_records", "mean_x", "mean_y", "mean_lon", "mean_lat",
                     "spread_m", "point_x", "point_y", "point_lon", "point_lat", "weight"]


def road_points(net: RoadNetwork, spacing_m: float) -> np.ndarray:
    """Points every ``spacing_m`` metres along every edge polyline (both ends included), deduplicated, ``(n, 2)``."""
    if not spacing_m > 0:
        raise ValueError(f"road_points: spacing_m must be > 0 (got {spacing_m})")
    s = net.segments
    a, b, seg_len = s["a"], s["b"], s["len"]
    n_steps = np.maximum(np.ceil(seg_len / spacing_m).astype(np.int64), 1)
    seg = np.repeat(np.arange(len(a)), n_steps)
    frac = (np.arange(n_steps.sum()) - np.repeat(np.cumsum(n_steps) - n_steps, n_steps)) / np.repeat(n_steps, n_steps)
    pts = np.vstack([a[seg] + frac[:, None] * (b[seg] - a[seg]), b])
    return np.unique(np.round(pts, 1), axis=0)


def truth_at_records(ctx: SampleContext) -> np.ndarray:
    """The paired GPS position at each record time of a window with truth, ``(n_records, 2)``."""
    if ctx.truth_xy is None or len(ctx.truth_xy) == 0:
        raise ValueError(f"window {ctx.sample_id}: no truth to place its records")
    return interpolate_positions(ctx.eval_t, ctx.truth_xy, ctx.record_t, f"truth of {ctx.sample_id}")


def record_keys(contexts: Sequence[SampleContext], handover_boundary: bool = True) -> pd.DataFrame:
    """Every record of ``contexts`` with its footprint key and true position: ``cell_id``, ``left_cell_id``, ``x``, ``y``."""
    parts = []
    for ctx in contexts:
        if len(ctx.records) == 0:
            continue
        cell = ctx.records["cell_id"].to_numpy(dtype=np.int64)
        left = left_cells(cell, ctx.records["event"].to_numpy(), handover_boundary)
        xy = truth_at_records(ctx)
        parts.append(pd.DataFrame({"cell_id": cell, "left_cell_id": left, "x": xy[:, 0], "y": xy[:, 1]}))
    if not parts:
        return pd.DataFrame({"cell_id": pd.Series(dtype=np.int64), "left_cell_id": pd.Series(dtype=np.int64),
                             "x": pd.Series(dtype=float), "y": pd.Series(dtype=float)})
    return pd.concat(parts, ignore_index=True)


def build_cell_footprints(contexts: Sequence[SampleContext], net: RoadNetwork,
                          cfg: FootprintConfig | None = None, handover_boundary: bool = True) -> pd.DataFrame:
    """The footprint table (``FOOTPRINT_COLUMNS``, one row per key and road point) of the train windows.

    Windows of any other split are ignored (footprints never see val or test). Each record's
    true position is counted on its nearest road point; a key's weights are its counts divided by
    its record count. Handover records count toward their (left, entered) pair only.
    """
    cfg = cfg or FootprintConfig()
    train = [c for c in contexts if c.split == FOOTPRINT_SPLIT]
    rec = record_keys(train, handover_boundary)
    if rec.empty:
        return empty_footprints()
    pts = road_points(net, cfg.point_spacing_m)
    _, nearest = cKDTree(pts).query(rec[["x", "y"]].to_numpy())
    rec = rec.assign(point=nearest)
    by_key = rec.groupby(["cell_id", "left_cell_id"], sort=True)
    stats = by_key.agg(n_records=("x", "size"), mean_x=("x", "mean"), mean_y=("y", "mean")).reset_index()
    rec = rec.merge(stats, on=["cell_id", "left_cell_id"])
    rec["d2"] = (rec["x"] - rec["mean_x"]) ** 2 + (rec["y"] - rec["mean_y"]) ** 2
    spread = rec.groupby(["cell_id", "left_cell_id"], sort=True)["d2"].mean().pow(0.5).rename("spread_m").reset_index()
    counts = rec.groupby(["cell_id", "left_cell_id", "point"], sort=True).size().rename("count").reset_index()
    fp = counts.merge(stats, on=["cell_id", "left_cell_id"]).merge(spread, on=["cell_id", "left_cell_id"])
    fp["weight"] = fp["count"] / fp["n_records"]
    fp["point_x"], fp["point_y"] = pts[fp["point"], 0], pts[fp["point"], 1]
    proj = CityProjection(net.crs)
    mean_ll = proj.to_lonlat(fp[["mean_x", "mean_y"]].to_numpy())
    pt_ll = proj.to_lonlat(fp[["point_x", "point_y"]].to_numpy())
    fp["mean_lon"], fp["mean_lat"] = mean_ll[:, 0], mean_ll[:, 1]
    fp["point_lon"], fp["point_lat"] = pt_ll[:, 0], pt_ll[:, 1]
    fp["kind"] = np.where(fp["left_cell_id"] == NO_CELL, "cell", "handover")
    fp["n_records"] = fp["n_records"].astype(np.int64)
    return fp[FOOTPRINT_COLUMNS].reset_index(drop=True)


def empty_footprints() -> pd.DataFrame:
    """A footprint table without any key (a city without paired history: the hand-made model everywhere)."""
    dtypes = {"kind": object, "cell_id": np.int64, "left_cell_id": np.int64, "n_records": np.int64}
    return pd.DataFrame({c: pd.Series(dtype=dtypes.get(c, float)) for c in FOOTPRINT_COLUMNS})


def footprint_summary(fp: pd.DataFrame) -> pd.DataFrame:
    """One row per key: ``kind``, ``cell_id``, ``left_cell_id``, ``n_records``, ``mean_x/y``, ``spread_m``, ``n_points``."""
    keys = ["kind", "cell_id", "left_cell_id", "n_records", "mean_x", "mean_y", "mean_lon", "mean_lat", "spread_m"]
    return fp.groupby(keys, sort=True).size().rename("n_points").reset_index()


class CellFootprints:
    """A footprint table indexed for lookups by (cell, left cell) against a tower table.

    Keys are found by the cells' rows in ``towers``; a record whose key has no history gets
    ``n_records == 0`` (the learned model then equals the hand-made one for it).
    """

    def __init__(self, table: pd.DataFrame, towers: TowerTable) -> None:
        missing = [c for c in FOOTPRINT_COLUMNS if c not in table.columns]
        if missing:
            raise ValueError(f"table cell_footprints: missing columns {missing}")
        self.table = table
        self.towers = towers
        summ = footprint_summary(table) if len(table) else footprint_summary(empty_footprints())
        self._key = self._encode(summ["cell_id"].to_numpy(np.int64), summ["left_cell_id"].to_numpy(np.int64))
        order = np.argsort(self._key, kind="stable")
        self._key = self._key[order]
        summ = summ.iloc[order].reset_index(drop=True)
        self.n_records = summ["n_records"].to_numpy(np.int64)
        self.mean_xy = summ[["mean_x", "mean_y"]].to_numpy(np.float64)
        self.spread_m = summ["spread_m"].to_numpy(np.float64)
        # support points of key k: points[offsets[k]:offsets[k + 1]], weights summing to one
        tk = self._encode(table["cell_id"].to_numpy(np.int64), table["left_cell_id"].to_numpy(np.int64))
        rows = np.argsort(tk, kind="stable")
        self.points = table[["point_x", "point_y"]].to_numpy(np.float64)[rows]
        self.weights = table["weight"].to_numpy(np.float64)[rows]
        self.offsets = np.append(np.searchsorted(tk[rows], self._key), len(rows)).astype(np.int64)

    def _encode(self, cell: np.ndarray, left: np.ndarray) -> np.ndarray:
        n = len(self.towers) + 1
        ci = self.towers.index_of(cell) if len(cell) else np.zeros(0, dtype=np.int64)
        li = np.full(len(left), -1, dtype=np.int64)
        has = left != NO_CELL
        if has.any():
            li[has] = self.towers.index_of(left[has])
        return (li + 1) * n + ci

    def lookup(self, cell: np.ndarray, left: np.ndarray) -> np.ndarray:
        """Row of each (cell, left) key in the summary arrays, -1 where the key has no history."""
        q = self._encode(np.asarray(cell, np.int64).reshape(-1), np.asarray(left, np.int64).reshape(-1))
        if len(self._key) == 0:
            return np.full(len(q), -1, dtype=np.int64)
        i = np.clip(np.searchsorted(self._key, q), 0, len(self._key) - 1)
        return np.where(self._key[i] == q, i, -1)

    @cached_property
    def n_keys(self) -> int:
        return len(self._key)


ID_COLUMNS = ("device_id", "vehicle_id", "sample_id")  # personal or window identifiers: never in a footprint table


def footprint_problems(fp: pd.DataFrame, n_train_records: int) -> list[str]:
    """What is wrong with a footprint table built from ``n_train_records`` train records (empty: nothing).

    Checks: no identifier column; every number finite; each key's weights sum to one; every train
    record counted exactly once (the keys' record counts add up to ``n_train_records``, so no val or
    test record, and no record twice, went in).
    """
    problems = []
    ids = [c for c in ID_COLUMNS if c in fp.columns]
    if ids:
        problems.append(f"identifier columns {ids} must not be stored in footprints")
    num = fp.select_dtypes(include=[np.number])
    bad = ~np.isfinite(num.to_numpy(dtype=np.float64))
    if bad.any():
        cols = sorted({num.columns[j] for j in np.nonzero(bad)[1]})
        problems.append(f"non-finite values in {cols} ({int(bad.any(axis=1).sum())} rows)")
    if len(fp):
        sums = fp.groupby(["cell_id", "left_cell_id"])["weight"].sum()
        off = sums[(sums - 1.0).abs() > 1e-6]
        if len(off):
            problems.append(f"weights of {len(off)} keys do not sum to 1 (e.g. {off.index[0]}: {off.iloc[0]:.6f})")
    counted = int(footprint_summary(fp)["n_records"].sum()) if len(fp) else 0
    if counted != n_train_records:
        problems.append(f"footprints count {counted} records but the train windows hold {n_train_records}")
    return problems
