"""HRE and HREA: HMM-based RSS embedding on the road graph (Xing & Zhao, "Trajectory Map-Matching
in Urban Road Networks Based on RSS Measurements").

Model
-----
* Hidden states: road points every ``gamma`` metres (:mod:`ml.baselines.mr.roadstates`).
* Time: a regular slot grid at the report interval; a slot without any report (dropped MR)
  contributes no emission, only transitions.
* Emission: per-cell log-distance path loss ``RSRP = P0_c - 10 n_c log10(d)`` with Gaussian
  residuals of spread ``sigma_db``: ``log p(r_t | s) = -sum_c (r_tc - P0_c + 10 n_c log10 d_sc)^2
  / (2 sigma^2)`` over the cells measured at t. Computed for all (slot, state) pairs at once as
  three matrix products, (T, C) x (C, S).
* Path-loss parameters are learned by least squares from the current trajectory estimate (the
  positions are the unknowns the measurements are "embedded" into): one pooled fit (P0, n), then
  per cell a ridge fit shrunk towards the pooled one (``ridge_p0``, ``ridge_n`` pseudo-counts) so
  that cells seen a few times, or over a narrow distance range, stay sane. ``sigma_db`` is the
  residual spread (floored at ``min_sigma_db``).
* Transition: Gaussian on the speed v = (road distance) / dt with mean ``v_mean_mps`` (default 0;
  the paper's v_avr) and sigma chosen so
  that its density at ``v_max`` equals ``rho``: 1 / (sqrt(2 pi) s) exp(-v_max^2 / (2 s^2)) = rho,
  solved in closed form with the Lambert W function (branch -1, the solution with v_max in the
  tail). Transitions beyond ``v_max * dt`` (density below rho) are pruned, which leaves a sparse
  K-hop neighbour table.
* Decoding: :func:`ml.mapmatch.hmm.viterbi` (the project's one Viterbi) over the sparse
  neighbour table, vectorised over states: per slot one gather (S, K), one argmax.
* Alternation: start from the MSR trajectory; fit the path-loss model on it; decode coarse
  (``gamma_coarse``, whole region), then fine (``gamma_fine``, only states within
  ``corridor_m`` of the coarse path); refit on the decoded trajectory and repeat until the mean
  change of the trajectory is below ``tol_m`` (or ``max_iter``).

HREA replaces the single speed model by one per mobility group: the transitions between
consecutive observed slots are grouped by their normalised signal difference (RMS change of the
RSRP vector over the union of measured cells, a cell missing in one report taking that report's
weakest value minus 3 dB, divided by the window's median); each group gets its own Gaussian
(mean = median speed of the group on the current estimate, v_max and hence sigma from the
group's upper speed quantile, again via Lambert W), re-estimated at each alternation step from
the decoded trajectory. Transitions that touch a missing slot keep HRE's model.

Guards on the per-group models (HREA only): a group with fewer than ``min_group_slots``
transitions keeps HRE's model; a group's sigma is floored at the speed resolution of the decoded
path (``gamma_fine / dt``, ``min_group_sigma_mps``), and its mean kept that far below ``v_max``.
Without them a group whose median speed reaches ``v_max`` (a trunk road: 20 m/s) gets
``v_max - mean -> 0`` and hence sigma -> 0 through the Lambert-W rule, i.e. a fixed speed;
misgrouped slots (on a sparse network the signal changes slowly even at speed) then drive the
Viterbi kilometres off (krems 'val': one window 98 m -> 1601 m RMSE).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import lambertw

from ml.baselines.mr._data import MRMatrix, SlotGrid, eval_times, interp_xy, mr_matrix, slot_grid
from ml.baselines.mr.roadstates import RoadStates, neighbour_table, road_states
from ml.baselines.mr.simple import DEFAULT_V_MAX_MPS, msr_smooth, wcl_positions
from ml.cities.network import RoadNetwork
from ml.mapmatch.hmm import viterbi

MIN_DIST_M = 10.0


@dataclass
class HREConfig:
    """Parameters of HRE/HREA (defaults: urban driving, 5 s reports, 300-600 m inter-site distance)."""

    v_max_mps: float = DEFAULT_V_MAX_MPS
    rho: float = 2e-3  # density (per m/s) of the speed Gaussian at v_max
    v_mean_mps: float = 0.0  # mean of HRE's speed Gaussian (the paper's v_avr; 0 = centred at standstill)
    # hard speed bound of the transitions (the paper's K "slightly larger" than v_max delta / gamma);
    # None = v_max_mps. Must exceed the fastest true speed: beyond it no path exists and Viterbi
    # places the whole window wherever the bound allows (a motorway at 38 m/s: 1.9 km RMSE)
    v_prune_mps: float | None = None
    gamma_coarse_m: float = 60.0
    gamma_fine_m: float = 20.0
    corridor_m: float = 150.0
    region_margin_m: float = 400.0
    max_iter: int = 8
    tol_m: float = 2.0
    ridge_p0: float = 1.0  # pseudo-observations pulling a cell's P0 to the pooled fit
    ridge_n: float = 20.0  # pulling a cell's exponent to the pooled one (in units of log10(d)^2)
    n_bounds: tuple[float, float] = (1.5, 6.0)
    min_sigma_db: float = 5.0
    n_groups: int = 3  # HREA mobility groups
    group_edges: tuple[float, ...] = (0.6, 1.4)  # thresholds on the normalised signal difference
    min_group_slots: int = 6  # HREA: a smaller group keeps HRE's speed model
    min_group_sigma_mps: float | None = None  # HREA sigma floor; default the fine states' speed resolution
    dt_s: float | None = None  # slot length; default from the report times
    sector_gain: bool = True  # add the known sector antenna pattern to the path-loss model (extension)
    beamwidth_deg: float = 65.0
    front_to_back_db: float = 20.0


@dataclass
class PathLossModel:
    """Per-cell log-distance model RSRP = p0 - 10 n log10(d)."""

    p0: np.ndarray  # (C,)
    n: np.ndarray  # (C,)
    sigma_db: float


@dataclass
class HREResult:
    """Decoded trajectory on the slot grid plus diagnostics."""

    t: np.ndarray  # (T,) slot times
    xy: np.ndarray  # (T, 2)
    iterations: int
    model: PathLossModel
    history_m: list[float] = field(default_factory=list)  # mean change per iteration


# ---------------------------------------------------------------------------------- transition
def speed_sigma_for_density(v_max: float, rho: float, mean: float = 0.0) -> float:
    """Sigma of a Gaussian speed density (centred at ``mean``) whose value at ``v_max`` is ``rho``.

    With u = (v_max - mean)^2 / sigma^2 the condition is u - ln u = c, c = -2 ln rho - ln(2 pi
    delta^2), so u = -W_{-1}(-exp(-c)). When rho exceeds the largest density reachable at v_max
    (1 / (sqrt(2 pi e) delta)) there is no solution; sigma = delta (the closest) is returned.
    """
    delta = max(abs(float(v_max) - float(mean)), 1e-6)
    c = -2.0 * np.log(rho) - np.log(2.0 * np.pi * delta**2)
    arg = -np.exp(-c)
    if arg < -1.0 / np.e:
        return delta
    u = float(np.real(-lambertw(arg, k=-1)))
    return float(delta / np.sqrt(max(u, 1e-12)))


def transition_logp(dist_m: np.ndarray, dt: float, mean_mps: float, sigma_mps: float, v_max: float) -> np.ndarray:
    """Log of the Gaussian speed density (unnormalised), -inf beyond ``v_max``."""
    v = dist_m / dt
    lp = -0.5 * ((v - mean_mps) / sigma_mps) ** 2
    return np.where(np.isfinite(dist_m) & (v <= v_max + 1e-9), lp, -np.inf)


# ---------------------------------------------------------------------------------- path loss
def sector_gain_db(xy: np.ndarray, tower_xy: np.ndarray, azimuth_deg: np.ndarray | None, cfg: HREConfig) -> np.ndarray:
    """(n, C) 3GPP sector pattern -min(12 (theta / beamwidth)^2, front_to_back) at points ``xy``.

    Zero everywhere when ``cfg.sector_gain`` is off or azimuths are unknown (NaN azimuth: omni).
    """
    n, C = len(xy), len(tower_xy)
    if not cfg.sector_gain or azimuth_deg is None:
        return np.zeros((n, C))
    dv = xy[:, None, :] - tower_xy[None, :, :]
    bearing = np.degrees(np.arctan2(dv[..., 0], dv[..., 1]))
    off = (bearing - azimuth_deg[None, :] + 180.0) % 360.0 - 180.0
    g = -np.minimum(12.0 * (off / cfg.beamwidth_deg) ** 2, cfg.front_to_back_db)
    return np.where(np.isfinite(azimuth_deg)[None, :], g, 0.0)


def fit_pathloss(pos: np.ndarray, rsrp: np.ndarray, tower_xy: np.ndarray, cfg: HREConfig,
                 azimuth_deg: np.ndarray | None = None) -> PathLossModel:
    """Least-squares per-cell log-distance fit on positions ``pos`` (T, 2) and ``rsrp`` (T, C) (NaN = none)."""
    C = rsrp.shape[1]
    ti, ci = np.nonzero(np.isfinite(rsrp))
    r = rsrp[ti, ci] - sector_gain_db(pos, tower_xy, azimuth_deg, cfg)[ti, ci]
    d = np.maximum(np.hypot(*(pos[ti] - tower_xy[ci]).T), MIN_DIST_M)
    L = 10.0 * np.log10(d)
    # pooled fit r = a - n L
    A = np.column_stack([np.ones_like(L), -L])
    if len(r) >= 3 and np.ptp(L) > 1e-6:
        (a_g, n_g), *_ = np.linalg.lstsq(A, r, rcond=None)
    else:
        a_g, n_g = np.nan, np.nan
    lo, hi = cfg.n_bounds
    if not np.isfinite(n_g) or not (lo <= n_g <= hi):
        n_g = float(np.clip(n_g, lo, hi)) if np.isfinite(n_g) else 3.5
        a_g = float(np.mean(r + n_g * L)) if len(r) else -30.0
    # per-cell ridge towards the pooled fit (2x2 normal equations, vectorised)
    S1 = np.bincount(ci, minlength=C).astype(np.float64)
    SL = np.bincount(ci, weights=L, minlength=C)
    SLL = np.bincount(ci, weights=L * L, minlength=C)
    Sr = np.bincount(ci, weights=r, minlength=C)
    SrL = np.bincount(ci, weights=r * L, minlength=C)
    lam_a, lam_n = cfg.ridge_p0, cfg.ridge_n * 100.0  # L is in dB (10 log10 d): scale the n-ridge
    a11, a12, a22 = S1 + lam_a, -SL, SLL + lam_n
    b1, b2 = Sr + lam_a * a_g, -SrL + lam_n * n_g
    det = a11 * a22 - a12 * a12
    p0 = (a22 * b1 - a12 * b2) / det
    n = (a11 * b2 - a12 * b1) / det
    n = np.clip(n, lo, hi)
    res = r - (p0[ci] - n[ci] * L)
    dof = max(len(r) - 2, 1)
    sigma = float(np.sqrt(np.sum(res**2) / dof)) if len(r) else 8.0
    return PathLossModel(p0, n, max(sigma, cfg.min_sigma_db))


def log_emission(state_xy: np.ndarray, rsrp: np.ndarray, tower_xy: np.ndarray, model: PathLossModel,
                 gain_db: np.ndarray | None = None) -> np.ndarray:
    """(T, S) log-likelihood of every slot's RSRP vector at every state (0 for empty slots).

    ``gain_db`` (S, C) is an optional known antenna gain added to the path-loss mean.
    """
    d = np.maximum(np.sqrt(((state_xy[:, None, :] - tower_xy[None, :, :]) ** 2).sum(-1)), MIN_DIST_M)  # (S, C)
    mu = model.p0[None, :] - model.n[None, :] * 10.0 * np.log10(d)  # (S, C)
    if gain_db is not None:
        mu = mu + gain_db
    M = np.isfinite(rsrp).astype(np.float64)
    R = np.where(M > 0, rsrp, 0.0)
    sq = (R * R).sum(axis=1)[:, None] - 2.0 * R @ mu.T + M @ (mu * mu).T
    return -0.5 * sq / model.sigma_db**2


# ---------------------------------------------------------------------------------- HRE core
@dataclass
class _Graph:
    states: RoadStates
    nbr: np.ndarray  # (S, K) neighbour indices
    dist: np.ndarray  # (S, K) road distances (inf = padding)
    logd: np.ndarray | None = None  # (S, C) 10 log10(distance to each tower), cached
    gain: np.ndarray | None = None  # (S, C) sector gain, cached

    def geometry(self, m: MRMatrix, cfg: HREConfig) -> tuple[np.ndarray, np.ndarray | None]:
        """Cached (S, C) 10 log10 d and sector gain of the states for the window's cells."""
        if self.logd is None:
            xy = self.states.xy
            d = np.sqrt(((xy[:, None, :] - m.tower_xy[None, :, :]) ** 2).sum(-1))
            self.logd = 10.0 * np.log10(np.maximum(d, MIN_DIST_M))
            self.gain = sector_gain_db(xy, m.tower_xy, m.azimuth_deg, cfg) if cfg.sector_gain else None
        return self.logd, self.gain

    def subset(self, keep: np.ndarray) -> "_Graph":
        """The states where ``keep`` is True; neighbours outside become padding (no new Dijkstra)."""
        idx = np.nonzero(keep)[0]
        new = np.full(len(keep), -1, dtype=np.int64)
        new[idx] = np.arange(len(idx))
        nbr = new[self.nbr[idx]]
        dist = np.where(nbr >= 0, self.dist[idx], np.inf)
        nbr = np.maximum(nbr, 0)
        st = RoadStates(self.states.xy[idx], self.states.graph, self.states.gamma_m)
        logd = None if self.logd is None else self.logd[idx]
        gain = None if self.gain is None else self.gain[idx]
        return _Graph(st, nbr, dist, logd, gain)


