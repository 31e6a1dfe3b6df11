"""HMM map matching (Newson & Krumm 2009 style) on a ``RoadNetwork``, vectorised over all steps.

Model
-----
* States at observation ``k``: up to ``max_candidates`` road positions (edge, offset) within
  ``radius_m`` of the observed point (``RoadNetwork.edge_candidates``; computed by
  :mod:`ml.mapmatch.candidates`, same result, kept in the network's candidate memo).
* Emission: Gaussian on the point-to-road distance, ``log p = -0.5 (d / sigma)^2``.
* Transition: exponential on ``|route distance - straight-line distance between the
  observations|``, ``log p = -|r - g| / beta``. Route distances between the candidate sets of
  two consecutive observations are node-to-node distances from the end nodes of the previous
  candidates' edges to the start nodes of the next ones, plus the tail/head parts of the two
  edges; a forward move along the same edge costs ``o2 - o1`` (a backward move smaller than
  ``backward_tol_m`` counts as standing still, larger ones must go around the block). The
  node-to-node distances come from the network's OD table (:mod:`ml.mapmatch.od`, built once
  per network), for all steps in one batch; a step whose bound exceeds a bounded table's
  ``delta_m`` (or every step, with ``od=False``) runs a bounded scipy Dijkstra instead.
* Speed pruning: with ``max_speed_mps`` a transition whose route distance exceeds
  ``max_speed_mps * dt + speed_slack_m`` is removed. Without a max speed, distances are bounded
  by ``route_factor * g + 2 radius + 50 m``.
* When every transition into a step is impossible (an HMM break) the chain is cut: the segment
  so far is decoded and Viterbi restarts from the emission probabilities. Consecutive segments
  are joined by an unbounded shortest path so the route stays continuous. Points without any
  candidate (or with NaN coordinates) are skipped and reported as unmatched.

The matched route is the concatenation of the shortest paths between consecutive matched
positions; each matched point gets its distance along that route, so callers can place
positions at other times with :func:`ml.mapmatch.interpolate_along_route`. The OD table, the
candidate memo and the batching change the cost, not the result: outputs are those of the
per-step search (``tests/test_mapmatch_od.py``).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable
from itertools import chain
from dataclasses import dataclass

import numpy as np
from scipy.sparse.csgraph import dijkstra

from ml.cities.network import RoadNetwork
from ml.mapmatch.candidates import ROW_DIST, ROW_EDGE, ROW_OFFSET, ROW_TAIL, ROW_U, ROW_V, ROW_X, ROW_Y, candidate_memo
from ml.mapmatch.netcache import cached
from ml.mapmatch.od import ODTable, od_table_for
from ml.mapmatch.route import interpolate_along_route, polyline_cum_m

_NEG = -np.inf
_PAD_ROW = np.array([0.0, 0.0, np.nan, np.nan, np.inf, 0.0, 0.0, 0.0])  # a candidate that is never used


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
class _Search:
    """Predecessor data of a step whose distances came from a per-step Dijkstra (no OD table)."""

    src: np.ndarray  # (S,) Dijkstra source nodes
    row_of_prev: np.ndarray  # (Ka,) row in src of each previous candidate's end node
    pred_rows: np.ndarray  # sparse predecessor storage: row index
    pred_nodes: np.ndarray  # node index
    pred_vals: np.ndarray  # predecessor of that node


def _search_step(net: RoadNetwork, ea: np.ndarray, eb: np.ndarray, limit: float) -> tuple[np.ndarray, _Search]:
    """Node-to-node distances ``(Ka, Kb)`` of one step by a bounded Dijkstra from the previous
    candidates' end nodes (all sources at once), with the predecessors the route needs."""
    src, row_of_prev = np.unique(net.edge_v[ea], return_inverse=True)
    dist, pred = dijkstra(net.adjacency_length, directed=True, indices=src, return_predecessors=True, limit=limit)
    D = dist[row_of_prev][:, net.edge_u[eb]]
    # sparse predecessor storage, restricted to nodes no farther than the longest finite D
    fin = D[np.isfinite(D)]
    if fin.size:
        rr, nn = np.nonzero(dist <= fin.max())
        pv = pred[rr, nn]
    else:
        rr = nn = pv = np.zeros(0, dtype=np.int64)
    return D, _Search(src, row_of_prev, rr, nn, pv)


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
    od: ODTable | bool = True,
    log_emission: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
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
    od: where route distances come from. ``True`` (default): the network's cached
        :class:`ml.mapmatch.od.ODTable` (built on first use, reused by every later call), all
        steps' transitions computed in one batch; steps whose bound exceeds the table's
        ``delta_m`` fall back to a bounded Dijkstra. ``False``: a bounded Dijkstra per step
        (the engine before the table; same model, kept for comparison). An ``ODTable``: that one.
    log_emission: replaces the Gaussian emission: called with the indices of the points that have
        candidates ``(P,)`` and the candidates' positions ``(P, K, 2)`` (NaN rows are padding), it
        returns their log emission ``(P, K)`` (a learned observation model's likelihood). Candidates
        are still the nearest edges within ``radius_m`` of ``xy``.

    Times must be non-decreasing. Rows with non-finite coordinates count as unmatched.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    n = len(xy)
    if len(t) != n:
        raise ValueError(f"match_trajectory: xy has {n} rows but t has {len(t)}")
    if n > 1 and (t[1:] < t[:-1]).any():
        raise ValueError("match_trajectory: t must be non-decreasing")
    if not sigma_m > 0 or not beta_m > 0:
        raise ValueError(f"match_trajectory: sigma_m ({sigma_m}) and beta_m ({beta_m}) must be > 0")
    if isinstance(od, ODTable) and od.n_nodes != net.n_nodes:
        raise ValueError(f"match_trajectory: od table has {od.n_nodes} nodes, network {net.n_nodes}")
    if n == 0 or net.n_edges == 0:
        return _empty_result(n)
    radius = float(radius_m) if radius_m is not None else max(3.0 * sigma_m, 25.0)
    slack = float(speed_slack_m) if speed_slack_m is not None else 2.0 * sigma_m
    back_tol = float(backward_tol_m) if backward_tol_m is not None else float(sigma_m)

    finite = np.isfinite(xy).all(axis=1)
    valid_idx = np.arange(n) if finite.all() else np.nonzero(finite)[0]
    rows = candidate_memo(net).rows(net, xy[valid_idx] if len(valid_idx) < n else xy, radius, max_candidates)
    keep = [i for i, r in enumerate(rows) if len(r)]
    P = len(keep)
    if P == 0:
        return _empty_result(n)
    matched_pts = valid_idx[keep] if P < len(rows) else valid_idx

    # ---- candidates padded to (P, K); pads have distance inf, so log_emit -inf: no path goes through them
    K = max(len(rows[i]) for i in keep)
    C = np.empty((P, K, 8))
    C[:] = _PAD_ROW
    for j, i in enumerate(keep):
        r = rows[i]
        C[j, :len(r)] = r
    E = C[:, :, ROW_EDGE].astype(np.int64)
    O = C[:, :, ROW_OFFSET]
    if log_emission is None:
        LE = -0.5 * (C[:, :, ROW_DIST] / sigma_m) ** 2
    else:
        pad = ~np.isfinite(C[:, :, ROW_DIST])
        LE = np.asarray(log_emission(matched_pts, C[:, :, ROW_X:ROW_Y + 1]), dtype=np.float64)
        LE = np.where(pad | ~np.isfinite(LE), _NEG, LE)
    counts = [len(rows[i]) for i in keep]

    pxy, pt = xy[matched_pts], t[matched_pts]
    dxy = pxy[1:] - pxy[:-1]
    g = np.hypot(dxy[:, 0], dxy[:, 1])  # (P-1,) straight line between consecutive points
    dt = np.maximum(pt[1:] - pt[:-1], 0.0)
    if max_speed_mps is not None:
        limit = max_speed_mps * dt + slack
    else:
        limit = route_factor * g + 2.0 * radius + 50.0

    # ---- transitions of every step at once (table), or per step (search); arrays are laid out
    # (step, to-candidate, from-candidate) so the Viterbi reductions run along contiguous rows
    table = od if isinstance(od, ODTable) else (od_table_for(net) if od else None)
    ea, oa, eb, ob = E[:-1], O[:-1], E[1:], O[1:]
    va, ub = C[:-1, :, ROW_V].astype(np.int64), C[1:, :, ROW_U].astype(np.int64)  # end / start nodes
    searched: dict[int, _Search] = {}
    if table is not None and (table.dense or (limit <= table.delta_m).all()):
        D = table.distances(va[:, None, :], ub[:, :, None])
        if max_speed_mps is None:  # with a max speed, R <= limit below already implies D <= limit
            D = np.where(D <= limit[:, None, None], D, np.inf)  # the search's bound
    else:
        D = np.full((P - 1, K, K), np.inf)
        by_table = np.zeros(P - 1, dtype=bool) if table is None else (limit <= table.delta_m)
        if by_table.any():
            st = np.nonzero(by_table)[0]
            Dt = table.distances(va[st][:, None, :], ub[st][:, :, None])
            D[st] = np.where(Dt <= limit[st, None, None], Dt, np.inf)
        for k in np.nonzero(~by_table)[0]:
            ka, kb = int(counts[k]), int(counts[k + 1])
            Dk, searched[int(k) + 1] = _search_step(net, ea[k, :ka], eb[k, :kb], float(limit[k]))
            D[k, :kb, :ka] = Dk.T
    oa3, ob3 = oa[:, None, :], ob[:, :, None]
    R = C[:-1, None, :, ROW_TAIL] + D + ob3  # tail of the previous edge + node-to-node + head
    same = (ea[:, None, :] == eb[:, :, None]) & (ob3 >= oa3 - back_tol)
    R = np.where(same, np.maximum(ob3 - oa3, 0.0), R)
    if max_speed_mps is not None:
        feasible = R <= limit[:, None, None]  # inf fails too
    else:
        feasible = R <= limit[:, None, None] + net.edge_length_m[ea][:, None, :]  # D itself is bounded by the search
    logT = np.where(feasible, -np.abs(R - g[:, None, None]) / beta_m, _NEG)

    # ---- Viterbi (a break restarts from the emissions)
    vp = viterbi(LE, logT)
    choice, linked, n_breaks = vp.states, vp.linked, vp.n_breaks
    pick = C[np.arange(P), choice]
    pe, po, pxy = E[np.arange(P), choice], pick[:, ROW_OFFSET], pick[:, ROW_X:ROW_Y + 1]

    route_xy, point_route_idx = _build_route(net, table, searched, linked, choice, pe, po, pxy, back_tol)
    route_cum = polyline_cum_m(route_xy)
    if P == n:  # every point matched (the usual case): no scatter into NaN-filled arrays
        return MatchResult(pe, po, pxy, route_xy, route_cum, route_cum[point_route_idx], n_breaks, 0)
    out = _empty_result(n)
    out.point_edge[matched_pts] = pe
    out.point_offset_m[matched_pts] = po
    out.point_xy[matched_pts] = pxy
    out.route_xy = route_xy
    out.route_cum_m = route_cum
    out.point_route_m[matched_pts] = route_cum[point_route_idx]
    out.n_breaks = n_breaks
    out.n_unmatched = int(n - P)
    return out


@dataclass
class ViterbiPath:
    """Outcome of :func:`viterbi`."""

    states: np.ndarray  # (T,) int64 most likely state at each step
    linked: np.ndarray  # (T,) bool: step k was reached from step k-1 by a transition (False at 0 and at breaks)
    n_breaks: int  # steps into which every transition was impossible (the chain restarted there)


def viterbi(
    log_emit: np.ndarray,
    log_trans: np.ndarray,
    pred: np.ndarray | None = None,
    step_trans: np.ndarray | None = None,
) -> ViterbiPath:
    """Most likely state sequence of an HMM, vectorised over the states of each step.

    The one Viterbi of the code base: the Newson-Krumm matcher above (dense transitions between
    the candidates of consecutive points) and the road-state HMMs of :mod:`ml.baselines.mr.hre`
    (sparse transitions to the states within reach, one matrix per mobility group) both call it.

    Parameters
    ----------
    log_emit: (T, S) log emission of every state at every step; ``-inf`` marks a state that is
        impossible at that step (e.g. padding). Every step needs at least one finite entry.
    log_trans: (M, S, K) log transition matrices, laid out by destination state:
        ``log_trans[m, s, k]`` is the log-probability of moving into state ``s`` from state
        ``pred[s, k]`` (dense when ``pred`` is None: from state ``k``, and ``K == S``);
        ``-inf`` is an impossible move (or padding in ``pred``).
    pred: (S, K) predecessor state indices, or None for dense transitions.
    step_trans: (T-1,) index into ``log_trans`` of the matrix each step ``k-1 -> k`` uses;
        default step ``k`` uses matrix ``k - 1`` (one matrix per step, ``M == T - 1``).

    Scores are renormalised to a maximum of 0 after every step. When every transition into a
    step is impossible (an HMM *break*) the chain is cut: Viterbi restarts from that step's
    emissions, and the backtrack continues into the previous segment from its best final state.
    Ties go to the lowest index (``argmax``).
    """
    log_emit = np.asarray(log_emit, dtype=np.float64)
    T, S = log_emit.shape
    top = log_emit.max(axis=1) if T else np.zeros(0)
    if not np.isfinite(top).all():
        k = int(np.nonzero(~np.isfinite(top))[0][0])
        raise ValueError(f"viterbi: step {k} has no state with a finite log emission")
    per_step = step_trans is None
    if per_step:
        if len(log_trans) != max(T - 1, 0):
            raise ValueError(f"viterbi: {len(log_trans)} transition matrices for {T} steps (need T - 1, or step_trans)")
        step_trans = np.arange(max(T - 1, 0))
    elif len(step_trans) != max(T - 1, 0):
        raise ValueError(f"viterbi: step_trans has {len(step_trans)} entries for {T} steps (need T - 1)")
    if T == 0:
        return ViterbiPath(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool), 0)
    dense = pred is None
    if dense and log_trans.shape[1:] != (S, S):
        raise ValueError(f"viterbi: dense transitions must be (M, {S}, {S}), got {log_trans.shape}")
    if not dense and (pred.shape[0] != S or log_trans.shape[1:] != pred.shape):
        raise ValueError(f"viterbi: pred {pred.shape} and log_trans {log_trans.shape} do not fit {S} states")

    norm = np.empty((T, S))  # normalised score of every state after each step
    norm[0] = log_emit[0] - top[0]
    score = norm[0]
    backs = np.full((T, S), -1, dtype=np.int64)  # predecessor of each state; -1: unreachable / break
    best = np.full((T, S), _NEG) if dense else None  # dense: back pointers for all steps at the end
    rows = np.arange(S)
    n_breaks = 0
    seg_end_score: dict[int, np.ndarray] = {}  # final scores of segments cut by a break
    for k in range(1, T):
        lt = log_trans[step_trans[k - 1]]
        if dense:
            sc = (lt + score).max(axis=1)
        else:
            cand = score[pred] + lt
            j = np.argmax(cand, axis=1)
            sc = cand[rows, j]
        sc += log_emit[k]
        m = sc.max()
        if m == _NEG:  # every transition into this step is impossible: a break
            n_breaks += 1
            seg_end_score[k - 1] = score
            np.subtract(log_emit[k], top[k], out=norm[k])
        else:
            if dense:
                best[k] = sc
            else:
                backs[k] = np.where(sc > _NEG, pred[rows, j], -1)
            np.subtract(sc, m, out=norm[k])
        score = norm[k]
    if dense and T > 1:
        lt_all = log_trans if per_step else log_trans[step_trans]
        backs[1:] = np.where(best[1:] > _NEG, (lt_all + norm[:-1, None, :]).argmax(axis=2), -1)

    back_l = backs.tolist()
    states_l = [0] * T
    j = int(np.argmax(score))
    for k in range(T - 1, -1, -1):
        states_l[k] = j
        if k == 0:
            break
        jb = back_l[k][j]
        j = jb if jb >= 0 else int(np.argmax(seg_end_score[k - 1]))
    states = np.asarray(states_l, dtype=np.int64)
    return ViterbiPath(states, backs[np.arange(T), states] >= 0, n_breaks)


