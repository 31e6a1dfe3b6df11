"""Link signaling devices to taxis (paper section 4.1): mobility, time coverage, distance consistency.

Per day, every record of every device is compared with every taxi's position at the record's
time (one vectorised (records x taxis) distance matrix per day, aggregated per device with
``np.add.reduceat``); there is no Python loop over (device, taxi) pairs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml.geo import CityProjection, utm_crs_for
from ml.pairing.config import PairingConfig
from ml.simulate.tables import make_table, ts_to_seconds
from ml.geo.track import interpolate_positions

DAY_S = 86400.0
EPOCH = np.datetime64("1970-01-01", "D")


def projection_for(towers: pd.DataFrame, crs: str | None = None) -> CityProjection:
    """The city's projection: ``crs`` if given, else the UTM zone of the towers' centre."""
    if crs is None:
        if len(towers) == 0:
            raise ValueError("table 'towers' is empty: cannot place serving cells")
        crs = utm_crs_for(float(towers["lon"].mean()), float(towers["lat"].mean()))
    return CityProjection(crs)


def cell_positions(towers: pd.DataFrame, cell_ids: np.ndarray, proj: CityProjection) -> np.ndarray:
    """(n, 2) projected positions of the towers serving ``cell_ids``; unknown ids are an error."""
    tid = towers["cell_id"].to_numpy(np.int64)
    order = np.argsort(tid)
    pos = np.searchsorted(tid[order], cell_ids)
    pos = np.clip(pos, 0, len(tid) - 1)
    found = tid[order][pos] == cell_ids
    if not np.all(found):
        bad = np.unique(np.asarray(cell_ids)[~found])[:5].tolist()
        raise ValueError(f"table 'signaling', column 'cell_id': values not in table 'towers' (foreign key), e.g. {bad}")
    xy = proj.to_xy(towers["lon"].to_numpy()[order][pos], towers["lat"].to_numpy()[order][pos])
    return xy


class TaxiDay:
    """GPS tracks of the taxis active on one day, for time-aligned lookups."""

    def __init__(self, vehicle: np.ndarray, t: np.ndarray, xy: np.ndarray, speed: np.ndarray, moving_speed: float):
        self.vehicles, first = np.unique(vehicle, return_index=True)
        self.bounds = np.r_[first, len(vehicle)]
        self.t, self.xy, self.speed = t, xy, speed
        moving = (speed[:-1] > moving_speed) & (speed[1:] > moving_speed)
        dt = np.diff(t)
        same = vehicle[1:] == vehicle[:-1]
        self.cum_moving = np.concatenate([[0.0], np.cumsum(np.where(moving & same, dt, 0.0))])

    def __len__(self) -> int:
        return len(self.vehicles)

    def track(self, k: int) -> slice:
        return slice(self.bounds[k], self.bounds[k + 1])

    def positions_at(self, k: int, t: np.ndarray, max_gap_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Taxi k's interpolated positions at times t and whether a fix lies within ``max_gap_s``."""
        s = self.track(k)
        vt, vxy = self.t[s], self.xy[s]
        j = np.searchsorted(vt, t)
        lo = np.clip(j - 1, 0, len(vt) - 1)
        hi = np.clip(j, 0, len(vt) - 1)
        near = np.minimum(np.abs(t - vt[lo]), np.abs(vt[hi] - t))
        valid = (t >= vt[0]) & (t <= vt[-1]) & (near <= max_gap_s) & ((vt[hi] - vt[lo]) <= 2 * max_gap_s)
        xy = interpolate_positions(vt, vxy, t)
        return xy, valid

    def moving_between(self, k: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Seconds taxi k moved between times a and b (arrays)."""
        s = self.track(k)
        vt, cm = self.t[s], self.cum_moving[s]
        return np.maximum(np.interp(b, vt, cm) - np.interp(a, vt, cm), 0.0)


def _load_gps(gps: pd.DataFrame, proj: CityProjection):
    g = gps.sort_values(["vehicle_id", "ts"], kind="stable")
    t = ts_to_seconds(g["ts"], EPOCH)
    return (g["vehicle_id"].to_numpy(dtype=object), t, proj.to_xy(g["lon"].to_numpy(), g["lat"].to_numpy()),
            g["speed_mps"].to_numpy(np.float64))


def pair_devices(signaling: pd.DataFrame, towers: pd.DataFrame, gps: pd.DataFrame, cfg: PairingConfig,
                 crs: str | None = None) -> pd.DataFrame:
    """Accepted (device, taxi, day) pairs (contract table ``pairs``).

    For each day and each device the mismatch with each taxi is the mean distance, clipped at
    ``distance_cap_m``, between the serving tower of each record and the taxi's GPS position at
    the record's time. A device is paired with its best taxi when (i) the taxi moved at least
    ``min_moving_h`` within the overlap, (ii) the overlap of the device's records and the taxi's GPS
    spans at least ``min_overlap_h``, (iii) the mismatch is at most ``max_mismatch_m`` with at most
    ``max_outlier_share`` records beyond ``outlier_distance_m`` and (iv) the runner-up's mismatch
    exceeds the best by ``min_margin``; also the serving towers must spread (radius of gyration) at
    least ``min_spread_ratio`` of the taxi's spread over the same records, so a phone standing
    near a taxi's usual beat is not taken for its driver (``margin = runner_up / best - 1``, capped at 99). Devices
    that fail are dropped (ambiguous or not in a taxi). (v) A taxi-day keeps one device, the one it matches best
    (:func:`one_device_per_taxi`): a passenger who rode it, accepted because no other taxi came close, is not
    its driver.
    """
    empty = make_table("pairs", {c: [] for c in ("device_id", "vehicle_id", "day", "overlap_h", "moving_h",
                                                   "mismatch_m", "margin")})
    if len(signaling) == 0 or len(gps) == 0:
        return empty
    proj = projection_for(towers, crs)
    sig = signaling.sort_values(["device_id", "ts"], kind="stable")
    s_dev = sig["device_id"].to_numpy(dtype=object)
    s_t = ts_to_seconds(sig["ts"], EPOCH)
    s_xy = cell_positions(towers, sig["cell_id"].to_numpy(np.int64), proj)
    s_day = np.floor(s_t / DAY_S).astype(np.int64)
    g_veh, g_t, g_xy, g_speed = _load_gps(gps, proj)
    g_day = np.floor(g_t / DAY_S).astype(np.int64)

    rows: list[dict] = []
    for day in np.unique(s_day):
        gm = g_day == day
        if not gm.any():
            continue
        taxis = TaxiDay(g_veh[gm], g_t[gm], g_xy[gm], g_speed[gm], cfg.moving_speed_mps)
        sm = np.flatnonzero(s_day == day)  # sorted by device, then time
        dev, t, xy = s_dev[sm], s_t[sm], s_xy[sm]
        starts = np.r_[0, np.flatnonzero(dev[1:] != dev[:-1]) + 1]
        n_dev, n_taxi = len(starts), len(taxis)
        # (records x taxis) time-aligned distances
        dist = np.full((len(t), n_taxi), np.nan)
        px, py = np.zeros((len(t), n_taxi)), np.zeros((len(t), n_taxi))
        for k in range(n_taxi):
            pos, valid = taxis.positions_at(k, t, cfg.max_gps_gap_s)
            dist[valid, k] = np.hypot(*(pos[valid] - xy[valid]).T)
            px[:, k], py[:, k] = pos[:, 0] - xy[:, 0].mean(), pos[:, 1] - xy[:, 1].mean()
        valid = np.isfinite(dist)
        # radius of gyration of the taxi and of the serving towers over the same (valid) records
        w = valid.astype(np.float64)
        tx, ty = (xy[:, 0] - xy[:, 0].mean())[:, None] * w, (xy[:, 1] - xy[:, 1].mean())[:, None] * w
        spread = {}
        for name, (ax, ay) in {"taxi": (px * w, py * w), "towers": (tx, ty)}.items():
            n = np.maximum(np.add.reduceat(w, starts, axis=0), 1.0)
            mx, my = np.add.reduceat(ax, starts, axis=0) / n, np.add.reduceat(ay, starts, axis=0) / n
            m2 = np.add.reduceat(ax**2 + ay**2, starts, axis=0) / n
            spread[name] = np.sqrt(np.maximum(m2 - mx**2 - my**2, 0.0))
        spread_ratio = spread["towers"] / np.maximum(spread["taxi"], 1.0)
        n_valid = np.add.reduceat(valid.astype(np.int64), starts, axis=0)
        clipped = np.add.reduceat(np.where(valid, np.minimum(dist, cfg.distance_cap_m), 0.0), starts, axis=0)
        far = valid & (np.nan_to_num(dist, nan=0.0) > cfg.outlier_distance_m)
        outliers = np.add.reduceat(far.astype(np.int64), starts, axis=0)
        first = np.minimum.reduceat(np.where(valid, t[:, None], np.inf), starts, axis=0)
        last = np.maximum.reduceat(np.where(valid, t[:, None], -np.inf), starts, axis=0)
        mismatch = np.where(n_valid > 0, clipped / np.maximum(n_valid, 1), np.inf)
        overlap_s = np.maximum(last - first, 0.0)
        overlap_s[n_valid == 0] = 0.0
        moving_s = np.zeros((n_dev, n_taxi))
        for k in range(n_taxi):
            ok = n_valid[:, k] > 0
            moving_s[ok, k] = taxis.moving_between(k, first[ok, k], last[ok, k])
        # candidates must have enough comparable records; the runner-up is the second-best of them
        comparable = n_valid >= cfg.min_records
        score = np.where(comparable, mismatch, np.inf)
        order = np.argsort(score, axis=1)
        best = order[:, 0]
        r = np.arange(n_dev)
        best_mis = score[r, best]
        second = score[r, order[:, 1]] if n_taxi > 1 else np.full(n_dev, np.inf)
        margin = np.minimum(np.where(np.isfinite(second), second / np.maximum(best_mis, 1.0) - 1.0, 99.0), 99.0)
        ok = (np.isfinite(best_mis)
              & (overlap_s[r, best] >= 3600.0 * cfg.min_overlap_h)
              & (moving_s[r, best] >= 3600.0 * cfg.min_moving_h)
              & (best_mis <= cfg.max_mismatch_m)
              & (outliers[r, best] <= cfg.max_outlier_share * n_valid[r, best])
              & (spread_ratio[r, best] >= cfg.min_spread_ratio)
              & (margin >= cfg.min_margin))
        day_str = str(np.datetime64(int(day), "D"))
        for i in np.flatnonzero(ok):
            rows.append({"device_id": dev[starts[i]], "vehicle_id": taxis.vehicles[best[i]], "day": day_str,
                         "overlap_h": overlap_s[i, best[i]] / 3600.0, "moving_h": moving_s[i, best[i]] / 3600.0,
                         "mismatch_m": best_mis[i], "margin": margin[i]})
    if not rows:
        return empty
    df = pd.DataFrame(rows)
    return one_device_per_taxi(make_table("pairs", {c: df[c].to_numpy() for c in df.columns}))


def one_device_per_taxi(pairs: pd.DataFrame) -> pd.DataFrame:
    """Rule (v) of :func:`pair_devices` on accepted pairs: each (taxi, day) keeps its lowest-mismatch device (ties
    to the smaller device id); sorted by day and device."""
    best = pairs.sort_values(["vehicle_id", "day", "mismatch_m", "device_id"], kind="stable")
    best = best.drop_duplicates(["vehicle_id", "day"], keep="first")
    return best.sort_values(["day", "device_id"], ignore_index=True)


def pairing_quality(pairs: pd.DataFrame, truth_links: pd.DataFrame, signaling: pd.DataFrame | None = None) -> dict:
    """Precision and recall of the pairing against the simulator's hidden truth.

    precision = share of pair rows whose (device, vehicle) is a true driver link; recall = correct
    driver (device, day) pairs / driver device-days present in ``signaling`` (when given), else
    correctly paired driver devices / driver devices. Also n_pairs, n_devices (distinct devices in
    pairs) and n_driver_devices.
    """
    drivers = truth_links[truth_links["kind"] == "driver"]
    link = dict(zip(drivers["device_id"], drivers["vehicle_id"]))
    correct = np.array([link.get(d) == v for d, v in zip(pairs["device_id"], pairs["vehicle_id"])], dtype=bool)
    n_pairs = int(len(pairs))
    if signaling is not None and len(signaling):
        sd = signaling[signaling["device_id"].isin(link.keys())]
        day = pd.to_datetime(sd["ts"], utc=True).dt.strftime("%Y-%m-%d")
        denom = int(len(set(zip(sd["device_id"], day))))
        hits = int(len(set(zip(pairs["device_id"][correct], pairs["day"][correct]))))
    else:
        denom = len(link)
        hits = int(pairs.loc[correct, "device_id"].nunique())
    return {
        "precision": float(correct.mean()) if n_pairs else float("nan"),
        "recall": float(hits / denom) if denom else float("nan"),
        "n_pairs": n_pairs,
        "n_devices": int(pairs["device_id"].nunique()),
        "n_driver_devices": int(len(link)),
    }
