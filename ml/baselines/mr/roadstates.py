"""Road states for the RSS HMMs: road polylines resampled every ``gamma`` metres, and their graph.

HRE's hidden states are points on the road network spaced about ``gamma`` metres apart (graph
nodes plus interior points on every street), connected along the streets. Two-way streets are
counted once and the state graph is undirected (one-way restrictions are not modelled, as in
the paper's road graph). Everything is vectorised over the network's flat arrays.

:func:`road_states` builds the states inside a bounding box; :func:`neighbour_table` gives, for
every state, the states reachable within a road distance (the HMM's sparse "K-hop"
transitions: with spacing gamma and reach R this is K = ceil(R / gamma) hops) as a padded
(S, K) table for a fully vectorised Viterbi.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra

from ml.cities.network import RoadNetwork


@dataclass
class RoadStates:
    """Resampled road points (``xy``) and the undirected graph along streets (``graph``, metres)."""

    xy: np.ndarray  # (S, 2)
    graph: sp.csr_matrix  # (S, S) symmetric, weight = road distance between adjacent states
    gamma_m: float

    @property
    def n(self) -> int:
        return len(self.xy)

    def subset(self, keep: np.ndarray) -> "RoadStates":
        """The states where ``keep`` is True, with the graph induced on them."""
        idx = np.nonzero(keep)[0]
        return RoadStates(self.xy[idx], self.graph[idx][:, idx].tocsr(), self.gamma_m)


def _edge_bboxes(net: RoadNetwork) -> np.ndarray:
    """(E, 4) xmin, ymin, xmax, ymax of each edge polyline."""
    starts = net.geom_offsets[:-1]
    mn = np.minimum.reduceat(net.geom_xy, starts, axis=0)
    mx = np.maximum.reduceat(net.geom_xy, starts, axis=0)
    return np.column_stack([mn, mx])


def road_states(net: RoadNetwork, gamma_m: float, bbox: tuple[float, float, float, float] | None = None) -> RoadStates:
    """Resample every street touching ``bbox`` (xmin, ymin, xmax, ymax; all if None) every ~``gamma_m``.

    Each street of length L gets ceil(L / gamma) equal steps between its end nodes, so states are
    at most ``gamma_m`` apart along roads and graph nodes are states (shared by their streets).
    """
    E = net.n_edges
    if E == 0:
        return RoadStates(np.zeros((0, 2)), sp.csr_matrix((0, 0)), gamma_m)
    # one directed edge per street (two-way streets appear twice)
    a, b = np.minimum(net.edge_u, net.edge_v), np.maximum(net.edge_u, net.edge_v)
    order = np.lexsort((net.edge_length_m, b, a))
    first = np.ones(E, dtype=bool)
    first[1:] = (a[order][1:] != a[order][:-1]) | (b[order][1:] != b[order][:-1])
    edges = np.sort(order[first])
    edges = edges[net.edge_u[edges] != net.edge_v[edges]]  # drop self-loops
    if bbox is not None:
        bb = _edge_bboxes(net)[edges]
        hit = (bb[:, 0] <= bbox[2]) & (bb[:, 2] >= bbox[0]) & (bb[:, 1] <= bbox[3]) & (bb[:, 3] >= bbox[1])
        edges = edges[hit]
    if len(edges) == 0:
        return RoadStates(np.zeros((0, 2)), sp.csr_matrix((0, 0)), gamma_m)

    # concatenated polylines of the selected edges with cumulative length per edge
    s0, s1 = net.geom_offsets[edges], net.geom_offsets[edges + 1]
    npts = s1 - s0
    rank_pt = np.repeat(np.arange(len(edges)), npts)
    pt_idx = np.repeat(s0 - np.concatenate([[0], np.cumsum(npts)[:-1]]), npts) + np.arange(npts.sum())
    P = net.geom_xy[pt_idx]
    seg = np.hypot(*np.diff(P, axis=0).T)
    seg[np.diff(rank_pt) != 0] = 0.0  # no segment across edges
    cum_all = np.concatenate([[0.0], np.cumsum(seg)])
    first_pt = np.concatenate([[0], np.cumsum(npts)[:-1]])
    cum = cum_all - cum_all[first_pt][rank_pt]
    L = cum[first_pt + npts - 1]
    L = np.maximum(L, 1e-6)
    nseg = np.maximum(1, np.ceil(L / gamma_m - 1e-9).astype(np.int64))

    # interior samples k = 1 .. nseg-1 at s = k * L / nseg
    n_int = nseg - 1
    rank_s = np.repeat(np.arange(len(edges)), n_int)
    k = np.arange(n_int.sum()) - np.repeat(np.concatenate([[0], np.cumsum(n_int)[:-1]]), n_int) + 1
    s = k * (L / nseg)[rank_s]
    big = float(L.max()) * 2.0 + 10.0
    key_pts = rank_pt * big + cum
    key_s = rank_s * big + s
    j = np.clip(np.searchsorted(key_pts, key_s, side="right") - 1, 0, len(P) - 2)
    span = np.maximum(key_pts[j + 1] - key_pts[j], 1e-12)
    w = np.clip((key_s - key_pts[j]) / span, 0.0, 1.0)
    interior_xy = P[j] + w[:, None] * (P[j + 1] - P[j])

    # state ids: end nodes first, then interior samples in edge order
    end_nodes = np.unique(np.concatenate([net.edge_u[edges], net.edge_v[edges]]))
    node_state = np.full(net.n_nodes, -1, dtype=np.int64)
    node_state[end_nodes] = np.arange(len(end_nodes))
    n_nodes = len(end_nodes)
    xy = np.vstack([net.node_xy[end_nodes], interior_xy])

    # chain per edge: u, interior..., v
    chain_len = nseg + 1
    chain_rank = np.repeat(np.arange(len(edges)), chain_len)
    pos = np.arange(chain_len.sum()) - np.repeat(np.concatenate([[0], np.cumsum(chain_len)[:-1]]), chain_len)
    int_start = n_nodes + np.concatenate([[0], np.cumsum(n_int)[:-1]])
    chain = int_start[chain_rank] + pos - 1
    chain[pos == 0] = node_state[net.edge_u[edges]]
    last = np.cumsum(chain_len) - 1
    chain[last] = node_state[net.edge_v[edges]]
    step = (L / nseg)[chain_rank]
    same = chain_rank[1:] == chain_rank[:-1]
    ia, ib, wd = chain[:-1][same], chain[1:][same], step[:-1][same]
    S = len(xy)
    # parallel streets between the same state pair: keep the shorter (a csr build would sum them)
    coo = sp.coo_matrix((np.concatenate([wd, wd]), (np.concatenate([ia, ib]), np.concatenate([ib, ia]))), shape=(S, S))
    o = np.lexsort((coo.data, coo.col, coo.row))
    r, c, d = coo.row[o], coo.col[o], coo.data[o]
    keep = np.ones(len(r), dtype=bool)
    keep[1:] = (r[1:] != r[:-1]) | (c[1:] != c[:-1])
    g = sp.csr_matrix((d[keep], (r[keep], c[keep])), shape=(S, S))
    return RoadStates(xy, g, float(gamma_m))


def neighbour_table(states: RoadStates, radius_m: float, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """States within road distance ``radius_m`` of each state (itself included).

    Returns ``(idx, dist)``, both (S, K) with K the largest neighbourhood; padding has
    ``idx = 0`` and ``dist = inf``. Bounded Dijkstra (scipy) in chunks of sources keeps memory
    at O(chunk * S).
    """
    S = states.n
    rows, cols, ds = [], [], []
    for lo in range(0, S, chunk):
        src = np.arange(lo, min(S, lo + chunk))
        dist = dijkstra(states.graph, directed=False, indices=src, limit=radius_m)
        r, c = np.nonzero(np.isfinite(dist))
        rows.append(src[r])
        cols.append(c)
        ds.append(dist[r, c])
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    d = np.concatenate(ds) if ds else np.zeros(0)
    counts = np.bincount(r, minlength=S)
    K = int(counts.max()) if S else 0
    order = np.lexsort((d, r))
    r, c, d = r[order], c[order], d[order]
    slot = np.arange(len(r)) - np.repeat(np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    idx = np.zeros((S, K), dtype=np.int64)
    dist = np.full((S, K), np.inf)
    idx[r, slot] = c
    dist[r, slot] = d
    return idx, dist
