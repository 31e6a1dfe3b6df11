"""Point-wise MR baselines: MaR, WCL, MSR, and HMM map matching on WCL positions.

All work on the observed report times and are interpolated linearly to ``ctx.eval_t``.

* **MaR** (max RSS): the tower of the strongest measured cell at each report.
* **WCL** (weighted centroid localisation): sum_c w_c tower_c / sum_c w_c with
  ``w_c = 10 ** (rsrp_c / (10 * weight_exponent))``. With ``weight_exponent = 1`` this is linear
  power (mW), which is almost MaR because RSRP spans tens of dB; the default 3.5 (the urban
  path-loss exponent) makes ``w_c`` proportional to 1 / (estimated distance), the usual WCL
  transform, and is what the ordering study uses.
* **MSR** (maximum-speed-constrained smoothing): ``min sum_t ||x_t - z_t||^2`` s.t.
  ``||x_{t+1} - x_t|| <= v_max * dt_t`` with z the WCL positions. A convex SOCP (the Euclidean
  projection of z onto an intersection of second-order cones). Solved by ADMM in numpy on the
  splitting y = D x (D the first difference): the x-update is one tridiagonal solve with a
  matrix factored once (``scipy.linalg.solveh_banded``), the y-update a vectorised projection
  onto discs; O(T) per iteration, ~1-3 ms for a 120-report window versus ~50-100 ms of cvxpy
  problem construction + Clarabel. ``solver="clarabel"`` solves the same problem exactly with
  cvxpy for checking (the tests compare the two).
* **HMM on WCL**: ``ml.mapmatch.match_trajectory`` (the shared Newson-Krumm engine) on the WCL
  positions, averaged over a few seconds first (dense reports, noisy positions), with enough
  candidate edges per report to contain the true road.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.linalg import solveh_banded

from ml.baselines.mr._data import MRMatrix, eval_times, interp_xy, mr_matrix
from ml.mapmatch import MatchResult, interpolate_along_route, match_trajectory

DEFAULT_V_MAX_MPS = 20.0
WCL_WEIGHT_EXPONENT = 3.5


# ---------------------------------------------------------------------------------- MaR / WCL
def mar_positions(m: MRMatrix) -> tuple[np.ndarray, np.ndarray]:
    """(times, xy) of the strongest cell's tower at every report that measured any cell."""
    ok = m.mask.any(axis=1)
    r = np.where(m.mask, m.rsrp, -np.inf)[ok]
    return m.t[ok], m.tower_xy[np.argmax(r, axis=1)]


def wcl_positions(m: MRMatrix, weight_exponent: float = WCL_WEIGHT_EXPONENT) -> tuple[np.ndarray, np.ndarray]:
    """(times, xy) RSS-weighted centroid of the measured towers at every non-empty report."""
    ok = m.mask.any(axis=1)
    r = m.rsrp[ok]
    rmax = np.nanmax(r, axis=1, keepdims=True)
    # normalise by the row maximum before exponentiating (numerically safe, same centroid)
    w = np.where(np.isfinite(r), 10.0 ** ((r - rmax) / (10.0 * weight_exponent)), 0.0)
    xy = (w @ m.tower_xy) / w.sum(axis=1, keepdims=True)
    return m.t[ok], xy


def mar(ctx: Any) -> np.ndarray:
    """MaR: the strongest measured cell's tower position, interpolated to ``ctx.eval_t``."""
    t, xy = mar_positions(mr_matrix(ctx))
    return interp_xy(t, xy, eval_times(ctx))


def wcl(ctx: Any, weight_exponent: float = WCL_WEIGHT_EXPONENT) -> np.ndarray:
    """WCL: RSS-weighted centroid of the measured towers, interpolated to ``ctx.eval_t``."""
    t, xy = wcl_positions(mr_matrix(ctx), weight_exponent)
    return interp_xy(t, xy, eval_times(ctx))


# ---------------------------------------------------------------------------------- MSR
def _project_discs(v: np.ndarray, radius: np.ndarray) -> np.ndarray:
    n = np.hypot(v[:, 0], v[:, 1])
    scale = np.where(n > radius, radius / np.maximum(n, 1e-12), 1.0)
    return v * scale[:, None]


