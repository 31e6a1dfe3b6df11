"""``SampleContext``: everything a baseline (or the video pipeline) needs about one sample window.

Built in bulk by :func:`build_sample_contexts` from the data-contract tables: one sort of each
table, then per-sample slices found with ``searchsorted`` (no per-sample full-table filters).
Times inside a context are float seconds since the sample's ``t0``; positions are projected
metres in the city's CRS.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from functools import cached_property

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from ml.cities.network import RoadNetwork
from ml.geo import CityProjection

DEFAULT_EVAL_INTERVAL_S = 10.0  # used only when no sample_truth gives the evaluation times


class TowerTable(Mapping):
    """Projected tower positions by ``cell_id``.

    Mapping ``cell_id -> array([x, y])``; calling it with an array of cell ids gives ``(n, 2)``
    vectorised (unknown ids raise ``KeyError`` naming them). ``frame`` is the towers table with
    ``x``/``y`` columns added, sorted by cell_id.
    """

    def __init__(self, towers: pd.DataFrame, crs: str) -> None:
        for col in ("cell_id", "site_id", "lon", "lat"):
            if col not in towers.columns:
                raise ValueError(f"table towers: missing column {col!r}")
        tw = towers.sort_values("cell_id", kind="stable").reset_index(drop=True)
        xy = CityProjection(crs).to_xy(tw["lon"].to_numpy(), tw["lat"].to_numpy())
        tw = tw.assign(x=xy[:, 0], y=xy[:, 1])
        self.frame: pd.DataFrame = tw
        self.cell_ids: np.ndarray = tw["cell_id"].to_numpy(dtype=np.int64)
        if len(self.cell_ids) > 1 and np.any(self.cell_ids[1:] == self.cell_ids[:-1]):
            raise ValueError("table towers: column cell_id must be unique")
        self.site_ids: np.ndarray = tw["site_id"].to_numpy(dtype=np.int64)
        self.xy: np.ndarray = xy
        sites, inv = np.unique(self.site_ids, return_inverse=True)
        cnt = np.bincount(inv)
        self._sites = sites
        self._site_xy = np.column_stack([np.bincount(inv, weights=xy[:, k]) / cnt for k in (0, 1)])

    def index_of(self, cell_ids: np.ndarray) -> np.ndarray:
        """Row index of each cell id (``KeyError`` for unknown ids)."""
        c = np.asarray(cell_ids, dtype=np.int64).reshape(-1)
        i = np.clip(np.searchsorted(self.cell_ids, c), 0, max(len(self.cell_ids) - 1, 0))
        bad = (len(self.cell_ids) == 0) | (self.cell_ids[i] != c) if len(self.cell_ids) else np.ones(len(c), bool)
        if np.any(bad):
            raise KeyError(f"towers: cell_id {np.unique(c[bad])[:5].tolist()} not in towers.cell_id")
        return i

    def __call__(self, cell_ids: np.ndarray) -> np.ndarray:
        return self.xy[self.index_of(cell_ids)]

    def site_of(self, cell_ids: np.ndarray) -> np.ndarray:
        """Site id of each cell."""
        return self.site_ids[self.index_of(cell_ids)]

    def site_xy(self, site_ids: np.ndarray) -> np.ndarray:
        """Mean position of each site's sectors (co-site merge), ``(n, 2)``."""
        s = np.asarray(site_ids, dtype=np.int64).reshape(-1)
        i = np.clip(np.searchsorted(self._sites, s), 0, len(self._sites) - 1)
        if np.any(self._sites[i] != s):
            raise KeyError(f"towers: site_id {np.unique(s[self._sites[i] != s])[:5].tolist()} unknown")
        return self._site_xy[i]

    @cached_property
    def sector_units(self) -> np.ndarray:
        """Each cell's sector direction ``(n_cells, 2)`` (unit vector of ``azimuth_deg``, east = x, north = y), in
        row order; zeros for a cell without a finite azimuth, and for every cell when the table has none."""
        if "azimuth_deg" not in self.frame.columns:
            return np.zeros((len(self.cell_ids), 2))
        az = np.deg2rad(self.frame["azimuth_deg"].to_numpy(dtype=np.float64))
        u = np.column_stack([np.sin(az), np.cos(az)])
        u[~np.isfinite(u).all(axis=1)] = 0.0
        return u

    def coverage_centres_by_row(self, shift_m: float) -> np.ndarray:
        """Each cell's site position shifted by ``shift_m`` along its sector direction ``(n_cells, 2)``, in row
        order; computed once per table and shift (the hand-made model reads it for every record of every window)."""
        cache = self.__dict__.setdefault("_centres_by_shift", {})
        if shift_m not in cache:
            cache[shift_m] = self.site_xy(self.site_ids) + shift_m * self.sector_units
        return cache[shift_m]

    @cached_property
    def median_site_spacing_m(self) -> float:
        """Median distance from each site to its nearest other site (NaN with fewer than two sites)."""
        if len(self._sites) < 2:
            return float("nan")
        d, _ = cKDTree(self._site_xy).query(self._site_xy, k=2)
        return float(np.median(d[:, 1]))

    def __getitem__(self, cell_id: int) -> np.ndarray:
        return self(np.array([cell_id]))[0]

    def __contains__(self, cell_id: object) -> bool:
        try:
            c = int(cell_id)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False
        i = np.searchsorted(self.cell_ids, c)
        return bool(i < len(self.cell_ids) and self.cell_ids[i] == c)

    def __iter__(self) -> Iterator[int]:
        return iter(int(c) for c in self.cell_ids)

    def __len__(self) -> int:
        return len(self.cell_ids)


