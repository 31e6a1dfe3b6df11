"""Cell towers: 3-sector macro sites whose spacing follows the road density, on one or more layers, and the
operator's (imperfect) table of them."""

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


def _exact_share(rng: np.random.Generator, n: int, share: float) -> np.ndarray:
    """A random subset of exactly ``round(share * n)`` of ``n`` items (a Bernoulli draw per item would leave a
    small city's few sites with none, or twice the share, by chance)."""
    out = np.zeros(n, dtype=bool)
    out[rng.permutation(n)[: int(round(share * n))]] = True
    return out


def simulate_towers(net: RoadNetwork, cfg: SimulationConfig, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The network: ``(towers, antennas)``. ``antennas`` is what the radio simulates (hidden truth: where every
    cell's antenna really stands and points, its layer, downtilt, overshooting mast); ``towers`` is the operator's
    table the pipeline reads (contract table ``towers``), equal to the antennas except for the table errors
    (:func:`operator_table`).

    Sites are spaced ~``isd_dense_m`` apart where road density is highest and up to ``isd_sparse_m`` at the
    sparse edges; sector azimuths are 0/120/240 degrees plus a per-site rotation and per-sector jitter, shared by
    the site's layers; heights and transmit powers are drawn from the config ranges. Each layer of
    ``cfg.layer_list`` is on a share of the sites (capacity layers on the densest first), every cell gets a
    downtilt, and a share of the sites stand on tall masts with little downtilt (overshooting).
    ``cell_id = site_id * 256 + 16 * layer + sector`` (the LTE ECI layout: eNB id and cell id).
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
    site_rep = np.repeat(np.arange(n), SECTORS)
    azimuth = (np.tile(np.arange(SECTORS) * 120.0, n) + rotation[site_rep]
               + rng.normal(0.0, cfg.azimuth_jitter_deg / 3.0, n * SECTORS)) % 360.0
    # draws of the layered network come from their own stream: the regular network's draws stay as they were
    lrng = np.random.default_rng([seed, 102])
    overshoot = _exact_share(lrng, n, cfg.overshoot_site_share)
    height = np.where(overshoot, lrng.uniform(*cfg.overshoot_height_m, n), height)
    power = power + np.where(overshoot, cfg.overshoot_power_db, 0.0)
    density_rank = np.argsort(np.argsort(road_density_isd(net, cfg, xy), kind="stable"), kind="stable")  # 0: densest
    frames = []
    for li, layer in enumerate(cfg.layer_list):
        k = int(round(layer.site_share * n))
        if layer.dense_sites_first:
            on_site = density_rank < k
        else:
            on_site = np.zeros(n, dtype=bool)
            on_site[lrng.permutation(n)[:k]] = True
        tilt = np.where(overshoot[site_rep], lrng.uniform(*cfg.overshoot_downtilt_deg, n * SECTORS),
                        lrng.uniform(*cfg.downtilt_deg, n * SECTORS))
        keep = on_site[site_rep]
        sector = np.tile(np.arange(1, SECTORS + 1), n)
        frames.append(pd.DataFrame({
            "cell_id": (site_id[site_rep].astype(np.int64) * 256 + 16 * li + sector)[keep],
            "site_id": site_id[site_rep][keep],
            "x": xy[site_rep, 0][keep], "y": xy[site_rep, 1][keep],
            "azimuth_deg": azimuth[keep],
            "height_m": height[site_rep][keep],
            "tx_power_dbm": (power[site_rep] + layer.power_offset_db)[keep],
            "layer": np.full(int(keep.sum()), li), "downtilt_deg": tilt[keep], "overshoot": overshoot[site_rep][keep],
        }))
    cells = pd.concat(frames, ignore_index=True)
    lonlat = net.projection.to_lonlat(cells[["x", "y"]].to_numpy())
    antennas = make_table("antennas", {**{c: cells[c].to_numpy() for c in ("cell_id", "site_id", "azimuth_deg",
                                                                          "height_m", "tx_power_dbm", "layer",
                                                                          "downtilt_deg", "overshoot")},
                                       "lon": lonlat[:, 0], "lat": lonlat[:, 1]})
    antennas = antennas.sort_values("cell_id", ignore_index=True)
    return operator_table(antennas, net, cfg, seed), antennas


def operator_table(antennas: pd.DataFrame, net: RoadNetwork, cfg: SimulationConfig, seed: int) -> pd.DataFrame:
    """The operator's tower table (contract ``towers``): the antennas as the operator's database records them.

    A share of the sites is recorded away from where the antennas stand (every cell of the site, by a distance
    of ``table_position_error_isd`` local inter-site distances in a random direction) and a share of the cells with a
    wrong azimuth (rotated by ``table_azimuth_error_deg`` either way): the errors field studies of operator databases
    report (sources in docs/results/simulate.md).
    """
    rng = np.random.default_rng([seed, 103])
    sites = np.unique(antennas["site_id"].to_numpy(np.int64))
    moved = _exact_share(rng, len(sites), cfg.table_position_error_share)
    si = np.searchsorted(sites, antennas["site_id"].to_numpy(np.int64))
    xy = net.projection.to_xy(antennas["lon"].to_numpy(), antennas["lat"].to_numpy())
    site_xy = np.zeros((len(sites), 2))
    site_xy[si] = xy
    dist = rng.uniform(*cfg.table_position_error_isd, len(sites)) * road_density_isd(net, cfg, site_xy)
    ang = rng.uniform(0.0, 2 * np.pi, len(sites))
    shift = np.where(moved[:, None], dist[:, None] * np.column_stack([np.cos(ang), np.sin(ang)]), 0.0)
    xy = xy + shift[si]
    lonlat = antennas[["lon", "lat"]].to_numpy().copy()
    rows = moved[si]
    if rows.any():  # only the moved sites go through the projection (the others keep their exact coordinates)
        lonlat[rows] = net.projection.to_lonlat(xy[rows])
    n = len(antennas)
    wrong = _exact_share(rng, n, cfg.table_azimuth_error_share)
    turn = rng.uniform(*cfg.table_azimuth_error_deg, n) * rng.choice([-1.0, 1.0], n)
    azimuth = (antennas["azimuth_deg"].to_numpy() + np.where(wrong, turn, 0.0)) % 360.0
    return make_table("towers", {
        "cell_id": antennas["cell_id"].to_numpy(), "site_id": antennas["site_id"].to_numpy(),
        "lon": lonlat[:, 0], "lat": lonlat[:, 1], "azimuth_deg": azimuth,
        "height_m": antennas["height_m"].to_numpy(), "tx_power_dbm": antennas["tx_power_dbm"].to_numpy(),
    })


def inter_site_distances(site_xy: np.ndarray) -> np.ndarray:
    """Distance from each site to its nearest other site (metres)."""
    d, _ = cKDTree(site_xy).query(site_xy, k=2)
    return d[:, 1]