def _graph(net: RoadNetwork, gamma: float, bbox: tuple[float, float, float, float], reach: float) -> _Graph:
    st = road_states(net, gamma, bbox)
    nbr, dist = neighbour_table(st, reach)
    return _Graph(st, nbr, dist)


def _emission(gr: _Graph, m: MRMatrix, rsrp: np.ndarray, model: PathLossModel, cfg: HREConfig) -> np.ndarray:
    """(T, S) log emission on a graph's states, reusing its cached distances and gains."""
    logd, gain = gr.geometry(m, cfg)
    mu = model.p0[None, :] - model.n[None, :] * logd
    if gain is not None:
        mu = mu + gain
    M = np.isfinite(rsrp).astype(np.float64)
    R = np.where(M > 0, rsrp, 0.0)
    sq = (R * R).sum(axis=1)[:, None] - 2.0 * R @ mu.T + M @ (mu * mu).T
    return -0.5 * sq / model.sigma_db**2


def _bbox(xy: np.ndarray, margin: float) -> tuple[float, float, float, float]:
    lo, hi = xy.min(axis=0) - margin, xy.max(axis=0) + margin
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


@dataclass
class _SpeedModel:
    mean: np.ndarray  # (G,)
    sigma: np.ndarray  # (G,)
    vmax: np.ndarray  # (G,)
    group: np.ndarray  # (T-1,) group of each step