@dataclass
class SampleContext:
    """One sample window as the baselines see it.

    ``records``: the window's signaling records in time order, columns ``t`` (float s since
    ``t0``), ``cell_id``, ``event``, ``site_id``, ``x``, ``y`` (the serving tower, projected).
    ``mr``: measurement reports (``t``, ``cell_id``, ``rsrp_dbm``; one row per measured cell,
    serving first, in time order) or None. ``truth_xy``: ground truth at ``eval_t`` (None at
    inference). ``towers_xy``: the city's :class:`TowerTable`.
    """

    sample_id: str
    t0: pd.Timestamp
    duration_s: float
    eval_t: np.ndarray  # (n_eval,) float seconds since t0
    truth_xy: np.ndarray | None  # (n_eval, 2) or None
    records: pd.DataFrame
    mr: pd.DataFrame | None
    towers_xy: TowerTable
    net: RoadNetwork
    crs: str
    device_id: str | None = None
    split: str | None = None
    extra: dict = field(default_factory=dict)
    # how this window's records are read by methods that take a model (``learned_hmm``): an
    # ``ml.observation.ObservationModel``, or None (the hand-made model is built where needed)
    observation: Any = None

    # aliases used by other stages
    @property
    def tower_xy(self) -> TowerTable:
        """Alias of ``towers_xy`` (callable: ``ctx.tower_xy(cell_ids) -> (n, 2)``)."""
        return self.towers_xy

    @property
    def towers(self) -> pd.DataFrame:
        """The towers table with projected ``x``/``y`` columns."""
        return self.towers_xy.frame

    @property
    def record_t(self) -> np.ndarray:
        return self.records["t"].to_numpy(dtype=np.float64)

    @property
    def record_xy(self) -> np.ndarray:
        """Serving-tower positions of the records, ``(n_records, 2)``."""
        return self.records[["x", "y"]].to_numpy(dtype=np.float64)

    @property
    def n_eval(self) -> int:
        return len(self.eval_t)


def _seconds(ts: pd.Series | pd.DatetimeIndex | np.ndarray) -> np.ndarray:
    """Datetime-like -> int64 nanoseconds since the epoch (UTC), whatever the unit."""
    s = pd.to_datetime(pd.Series(np.asarray(ts)) if not isinstance(ts, pd.Series) else ts, utc=True)
    return s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").astype(np.int64)


def _group_slices(keys: np.ndarray, ns: np.ndarray, q_keys: np.ndarray, q_lo: np.ndarray, q_hi: np.ndarray):
    """For rows sorted by (key, ns): index ranges [start, end) with key == q and q_lo <= ns <= q_hi."""
    uk, first = np.unique(keys, return_index=True)
    last = np.append(first[1:], len(keys))
    pos = np.searchsorted(uk, q_keys)
    pos_c = np.clip(pos, 0, max(len(uk) - 1, 0))
    found = (len(uk) > 0) & (uk[pos_c] == q_keys) if len(uk) else np.zeros(len(q_keys), bool)
    starts = np.zeros(len(q_keys), dtype=np.int64)
    ends = np.zeros(len(q_keys), dtype=np.int64)
    for i in np.nonzero(found)[0]:
        a, b = first[pos_c[i]], last[pos_c[i]]
        block = ns[a:b]
        starts[i] = a + np.searchsorted(block, q_lo[i], side="left")
        ends[i] = a + np.searchsorted(block, q_hi[i], side="right")
    return starts, ends


