"""Signaling-track baselines (DESIGN section 10): MaR, the industrial HMM pipeline, the same pipeline
with the learned observation model (``learned_hmm``) and the ``oracle_records`` bound.

Each takes a :class:`ml.observation.context.SampleContext` and return projected positions
``(n_eval, 2)`` at ``ctx.eval_t``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ml.geo.track import collapse_same_time, interpolate_positions
from ml.mapmatch import interpolate_along_route, match_trajectory
from ml.observation import (HandmadeObservationConfig, HandmadeObservationModel, ObservationModel, SampleContext,
                            TowerTable, left_cells, truth_at_records)


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
class IndustrialHMMConfig(HandmadeObservationConfig):
    """Parameters of the industrial pipeline (defaults for 300-600 m inter-site distance); the
    observation fields (sector shift, handover boundary, sigma) are the hand-made model's.

    Choices were checked on the gridville 'val' split (never on 'test'); the HMM parameters
    (sigma, beta, candidate count) move the point error by only a few metres there, while the
    observation model (sector shift, handover boundary) moves it by ~40 m RMSE.
    """

    # A-B-A with t(A2) - t(A1) <= this: B is dropped. 30 s on the regular network; 0 (off) re-chosen on val windows
    # of the layered network with the jump filter below (python -m bench.industrial_settings, issue 27)
    pingpong_window_s: float = 0.0
    # Co-site merge: True collapses a run of one site into one observation (averaged position,
    # the run's middle time; first and last time when it lasts more than stay_s). False keeps
    # every record (same-time records averaged): the default, as collapsing throws away the
    # handover timing (val RMSE +15 m).
    collapse_runs: bool = False
    stay_s: float = 120.0  # only with collapse_runs
    beta_factor: float = 1.0  # beta = beta_factor * sigma
    radius_factor: float = 2.5  # candidate radius = radius_factor * sigma
    # nearest edges kept per observation; more (32, 64) lets the route wander (val RMSE +5/+10 m)
    max_candidates: int = 12
    max_speed_mps: float = 35.0
    # Jump filter, as industrial pipelines drop a cell that is out of place (an overshooting cell, a wrong
    # position in the tower table): a record whose position is farther from both its neighbours than
    # outlier_speed_mps * dt + outlier_slack_factor * sigma is dropped (and counted). None: off. 30 m/s chosen on
    # val windows of the four demo cities' layered networks (1.2 % below the previous defaults' medians)
    outlier_speed_mps: float | None = 30.0
    outlier_slack_factor: float = 2.0


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


def jump_outliers(t: np.ndarray, xy: np.ndarray, speed_mps: float, slack_m: float) -> np.ndarray:
    """Boolean mask of records out of place: farther from both the previous and the next record than a phone
    could travel at ``speed_mps`` in the time between them plus ``slack_m`` (the cells' own size). The first
    and last records, with one neighbour, are never flagged (which of the two is wrong cannot be told)."""
    n = len(t)
    out = np.zeros(n, dtype=bool)
    if n < 3:
        return out
    d = np.hypot(*np.diff(xy, axis=0).T)
    reach = speed_mps * np.diff(t) + slack_m
    far = d > reach  # record i -> i + 1 impossible
    out[1:-1] = far[:-1] & far[1:]
    return out


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


@dataclass
class WindowObservations:
    """A window's observations for the HMM: ``t`` (m,), ``xy`` (m, 2) and ``sigma_m`` (the candidate radius
    and transition scale follow it); with a learned ``model``, each kept record's key (``cell``, ``left``)
    and the observation it belongs to (``group``), so the emission is the sum of its records' log-likelihoods."""

    t: np.ndarray
    xy: np.ndarray
    sigma_m: float
    model: ObservationModel | None = None
    cell: np.ndarray | None = None
    left: np.ndarray | None = None
    group: np.ndarray | None = None
    n_outliers: int = 0  # records dropped by the jump filter (IndustrialHMMConfig.outlier_speed_mps)

    def log_emission(self, point_idx: np.ndarray, cand_xy: np.ndarray) -> np.ndarray:
        """``(P, K)`` log emission of the candidates ``cand_xy (P, K, 2)`` of observations ``point_idx``."""
        P, K = cand_xy.shape[:2]
        row_of_obs = np.full(len(self.t), -1, dtype=np.int64)
        row_of_obs[point_idx] = np.arange(P)
        r = row_of_obs[self.group]
        ok = r >= 0
        ll = self.model.log_likelihood(self.cell[ok], self.left[ok], cand_xy[r[ok]])
        out = np.zeros((P, K))
        np.add.at(out, r[ok], ll)
        return out