def _walk(pred: np.ndarray, target: int) -> list[int] | None:
    """Node path ending at ``target`` from a dense predecessor row (None if unreachable)."""
    path = [int(target)]
    while pred[path[-1]] >= 0:
        path.append(int(pred[path[-1]]))
        if len(path) > len(pred):  # corrupted predecessor data; never expected
            return None
    return path[::-1]


class _RouteLists:
    """Per-network geometry as Python lists, so the route builder avoids numpy scalar access."""

    def __init__(self, net: RoadNetwork) -> None:
        self.offs = net.geom_offsets.tolist()
        self.gxy = [tuple(p) for p in net.geom_xy.tolist()]
        self.elen = net.edge_length_m.tolist()
        self.eu = net.edge_u.tolist()
        self.ev = net.edge_v.tolist()
        self.node_xy = [tuple(p) for p in net.node_xy.tolist()]
        self.lookup = net.edge_lookup
        self._cum: dict[int, tuple[list[float], list[float], list[float]]] = {}
        self._geom_xy = net.geom_xy

    def polyline(self, e: int) -> tuple[list[float], list[float], list[float]]:
        """``(cumulative length, xs, ys)`` of edge ``e``'s polyline (the length from ``polyline_cum_m``)."""
        hit = self._cum.get(e)
        if hit is None:
            g = self._geom_xy[self.offs[e]:self.offs[e + 1]]
            hit = (polyline_cum_m(g).tolist(), g[:, 0].tolist(), g[:, 1].tolist())
            self._cum[e] = hit
        return hit


