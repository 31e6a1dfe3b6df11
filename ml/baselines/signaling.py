"""Signaling-track baselines (DESIGN section 10): MaR and the industrial HMM pipeline.

Both take a :class:`ml.baselines.context.SampleContext` and return projected positions
``(n_eval, 2)`` at ``ctx.eval_t``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ml.baselines.context import SampleContext, TowerTable
from ml.mapmatch import interpolate_along_route, match_trajectory


def _collapse_same_time(t: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average positions of records sharing a timestamp; returns strictly increasing times."""
    ut, inv = np.unique(t, return_inverse=True)
    if len(ut) == len(t):
        return t, xy
    cnt = np.bincount(inv)
    return ut, np.column_stack([np.bincount(inv, weights=xy[:, k]) / cnt for k in (0, 1)])


def interp_xy(t: np.ndarray, xy: np.ndarray, query_t: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation of positions in time; held before the first/after the last."""
    q = np.asarray(query_t, dtype=np.float64)
    if len(t) == 0:
        return np.full((len(q), 2), np.nan)
    t, xy = _collapse_same_time(np.asarray(t, dtype=np.float64), np.asarray(xy, dtype=np.float64))
    return np.column_stack([np.interp(q, t, xy[:, 0]), np.interp(q, t, xy[:, 1])])


def mar(ctx: SampleContext) -> np.ndarray:
    """MaR: the serving tower's position at each record, linearly interpolated between records.

    Before the first record and after the last the tower position is held. Records sharing a
    timestamp are averaged. A window without records gives NaN.
    """
    return interp_xy(ctx.record_t, ctx.record_xy, ctx.eval_t)


@dataclass(frozen=True)
class IndustrialHMMConfig:
    """Parameters of the industrial pipeline (defaults tuned for 300-600 m inter-site distance)."""

    pingpong_window_s: float = 30.0  # A-B-A with t(A2) - t(A1) <= this: B is dropped
    stay_s: float = 120.0  # a run of one site longer than this keeps its first and last record
    sigma_m: float | None = None  # emission sigma; None: half the median site spacing, clipped
    sigma_min_m: float = 100.0
    sigma_max_m: float = 800.0
    beta_factor: float = 1.0  # beta = beta_factor * sigma
    radius_factor: float = 2.5  # candidate radius = radius_factor * sigma
    max_candidates: int = 12
    max_speed_mps: float = 35.0


_SPACING_CACHE: dict[int, float] = {}


def median_site_spacing_m(towers: TowerTable) -> float:
    """Median distance from each site to its nearest other site (cached per tower table)."""
    key = id(towers)
    if key not in _SPACING_CACHE:
        sites = np.unique(towers.site_ids)
        xy = towers.site_xy(sites)
        if len(xy) < 2:
            _SPACING_CACHE[key] = float("nan")
        else:
            d, _ = cKDTree(xy).query(xy, k=2)
            _SPACING_CACHE[key] = float(np.median(d[:, 1]))
    return _SPACING_CACHE[key]


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


def industrial_hmm(ctx: SampleContext, cfg: IndustrialHMMConfig | None = None) -> np.ndarray:
    """Industrial pipeline: ping-pong mitigation, co-site merge, HMM map matching with a
    cell-sized emission sigma (``ml.mapmatch``), route by shortest paths, time interpolation
    along the route to ``ctx.eval_t``.

    Falls back to :func:`mar` when no record can be matched to a road.
    """
    cfg = cfg or IndustrialHMMConfig()
    rec = ctx.records
    if len(rec) == 0:
        return np.full((ctx.n_eval, 2), np.nan)
    t = rec["t"].to_numpy(dtype=np.float64)
    site = rec["site_id"].to_numpy(dtype=np.int64)
    # 1. ping-pong mitigation (on sites: sectors of one site never ping-pong after the merge)
    keep = mitigate_pingpong(t, site, cfg.pingpong_window_s)
    t, site = t[keep], site[keep]
    # 2. co-site merge: every sector of a site maps to the site position
    sxy = ctx.towers_xy.site_xy(site)
    obs_t, obs_xy = site_observations(t, site, sxy, cfg.stay_s)
    # 3. HMM map matching with a cell-sized sigma
    sigma = cfg.sigma_m
    if sigma is None:
        spacing = median_site_spacing_m(ctx.towers_xy)
        sigma = 0.5 * spacing if np.isfinite(spacing) else 300.0
    sigma = float(np.clip(sigma, cfg.sigma_min_m, cfg.sigma_max_m))
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