def _prune(cfg: HREConfig) -> float:
    """Hard speed bound of the transitions (``v_prune_mps``, default ``v_max_mps``)."""
    return float(cfg.v_prune_mps) if cfg.v_prune_mps is not None else float(cfg.v_max_mps)


def _hre_speed(T: int, cfg: HREConfig) -> _SpeedModel:
    s = speed_sigma_for_density(cfg.v_max_mps, cfg.rho, cfg.v_mean_mps)
    return _SpeedModel(np.array([float(cfg.v_mean_mps)]), np.array([s]), np.array([_prune(cfg)]),
                       np.zeros(max(T - 1, 0), np.int64))


def _decode(g: _Graph, emis: np.ndarray, dt: float, sm: _SpeedModel, v_max: float) -> np.ndarray:
    logA = np.stack([
        transition_logp(g.dist, dt, sm.mean[k], sm.sigma[k], min(sm.vmax[k], v_max) + g.states.gamma_m / dt)
        for k in range(len(sm.mean))
    ])
    return viterbi(emis, logA, pred=g.nbr, step_trans=sm.group).states


def _inputs(ctx: Any, cfg: HREConfig) -> tuple[MRMatrix, SlotGrid, np.ndarray]:
    m = mr_matrix(ctx)
    if not m.mask.any():
        raise ValueError("mr: no usable measurement report in the window (column rsrp_dbm all missing)")
    g = slot_grid(m, eval_times(ctx), cfg.dt_s)
    t_w, z = wcl_positions(m)
    x0 = interp_xy(t_w, msr_smooth(t_w, z, cfg.v_max_mps), g.t)
    return m, g, x0