def _interp(x: float, xp: list[float], fp: list[float]) -> float:
    """``np.interp`` for one query point on increasing ``xp``, in plain floats (same arithmetic)."""
    if x >= xp[-1]:
        return fp[-1]
    if x < xp[0]:
        return fp[0]
    j = bisect_right(xp, x) - 1
    slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])
    r = slope * (x - xp[j]) + fp[j]
    if r != r:  # nan: numpy tries from the other end, then the flat value
        r = slope * (x - xp[j + 1]) + fp[j + 1]
        if r != r and fp[j] == fp[j + 1]:
            r = fp[j]
    return r


def _subline_points(rl: "_RouteLists", e: int, o1: float, o2: float) -> list[tuple[float, float]]:
    """``edge_subline`` of a polyline edge as a list of points (plain floats, same arithmetic)."""
    cum, xs, ys = rl.polyline(e)
    L = rl.elen[e]
    total = cum[-1]
    scale = total / L if L > 0 else 0.0
    s1 = min(max(o1 * scale, 0.0), total)
    s2 = min(max(o2 * scale, s1), total)
    out = [(_interp(s1, cum, xs), _interp(s1, cum, ys))]
    out.extend((x, y) for c, x, y in zip(cum, xs, ys) if s1 < c < s2)
    out.append((_interp(s2, cum, xs), _interp(s2, cum, ys)))
    return out


