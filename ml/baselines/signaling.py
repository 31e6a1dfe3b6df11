"""Signaling-track baselines (DESIGN section 10): MaR and the industrial HMM pipeline.

Both take a :class:`ml.baselines.context.SampleContext` and return projected positions
``(n_eval, 2)`` at ``ctx.eval_t``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ml.baselines.context import SampleContext, TowerTable
from ml.geo.track import collapse_same_time, interpolate_positions
from ml.mapmatch import interpolate_along_route, match_trajectory


def mar(ctx: SampleContext) -> np.ndarray:
    """MaR: the serving tower's position at each record, linearly interpolated between records.

    Before the first record and after the last the tower position is held. Records sharing a
    timestamp are averaged (:func:`ml.geo.track.interpolate_positions`). A window without
    records gives NaN (no estimate; the metrics count it as missing).
    """
    if len(ctx.record_t) == 0:
        return np.full((len(np.asarray(ctx.eval_t)), 2), np.nan)
    return interpolate_positions(ctx.record_t, ctx.record_xy, ctx.eval_t, "serving-tower positions")


@dataclass(frozen=True)
class IndustrialHMMConfig:
    """Parameters of the industrial pipeline (defaults for 300-600 m inter-site distance).

    Choices were checked on the gridville 'val' split (never on 'test'); the HMM parameters
    (sigma, beta, candidate count) move the point error by only a few metres there, while the
    observation model (sector shift, handover boundary) moves it by ~40 m RMSE.
    """

    pingpong_window_s: float = 30.0  # A-B-A with t(A2) - t(A1) <= this: B is dropped
    # Observation model. A cell's coverage centre is its site shifted along the sector azimuth by
    # sector_shift_factor * (median site spacing): the centroid of a 120 deg sector of radius R
    # lies at 2 R sin(60 deg) / (3 * pi / 3) = 0.55 R from the mast, and R is about one site
    # spacing. 0.5 (val: 0.4-0.6 within 3 m RMSE; 0 = the mast, the old co-site position).
    # Cells without an azimuth (omni, or no azimuth_deg column) stay at the mast.
    sector_shift_factor: float = 0.5
    # A handover record is taken on the boundary between the cell left and the cell entered: its
    # observation is the midpoint of the two coverage centres (per-record RMSE to the truth on
    # val: 206 m at the new cell's centre, 134 m at the midpoint; 300 m at the mast).
    handover_boundary: bool = True
    # Co-site merge: True collapses a run of one site into one observation (averaged position,
    # the run's middle time; first and last time when it lasts more than stay_s). False keeps
    # every record (same-time records averaged): the default, as collapsing throws away the
    # handover timing (val RMSE +15 m).
    collapse_runs: bool = False
    stay_s: float = 120.0  # only with collapse_runs
    sigma_m: float | None = None  # emission sigma; None: sigma_factor * median site spacing, clipped
    sigma_factor: float = 0.5
    sigma_min_m: float = 100.0
    sigma_max_m: float = 800.0
    beta_factor: float = 1.0  # beta = beta_factor * sigma
    radius_factor: float = 2.5  # candidate radius = radius_factor * sigma
    # nearest edges kept per observation; more (32, 64) lets the route wander (val RMSE +5/+10 m)
    max_candidates: int = 12
    max_speed_mps: float = 35.0


def mitigate_pingpong(t: np.ndarray, site: np.ndarray, window_s: float, max_passes: int = 5) -> np.ndarray:
    """Boolean keep-mask dropping the middle record of A-B-A patterns shorter than ``window_s``.

    Vectorised per pass; passes repeat until nothing changes (A-B-A-B-A collapses to A-A).
    """
    keep = np.ones(len(t), dtype=bool)
    for _ in range(max_passes):
        idx = np.nonzero(keep)[0]
        if len(idx) < 3:
            break
        s, tt = site[idx], t[idx]
        mid = (s[:-2] == s[2:]) & (s[1:-1] != s[:-2]) & (tt[2:] - tt[:-2] <= window_s)
        if not mid.any():
            break
        keep[idx[1:-1][mid]] = False
    return keep


def site_observations(
    t: np.ndarray, site: np.ndarray, site_xy: np.ndarray, stay_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Collapse runs of one site into observations: a short run gives one point at its middle
    time, a run longer than ``stay_s`` gives its first and last time (the device stayed)."""
    if len(t) == 0:
        return np.zeros(0), np.zeros((0, 2))
    start = np.ones(len(t), dtype=bool)
    start[1:] = site[1:] != site[:-1]
    first = np.nonzero(start)[0]
    last = np.append(first[1:], len(t)) - 1
    t_first, t_last = t[first], t[last]
    long_run = (t_last - t_first) > stay_s
    xy = site_xy[first]
    obs_t = np.where(long_run, t_first, 0.5 * (t_first + t_last))
    # long runs contribute a second observation at their last time
    t_all = np.concatenate([obs_t, t_last[long_run]])
    xy_all = np.vstack([xy, xy[long_run]])
    order = np.argsort(t_all, kind="stable")
    return t_all[order], xy_all[order]