def run_hre(net: RoadNetwork, m: MRMatrix, g: SlotGrid, x0: np.ndarray, cfg: HREConfig,
            adaptive: bool = False) -> HREResult:
    """Alternate path-loss fitting and coarse-to-fine Viterbi decoding from the initial slots ``x0``."""
    T = len(g.t)
    reach = _prune(cfg) * g.dt
    region = _bbox(x0, cfg.region_margin_m)
    coarse = _graph(net, cfg.gamma_coarse_m, region, reach + cfg.gamma_coarse_m)
    fine_all: _Graph | None = None  # built on first use, over the region, then restricted per iteration
    X = x0.copy()
    sm = _hre_speed(T, cfg)
    hist: list[float] = []
    obs = g.observed
    az = m.azimuth_deg
    model = fit_pathloss(X[obs], g.rsrp[obs], m.tower_xy, cfg, az)
    it = 0
    for it in range(1, cfg.max_iter + 1):
        model = fit_pathloss(X[obs], g.rsrp[obs], m.tower_xy, cfg, az)
        if adaptive:
            sm = _adaptive_speed(X, g, cfg)
        pc = _decode(coarse, _emission(coarse, m, g.rsrp, model, cfg), g.dt, sm, _prune(cfg))
        xc = coarse.states.xy[pc]
        if fine_all is None:
            fine_all = _graph(net, cfg.gamma_fine_m, region, reach + cfg.gamma_fine_m)
        near, _ = cKDTree(xc).query(fine_all.states.xy, distance_upper_bound=cfg.corridor_m)
        if fine_all.logd is None:
            fine_all.geometry(m, cfg)
        fine = fine_all.subset(np.isfinite(near))
        pf = _decode(fine, _emission(fine, m, g.rsrp, model, cfg), g.dt, sm, _prune(cfg))
        Xn = fine.states.xy[pf]
        change = float(np.mean(np.hypot(*(Xn - X).T)))
        hist.append(change)
        X = Xn
        if change < cfg.tol_m:
            break
    return HREResult(g.t, X, it, model, hist)