def msr_smooth(
    t: np.ndarray,
    z: np.ndarray,
    v_max: float = DEFAULT_V_MAX_MPS,
    solver: str = "admm",
    rho: float = 1.0,
    max_iter: int = 2000,
    tol_m: float = 0.05,
    loss: str = "sq",
) -> np.ndarray:
    """Maximum-speed-constrained smoothing of positions ``z`` (T, 2) at times ``t`` (T,).

    ``loss="sq"`` (default): ``min sum ||x_t - z_t||^2``. ``loss="norm"``: ``min sum ||x_t - z_t||``
    (the unsquared distances of the paper's section IV-F and eq. 27: a robust fit, a jump of ``z``
    to a far tower pulls the trajectory by a bounded amount instead of in proportion to its
    length); solved by ADMM with the extra split ``w = x - z`` (prox: vector soft-threshold).

    Solves ``min ||x - z||^2`` s.t. ``||x_{k+1} - x_k|| <= v_max (t_{k+1} - t_k)``.
    ``solver="admm"`` (default, numpy, stops when primal and dual residuals are below ``tol_m``
    metres, then a final pass keeps the constraint satisfied to within ``tol_m``);
    ``solver="clarabel"`` uses cvxpy + Clarabel (exact interior point; slower, for checking).
    """
    t = np.asarray(t, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64).reshape(-1, 2)
    T = len(z)
    if T < 2:
        return z.copy()
    radius = v_max * np.maximum(np.diff(t), 0.0)
    if loss not in ("sq", "norm"):
        raise ValueError(f"msr: unknown loss {loss!r} (sq or norm)")
    if solver == "clarabel":
        import cvxpy as cp

        x = cp.Variable((T, 2))
        cons = [cp.norm(x[1:] - x[:-1], 2, axis=1) <= radius]
        obj = cp.sum_squares(x - z) if loss == "sq" else cp.sum(cp.norm(x - z, 2, axis=1))
        cp.Problem(cp.Minimize(obj), cons).solve(solver=cp.CLARABEL)
        return np.asarray(x.value, dtype=np.float64)
    if solver != "admm":
        raise ValueError(f"msr: unknown solver {solver!r} (admm or clarabel)")
    if loss == "norm":
        return _msr_norm_admm(z, radius, rho, max_iter, tol_m)
    # Scale so rho ~ 1 is well conditioned regardless of units.
    # (I + rho D^T D) is tridiagonal SPD: upper banded form for solveh_banded.
    diag = np.full(T, 1.0 + 2.0 * rho)
    diag[0] = diag[-1] = 1.0 + rho
    ab = np.zeros((2, T))
    ab[0, 1:] = -rho
    ab[1] = diag
    x = z.copy()
    y = _project_discs(np.diff(x, axis=0), radius)
    u = np.zeros_like(y)

    def DT(v: np.ndarray) -> np.ndarray:  # D^T v for v (T-1, 2)
        out = np.zeros((T, 2))
        out[:-1] -= v
        out[1:] += v
        return out

    for _ in range(max_iter):
        x = solveh_banded(ab, z + rho * DT(y - u), check_finite=False)
        Dx = np.diff(x, axis=0)
        y_old = y
        y = _project_discs(Dx + u, radius)
        r = Dx - y
        u = u + r
        prim = np.sqrt((r**2).sum(axis=1).max())
        dual = rho * np.sqrt((DT(y - y_old) ** 2).sum(axis=1).max())
        if prim < tol_m and dual < tol_m:
            break
    return x


def _msr_norm_admm(z: np.ndarray, radius: np.ndarray, rho: float, max_iter: int, tol_m: float) -> np.ndarray:
    """ADMM for ``min sum ||x_t - z_t||`` s.t. ``||x_{t+1} - x_t|| <= radius_t``.

    Splits ``w = x - z`` (prox of the norm: vector soft-threshold by 1/rho_eff) and ``y = D x`` (disc
    projection); the x-step solves ``(I + D^T D) x = z + w - u + D^T (y - v)`` (tridiagonal, factored
    by ``solveh_banded``). ``rho_eff = rho / scale`` with scale the median distance of z to its mean,
    so the soft threshold is of the order of the data's spread whatever the units.
    """
    T = len(z)
    scale = max(float(np.median(np.hypot(*(z - z.mean(axis=0)).T))), 1.0)
    thr = scale / rho
    ab = np.zeros((2, T))
    ab[0, 1:] = -1.0
    ab[1] = 3.0
    ab[1, 0] = ab[1, -1] = 2.0

    def DT(q: np.ndarray) -> np.ndarray:
        out = np.zeros((T, 2))
        out[:-1] -= q
        out[1:] += q
        return out

    x = z.copy()
    w = np.zeros_like(z)
    u = np.zeros_like(z)
    y = _project_discs(np.diff(x, axis=0), radius)
    v = np.zeros_like(y)
    for _ in range(max_iter):
        x = solveh_banded(ab, z + w - u + DT(y - v), check_finite=False)
        a = x - z + u
        na = np.hypot(a[:, 0], a[:, 1])
        w_old = w
        w = a * (np.maximum(na - thr, 0.0) / np.maximum(na, 1e-12))[:, None]
        Dx = np.diff(x, axis=0)
        y_old = y
        y = _project_discs(Dx + v, radius)
        r1 = x - z - w
        r2 = Dx - y
        u = u + r1
        v = v + r2
        prim = max(np.sqrt((r1**2).sum(axis=1).max()), np.sqrt((r2**2).sum(axis=1).max()))
        dual = max(np.sqrt(((w - w_old) ** 2).sum(axis=1).max()), np.sqrt((DT(y - y_old) ** 2).sum(axis=1).max()))
        if prim < tol_m and dual < tol_m:
            break
    return x