def _route_lists(net: RoadNetwork) -> _RouteLists:
    return cached(net, "route_lists", _RouteLists)


def _sub_points(net: RoadNetwork, rl: _RouteLists, e: int, o1: float, o2: float, out: list) -> None:
    """Append the part of edge ``e`` between offsets ``o1 <= o2``, without its first point, to ``out``
    (``edge_subline`` semantics; straight edges in plain floats)."""
    g0, g1 = rl.offs[e], rl.offs[e + 1]
    L = rl.elen[e]
    if g1 - g0 == 2:
        x0, y0 = rl.gxy[g0]
        x1, y1 = rl.gxy[g0 + 1]
        dx, dy = x1 - x0, y1 - y0
        total = math.hypot(dx, dy)
        f = total / L / total if L > 0 and total > 0 else 0.0
        f1 = min(max(o1 * f, 0.0), 1.0)
        f2 = min(max(o2 * f, f1), 1.0)
        out.append((x0 + f2 * dx, y0 + f2 * dy))
        return
    out.extend(_subline_points(rl, e, o1, o2)[1:])


def _path_points(rl: _RouteLists, nodes: list[int], out: list) -> None:
    """Append the road geometry along a node path (``RoadNetwork.path_polyline``) to ``out``."""
    if len(nodes) < 2:
        out.append(rl.node_xy[nodes[0]])
        return
    lookup, offs, gxy = rl.lookup, rl.offs, rl.gxy
    e = lookup[(nodes[0], nodes[1])]
    out.extend(gxy[offs[e]:offs[e + 1]])
    for a, b in zip(nodes[1:-1], nodes[2:]):
        e = lookup[(a, b)]
        out.extend(gxy[offs[e] + 1:offs[e + 1]])


