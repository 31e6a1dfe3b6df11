"""Shared input handling for the measurement-report (MR) baselines.

Every MR method reads the same things from a ``SampleContext`` (``ml.observation.context``):
``mr`` (one row per measured cell per report: ``t`` seconds since ``t0``, ``cell_id``,
``rsrp_dbm``), the tower positions (projected xy per ``cell_id``) and ``eval_t``. The helpers
here turn those into dense arrays once so the methods stay vectorised:

* :func:`mr_matrix` -> :class:`MRMatrix`: report times (T,), the window's cells (C,), their
  tower xy (C, 2), RSRP (T, C) with NaN where a cell was not measured.
* :func:`slot_grid` -> :class:`SlotGrid`: the regular time-slot grid used by the HMMs (HRE,
  HREA); reports are assigned to the nearest slot and slots without a report are "missing".
* :func:`interp_xy`: :func:`ml.geo.track.interpolate_positions` with the MR error message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ml.geo.track import interpolate_positions


@dataclass
class MRMatrix:
    """Dense view of a window's measurement reports (rows: report times, columns: cells)."""

    t: np.ndarray  # (T,) float seconds since t0, strictly increasing
    cell_id: np.ndarray  # (C,) int64
    tower_xy: np.ndarray  # (C, 2) projected metres of each cell's tower
    rsrp: np.ndarray  # (T, C) float64 dBm, NaN = not measured
    azimuth_deg: np.ndarray | None = None  # (C,) sector azimuth when the tower table has one, else None

    @property
    def mask(self) -> np.ndarray:
        """(T, C) bool: the cell was measured in that report."""
        return np.isfinite(self.rsrp)


@dataclass
class SlotGrid:
    """A regular slot grid: report ``k`` of an :class:`MRMatrix` lands in slot ``slot_of_report[k]``."""

    t: np.ndarray  # (S,) slot times, regular with step dt
    dt: float
    rsrp: np.ndarray  # (S, C) dBm, NaN where missing (several reports in one slot are averaged)
    observed: np.ndarray  # (S,) bool: at least one cell measured in the slot
    slot_of_report: np.ndarray  # (T,) int


def _ctx_get(ctx: Any, *names: str) -> Any:
    for n in names:
        v = getattr(ctx, n, None)
        if v is not None:
            return v
    return None


def tower_xy_of(ctx: Any, cell_ids: np.ndarray) -> np.ndarray:
    """Projected tower xy (n, 2) for ``cell_ids``, from whichever tower lookup the context has.

    Accepted, in this order: ``ctx.tower_xy`` / ``ctx.cell_xy`` as a mapping ``cell_id -> (x, y)``,
    a pandas Series of pairs, a DataFrame indexed by cell_id with ``x``/``y`` columns, or a
    callable ``f(cell_ids) -> (n, 2)``; else ``ctx.towers`` (a table with ``cell_id`` and ``x``/``y``,
    or ``lon``/``lat`` projected with ``ctx.crs``). Unknown cells raise ``KeyError`` naming them.
    """
    cell_ids = np.asarray(cell_ids, dtype=np.int64)
    lut = _ctx_get(ctx, "tower_xy", "cell_xy")
    if lut is not None:
        if callable(lut) and not isinstance(lut, (dict, pd.Series, pd.DataFrame)):
            return np.asarray(lut(cell_ids), dtype=np.float64).reshape(-1, 2)
        if isinstance(lut, pd.DataFrame):
            return lut.loc[cell_ids, ["x", "y"]].to_numpy(np.float64)
        if isinstance(lut, np.ndarray) and lut.ndim == 2:
            return lut[cell_ids].astype(np.float64)
        missing = [int(c) for c in cell_ids if int(c) not in lut]
        if missing:
            raise KeyError(f"towers: cell_id {missing[:5]} of table mr not in the tower lookup")
        return np.array([np.asarray(lut[int(c)], dtype=np.float64)[:2] for c in cell_ids]).reshape(-1, 2)
    towers = _ctx_get(ctx, "towers")
    if towers is None:
        raise AttributeError("context has no tower lookup (tower_xy, cell_xy or towers)")
    tw = towers.set_index("cell_id") if "cell_id" in towers.columns else towers
    missing = np.setdiff1d(cell_ids, tw.index.to_numpy())
    if len(missing):
        raise KeyError(f"towers: cell_id {missing[:5].tolist()} of table mr not in towers.cell_id")
    rows = tw.loc[cell_ids]
    if {"x", "y"} <= set(rows.columns):
        return rows[["x", "y"]].to_numpy(np.float64)
    from ml.geo import CityProjection

    crs = _ctx_get(ctx, "crs") or ctx.net.crs
    return CityProjection(str(crs)).to_xy(rows["lon"].to_numpy(), rows["lat"].to_numpy())