def msr(ctx: Any, v_max: float = DEFAULT_V_MAX_MPS, solver: str = "admm", init: str = "wcl",
        loss: str = "sq") -> np.ndarray:
    """MSR: WCL (``init="wcl"``) or strongest-tower (``"mar"``, the paper's section IV-F z_t) positions
    smoothed under the maximum-speed constraint (``loss``: see :func:`msr_smooth`), at ``eval_t``."""
    m = mr_matrix(ctx)
    t, z = wcl_positions(m) if init == "wcl" else mar_positions(m)
    return interp_xy(t, msr_smooth(t, z, v_max, solver=solver, loss=loss), eval_times(ctx))


# ---------------------------------------------------------------------------------- HMM on WCL
HMM_WCL_SIGMA_M = 150.0  # emission spread: WCL's median error with 300-600 m inter-site distances
HMM_WCL_BETA_M = 50.0  # Newson-Krumm transition scale (|route - straight line|)
# Reports come every few seconds, far denser than the WCL noise allows to resolve (Newson & Krumm
# subsample such input; here the information is kept instead): each WCL position is replaced by a
# Gaussian-weighted average over time with this spread before matching. 7.5 s = 1.5 report
# intervals of 5 s, during which a car at 15 m/s moves ~110 m, under WCL's error. On gridville
# 'val': 5-10 s within 2 m RMSE, 15 s +4 m, none (the old setting) +10 m.
HMM_WCL_SMOOTH_S = 7.5
# Nearest edges kept per report. WCL's error (median ~125 m) exceeds the ~8 nearest edges of a
# city grid (two directed edges per street), which then miss the true road for about half the
# reports (true road > 100 m from every candidate: 51 % with 8, 20 % with 32 on gridville 'val').
HMM_WCL_MAX_CANDIDATES = 32
HMM_WCL_MAX_SPEED_MPS = 30.0  # speed pruning (+ 2 sigma slack): prunes impossible jumps, cheaper


def smooth_in_time(t: np.ndarray, z: np.ndarray, spread_s: float) -> np.ndarray:
    """Gaussian-kernel average of positions ``z`` (T, 2) over their times ``t`` (spread in s)."""
    if spread_s <= 0 or len(t) < 2:
        return z
    w = np.exp(-0.5 * ((t[:, None] - t[None, :]) / spread_s) ** 2)
    return (w @ z) / w.sum(axis=1, keepdims=True)


def hmm_wcl(ctx: Any, sigma_m: float | None = None, smooth_s: float = HMM_WCL_SMOOTH_S,
            max_candidates: int = HMM_WCL_MAX_CANDIDATES) -> np.ndarray:
    """HMM map matching of the WCL positions, at ``ctx.eval_t``.

    The WCL positions are first averaged over time (``smooth_s``, Gaussian spread), then matched
    with the Newson-Krumm engine ``ml.mapmatch.match_trajectory`` (emission sigma ``sigma_m``,
    default 150 m, the order of WCL's error with 300-600 m inter-site distances); the matched
    road positions are interpolated in time (:func:`_positions_from_match`).
    """
    t, z = wcl_positions(mr_matrix(ctx))
    z = smooth_in_time(t, z, smooth_s)
    et = eval_times(ctx)
    sigma = HMM_WCL_SIGMA_M if sigma_m is None else float(sigma_m)
    res = match_trajectory(ctx.net, z, t, sigma_m=sigma, beta_m=HMM_WCL_BETA_M,
                           max_speed_mps=HMM_WCL_MAX_SPEED_MPS, max_candidates=max_candidates)
    return _positions_from_match(res, t, et)


def _positions_from_match(res: MatchResult, t: np.ndarray, eval_t: np.ndarray) -> np.ndarray:
    """Positions at ``eval_t`` from a ``MatchResult``: the matched road positions, linear in time.

    Reports are as dense as the evaluation grid, so the matched points themselves are the
    estimate. Interpolating along the matched route instead (``interpolate_along_route``) forces
    the distance along the route to be non-decreasing, i.e. takes the running maximum of noisy
    anchors: with WCL's along-road noise (hundreds of metres on sparse networks) larger than the
    progress between reports, positions run ahead to the farthest noisy point (krems 'val': one
    window 427 m RMSE at the matched points, 687 m along the route). The route is used only
    when no point could be matched individually.
    """
    pts = np.asarray(res.point_xy, dtype=np.float64).reshape(-1, 2)
    ok = np.isfinite(pts).all(axis=1)
    if ok.any():
        return interp_xy(t[ok], pts[ok], eval_t)
    out = interpolate_along_route(res.route_xy, res.route_cum_m, res.point_route_m, t, eval_t)
    return np.asarray(out, dtype=np.float64).reshape(-1, 2)
