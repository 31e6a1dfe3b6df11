"""Small synthetic windows (truth route, towers, signaling, tile) for tests, benchmarks and the floor.

Used when no simulated dataset is at hand: a vehicle drives a shortest-ish path at a plausible
speed (a fraction of each road's speed, with short stops at some intersections), towers sit on
a jittered grid, and the serving tower of each (randomly timed) record is the nearest tower to
the true position (sometimes the second nearest, as shadowing would do). The tile is chosen from
the serving-tower positions only, as in the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from ml.cities.network import RoadNetwork
from ml.geo.tile import Tile, choose_tile
from ml.render.config import RenderConfig
from ml.geo.track import interpolate_positions


@dataclass
class WindowSample:
    """One window in projected metres; times in seconds since the window start."""

    sample_id: str
    tile: Tile
    duration_s: float
    truth_xy: np.ndarray  # (n, 2) at the evaluation interval, t = 0 .. duration_s
    truth_t: np.ndarray  # (n,)
    record_xy: np.ndarray  # (r, 2) serving-tower position of each record, time order
    record_t: np.ndarray  # (r,)
    tower_xy: np.ndarray  # (m, 2) towers to mark


def jittered_towers(net: RoadNetwork, isd_m: float, rng: np.random.Generator) -> np.ndarray:
    """Tower sites on a jittered square grid covering the network (``isd_m`` apart)."""
    xmin, ymin, xmax, ymax = net.bounds
    gx = np.arange(xmin, xmax + isd_m, isd_m)
    gy = np.arange(ymin, ymax + isd_m, isd_m)
    X, Y = np.meshgrid(gx, gy)
    xy = np.column_stack([X.ravel(), Y.ravel()])
    return xy + rng.uniform(-0.3 * isd_m, 0.3 * isd_m, size=xy.shape)


def drive_route(
    net: RoadNetwork,
    rng: np.random.Generator,
    duration_s: float,
    step_s: float = 5.0,
    speed_factor: tuple[float, float] = (0.55, 0.85),
    stop_prob: float = 0.15,
    max_stop_s: float = 25.0,
) -> tuple[np.ndarray, np.ndarray]:
    """A random drive of ``duration_s`` seconds along a shortest path: ``(xy (n, 2), t (n,))`` every ``step_s``."""
    need_m = float(np.median(net.edge_speed_mps)) * np.mean(speed_factor) * duration_s
    for _ in range(20):
        src = int(rng.integers(net.n_nodes))
        dist, pred = net.shortest_paths_from(np.array([src]), limit_m=1.5 * need_m)
        dist, pred = dist[0], pred[0]
        ok = np.nonzero(np.isfinite(dist) & (dist >= 0.8 * need_m))[0]
        if len(ok) == 0:
            ok = np.nonzero(np.isfinite(dist) & (dist > 0))[0]
            if len(ok) == 0:
                continue
            ok = ok[np.argsort(dist[ok])[-5:]]
        dst = int(rng.choice(ok))
        nodes = net.node_path(pred, dst)
        if len(nodes) >= 2:
            break
    else:  # pragma: no cover - disconnected toy graph
        raise RuntimeError("could not find a route in the network")
    # time at each route vertex: per-edge speed, optional stops at intersections
    knots_xy, knots_t = [net.node_xy[nodes[0]][None]], [np.zeros(1)]
    t = 0.0
    for u, v in zip(nodes[:-1], nodes[1:]):
        e = net.edge_lookup[(u, v)]
        g = net.edge_geometry(e)
        seg = np.hypot(*np.diff(g, axis=0).T)
        v_mps = net.edge_speed_mps[e] * rng.uniform(*speed_factor)
        tt = t + np.cumsum(seg) / v_mps
        knots_xy.append(g[1:])
        knots_t.append(tt)
        t = float(tt[-1])
        if rng.random() < stop_prob:
            t += rng.uniform(3.0, max_stop_s)
            knots_xy.append(g[-1:])
            knots_t.append(np.array([t]))
        if t > duration_s:
            break
    kxy, kt = np.vstack(knots_xy), np.concatenate(knots_t)
    ts = np.arange(0.0, duration_s + 1e-9, step_s)
    if ts[-1] < duration_s:
        ts = np.append(ts, duration_s)
    xy = interpolate_positions(kt, kxy, ts)
    return xy, ts


def synthetic_windows(
    net: RoadNetwork,
    n: int,
    seed: int = 0,
    duration_s: float = 600.0,
    isd_m: float = 500.0,
    mean_gap_s: float = 40.0,
    step_s: float = 5.0,
    cfg: RenderConfig | None = None,
    stop_prob: float = 0.15,
    speed_factor: tuple[float, float] = (0.55, 0.85),
) -> tuple[list[WindowSample], np.ndarray]:
    """``n`` synthetic windows and the tower sites ``(m, 2)`` they were drawn with."""
    cfg = cfg or RenderConfig()
    rng = np.random.default_rng(seed)
    towers = jittered_towers(net, isd_m, rng)
    tree = cKDTree(towers)
    out = []
    for i in range(n):
        xy, ts = drive_route(net, rng, duration_s, step_s=step_s, speed_factor=speed_factor, stop_prob=stop_prob)
        gaps = rng.exponential(mean_gap_s, size=int(3 * duration_s / mean_gap_s) + 5)
        rt = np.cumsum(gaps) - gaps[0] * rng.random()
        rt = rt[(rt >= 0) & (rt <= duration_s)]
        if len(rt) < 3:
            rt = np.sort(rng.uniform(0, duration_s, 3))
        pos = interpolate_positions(ts, xy, rt)
        _, nn = tree.query(pos, k=2)
        pick = np.where(rng.random(len(rt)) < 0.2, nn[:, 1], nn[:, 0])
        rec = towers[pick]
        tile = choose_tile(rec, net.crs, cfg.zoom_sizes_m, cfg.margin_m)
        out.append(WindowSample(f"s{i:05d}", tile, float(duration_s), xy, ts, rec, rt, np.unique(rec, axis=0)))
    return out, towers


def windows_to_tables(
    net: RoadNetwork,
    windows: list[WindowSample],
    towers_xy: np.ndarray,
    start: str = "2024-03-04 08:00:00",
    splits: tuple[str, ...] = ("train", "val", "test"),
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The data-contract tables ``(samples, signaling, towers, sample_truth)`` of synthetic windows."""
    proj = net.projection
    ll = proj.to_lonlat(towers_xy)
    cells = np.arange(len(towers_xy), dtype=np.int64)  # one omni cell per site (no azimuth: positions at the mast)
    towers = pd.DataFrame({"cell_id": cells, "site_id": cells, "lon": ll[:, 0], "lat": ll[:, 1]})
    tree = cKDTree(towers_xy)
    base = pd.Timestamp(start, tz="UTC")
    srows, sig, truth = [], [], []
    for i, w in enumerate(windows):
        t0 = base + pd.Timedelta(seconds=2000 * i)
        dev = f"dev{i:04d}"
        srows.append({
            "sample_id": w.sample_id, "device_id": dev, "vehicle_id": f"veh{i:04d}", "t0": t0,
            "t1": t0 + pd.Timedelta(seconds=w.duration_s), "split": splits[i % len(splits)],
            "n_records": len(w.record_t), **w.tile.as_dict(),
        })
        _, cell = tree.query(w.record_xy)
        sig.append(pd.DataFrame({"device_id": dev, "ts": t0 + pd.to_timedelta(w.record_t, unit="s"),
                                 "cell_id": cell.astype(np.int64), "event": "periodic"}))
        tl = proj.to_lonlat(w.truth_xy)
        truth.append(pd.DataFrame({"sample_id": w.sample_id, "ts": t0 + pd.to_timedelta(w.truth_t, unit="s"),
                                   "lon": tl[:, 0], "lat": tl[:, 1]}))
    samples = pd.DataFrame(srows)
    samples["n_records"] = samples["n_records"].astype(np.int64)
    return samples, pd.concat(sig, ignore_index=True), towers, pd.concat(truth, ignore_index=True)