def mr_matrix(ctx: Any) -> MRMatrix:
    """Pivot ``ctx.mr`` into an :class:`MRMatrix` (duplicate (t, cell) rows are averaged)."""
    mr = ctx.mr
    if mr is None or len(mr) == 0:
        return MRMatrix(np.zeros(0), np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros((0, 0)), None)
    t = mr["t"].to_numpy(np.float64)
    cell = mr["cell_id"].to_numpy(np.int64)
    r = mr["rsrp_dbm"].to_numpy(np.float64)
    ok = np.isfinite(t) & np.isfinite(r)
    t, cell, r = t[ok], cell[ok], r[ok]
    ut, ti = np.unique(t, return_inverse=True)
    uc, ci = np.unique(cell, return_inverse=True)
    s = np.zeros((len(ut), len(uc)))
    n = np.zeros((len(ut), len(uc)))
    np.add.at(s, (ti, ci), r)
    np.add.at(n, (ti, ci), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rsrp = np.where(n > 0, s / np.maximum(n, 1), np.nan)
    return MRMatrix(ut, uc, tower_xy_of(ctx, uc), rsrp, tower_azimuth_of(ctx, uc))


def tower_azimuth_of(ctx: Any, cell_ids: np.ndarray) -> np.ndarray | None:
    """Sector azimuths (degrees, clockwise from north) of ``cell_ids`` from ``ctx.towers``; None if absent."""
    towers = _ctx_get(ctx, "towers")
    if towers is None or "azimuth_deg" not in getattr(towers, "columns", ()):
        return None
    tw = towers.set_index("cell_id") if "cell_id" in towers.columns else towers
    az = tw["azimuth_deg"].reindex(np.asarray(cell_ids, dtype=np.int64)).to_numpy(np.float64)
    return az


def slot_grid(m: MRMatrix, eval_t: np.ndarray, dt: float | None = None) -> SlotGrid:
    """Regular slots of step ``dt`` (default: the median report interval) covering reports and ``eval_t``.

    The grid is anchored on the first report; each report goes to its nearest slot. Slots with
    no report are marked unobserved: the HMMs use only transitions there (the paper's handling of
    missing RSS).
    """
    eval_t = np.asarray(eval_t, dtype=np.float64)
    if dt is None:
        d = np.diff(m.t)
        d = d[d > 1e-6]
        dt = float(np.median(d)) if len(d) else 5.0
        # the nominal interval: the smallest common gap (drops make some gaps multiples of it)
        if len(d):
            dt = float(np.min(d[d > 0.5 * dt])) if np.any(d > 0.5 * dt) else dt
    dt = max(float(dt), 1e-3)
    anchor = float(m.t[0]) if len(m.t) else 0.0
    lo = min(float(eval_t.min()) if len(eval_t) else anchor, anchor)
    hi = max(float(eval_t.max()) if len(eval_t) else anchor, float(m.t[-1]) if len(m.t) else anchor)
    k0 = int(np.floor((lo - anchor) / dt + 1e-9))
    k1 = int(np.ceil((hi - anchor) / dt - 1e-9))
    ts = anchor + dt * np.arange(k0, k1 + 1)
    slot = np.clip(np.rint((m.t - ts[0]) / dt).astype(np.int64), 0, len(ts) - 1)
    C = m.rsrp.shape[1]
    s = np.zeros((len(ts), C))
    n = np.zeros((len(ts), C))
    mask = m.mask
    np.add.at(s, slot, np.where(mask, m.rsrp, 0.0))
    np.add.at(n, slot, mask.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        rsrp = np.where(n > 0, s / np.maximum(n, 1), np.nan)
    return SlotGrid(ts, dt, rsrp, (n > 0).any(axis=1), slot)


def interp_xy(t_src: np.ndarray, xy_src: np.ndarray, t_dst: np.ndarray) -> np.ndarray:
    """MR positions at ``t_dst`` by :func:`ml.geo.track.interpolate_positions` (an empty track is an error)."""
    return interpolate_positions(t_src, xy_src, t_dst, "MR positions (no usable measurement report in the "
                                 "window: column rsrp_dbm all missing)")


def eval_times(ctx: Any) -> np.ndarray:
    """``ctx.eval_t`` as a float array."""
    return np.asarray(ctx.eval_t, dtype=np.float64).reshape(-1)
