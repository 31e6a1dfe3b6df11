"""HMM map matching (Newson & Krumm 2009 style) on a ``RoadNetwork``, vectorised per step.

Model
-----
* States at observation ``k``: up to ``max_candidates`` road positions (edge, offset) within
  ``radius_m`` of the observed point (``RoadNetwork.edge_candidates``).
* Emission: Gaussian on the point-to-road distance, ``log p = -0.5 (d / sigma)^2``.
* Transition: exponential on ``|route distance - straight-line distance between the
  observations|``, ``log p = -|r - g| / beta``. Route distances between the candidate sets of
  two consecutive observations come from one bounded scipy Dijkstra call per step (all sources
  at once: the end nodes of the previous candidates' edges), plus the tail/head parts of the
  two edges; a forward move along the same edge costs ``o2 - o1`` (a backward move smaller than
  ``backward_tol_m`` counts as standing still, larger ones must go around the block).
* Speed pruning: with ``max_speed_mps`` a transition whose route distance exceeds
  ``max_speed_mps * dt + speed_slack_m`` is removed. The Dijkstra search is bounded by the same
  figure, or (without a max speed) by ``route_factor * g + 2 radius + 50 m``.
* When every transition into a step is impossible (an HMM break) the chain is cut: the segment
  so far is decoded and Viterbi restarts from the emission probabilities. Consecutive segments
  are joined by an unbounded shortest path so the route stays continuous. Points without any
  candidate (or with NaN coordinates) are skipped and reported as unmatched.

The matched route is the concatenation of the shortest paths between consecutive matched
positions; each matched point gets its distance along that route, so callers can place
positions at other times with :func:`ml.mapmatch.interpolate_along_route`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse.csgraph import dijkstra

from ml.cities.network import RoadNetwork
from ml.mapmatch.route import edge_subline, interpolate_along_route, polyline_cum_m

_NEG = -np.inf


@dataclass
class MatchResult:
    """Outcome of :func:`match_trajectory` (all coordinates in projected metres)."""

    point_edge: np.ndarray  # (n,) int64 matched edge, -1 where unmatched
    point_offset_m: np.ndarray  # (n,) offset from the edge's start node, NaN where unmatched
    point_xy: np.ndarray  # (n, 2) snapped position, NaN rows where unmatched
    route_xy: np.ndarray  # (m, 2) polyline of the whole matched route
    route_cum_m: np.ndarray  # (m,) cumulative length along route_xy
    point_route_m: np.ndarray  # (n,) each point's distance along route_xy, NaN where unmatched
    n_breaks: int  # HMM breaks handled by restarting Viterbi
    n_unmatched: int  # points without any candidate (or with non-finite coordinates)

    @property
    def matched(self) -> np.ndarray:
        """Boolean mask of matched points."""
        return self.point_edge >= 0

    @property
    def route_length_m(self) -> float:
        return float(self.route_cum_m[-1]) if len(self.route_cum_m) else 0.0

    def positions_at(self, t: np.ndarray, query_t: np.ndarray) -> np.ndarray:
        """Positions at ``query_t`` along the matched route, anchored at the points' times ``t``."""
        return interpolate_along_route(self.route_xy, self.route_cum_m, self.point_route_m, t, query_t)


def _empty_result(n: int) -> MatchResult:
    return MatchResult(
        point_edge=np.full(n, -1, dtype=np.int64),
        point_offset_m=np.full(n, np.nan),
        point_xy=np.full((n, 2), np.nan),
        route_xy=np.zeros((0, 2)),
        route_cum_m=np.zeros(0),
        point_route_m=np.full(n, np.nan),
        n_breaks=0,
        n_unmatched=n,
    )


@dataclass
class _Step:
    """Per-step record kept for backtracking and route reconstruction."""

    back: np.ndarray  # (Kb,) index into previous candidates, -1 at a break
    src: np.ndarray  # (S,) Dijkstra source nodes
    row_of_prev: np.ndarray  # (Ka,) row in src of each previous candidate's end node
    pred_rows: np.ndarray  # sparse predecessor storage: row index
    pred_nodes: np.ndarray  # node index
    pred_vals: np.ndarray  # predecessor of that node