# ---------------------------------------------------------------------------------- HREA groups
def signal_difference(rsrp: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """(T-1,) normalised RSRP change between consecutive slots (NaN where either slot is missing)."""
    floor = np.nanmin(np.where(np.isfinite(rsrp), rsrp, np.inf), axis=1, keepdims=True) - 3.0
    floor = np.where(np.isfinite(floor), floor, np.nan)
    filled = np.where(np.isfinite(rsrp), rsrp, floor)
    union = np.isfinite(rsrp[1:]) | np.isfinite(rsrp[:-1])
    diff = np.where(union, filled[1:] - filled[:-1], 0.0)
    n = union.sum(axis=1)
    rms = np.sqrt((diff**2).sum(axis=1) / np.maximum(n, 1))
    ok = observed[1:] & observed[:-1] & (n > 0)
    out = np.full(len(rms), np.nan)
    if ok.any():
        med = float(np.median(rms[ok]))
        out[ok] = rms[ok] / max(med, 1e-6)
    return out


def _adaptive_speed(X: np.ndarray, g: SlotGrid, cfg: HREConfig) -> _SpeedModel:
    """Per-group Gaussian speed models from the current estimate ``X`` (group 0 = HRE's model)."""
    base = _hre_speed(len(X), cfg)
    nd = signal_difference(g.rsrp, g.observed)
    grp = np.zeros(len(nd), dtype=np.int64)
    ok = np.isfinite(nd)
    grp[ok] = 1 + np.searchsorted(np.asarray(cfg.group_edges), nd[ok])
    v = np.hypot(*np.diff(X, axis=0).T) / g.dt
    G = 1 + len(cfg.group_edges) + 1
    mean = np.full(G, float(base.mean[0]))
    sigma = np.full(G, base.sigma[0])
    vmax = np.full(G, _prune(cfg))
    vcap = _prune(cfg)
    # Guards (see module docstring): speeds measured on a decoded path of states gamma_fine apart
    # are only known to +-gamma_fine / dt, so no group may be sharper than that; the mean is kept
    # at least that far below v_max (a group at the speed limit otherwise gets delta -> 0 and a
    # sigma -> 0, i.e. a fixed speed); too small a group keeps HRE's model.
    floor = cfg.min_group_sigma_mps if cfg.min_group_sigma_mps is not None else cfg.gamma_fine_m / g.dt
    for k in range(1, G):
        sel = v[grp == k]
        if len(sel) < max(cfg.min_group_slots, 3):
            grp[grp == k] = 0
            continue
        mu = float(min(np.median(sel), vcap - floor))
        hi = float(np.quantile(sel, 0.9))
        vm = float(np.clip(max(hi + 0.5 * (hi - mu), mu + 3.0), 3.0, vcap))
        sk = max(speed_sigma_for_density(vm, cfg.rho, mu), floor)
        mean[k] = mu
        sigma[k] = sk
        vmax[k] = float(min(max(vm, mu + 3.0 * sk), vcap))
    return _SpeedModel(mean, sigma, vmax, grp)


# ---------------------------------------------------------------------------------- entry points
def hre_track(ctx: Any, cfg: HREConfig | None = None, adaptive: bool = False) -> HREResult:
    """Run HRE (``adaptive=False``) or HREA on a sample context; the trajectory on the slot grid."""
    cfg = cfg or HREConfig()
    m, g, x0 = _inputs(ctx, cfg)
    if adaptive:
        first = run_hre(ctx.net, m, g, x0, cfg, adaptive=False)
        return run_hre(ctx.net, m, g, first.xy, cfg, adaptive=True)
    return run_hre(ctx.net, m, g, x0, cfg, adaptive=False)


def hre(ctx: Any, cfg: HREConfig | None = None) -> np.ndarray:
    """HRE positions (n_eval, 2) at ``ctx.eval_t``."""
    r = hre_track(ctx, cfg, adaptive=False)
    return interp_xy(r.t, r.xy, eval_times(ctx))


def hrea(ctx: Any, cfg: HREConfig | None = None) -> np.ndarray:
    """HREA (adaptive mobility) positions (n_eval, 2) at ``ctx.eval_t``."""
    r = hre_track(ctx, cfg, adaptive=True)
    return interp_xy(r.t, r.xy, eval_times(ctx))

