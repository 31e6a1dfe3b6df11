"""A small, self-contained generator of MR windows (as ``SampleContext``) for the MR baselines' tests and benchmarks.

It does not replace ``ml.simulate`` (the pipeline's simulator); it produces windows with the same
fields as ``ml.observation.context.SampleContext`` quickly and deterministically, with the radio
effects that decide how the MR methods rank:

* route: shortest path (by length) between two random nodes at least ``min_route_m`` apart;
  speed profile cruising at 8-14 m/s with stops (10-40 s) at some intersections;
* towers: 3-sector sites on a jittered square grid (inter-site distance ``isd_m``), azimuths
  0/120/240 degrees plus jitter, one cell per sector;
* RSRP = P0_c - 10 n log10(d) + sector gain - shadowing + noise: n = ``exponent``, P0_c varies
  per cell, 3GPP sector pattern -min(12 (theta/65)^2, 20) dB, log-normal shadowing
  (``shadow_db``) spatially correlated along the path (AR(1) in travelled distance, decorrelation
  ``shadow_corr_m``), i.i.d. measurement noise (``noise_db``);
* MR every ``report_s`` seconds: the serving (strongest) cell and the next 6 strongest above
  -125 dBm; each report dropped with probability ``drop_report``, each neighbour with
  ``drop_cell``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ml.observation.context import SampleContext, TowerTable
from ml.cities.network import RoadNetwork
from ml.geo import CityProjection
from ml.geo.track import interpolate_positions


@dataclass
class SyntheticMRConfig:
    """Parameters of the synthetic MR windows."""

    duration_s: float = 600.0
    eval_step_s: float = 10.0
    report_s: float = 5.0
    isd_m: float = 450.0
    exponent: float = 3.5
    p0_dbm: float = 0.0
    p0_spread_db: float = 3.0
    shadow_db: float = 6.0
    shadow_corr_m: float = 50.0
    noise_db: float = 2.0
    n_neighbours: int = 6
    sensitivity_dbm: float = -125.0
    drop_report: float = 0.1
    drop_cell: float = 0.05
    min_route_m: float = 1500.0
    cruise_mps: tuple[float, float] = (8.0, 14.0)
    stop_prob: float = 0.25
    stop_s: tuple[float, float] = (10.0, 40.0)


def synthetic_towers(net: RoadNetwork, isd_m: float, rng: np.random.Generator) -> pd.DataFrame:
    """3-sector sites on a jittered grid covering the network (plus one ring of sites around it)."""
    xmin, ymin, xmax, ymax = net.bounds
    xs = np.arange(xmin - isd_m, xmax + isd_m + 1, isd_m)
    ys = np.arange(ymin - isd_m, ymax + isd_m + 1, isd_m * np.sqrt(3) / 2)
    gx, gy = np.meshgrid(xs, ys)
    gx = gx + (np.arange(gy.shape[0])[:, None] % 2) * isd_m / 2  # hexagonal-ish offset rows
    site = np.column_stack([gx.ravel(), gy.ravel()]) + rng.normal(0, 0.15 * isd_m, (gx.size, 2))
    n_site = len(site)
    az = (np.array([0.0, 120.0, 240.0])[None, :] + rng.normal(0, 10.0, (n_site, 3))) % 360.0
    lonlat = CityProjection(net.crs).to_lonlat(np.repeat(site, 3, axis=0))
    return pd.DataFrame({
        "cell_id": np.arange(3 * n_site, dtype=np.int64),
        "site_id": np.repeat(np.arange(n_site, dtype=np.int64), 3),
        "x": np.repeat(site[:, 0], 3),
        "y": np.repeat(site[:, 1], 3),
        "lon": lonlat[:, 0],
        "lat": lonlat[:, 1],
        "azimuth_deg": az.ravel(),
        "height_m": np.repeat(rng.uniform(20, 40, n_site), 3),
        "tx_power_dbm": 46.0,
    })


def _route(net: RoadNetwork, rng: np.random.Generator, min_m: float) -> np.ndarray:
    for _ in range(50):
        a = int(rng.integers(net.n_nodes))
        dist, pred = net.shortest_paths_from(np.array([a]))
        far = np.nonzero(np.isfinite(dist[0]) & (dist[0] >= min_m))[0]
        if len(far):
            b = int(rng.choice(far))
            return net.path_polyline(net.node_path(pred[0], b))
    raise ValueError("synthetic MR: no route of the requested length in this network")


def _drive(poly: np.ndarray, cfg: SyntheticMRConfig, rng: np.random.Generator, dt: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Positions every ``dt`` seconds along ``poly`` (cruise, stops at some vertices), for duration_s."""
    seg = np.hypot(*np.diff(poly, axis=0).T)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    # stops at a random subset of interior vertices
    stops = {float(c): float(rng.uniform(*cfg.stop_s)) for c in cum[1:-1] if rng.random() < cfg.stop_prob}
    n = int(cfg.duration_s / dt) + 1
    s = np.zeros(n)
    v = rng.uniform(*cfg.cruise_mps)
    wait = 0.0
    next_stops = sorted(stops)
    pos = 0.0
    for i in range(1, n):
        if wait > 0:
            wait -= dt
        else:
            if rng.random() < 0.05:
                v = rng.uniform(*cfg.cruise_mps)
            new = pos + v * dt
            while next_stops and next_stops[0] <= new:
                new = next_stops[0]
                wait = stops[next_stops.pop(0)]
                break
            pos = min(new, cum[-1])
        s[i] = pos
    xy = np.column_stack([np.interp(s, cum, poly[:, 0]), np.interp(s, cum, poly[:, 1])])
    return np.arange(n) * dt, xy, s