def build_sample_contexts(
    samples: pd.DataFrame,
    signaling: pd.DataFrame,
    towers: pd.DataFrame,
    net: RoadNetwork,
    sample_truth: pd.DataFrame | None = None,
    mr: pd.DataFrame | None = None,
    split: str | None = None,
    eval_interval_s: float = DEFAULT_EVAL_INTERVAL_S,
    observation: Any = None,
) -> list[SampleContext]:
    """One :class:`SampleContext` per sample (optionally only ``split``), in the samples' order.

    Signaling and MR rows are those of the sample's device with ``t0 <= ts <= t1``. The
    evaluation times are the ``sample_truth`` timestamps of the sample (with ``truth_xy``); when
    no truth is given they are ``0, eval_interval_s, ...`` up to the duration (inclusive).
    Records whose cell is not in ``towers`` raise ``KeyError`` naming the cells. ``observation`` (an
    ``ml.observation.ObservationModel``, e.g. the city's learned footprints) is attached to every window.
    """
    crs = net.crs
    s = samples if split is None else samples[samples["split"] == split]
    s = s.reset_index(drop=True)
    if len(s) == 0:
        return []
    table = TowerTable(towers, crs)
    proj = CityProjection(crs)
    t0_ns, t1_ns = _seconds(s["t0"]), _seconds(s["t1"])
    dev = s["device_id"].astype(str).to_numpy()

    # signaling: one sort, per-device blocks, searchsorted per sample
    sig = signaling.assign(_ns=_seconds(signaling["ts"]), _dev=signaling["device_id"].astype(str))
    sig = sig.sort_values(["_dev", "_ns"], kind="stable").reset_index(drop=True)
    sig_dev, sig_ns = sig["_dev"].to_numpy(), sig["_ns"].to_numpy()
    sig_cell = sig["cell_id"].to_numpy(dtype=np.int64)
    sig_idx = table.index_of(sig_cell) if len(sig) else np.zeros(0, dtype=np.int64)
    sig_event = sig["event"].astype(str).to_numpy() if "event" in sig.columns else np.full(len(sig), "", object)
    s_a, s_b = _group_slices(sig_dev, sig_ns, dev, t0_ns, t1_ns)

    if mr is not None:
        m = mr.assign(_ns=_seconds(mr["ts"]), _dev=mr["device_id"].astype(str))
        m = m.sort_values(["_dev", "_ns"], kind="stable").reset_index(drop=True)  # stable: serving stays first
        m_ns = m["_ns"].to_numpy()
        m_cell = m["cell_id"].to_numpy(dtype=np.int64)
        m_rsrp = m["rsrp_dbm"].to_numpy(dtype=np.float64)
        m_a, m_b = _group_slices(m["_dev"].to_numpy(), m_ns, dev, t0_ns, t1_ns)

    if sample_truth is not None:
        st = sample_truth.assign(_ns=_seconds(sample_truth["ts"]), _sid=sample_truth["sample_id"].astype(str))
        st = st.sort_values(["_sid", "_ns"], kind="stable").reset_index(drop=True)
        st_xy = proj.to_xy(st["lon"].to_numpy(), st["lat"].to_numpy())
        st_ns = st["_ns"].to_numpy()
        sid = s["sample_id"].astype(str).to_numpy()
        lo = np.full(len(s), np.iinfo(np.int64).min)
        hi = np.full(len(s), np.iinfo(np.int64).max)
        tr_a, tr_b = _group_slices(st["_sid"].to_numpy(), st_ns, sid, lo, hi)

    # every sample's records in one frame (a record in two overlapping samples appears twice), each sample's
    # records a slice of it: one DataFrame construction per call instead of one per sample (the batch path
    # builds contexts for every window of a day)
    n_rec = (s_b - s_a).astype(np.int64)
    off = np.concatenate([[0], np.cumsum(n_rec)])
    take = (np.repeat(s_a - off[:-1], n_rec) + np.arange(off[-1])).astype(np.int64)
    ti_all = sig_idx[take]
    all_records = pd.DataFrame({
        "t": (sig_ns[take] - np.repeat(t0_ns, n_rec)) / 1e9,
        "cell_id": sig_cell[take],
        # object, as the records' event strings are read back as numpy arrays (a str column converts on every read)
        "event": pd.Series(sig_event[take], dtype=object),
        "site_id": table.site_ids[ti_all],
        "x": table.xy[ti_all, 0],
        "y": table.xy[ti_all, 1],
    })
    sample_ids = s["sample_id"].astype(str).to_numpy()
    splits = s["split"].astype(str).to_numpy() if "split" in s.columns else None
    t0_stamps = pd.DatetimeIndex(t0_ns.astype("datetime64[ns]")).tz_localize("UTC")

    out: list[SampleContext] = []
    for i in range(len(s)):
        t0 = int(t0_ns[i])
        dur = (int(t1_ns[i]) - t0) / 1e9
        records = all_records.iloc[off[i]:off[i + 1]]
        records.index = pd.RangeIndex(int(n_rec[i]))  # as a frame of its own: rows 0..n-1
        mr_df = None
        if mr is not None:
            ma, mb = m_a[i], m_b[i]
            mr_df = pd.DataFrame({"t": (m_ns[ma:mb] - t0) / 1e9, "cell_id": m_cell[ma:mb], "rsrp_dbm": m_rsrp[ma:mb]})
        if sample_truth is not None and tr_b[i] > tr_a[i]:
            eval_t = (st_ns[tr_a[i]:tr_b[i]] - t0) / 1e9
            truth_xy = st_xy[tr_a[i]:tr_b[i]]
        else:
            eval_t = np.arange(0.0, dur + 1e-9, eval_interval_s)
            truth_xy = None
        out.append(SampleContext(
            sample_id=str(sample_ids[i]),
            t0=t0_stamps[i],
            duration_s=float(dur),
            eval_t=eval_t,
            truth_xy=truth_xy,
            records=records,
            mr=mr_df,
            towers_xy=table,
            net=net,
            crs=crs,
            device_id=str(dev[i]),
            split=str(splits[i]) if splits is not None else None,
            observation=observation,
        ))
    return out


