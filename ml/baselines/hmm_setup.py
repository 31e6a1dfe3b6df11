"""Per-city setup of the industrial HMM: what it can compute once before its first window.

``industrial_hmm`` needs, per window, the candidate roads of each observation and route
distances between candidates. Both depend only on the city, not on the window:

* route distances: the network's OD table (:class:`ml.mapmatch.od.ODTable`, FMM's idea);
* candidates: an observation is a cell's coverage centre or, for a handover record, the midpoint
  of two cells' centres (``ml.observation.record_positions``), so the positions a city
  can produce are known from its towers. :func:`prepare_industrial_hmm` searches the candidates
  of every cell's centre and of the boundary of every pair of cells whose sites are within
  ``pair_factor`` x the median site spacing (a geometric stand-in for the operator's neighbour
  lists; 2.0 covers 98.6 % of gridville's test observations) in one batch, into the network's
  candidate memo. Other positions (records sharing a
  timestamp are averaged) are searched when they occur.

Nothing here changes a result: the table and the memo hold exactly what the per-window search
would compute.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.spatial import cKDTree

from ml.observation.context import TowerTable
from ml.baselines.signaling import IndustrialHMMConfig
from ml.observation import emission_sigma_m, record_positions
from ml.cities.network import RoadNetwork
from ml.mapmatch.candidates import candidate_memo
from ml.mapmatch.od import od_table_for


def observation_positions(towers: TowerTable, cfg: IndustrialHMMConfig | None = None,
                          pair_factor: float = 2.0) -> np.ndarray:
    """Every cell's coverage centre and the handover boundary of each nearby pair of cells, ``(n, 2)``.

    Positions come from :func:`record_positions` itself, so they are bit-identical to those of
    real windows. Pairs: ordered cell pairs on different cells whose sites are at most
    ``pair_factor`` x the median site spacing apart (sectors of one site included).
    """
    cfg = cfg or IndustrialHMMConfig()
    if not pair_factor >= 0:
        raise ValueError(f"observation_positions: pair_factor must be >= 0 (got {pair_factor})")
    cells = towers.cell_ids
    if len(cells) == 0:
        return np.zeros((0, 2))
    sites = towers.site_ids
    centres = record_positions(cells, np.full(len(cells), ""), towers, cfg)
    parts = [centres]
    if cfg.handover_boundary and len(cells) > 1:
        spacing = towers.median_site_spacing_m
        reach = pair_factor * spacing if np.isfinite(spacing) else 0.0
        site_xy = towers.site_xy(sites)
        pairs = cKDTree(site_xy).query_pairs(r=reach + 1e-6, output_type="ndarray") if reach > 0 else np.zeros((0, 2), int)
        same_site = np.nonzero(sites[:, None] == sites[None, :])
        a = np.concatenate([pairs[:, 0], pairs[:, 1], same_site[0]])
        b = np.concatenate([pairs[:, 1], pairs[:, 0], same_site[1]])
        keep = a != b
        a, b = a[keep], b[keep]
        seq = np.column_stack([a, b]).ravel()  # a1 b1 a2 b2 ...: every b is a handover from its a
        ev = np.tile(np.array(["", "handover"], dtype=object), len(a))
        pos = record_positions(cells[seq], ev, towers, cfg)
        parts.append(pos[1::2])
    return np.unique(np.vstack(parts), axis=0)


def prepare_industrial_hmm(net: RoadNetwork, towers: TowerTable, cfg: IndustrialHMMConfig | None = None,
                           pair_factor: float = 2.0, chunk: int = 2048) -> dict:
    """Build the OD table and fill the candidate memo for ``industrial_hmm`` on this city.

    Returns what it did: seconds for each part, the table's form and size, the number of
    positions searched.
    """
    cfg = cfg or IndustrialHMMConfig()
    t0 = time.perf_counter()
    table = od_table_for(net)
    t1 = time.perf_counter()
    sigma = emission_sigma_m(towers, cfg)
    pts = observation_positions(towers, cfg, pair_factor)
    memo = candidate_memo(net)
    for i in range(0, len(pts), chunk):
        memo.query(net, pts[i:i + chunk], cfg.radius_factor * sigma, cfg.max_candidates)
    memo.hits = memo.misses = 0
    t2 = time.perf_counter()
    return {"od_table_s": t1 - t0, "od_table": "dense" if table.dense else f"bounded {table.delta_m:.0f} m",
            "od_table_mb": table.nbytes / 2**20, "candidates_s": t2 - t1, "positions": int(len(pts)),
            "setup_s": t2 - t0}