def sector_unit_vectors(towers: TowerTable, cell_ids: np.ndarray) -> np.ndarray:
    """Unit vectors (east, north) of the cells' sector azimuths, ``(n, 2)``; zero where unknown."""
    cell_ids = np.asarray(cell_ids, dtype=np.int64).reshape(-1)
    if "azimuth_deg" not in towers.frame.columns:
        return np.zeros((len(cell_ids), 2))
    az = np.deg2rad(towers.frame["azimuth_deg"].to_numpy(dtype=np.float64)[towers.index_of(cell_ids)])
    u = np.column_stack([np.sin(az), np.cos(az)])
    u[~np.isfinite(u).all(axis=1)] = 0.0
    return u


def record_positions(
    cell: np.ndarray,
    site: np.ndarray,
    event: np.ndarray,
    towers: TowerTable,
    cfg: IndustrialHMMConfig | None = None,
) -> np.ndarray:
    """Projected position ``(n, 2)`` of each record of one time-ordered trace: the observation model.

    A record sits at its cell's coverage centre (the site shifted along the sector azimuth by
    ``sector_shift_factor`` x the median site spacing); a handover record (``handover_boundary``)
    midway between the centres of the cell it left (the previous record's) and the cell it entered.
    The industrial pipeline and the video model's record tokens (``ml.render.dataset.sample_tokens``,
    serving) read records through this one function.
    """
    cfg = cfg or IndustrialHMMConfig()
    cell = np.asarray(cell, dtype=np.int64).reshape(-1)
    if len(cell) == 0:
        return np.zeros((0, 2))
    spacing = towers.median_site_spacing_m
    shift = cfg.sector_shift_factor * spacing if np.isfinite(spacing) else 0.0
    pos = towers.site_xy(site) + shift * sector_unit_vectors(towers, cell)
    if cfg.handover_boundary and len(cell) > 1:
        ho = np.zeros(len(cell), dtype=bool)
        ho[1:] = (np.asarray(event[1:]).astype(str) == "handover") & (cell[1:] != cell[:-1])
        prev = np.vstack([pos[:1], pos[:-1]])
        pos = np.where(ho[:, None], 0.5 * (pos + prev), pos)
    return pos