# ---------------------------------------------------------------------- synthetic windows
def synthetic_signaling_tables(
    net: RoadNetwork,
    n_samples: int,
    seed: int = 0,
    duration_s: float = 900.0,
    eval_interval_s: float = DEFAULT_EVAL_INTERVAL_S,
    site_spacing_m: float = 450.0,
    mean_gap_s: float = 60.0,
    speed_mps: tuple[float, float] = (6.0, 13.0),
) -> dict[str, pd.DataFrame]:
    """Small data-contract tables (``towers``, ``signaling``, ``samples``, ``sample_truth``) for
    tests and benchmarks when the full simulator is not wanted.

    A vehicle drives a chain of shortest paths between random nodes at a constant speed; 3-sector
    sites stand on a jittered grid; the serving site is the nearest one after log-normal
    "shadowing" (redrawn every 30 s) with a 10 % hysteresis, the sector the one facing the
    vehicle; records are Poisson events (mean gap ``mean_gap_s``) plus one ``handover`` record at
    every serving-cell change. Much cruder than ``ml.simulate``, but deterministic and fast.
    """
    rng = np.random.default_rng(seed)
    proj = CityProjection(net.crs)
    xmin, ymin, xmax, ymax = net.bounds
    gx = np.arange(xmin, xmax + site_spacing_m, site_spacing_m)
    gy = np.arange(ymin, ymax + site_spacing_m, site_spacing_m)
    sxy = np.array(np.meshgrid(gx, gy)).reshape(2, -1).T
    sxy = sxy + rng.uniform(-0.2, 0.2, sxy.shape) * site_spacing_m
    n_sites = len(sxy)
    site_ll = proj.to_lonlat(sxy)
    towers = pd.DataFrame({
        "cell_id": (np.arange(n_sites)[:, None] * 10 + np.arange(3)[None, :]).ravel().astype(np.int64),
        "site_id": np.repeat(np.arange(n_sites), 3).astype(np.int64),
        "lon": np.repeat(site_ll[:, 0], 3),
        "lat": np.repeat(site_ll[:, 1], 3),
        "azimuth_deg": np.tile([0.0, 120.0, 240.0], n_sites),
        "height_m": np.full(3 * n_sites, 30.0),
        "tx_power_dbm": np.full(3 * n_sites, 43.0),
    })
    epoch = np.datetime64("2024-01-01T00:00:00", "ns")
    sig_parts, truth_parts, sample_rows = [], [], []
    from ml.mapmatch.route import point_at_distance, polyline_cum_m

    for i in range(n_samples):
        v = rng.uniform(*speed_mps)
        need = v * duration_s + 10.0
        node = int(rng.integers(net.n_nodes))
        lines: list[np.ndarray] = []
        total = 0.0
        while total < need:
            dist, pred = net.shortest_paths_from(np.array([node]))
            d = dist[0]
            ok = np.nonzero(np.isfinite(d) & (d > 300.0))[0]
            if len(ok) == 0:
                break
            tgt = int(rng.choice(ok))
            leg = net.path_polyline(net.node_path(pred[0], tgt))
            lines.append(leg if not lines else leg[1:])
            total += float(d[tgt])
            node = tgt
        line = np.vstack(lines)
        cum = polyline_cum_m(line)
        tt = np.arange(0.0, duration_s + 1e-9, 2.0)
        pos = point_at_distance(line, cum, v * tt)
        # serving site with correlated shadowing and hysteresis
        d = np.hypot(pos[:, None, 0] - sxy[None, :, 0], pos[:, None, 1] - sxy[None, :, 1])
        block = (tt // 30).astype(int)
        shadow = rng.normal(0.0, 0.25, (block.max() + 1, n_sites))[block]
        eff = d * np.exp(shadow)
        best = np.argmin(eff, axis=1)
        serving = np.empty(len(tt), dtype=np.int64)
        cur = best[0]
        for k in range(len(tt)):
            if best[k] != cur and eff[k, best[k]] < 0.9 * eff[k, cur]:
                cur = best[k]
            serving[k] = cur
        bearing = np.degrees(np.arctan2(pos[:, 0] - sxy[serving, 0], pos[:, 1] - sxy[serving, 1])) % 360.0
        sector = np.round(bearing / 120.0).astype(int) % 3
        cell = serving * 10 + sector
        change = np.nonzero(np.diff(cell) != 0)[0] + 1
        n_ev = rng.poisson(duration_s / mean_gap_s) + 2
        ev_t = np.sort(rng.uniform(0.0, duration_s, n_ev))
        ev_k = np.clip(np.round(ev_t / 2.0).astype(int), 0, len(tt) - 1)
        rec_k = np.concatenate([ev_k, change])
        rec_ev = np.concatenate([rng.choice(["data", "periodic", "call", "sms"], n_ev), np.full(len(change), "handover")])
        order = np.argsort(rec_k, kind="stable")
        rec_k, rec_ev = rec_k[order], rec_ev[order]
        t0 = epoch + np.timedelta64(i * 3600, "s")
        dev = f"dev{i:04d}"
        sig_parts.append(pd.DataFrame({
            "device_id": dev,
            "ts": pd.to_datetime(t0 + (tt[rec_k] * 1e9).astype("timedelta64[ns]"), utc=True),
            "cell_id": cell[rec_k],
            "event": rec_ev,
        }))
        et = np.arange(0.0, duration_s + 1e-9, eval_interval_s)
        ell = proj.to_lonlat(point_at_distance(line, cum, v * et))
        sid = f"s{i:04d}"
        truth_parts.append(pd.DataFrame({
            "sample_id": sid,
            "ts": pd.to_datetime(t0 + (et * 1e9).astype("timedelta64[ns]"), utc=True),
            "lon": ell[:, 0],
            "lat": ell[:, 1],
        }))
        sample_rows.append({
            "sample_id": sid, "device_id": dev, "vehicle_id": f"veh{i:04d}",
            "t0": pd.Timestamp(t0, tz="UTC"), "t1": pd.Timestamp(t0 + np.timedelta64(int(duration_s * 1e9), "ns"), tz="UTC"),
            "split": "test" if i % 5 == 0 else "train", "n_records": int(len(rec_k)),
        })
    return {
        "towers": towers,
        "signaling": pd.concat(sig_parts, ignore_index=True),
        "samples": pd.DataFrame(sample_rows),
        "sample_truth": pd.concat(truth_parts, ignore_index=True),
    }
