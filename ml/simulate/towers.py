"""Cell towers: 3-sector macro sites whose spacing follows the road density."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter
from scipy.spatial import cKDTree

from ml.cities.network import RoadNetwork
from ml.simulate.config import SimulationConfig
from ml.simulate.tables import make_table

SECTORS = 3
DENSITY_CELL_M = 200.0
DENSITY_SMOOTH_M = 600.0


def road_density_isd(net: RoadNetwork, cfg: SimulationConfig, xy: np.ndarray) -> np.ndarray:
    """Target inter-site distance at each point: ``isd_dense_m`` where roads are densest, growing
    geometrically to ``isd_sparse_m`` where there are none (operators densify where traffic is)."""
    seg = net.segments
    mid = (seg["a"] + seg["b"]) / 2.0
    xmin, ymin, xmax, ymax = net.bounds
    pad = 3 * DENSITY_SMOOTH_M
    nx_ = int(np.ceil((xmax - xmin + 2 * pad) / DENSITY_CELL_M)) + 1
    ny_ = int(np.ceil((ymax - ymin + 2 * pad) / DENSITY_CELL_M)) + 1
    ix = ((mid[:, 0] - xmin + pad) / DENSITY_CELL_M).astype(int)
    iy = ((mid[:, 1] - ymin + pad) / DENSITY_CELL_M).astype(int)
    grid = np.zeros((nx_, ny_))
    np.add.at(grid, (ix, iy), seg["len"])
    grid = gaussian_filter(grid, DENSITY_SMOOTH_M / DENSITY_CELL_M, mode="constant")
    # relative density: 1 at the city's dense core (95th percentile over road positions)
    ref = np.quantile(grid[ix, iy], 0.95)
    q = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    qx = np.clip(((q[:, 0] - xmin + pad) / DENSITY_CELL_M).astype(int), 0, nx_ - 1)
    qy = np.clip(((q[:, 1] - ymin + pad) / DENSITY_CELL_M).astype(int), 0, ny_ - 1)
    rel = np.clip(grid[qx, qy] / max(ref, 1e-9), 0.0, 1.0)
    return cfg.isd_dense_m * (cfg.isd_sparse_m / cfg.isd_dense_m) ** (1.0 - rel)


def place_sites(net: RoadNetwork, cfg: SimulationConfig, rng: np.random.Generator) -> np.ndarray:
    """Site positions (n, 2) by random sequential placement with a density-dependent exclusion radius."""
    seg = net.segments
    length = seg["len"]
    n_cand = int(min(40000, max(2000, length.sum() / 25.0)))
    pick = rng.choice(len(length), size=n_cand, p=length / length.sum())
    t = rng.random(n_cand)
    cand = seg["a"][pick] + t[:, None] * (seg["b"][pick] - seg["a"][pick])
    # sites stand beside roads (rooftops, masts), not on the carriageway
    ang = rng.uniform(0, 2 * np.pi, n_cand)
    cand = cand + rng.uniform(0, cfg.site_offset_m, n_cand)[:, None] * np.column_stack([np.cos(ang), np.sin(ang)])
    # exclusion radius ~0.8 ISD: random sequential placement then gives nearest-site distances ~ ISD
    radius = 0.8 * road_density_isd(net, cfg, cand)
    sites: list[np.ndarray] = []
    site_r: list[float] = []
    arr = np.zeros((0, 2))
    rr = np.zeros(0)
    for i in range(n_cand):
        if len(arr):
            d = np.hypot(*(arr - cand[i]).T)
            # symmetric rule: neither site may sit inside the other's exclusion zone
            if np.any(d < np.maximum(rr, radius[i])):
                continue
        sites.append(cand[i])
        site_r.append(radius[i])
        arr = np.asarray(sites)
        rr = np.asarray(site_r)
    return arr


def simulate_towers(net: RoadNetwork, cfg: SimulationConfig, seed: int) -> pd.DataFrame:
    """Towers table: one row per cell of 3-sector macro sites (contract table ``towers``).

    Sites are spaced ~``isd_dense_m`` apart where road density is highest and up to
    ``isd_sparse_m`` at the sparse edges; sector azimuths are 0/120/240 degrees plus a per-site
    rotation and per-sector jitter; heights and transmit powers are drawn from the config ranges.
    ``cell_id = site_id * 256 + sector`` (the LTE ECI layout: eNB id and cell id).
    """
    rng = np.random.default_rng([seed, 101])
    xy = place_sites(net, cfg, rng)
    if len(xy) < 2:
        raise ValueError("simulate_towers: the road network is too small to place at least two sites")
    n = len(xy)
    site_id = 100000 + rng.choice(900000, size=n, replace=False)
    rotation = rng.uniform(-cfg.azimuth_jitter_deg, cfg.azimuth_jitter_deg, n)
    height = rng.uniform(*cfg.site_height_m, n)
    power = rng.uniform(*cfg.tx_power_dbm, n)
    sector = np.tile(np.arange(1, SECTORS + 1), n)
    site_rep = np.repeat(np.arange(n), SECTORS)
    azimuth = (np.tile(np.arange(SECTORS) * 120.0, n) + rotation[site_rep]
               + rng.normal(0.0, cfg.azimuth_jitter_deg / 3.0, n * SECTORS)) % 360.0
    lonlat = net.projection.to_lonlat(xy)
    df = make_table("towers", {
        "cell_id": site_id[site_rep].astype(np.int64) * 256 + sector,
        "site_id": site_id[site_rep],
        "lon": lonlat[site_rep, 0],
        "lat": lonlat[site_rep, 1],
        "azimuth_deg": azimuth,
        "height_m": height[site_rep],
        "tx_power_dbm": power[site_rep],
    })
    return df.sort_values("cell_id", ignore_index=True)


def inter_site_distances(site_xy: np.ndarray) -> np.ndarray:
    """Distance from each site to its nearest other site (metres)."""
    d, _ = cKDTree(site_xy).query(site_xy, k=2)
    return d[:, 1]