def cell_observations(
    t: np.ndarray,
    cell: np.ndarray,
    site: np.ndarray,
    event: np.ndarray,
    towers: TowerTable,
    cfg: IndustrialHMMConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Observation times and positions of a window's records (steps 1-2 of the pipeline).

    Each record's position is :func:`record_positions` (coverage centres; handovers on the
    boundary, taken before ping-pong removal: an A-B-A ping-pong still says the device is near the
    A/B boundary). Ping-pong records are then dropped
    and either every record is kept (same-time records averaged) or runs of a site are collapsed
    (``collapse_runs``).
    """
    if len(t) == 0:
        return np.zeros(0), np.zeros((0, 2))
    pos = record_positions(cell, site, event, towers, cfg)
    keep = mitigate_pingpong(t, site, cfg.pingpong_window_s)
    t, site, pos = t[keep], site[keep], pos[keep]
    if cfg.collapse_runs:
        start = np.ones(len(t), dtype=bool)
        start[1:] = site[1:] != site[:-1]
        run = np.cumsum(start) - 1
        cnt = np.bincount(run)
        run_xy = np.column_stack([np.bincount(run, weights=pos[:, k]) / cnt for k in (0, 1)])
        return site_observations(t, site, run_xy[run], cfg.stay_s)
    return collapse_same_time(t, pos)


def emission_sigma_m(towers: TowerTable, cfg: IndustrialHMMConfig | None = None) -> float:
    """The industrial HMM's emission sigma for a tower table: ``sigma_factor`` x median site spacing (300 m
    when unknown), clipped to ``[sigma_min_m, sigma_max_m]``; ``cfg.sigma_m`` when set."""
    cfg = cfg or IndustrialHMMConfig()
    sigma = cfg.sigma_m
    if sigma is None:
        spacing = towers.median_site_spacing_m
        sigma = cfg.sigma_factor * spacing if np.isfinite(spacing) else 300.0
    return float(np.clip(sigma, cfg.sigma_min_m, cfg.sigma_max_m))


def window_observations(ctx: SampleContext, cfg: IndustrialHMMConfig | None = None
                        ) -> tuple[np.ndarray, np.ndarray, float]:
    """``(obs_t, obs_xy, sigma_m)`` of a window: the industrial pipeline's steps 1-2 (:func:`cell_observations`
    of its records) and its emission sigma; shared with the peer engines, which get the same input."""
    cfg = cfg or IndustrialHMMConfig()
    rec = ctx.records
    obs_t, obs_xy = cell_observations(
        rec["t"].to_numpy(dtype=np.float64),
        rec["cell_id"].to_numpy(dtype=np.int64),
        rec["site_id"].to_numpy(dtype=np.int64),
        rec["event"].to_numpy() if "event" in rec.columns else np.full(len(rec), ""),
        ctx.towers_xy,
        cfg,
    )
    return obs_t, obs_xy, emission_sigma_m(ctx.towers_xy, cfg)


def industrial_hmm(ctx: SampleContext, cfg: IndustrialHMMConfig | None = None) -> np.ndarray:
    """Industrial pipeline: ping-pong mitigation, cell observations (co-site sectors at their
    coverage centres, handovers on the cell boundary), HMM map matching with a cell-sized
    emission sigma (``ml.mapmatch``), route by shortest paths, time interpolation along the
    route to ``ctx.eval_t`` (held before the first and after the last observation).

    Falls back to :func:`mar` when no record can be matched to a road.
    """
    cfg = cfg or IndustrialHMMConfig()
    if len(ctx.records) == 0:
        return np.full((ctx.n_eval, 2), np.nan)
    obs_t, obs_xy, sigma = window_observations(ctx, cfg)
    # 3. HMM map matching with a cell-sized sigma
    res = match_trajectory(
        ctx.net,
        obs_xy,
        obs_t,
        sigma_m=sigma,
        beta_m=cfg.beta_factor * sigma,
        max_speed_mps=cfg.max_speed_mps,
        radius_m=cfg.radius_factor * sigma,
        max_candidates=cfg.max_candidates,
    )
    if not res.matched.any():
        return mar(ctx)
    # 4-5. route by shortest paths (in the match) and time interpolation along it
    return interpolate_along_route(res.route_xy, res.route_cum_m, res.point_route_m, obs_t, ctx.eval_t)