def observe_records(
    t: np.ndarray,
    cell: np.ndarray,
    site: np.ndarray,
    event: np.ndarray,
    towers: TowerTable,
    cfg: IndustrialHMMConfig,
    model: ObservationModel | None = None,
    positions: np.ndarray | None = None,
) -> WindowObservations:
    """A window's observations (steps 1-2 of the pipeline) through an observation model.

    Each record's position is the model's point estimate for its key (cell, or (left, entered)
    handover pair; default the hand-made model: coverage centres, handovers on the boundary),
    taken before ping-pong removal: an A-B-A ping-pong still says the device is near the A/B
    boundary. ``positions`` replaces them (the ``oracle_records`` bound: the true positions).
    Ping-pong records are then dropped, then records out of place (:func:`jump_outliers`, with
    ``outlier_speed_mps``; counted in ``n_outliers``), and either every record is kept (same-time records
    averaged) or runs of a site are collapsed (``collapse_runs``). With the hand-made model the
    HMM's emission is a Gaussian on the distance to the observation; with another model
    (``model.name != "handmade"``) it is the sum of the model's log-likelihoods of the
    observation's records.
    """
    handmade = model is None or model.name == "handmade"
    model = model or HandmadeObservationModel(towers, cfg)
    left = left_cells(cell, event, cfg.handover_boundary)
    pos = model.positions(cell, left) if positions is None else np.asarray(positions, dtype=np.float64)
    sigma = model.sigma_m
    if len(t) == 0:
        return WindowObservations(np.zeros(0), np.zeros((0, 2)), sigma)
    keep = mitigate_pingpong(t, site, cfg.pingpong_window_s)
    t, site, pos, cell, left = t[keep], site[keep], pos[keep], cell[keep], left[keep]
    n_outliers = 0
    if cfg.outlier_speed_mps is not None:
        bad = jump_outliers(t, pos, cfg.outlier_speed_mps, cfg.outlier_slack_factor * sigma)
        n_outliers = int(bad.sum())
        t, site, pos, cell, left = t[~bad], site[~bad], pos[~bad], cell[~bad], left[~bad]
    if cfg.collapse_runs:
        if not handmade:
            raise ValueError("collapse_runs needs the hand-made observation model (a collapsed run has no single key)")
        start = np.ones(len(t), dtype=bool)
        start[1:] = site[1:] != site[:-1]
        run = np.cumsum(start) - 1
        cnt = np.bincount(run)
        run_xy = np.column_stack([np.bincount(run, weights=pos[:, k]) / cnt for k in (0, 1)])
        return WindowObservations(*site_observations(t, site, run_xy[run], cfg.stay_s), sigma, n_outliers=n_outliers)
    obs_t, obs_xy = collapse_same_time(t, pos)
    if handmade:
        return WindowObservations(obs_t, obs_xy, sigma, n_outliers=n_outliers)
    group = np.searchsorted(obs_t, t)
    return WindowObservations(obs_t, obs_xy, sigma, model, cell, left, group, n_outliers)


