"""Decode a (generated) video into a GPS trajectory at the evaluation times.

Steps (DESIGN section 7):
1. head dot per frame -> anchor positions at the known frame times ``k * W / (K - 1)``;
2. the last frame's path mask, skeletonised -> the route shape: between consecutive anchors the
   route follows the shortest path through the skeleton's 8-connected pixel graph (so spurs and
   blobs are skipped); where the skeleton is broken the two anchors are joined straight;
3. positions along that pixel route at ``eval_t``: distance along the route is interpolated in
   time between anchors (constant speed between frames) -> the unsnapped trajectory;
4. snapping: the route points (with their times) are map-matched to the road graph with the HMM
   engine ``ml.mapmatch.match_trajectory`` and the positions are re-interpolated along the
   matched route between the anchors (``ml.mapmatch.interpolate_along_route``). With the window's
   records as evidence (``ml.observation.RecordEvidence``), each record's log-likelihood under the
   city's observation model is added, weighted, to the emission of the route point nearest its time:
   the drawing proposes the candidates, the records re-weigh them.

Nothing fails silently: everything that could not be decoded is listed in ``issues``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from ml.decode.heads import (as_video_255, decode_heads, decode_heads_from_layer, decode_path_mask,
                             decode_path_mask_from_layer, skeletonize_path)
from ml.geo.tile import Tile
from ml.mapmatch import interpolate_along_route, match_trajectory
from ml.mapmatch.route import point_at_distance

#: emission sigma of the snapping HMM, in pixels of the tile: how far a drawn head may sit from its road. 3 px
#: on gridville's val windows (bench/decode_sigma.py, the untrained prior-drawing model): median 116.0 m,
#: against 143.5 m at 0.6 px (the earlier default, which made the route follow every misplaced head),
#: 132.1 m at 1.5 px and 116.3-116.9 m at 5-8 px
HEAD_SIGMA_PX = 3.0

if TYPE_CHECKING:  # typing only: keeps networkx out of the training path
    from ml.cities.network import RoadNetwork
    from ml.observation.evidence import RecordEvidence


@dataclass
class DecodedTrajectory:
    """Result of :func:`decode_video_to_trajectory` (projected metres, seconds since t0)."""

    xy: np.ndarray  # (n_eval, 2) final positions at eval_t (snapped when snapping succeeded)
    anchors_xy: np.ndarray  # (K, 2) head-dot positions, NaN where missing
    anchors_t: np.ndarray  # (K,) frame times
    issues: list[str] = field(default_factory=list)
    n_missing_dots: int = 0
    xy_unsnapped: np.ndarray | None = None  # (n_eval, 2) positions before snapping
    route_xy: np.ndarray | None = None  # (m, 2) route used for the final positions
    snapped: bool = False
    snap_method: str = "none"  # "hmm", "nearest_road" or "none"

    @property
    def ok(self) -> bool:
        """True when every frame had a dot and no issue was raised."""
        return not self.issues


def _skeleton_graph(skel: np.ndarray) -> tuple[np.ndarray, sp.csr_matrix]:
    """Skeleton pixels ``(n, 2)`` as (col + 0.5, row + 0.5) and their 8-neighbour graph (metric weights)."""
    H, W = skel.shape
    rr, cc = np.nonzero(skel)
    n = len(rr)
    index = -np.ones((H, W), dtype=np.int64)
    index[rr, cc] = np.arange(n)
    rows, cols, w = [], [], []
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        r2, c2 = rr + dr, cc + dc
        ok = (r2 >= 0) & (r2 < H) & (c2 >= 0) & (c2 < W)
        j = np.full(n, -1, dtype=np.int64)
        j[ok] = index[r2[ok], c2[ok]]
        m = j >= 0
        rows.append(np.nonzero(m)[0])
        cols.append(j[m])
        w.append(np.full(int(m.sum()), np.hypot(dr, dc)))
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    ww = np.concatenate(w)
    g = sp.csr_matrix((np.concatenate([ww, ww]), (np.concatenate([r, c]), np.concatenate([c, r]))), shape=(n, n))
    return np.column_stack([cc + 0.5, rr + 0.5]), g


def _smooth(poly: np.ndarray) -> np.ndarray:
    """3-point moving average of the interior points (removes the pixel staircase)."""
    if len(poly) < 3:
        return poly
    out = poly.copy()
    out[1:-1] = (poly[:-2] + poly[1:-1] + poly[2:]) / 3.0
    return out


def pixel_route(
    anchors_px: np.ndarray,
    anchors_t: np.ndarray,
    skel: np.ndarray,
    max_anchor_gap_px: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """The route through valid anchors along the skeleton, in pixels.

    Returns ``(route_px (m, 2), route_t (m,), anchor_index (A,) position of each valid anchor in
    the route, issues)``. Times grow linearly with arc length between consecutive anchors.
    """
    issues: list[str] = []
    valid = np.nonzero(np.isfinite(anchors_px).all(axis=1))[0]
    A = anchors_px[valid]
    T = anchors_t[valid]
    if len(valid) == 1:
        return A.copy(), T.copy(), np.zeros(1, dtype=np.int64), issues
    nodes_px = np.zeros((0, 2))
    if skel.any():
        nodes_px, g = _skeleton_graph(skel)
        d_near, near = cKDTree(nodes_px).query(A)
        far = d_near > max_anchor_gap_px
        for k in np.nonzero(far)[0]:
            issues.append(f"head dot of frame {int(valid[k])} is {d_near[k]:.1f} px from the drawn path")
        src = np.unique(near)
        dist, pred = dijkstra(g, directed=False, indices=src, return_predecessors=True)
        row_of = {int(s): i for i, s in enumerate(src)}
    else:
        issues.append("no path drawn in the last frame: anchors joined by straight lines")
    pieces, times, anchor_idx = [A[:1]], [T[:1]], [0]
    count = 1
    for i in range(len(A) - 1):
        a, b = A[i], A[i + 1]
        mid = np.zeros((0, 2))
        if len(nodes_px) and not (far[i] or far[i + 1]):
            s, e = int(near[i]), int(near[i + 1])
            row = row_of[s]
            if np.isfinite(dist[row, e]):
                chain = [e]
                while chain[-1] != s:
                    chain.append(int(pred[row, chain[-1]]))
                mid = nodes_px[np.array(chain[::-1])]
                if len(mid) > 2:
                    mid = _smooth(mid)
            else:
                issues.append(f"drawn path broken between frames {int(valid[i])} and {int(valid[i + 1])}")
        seg = np.vstack([a[None], mid, b[None]])
        cum = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(seg, axis=0).T))])
        frac = cum / cum[-1] if cum[-1] > 0 else np.linspace(0.0, 1.0, len(seg))
        st = T[i] + frac * (T[i + 1] - T[i])
        pieces.append(seg[1:])
        times.append(st[1:])
        count += len(seg) - 1
        anchor_idx.append(count - 1)
    return np.vstack(pieces), np.concatenate(times), np.asarray(anchor_idx, dtype=np.int64), issues


def _positions_at(route: np.ndarray, route_t: np.ndarray, eval_t: np.ndarray) -> np.ndarray:
    """Positions at ``eval_t`` on a timed polyline (held outside its time span)."""
    cum = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(route, axis=0).T))])
    # times are non-decreasing; np.interp needs increasing x: break ties by arc length
    s = np.interp(eval_t, route_t + 1e-9 * cum, cum)
    return point_at_distance(route, cum, s)


def _resample_with_anchors(route: np.ndarray, route_t: np.ndarray, anchor_idx: np.ndarray, step: float):
    """Route points about every ``step`` units (anchors always kept): indices into the route."""
    cum = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(route, axis=0).T))])
    bins = np.floor(cum / max(step, 1e-9)).astype(np.int64)
    keep = np.ones(len(route), dtype=bool)
    keep[1:] = bins[1:] != bins[:-1]
    keep[anchor_idx] = True
    keep[-1] = True
    return np.nonzero(keep)[0]


def interpolate_by_travel_time(
    net: RoadNetwork,
    route_xy: np.ndarray,
    route_cum_m: np.ndarray,
    anchor_route_m: np.ndarray,
    anchor_t: np.ndarray,
    query_t: np.ndarray,
) -> np.ndarray:
    """Like ``ml.mapmatch.interpolate_along_route`` but constant *relative* speed between anchors.

    Between two anchors the vehicle is assumed to drive at a constant fraction of each road's
    speed (``RoadNetwork.edge_speed_mps``): time is spread along the matched route in proportion
    to the expected travel time, not the length, so it moves faster on arterials than on
    residential streets. Same holding and monotonicity rules as the length-based version.
    """
    route_xy = np.asarray(route_xy, dtype=np.float64).reshape(-1, 2)
    cum = np.asarray(route_cum_m, dtype=np.float64)
    q = np.atleast_1d(np.asarray(query_t, dtype=np.float64))
    a_m = np.asarray(anchor_route_m, dtype=np.float64)
    a_t = np.asarray(anchor_t, dtype=np.float64)
    ok = np.isfinite(a_m) & np.isfinite(a_t)
    a_m, a_t = a_m[ok], a_t[ok]
    if len(a_m) == 0 or len(route_xy) < 2:
        return np.full((len(q), 2), np.nan) if len(a_m) == 0 or len(route_xy) == 0 else np.repeat(route_xy, len(q), 0)
    order = np.argsort(a_t, kind="stable")
    a_t, a_m = a_t[order], np.maximum.accumulate(a_m[order])
    last = np.ones(len(a_t), dtype=bool)
    last[:-1] = a_t[1:] != a_t[:-1]
    a_t, a_m = a_t[last], a_m[last]
    seg = np.diff(cum)
    mids = (route_xy[:-1] + route_xy[1:]) / 2.0
    speed = np.full(len(mids), float(np.median(net.edge_speed_mps)))
    cand = net.edge_candidates(mids, radius_m=2.0, max_per_point=1)
    speed[cand.point] = net.edge_speed_mps[cand.edge]
    tau = np.concatenate([[0.0], np.cumsum(seg / np.maximum(speed, 0.5))])
    tau = tau + 1e-9 * np.arange(len(tau))  # strictly increasing for the inverse look-up
    cum_s = cum + 1e-9 * np.arange(len(cum))
    tau_a = np.interp(a_m, cum_s, tau)
    tau_q = np.interp(q, a_t, tau_a)
    return point_at_distance(route_xy, cum, np.interp(tau_q, tau, cum))


def _emission_with_records(obs_xy: np.ndarray, obs_t: np.ndarray, sigma_m: float, evidence: RecordEvidence):
    """The snapping HMM's emission: the drawn point's Gaussian plus the records nearest in time to it."""
    # each record joins the route point nearest its time (records outside the drawn span join its ends)
    if len(obs_t) == 1:
        nearest = np.zeros(len(evidence.t), dtype=np.int64)
    else:
        after = np.clip(np.searchsorted(obs_t, evidence.t), 1, len(obs_t) - 1)
        nearest = after - (evidence.t - obs_t[after - 1] < obs_t[after] - evidence.t)

    def log_emission(point_idx: np.ndarray, cand_xy: np.ndarray) -> np.ndarray:
        d2 = ((cand_xy - obs_xy[point_idx][:, None, :]) ** 2).sum(axis=-1)
        out = -0.5 * d2 / sigma_m**2
        row_of = np.full(len(obs_t), -1, dtype=np.int64)
        row_of[point_idx] = np.arange(len(point_idx))
        r = row_of[nearest]
        ok = np.nonzero(r >= 0)[0]
        if len(ok):
            np.add.at(out, r[ok], evidence.log_likelihood(ok, cand_xy[r[ok]]))
        return out

    return log_emission


def snap_route(
    net: RoadNetwork,
    route_xy: np.ndarray,
    route_t: np.ndarray,
    anchor_idx: np.ndarray,
    eval_t: np.ndarray,
    mpp: float,
    sigma_m: float | None = None,
    speed_weighted: bool = True,
    evidence: RecordEvidence | None = None,
) -> tuple[np.ndarray, np.ndarray, str, list[str]]:
    """Snap a timed route (metres) to the road graph and place positions at ``eval_t``.

    Uses ``ml.mapmatch.match_trajectory`` (HMM) on route points every ~ one pixel with the
    anchors as time references; positions between anchors follow the matched route, spread by
    expected travel time (``speed_weighted``, see :func:`interpolate_by_travel_time`) or by
    length. ``evidence``: the window's records, whose weighted log-likelihoods join the emission of the
    route point nearest each record's time. Returns
    ``(xy (n_eval, 2), matched route (m, 2), method, issues)``.
    """
    issues: list[str] = []
    anchor_t = route_t[anchor_idx]
    sigma = float(sigma_m) if sigma_m is not None else max(HEAD_SIGMA_PX * mpp, 5.0)
    idx = _resample_with_anchors(route_xy, route_t, anchor_idx, step=max(mpp, 10.0))
    obs_xy, obs_t = route_xy[idx], route_t[idx]
    # observation times must increase strictly: nudge ties (standing still between frames)
    obs_t = obs_t + 1e-6 * np.arange(len(obs_t))
    # an error here is a bug, not a poor sample (points without candidates come back unmatched): it is raised
    log_emission = None
    if evidence is not None and len(evidence) and evidence.weight > 0:
        log_emission = _emission_with_records(obs_xy, obs_t, sigma, evidence)
    res = match_trajectory(net, obs_xy, obs_t, sigma_m=sigma, beta_m=max(2.0 * mpp, 30.0),
                           radius_m=max(3.0 * sigma, 2.0 * mpp, 25.0), log_emission=log_emission)
    pos_in_obs = np.searchsorted(idx, anchor_idx)
    a_m = res.point_route_m[pos_in_obs]
    if res.n_unmatched:
        issues.append(f"map matching left {res.n_unmatched} of {len(idx)} route points unmatched")
    if not np.isfinite(a_m).any() or len(res.route_xy) == 0:
        issues.append("map matching matched no anchor; positions left unsnapped")
        return _positions_at(route_xy, route_t, eval_t), route_xy, "none", issues
    if speed_weighted:
        xy = interpolate_by_travel_time(net, res.route_xy, res.route_cum_m, a_m, anchor_t, eval_t)
    else:
        xy = interpolate_along_route(res.route_xy, res.route_cum_m, a_m, anchor_t, eval_t)
    return xy, res.route_xy, "hmm", issues


def decode_video_to_trajectory(
    video: np.ndarray,
    tile: Tile,
    resolution: int | None,
    duration_s: float,
    net: RoadNetwork | None,
    eval_t: np.ndarray,
    snap: bool = True,
    sigma_m: float | None = None,
    speed_weighted: bool = True,
    layer: np.ndarray | None = None,
    evidence: RecordEvidence | None = None,
) -> DecodedTrajectory:
    """Decode a video of the window ``[0, duration_s]`` into positions at ``eval_t`` (seconds).

    Args:
        video: uint8 ``(K, H, W, 3)`` or float (model space accepted, see ``as_video_255``).
        tile: the window's georeference.
        resolution: image side in pixels (default: the video's width).
        duration_s: the window length W; frame ``k`` shows time ``k * W / (K - 1)``.
        net: road network for snapping (``None`` or ``snap=False``: unsnapped).
        eval_t: ``(n,)`` evaluation times in seconds since the window start.
        snap: snap the route to the road graph (HMM engine).
        sigma_m: snapping emission sigma (default ``max(HEAD_SIGMA_PX * metres per pixel, 5 m)``).
        speed_weighted: after snapping, spread time between anchors by the roads' expected
            travel time instead of by length.
        layer: the generated drawing layer (uint8 ``(K, H, W, 2)``) when the model has one: heads and
            the path are then read from it directly (``decode_heads_from_layer``), not from colours.
        evidence: the window's records under the city's observation model, read by the snapping HMM
            beside the drawing (:func:`snap_route`); ``None``: the drawing alone.
    """
    V = as_video_255(video)
    K, H, W, _ = V.shape
    res = int(resolution or W)
    eval_t = np.atleast_1d(np.asarray(eval_t, dtype=np.float64))
    anchors_t = np.linspace(0.0, float(duration_s), K) if K > 1 else np.zeros(1)
    mpp = tile.metres_per_pixel(res)
    heads = decode_heads(V) if layer is None else decode_heads_from_layer(layer)
    missing = ~np.isfinite(heads.xy).all(axis=1)
    n_missing = int(missing.sum())
    issues: list[str] = []
    anchors_xy = np.full((K, 2), np.nan)
    if (~missing).any():
        anchors_xy[~missing] = tile.pixel_to_xy(heads.xy[~missing], res)
    nan_xy = np.full((len(eval_t), 2), np.nan)
    if n_missing == K:
        issues.append(f"no head dot decoded in any of the {K} frames")
        return DecodedTrajectory(nan_xy, anchors_xy, anchors_t, issues, n_missing, nan_xy.copy())
    if n_missing:
        issues.append(f"head dot missing in {n_missing} of {K} frames: {np.nonzero(missing)[0].tolist()}")
        if missing[0] or missing[-1]:
            issues.append("first or last frame has no dot: positions held beyond the decoded frames")
    border = np.nonzero(heads.touches_border & ~missing)[0]
    if len(border):
        issues.append(f"head dot touches the tile border in frames {border.tolist()} (path may leave the tile)")
    many = np.nonzero(heads.n_components > 1)[0]
    if len(many):
        issues.append(f"several blue blobs in frames {many.tolist()}: the strongest was kept")
    last_mask = decode_path_mask(V[-1]) if layer is None else decode_path_mask_from_layer(np.asarray(layer)[-1])
    skel = skeletonize_path(last_mask)
    from ml.render.config import RenderConfig

    gap = max(3.0, 2.0 * RenderConfig().head_radius(res))
    route_px, route_t, anchor_idx, more = pixel_route(heads.xy, anchors_t, skel, gap)
    issues += more
    route_xy = tile.pixel_to_xy(route_px, res)
    xy_un = _positions_at(route_xy, route_t, eval_t) if len(route_xy) > 1 else np.repeat(route_xy, len(eval_t), axis=0)
    out = DecodedTrajectory(xy_un.copy(), anchors_xy, anchors_t, issues, n_missing, xy_un, route_xy)
    if snap and net is not None:
        if len(anchor_idx) < 2:
            cand = net.edge_candidates(xy_un, radius_m=max(2.0 * mpp, 25.0), max_per_point=1)
            out.xy[cand.point] = cand.xy
            out.snapped, out.snap_method = True, "nearest_road"
            out.issues.append("a single anchor: position projected on the nearest road")
        else:
            xy, rxy, method, more = snap_route(net, route_xy, route_t, anchor_idx, eval_t, mpp, sigma_m, speed_weighted,
                                              evidence)
            out.xy, out.route_xy, out.snap_method = xy, rxy, method
            out.snapped = method != "none"
            out.issues += more
    return out