def _start_point(net: RoadNetwork, rl: _RouteLists, e: int, o2: float) -> tuple[float, float]:
    """First point of ``edge_subline(edge e, 0, o2)``: the edge start (clipped offset 0)."""
    g0 = rl.offs[e]
    if rl.offs[e + 1] - g0 == 2:
        return rl.gxy[g0]
    return _subline_points(rl, e, 0.0, o2)[0]


def _build_route(
    net: RoadNetwork,
    table: ODTable | None,
    searched: dict[int, _Search],
    linked: np.ndarray,
    choice: np.ndarray,
    pe: np.ndarray,
    po: np.ndarray,
    pxy: np.ndarray,
    back_tol: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate the road geometry between consecutive matched positions.

    The node path of a transition comes from the OD table, or from the step's own Dijkstra
    predecessors when it was searched; across a break (``linked`` false) an unbounded shortest
    path joins the segments. Returns the route polyline and, for each matched point, the index
    of its vertex in it.
    """
    P = len(pe)
    rl = _route_lists(net)
    pred_full = None
    dense_pred = table.dense_pred if table is not None else None
    pts: list = [tuple(pxy[0].tolist())]
    idx = np.zeros(P, dtype=np.int64)
    pe_l, po_l = pe.tolist(), po.tolist()
    cur_o = po_l[0]
    for k in range(1, P):
        ea, eb, oa, ob = pe_l[k - 1], pe_l[k], po_l[k - 1], po_l[k]
        if ea == eb and ob >= oa - back_tol:
            if ob > cur_o:
                _sub_points(net, rl, eb, cur_o, ob, pts)
                cur_o = ob
        else:
            src, dst = rl.ev[ea], rl.eu[eb]
            nodes = None
            if linked[k]:
                st = searched.get(k)
                if st is not None:
                    if pred_full is None:
                        pred_full = np.full(net.n_nodes, -9999, dtype=np.int64)
                    row = st.row_of_prev[choice[k - 1]]
                    m = st.pred_rows == row
                    pred_full[st.pred_nodes[m]] = st.pred_vals[m]
                    nodes = _walk(pred_full, dst)
                    pred_full[st.pred_nodes[m]] = -9999
                elif table is not None:
                    nodes = _walk(dense_pred[src], dst) if dense_pred is not None else table.path(src, dst)
                if nodes is not None and nodes[0] != src:
                    nodes = None
            if nodes is None:  # HMM break (or missing data): join by an unbounded shortest path
                if dense_pred is not None:
                    nodes = _walk(dense_pred[src], dst)
                else:
                    _, pred = net.shortest_paths_from(np.array([src]))
                    nodes = _walk(pred[0], dst)
            # tail of ea from cur_o, the path, head of eb up to ob (edge_subline keeps both ends)
            _sub_points(net, rl, ea, cur_o, rl.elen[ea], pts)
            if nodes is None or nodes[0] != src:  # disconnected graph: straight jump
                pts.append(rl.node_xy[src])
                pts.append(rl.node_xy[dst])
            else:
                _path_points(rl, nodes, pts)
            head_start = len(pts)
            pts.append(None)  # the head's first point (its start node), filled below
            _sub_points(net, rl, eb, 0.0, ob, pts)
            pts[head_start] = _start_point(net, rl, eb, ob)
            cur_o = ob
        idx[k] = len(pts) - 1
    return np.fromiter(chain.from_iterable(pts), dtype=np.float64, count=2 * len(pts)).reshape(-1, 2), idx