def cell_observations(
    t: np.ndarray,
    cell: np.ndarray,
    site: np.ndarray,
    event: np.ndarray,
    towers: TowerTable,
    cfg: IndustrialHMMConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Observation times and positions of a window's records under the hand-made model (:func:`observe_records`)."""
    obs = observe_records(t, cell, site, event, towers, cfg)
    return obs.t, obs.xy


def _records(ctx: SampleContext) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rec = ctx.records
    return (rec["t"].to_numpy(dtype=np.float64), rec["cell_id"].to_numpy(dtype=np.int64),
            rec["site_id"].to_numpy(dtype=np.int64),
            rec["event"].to_numpy() if "event" in rec.columns else np.full(len(rec), ""))


def window_observations(ctx: SampleContext, cfg: IndustrialHMMConfig | None = None
                        ) -> tuple[np.ndarray, np.ndarray, float]:
    """``(obs_t, obs_xy, sigma_m)`` of a window: the industrial pipeline's steps 1-2 (:func:`cell_observations`
    of its records) and its emission sigma; shared with the peer engines, which get the same input."""
    cfg = cfg or IndustrialHMMConfig()
    obs = observe_records(*_records(ctx), ctx.towers_xy, cfg)
    return obs.t, obs.xy, obs.sigma_m


def outlier_record_count(contexts: Sequence[SampleContext], cfg: IndustrialHMMConfig | None = None) -> tuple[int, int]:
    """``(records dropped by the jump filter, records)`` of the industrial pipeline over ``contexts`` (after
    ping-pong removal, as the pipeline runs): what the evaluation reports beside its errors."""
    cfg = cfg or IndustrialHMMConfig()
    dropped = total = 0
    for ctx in contexts:
        rec = _records(ctx)
        total += len(rec[0])
        if cfg.outlier_speed_mps is not None and len(rec[0]):
            dropped += observe_records(*rec, ctx.towers_xy, cfg).n_outliers
    return dropped, total


def hmm_pipeline(ctx: SampleContext, obs: WindowObservations, cfg: IndustrialHMMConfig) -> np.ndarray:
    """Steps 3-5 of the industrial pipeline on a window's observations: HMM map matching (a cell-sized
    sigma; the model's emission when ``obs`` carries one), route by shortest paths, time interpolation
    along the route to ``ctx.eval_t`` (held before the first and after the last observation).

    Falls back to :func:`mar` when no record can be matched to a road.
    """
    if len(obs.t) == 0:
        return np.full((ctx.n_eval, 2), np.nan)
    sigma = obs.sigma_m
    res = match_trajectory(
        ctx.net,
        obs.xy,
        obs.t,
        sigma_m=sigma,
        beta_m=cfg.beta_factor * sigma,
        max_speed_mps=cfg.max_speed_mps,
        radius_m=cfg.radius_factor * sigma,
        max_candidates=cfg.max_candidates,
        log_emission=obs.log_emission if obs.model is not None else None,
    )
    if not res.matched.any():
        return mar(ctx)
    return interpolate_along_route(res.route_xy, res.route_cum_m, res.point_route_m, obs.t, ctx.eval_t)


def industrial_hmm(ctx: SampleContext, cfg: IndustrialHMMConfig | None = None) -> np.ndarray:
    """Industrial pipeline: ping-pong mitigation, cell observations through the hand-made model
    (co-site sectors at their coverage centres, handovers on the cell boundary), HMM map matching
    with a cell-sized emission sigma (``ml.mapmatch``), route by shortest paths, time interpolation
    along the route to ``ctx.eval_t``. Falls back to :func:`mar` when no record can be matched to a road.
    """
    cfg = cfg or IndustrialHMMConfig()
    if len(ctx.records) == 0:
        return np.full((ctx.n_eval, 2), np.nan)
    return hmm_pipeline(ctx, observe_records(*_records(ctx), ctx.towers_xy, cfg), cfg)


#: ``learned_hmm``'s HMM settings, chosen on val windows of four cities (``python -m bench.footprints``): a real
#: likelihood keeps the route from wandering, so more candidates help (24), the transition may weigh less
#: against the emission (beta 2 sigma), and ping-pong records are kept (a footprint reads an A-B-A as what it is)
LEARNED_HMM_CONFIG = IndustrialHMMConfig(max_candidates=24, beta_factor=2.0, pingpong_window_s=0.0,
                                         outlier_speed_mps=None)  # a footprint knows where a far cell's phones are


def learned_hmm(ctx: SampleContext, cfg: IndustrialHMMConfig | None = None) -> np.ndarray:
    """The industrial pipeline with the learned observation model (``ctx.observation``, the city's cell
    footprints): each record's point estimate from its footprint, the HMM's emission the log-likelihood
    of each candidate under the footprints of the observation's records. Everything else as
    :func:`industrial_hmm` (with ``LEARNED_HMM_CONFIG``'s settings by default). A window built without a
    learned model is an error, never a silent switch.
    """
    cfg = cfg or LEARNED_HMM_CONFIG
    model = ctx.observation
    if model is None or model.name == "handmade":
        raise ValueError(f"learned_hmm: window {ctx.sample_id} has no learned observation model; build the windows "
                         "with the city's cell footprints (build_sample_contexts(..., observation=...))")
    if len(ctx.records) == 0:
        return np.full((ctx.n_eval, 2), np.nan)
    return hmm_pipeline(ctx, observe_records(*_records(ctx), ctx.towers_xy, cfg, model=model), cfg)


def oracle_records(ctx: SampleContext, cfg: IndustrialHMMConfig | None = None) -> np.ndarray:
    """A bound, not a method: the industrial pipeline fed the true position at each record time
    (``ctx.truth_xy`` interpolated), everything else unchanged. What the records' timing allows with
    perfect observations; it needs the truth, so it only exists in evaluation."""
    cfg = cfg or IndustrialHMMConfig()
    if len(ctx.records) == 0:
        return np.full((ctx.n_eval, 2), np.nan)
    return hmm_pipeline(ctx, observe_records(*_records(ctx), ctx.towers_xy, cfg, positions=truth_at_records(ctx)), cfg)