def synthetic_mr_window(
    net: RoadNetwork,
    seed: int,
    cfg: SyntheticMRConfig | None = None,
    towers: pd.DataFrame | None = None,
    sample_id: str | None = None,
) -> SampleContext:
    """Generate one MR window (deterministic in ``seed``) on ``net`` as a ``SampleContext``.

    ``ctx.extra`` holds the 1 s ground truth (``truth_t``, ``truth_path_xy``) for diagnostics.
    """
    cfg = cfg or SyntheticMRConfig()
    rng = np.random.default_rng(seed)
    if towers is None:
        towers = synthetic_towers(net, cfg.isd_m, np.random.default_rng(seed + 10_000))
    poly = _route(net, rng, cfg.min_route_m)
    t1, xy1, s1 = _drive(poly, cfg, rng)
    cells_xy = towers[["x", "y"]].to_numpy()
    C = len(cells_xy)
    cell_rng = np.random.default_rng(seed + 20_000)
    p0 = cfg.p0_dbm + cell_rng.normal(0, cfg.p0_spread_db, C)
    # report times and positions
    tr = np.arange(0.0, cfg.duration_s + 1e-9, cfg.report_s)
    xy = interpolate_positions(t1, xy1, tr)
    s = np.interp(tr, t1, s1)
    dvec = xy[:, None, :] - cells_xy[None, :, :]
    d = np.maximum(np.hypot(dvec[..., 0], dvec[..., 1]), 10.0)
    bearing = np.degrees(np.arctan2(dvec[..., 0], dvec[..., 1])) % 360.0  # from tower to UE, 0 = north
    off = (bearing - towers["azimuth_deg"].to_numpy()[None, :] + 180.0) % 360.0 - 180.0
    gain = -np.minimum(12.0 * (off / 65.0) ** 2, 20.0)
    # spatially correlated shadowing along the travelled distance: AR(1), stationary std shadow_db
    ds = np.diff(s, prepend=s[0])
    a = np.exp(-ds / cfg.shadow_corr_m)
    eps = rng.normal(0, 1, (len(tr), C))
    sh = np.empty((len(tr), C))
    sh[0] = eps[0] * cfg.shadow_db
    for k in range(1, len(tr)):
        sh[k] = a[k] * sh[k - 1] + np.sqrt(1 - a[k] ** 2) * eps[k] * cfg.shadow_db
    rsrp = p0[None, :] - 10.0 * cfg.exponent * np.log10(d) + gain + sh + rng.normal(0, cfg.noise_db, (len(tr), C))
    order = np.argsort(-rsrp, axis=1)[:, : 1 + cfg.n_neighbours]
    rows = []
    keep_report = rng.random(len(tr)) >= cfg.drop_report
    for k in range(len(tr)):
        if not keep_report[k]:
            continue
        for j, c in enumerate(order[k]):
            r = rsrp[k, c]
            if r < cfg.sensitivity_dbm and j > 0:
                continue
            if j > 0 and rng.random() < cfg.drop_cell:
                continue
            rows.append((tr[k], int(c), float(r)))
    mr = pd.DataFrame(rows, columns=["t", "cell_id", "rsrp_dbm"]).astype({"t": "float64", "cell_id": "int64", "rsrp_dbm": "float64"})
    eval_t = np.arange(0.0, cfg.duration_s + 1e-9, cfg.eval_step_s)
    truth = interpolate_positions(t1, xy1, eval_t)
    ser = mr.groupby("t", sort=True).first().reset_index()
    table = TowerTable(towers, net.crs)
    sxy = table(ser["cell_id"].to_numpy())
    records = pd.DataFrame({
        "t": ser["t"].to_numpy(), "cell_id": ser["cell_id"].to_numpy(), "event": "periodic",
        "site_id": table.site_of(ser["cell_id"].to_numpy()), "x": sxy[:, 0], "y": sxy[:, 1],
    })
    return SampleContext(
        sample_id=sample_id or f"synthetic-mr-{seed}",
        t0=pd.Timestamp("2024-01-01T08:00:00Z") + pd.Timedelta(seconds=int(seed) * 3600),
        duration_s=float(cfg.duration_s),
        eval_t=eval_t,
        truth_xy=truth,
        records=records,
        mr=mr,
        towers_xy=table,
        net=net,
        crs=net.crs,
        extra={"truth_t": t1, "truth_path_xy": xy1},
    )


def drop_reports(ctx: Any, frac: float, seed: int) -> Any:
    """A copy of ``ctx`` with a fraction ``frac`` of its MR report times removed (whole reports).

    At least one report is always kept. Works on any dataclass context (``dataclasses.replace``).
    """
    import dataclasses

    mr = ctx.mr
    times = np.unique(mr["t"].to_numpy())
    rng = np.random.default_rng(seed)
    n_drop = min(int(round(frac * len(times))), len(times) - 1)
    dropped = rng.choice(times, size=n_drop, replace=False) if n_drop > 0 else np.zeros(0)
    keep = ~np.isin(mr["t"].to_numpy(), dropped)
    return dataclasses.replace(ctx, mr=mr.loc[keep].reset_index(drop=True))