def match_trajectory(
    net: RoadNetwork,
    xy: np.ndarray,
    t: np.ndarray,
    sigma_m: float,
    beta_m: float = 50.0,
    max_speed_mps: float | None = None,
    radius_m: float | None = None,
    max_candidates: int = 8,
    *,
    speed_slack_m: float | None = None,
    backward_tol_m: float | None = None,
    route_factor: float = 3.0,
) -> MatchResult:
    """Map-match observed positions ``xy`` (n, 2) at times ``t`` (n,) seconds onto ``net``.

    Parameters
    ----------
    sigma_m: emission standard deviation (GPS noise, or a cell-sized figure for towers).
    beta_m: scale of the exponential transition on ``|route - straight line|``.
    max_speed_mps: optional speed pruning of transitions (route distance / dt).
    radius_m: candidate search radius (default ``max(3 sigma, 25 m)``).
    max_candidates: at most this many candidate edges per point (nearest first).
    speed_slack_m: distance added to ``max_speed_mps * dt`` before pruning (default
        ``2 sigma``: the candidates, not the true positions, are what is compared).
    backward_tol_m: a backward move along the same edge up to this size is treated as standing
        still (default ``sigma``).
    route_factor: without ``max_speed_mps``, Dijkstra is bounded by ``route_factor`` times the
        straight-line distance (plus ``2 radius + 50 m``); longer routes are impossible.

    Times must be non-decreasing. Rows with non-finite coordinates count as unmatched.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    n = len(xy)
    if len(t) != n:
        raise ValueError(f"match_trajectory: xy has {n} rows but t has {len(t)}")
    if n and np.any(np.diff(t) < 0):
        raise ValueError("match_trajectory: t must be non-decreasing")
    if not sigma_m > 0 or not beta_m > 0:
        raise ValueError(f"match_trajectory: sigma_m ({sigma_m}) and beta_m ({beta_m}) must be > 0")
    if n == 0 or net.n_edges == 0:
        return _empty_result(n)
    radius = float(radius_m) if radius_m is not None else max(3.0 * sigma_m, 25.0)
    slack = float(speed_slack_m) if speed_slack_m is not None else 2.0 * sigma_m
    back_tol = float(backward_tol_m) if backward_tol_m is not None else float(sigma_m)

    finite = np.isfinite(xy).all(axis=1)
    valid_idx = np.nonzero(finite)[0]
    c = net.edge_candidates(xy[valid_idx], radius, max_candidates)
    cpoint = valid_idx[c.point]  # candidate -> original point index (sorted)
    matched_pts = np.unique(cpoint)
    if len(matched_pts) == 0:
        return _empty_result(n)
    starts = np.searchsorted(cpoint, matched_pts, side="left")
    ends = np.searchsorted(cpoint, matched_pts, side="right")
    log_emit = -0.5 * (c.distance_m / sigma_m) ** 2

    adj = net.adjacency_length
    e_u, e_v, e_len = net.edge_u, net.edge_v, net.edge_length_m

    P = len(matched_pts)
    steps: list[_Step | None] = [None] * P
    score = log_emit[starts[0] : ends[0]].copy()
    n_breaks = 0
    seg_end_score: dict[int, np.ndarray] = {}  # final scores of segments cut by a break
    for k in range(1, P):
        a0, a1, b0, b1 = starts[k - 1], ends[k - 1], starts[k], ends[k]
        ea, oa = c.edge[a0:a1], c.offset_m[a0:a1]
        eb, ob = c.edge[b0:b1], c.offset_m[b0:b1]
        pa, pb = matched_pts[k - 1], matched_pts[k]
        g = float(np.hypot(*(xy[pb] - xy[pa])))
        dt = max(float(t[pb] - t[pa]), 0.0)
        if max_speed_mps is not None:
            limit = max_speed_mps * dt + slack
        else:
            limit = route_factor * g + 2.0 * radius + 50.0
        src, row_of_prev = np.unique(e_v[ea], return_inverse=True)
        dist, pred = dijkstra(adj, directed=True, indices=src, return_predecessors=True, limit=limit)
        D = dist[row_of_prev][:, e_u[eb]]  # (Ka, Kb) node-to-node part
        R = (e_len[ea] - oa)[:, None] + D + ob[None, :]
        same = (ea[:, None] == eb[None, :]) & (ob[None, :] >= oa[:, None] - back_tol)
        R = np.where(same, np.maximum(ob[None, :] - oa[:, None], 0.0), R)
        feasible = np.isfinite(R)
        if max_speed_mps is not None:
            feasible &= R <= max_speed_mps * dt + slack
        else:
            feasible &= R <= limit + e_len[ea][:, None]  # D itself is bounded by the search
        logT = np.where(feasible, -np.abs(R - g) / beta_m, _NEG)
        total = score[:, None] + logT
        back = np.argmax(total, axis=0)
        best = total[back, np.arange(len(eb))]
        # sparse predecessor storage, restricted to nodes no farther than the longest used D
        used_D = np.where(feasible & ~same, D, _NEG)
        dmax = used_D.max() if used_D.size else _NEG
        if np.isfinite(dmax):
            rr, nn = np.nonzero(dist <= dmax)
            pv = pred[rr, nn]
        else:
            rr = nn = pv = np.zeros(0, dtype=np.int64)
        if not np.isfinite(best).any():
            n_breaks += 1
            seg_end_score[k - 1] = score.copy()
            back = np.full(len(eb), -1, dtype=np.int64)
            score = log_emit[b0:b1].copy()
        else:
            score = best + log_emit[b0:b1]
            back = np.where(np.isfinite(best), back, -1)
        score -= score[np.isfinite(score)].max()
        steps[k] = _Step(back, src, row_of_prev, rr, nn, pv)

    # ---- backtrack (a segment ends where the next step is a break)
    choice = np.zeros(P, dtype=np.int64)  # local candidate index per matched point
    j = int(np.argmax(score))
    for k in range(P - 1, -1, -1):
        choice[k] = j
        if k == 0:
            break
        jb = int(steps[k].back[j])
        j = jb if jb >= 0 else int(np.argmax(seg_end_score[k - 1]))
    gidx = starts + choice
    pe, po, pxy = c.edge[gidx], c.offset_m[gidx], c.xy[gidx]

    route_xy, point_route_idx = _build_route(net, steps, choice, pe, po, pxy, back_tol)
    out = _empty_result(n)
    out.point_edge[matched_pts] = pe
    out.point_offset_m[matched_pts] = po
    out.point_xy[matched_pts] = pxy
    out.route_xy = route_xy
    out.route_cum_m = polyline_cum_m(route_xy)
    out.point_route_m[matched_pts] = out.route_cum_m[point_route_idx]
    out.n_breaks = n_breaks
    out.n_unmatched = int(n - P)
    return out


def _walk(pred: np.ndarray, target: int) -> list[int] | None:
    """Node path ending at ``target`` from a dense predecessor row (None if unreachable)."""
    path = [int(target)]
    while pred[path[-1]] >= 0:
        path.append(int(pred[path[-1]]))
        if len(path) > len(pred):  # corrupted predecessor data; never expected
            return None
    return path[::-1]


def _build_route(
    net: RoadNetwork,
    steps: list[_Step | None],
    choice: np.ndarray,
    pe: np.ndarray,
    po: np.ndarray,
    pxy: np.ndarray,
    back_tol: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate the road geometry between consecutive matched positions.

    Returns the route polyline and, for each matched point, the index of its vertex in it.
    """
    P = len(pe)
    e_u, e_v, e_len = net.edge_u, net.edge_v, net.edge_length_m
    pred_full = np.full(net.n_nodes, -9999, dtype=np.int64)
    pieces: list[np.ndarray] = [pxy[0:1]]
    count = 1
    idx = np.zeros(P, dtype=np.int64)
    cur_o = float(po[0])
    for k in range(1, P):
        ea, eb, oa, ob = int(pe[k - 1]), int(pe[k]), float(po[k - 1]), float(po[k])
        if ea == eb and ob >= oa - back_tol:
            if ob > cur_o:
                piece = edge_subline(net.edge_geometry(eb), e_len[eb], cur_o, ob)[1:]
                cur_o = ob
            else:
                piece = np.zeros((0, 2))
        else:
            src, dst = int(e_v[ea]), int(e_u[eb])
            st = steps[k]
            nodes = None
            if st is not None and st.back[choice[k]] >= 0:
                row = st.row_of_prev[choice[k - 1]]
                m = st.pred_rows == row
                pred_full[st.pred_nodes[m]] = st.pred_vals[m]
                nodes = _walk(pred_full, dst)
                pred_full[st.pred_nodes[m]] = -9999
                if nodes is not None and nodes[0] != src:
                    nodes = None
            if nodes is None:  # HMM break (or missing data): join by an unbounded shortest path
                _, pred = net.shortest_paths_from(np.array([src]))
                nodes = _walk(pred[0], dst)
            if nodes is None or nodes[0] != src:  # disconnected graph: straight jump
                mid = np.vstack([net.node_xy[src], net.node_xy[dst]])
            else:
                mid = net.path_polyline(nodes)
            tail = edge_subline(net.edge_geometry(ea), e_len[ea], cur_o, e_len[ea])
            head = edge_subline(net.edge_geometry(eb), e_len[eb], 0.0, ob)
            piece = np.vstack([tail, mid, head])[1:]
            cur_o = ob
        if len(piece):
            pieces.append(piece)
            count += len(piece)
        idx[k] = count - 1
    return np.vstack(pieces), idx
