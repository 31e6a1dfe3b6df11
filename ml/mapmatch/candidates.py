"""Candidate road positions for a batch of points: the matcher's first step, per window.

:func:`edge_candidates` returns exactly what ``RoadNetwork.edge_candidates`` returns (same
candidates, order, offsets and tie-breaking) with fewer array passes: the k-d tree query over
segment midpoints is the same, but only the hits' distances are computed up front, one sort
(by point and edge, then distance) keeps each edge's best segment, a second ranks the edges of
each point, and offsets and projected positions are computed only for the kept candidates. On
gridville's 7-point windows this is about half the time of the network's method, where the
sorts and gathers of every field over every hit dominated.
"""

from __future__ import annotations

import numpy as np

from ml.cities.network import EdgeCandidates, RoadNetwork
from ml.mapmatch.netcache import cached


class SegmentArrays:
    """A network's segments as contiguous per-coordinate arrays (built once per network)."""

    def __init__(self, net: RoadNetwork) -> None:
        s = net.segments
        ab = s["b"] - s["a"]
        self.ax, self.ay = np.ascontiguousarray(s["a"][:, 0]), np.ascontiguousarray(s["a"][:, 1])
        self.abx, self.aby = np.ascontiguousarray(ab[:, 0]), np.ascontiguousarray(ab[:, 1])
        self.denom = np.maximum((ab**2).sum(axis=1), 1e-12)
        self.edge = s["edge"]
        self.offset = s["offset"]
        self.seg_len = s["len"]
        self.scale = s["scale"]
        self.tree = net._segment_tree
        self.reach = net._max_half_segment
        self.n_edges = net.n_edges


def segment_arrays(net: RoadNetwork) -> SegmentArrays:
    """The cached :class:`SegmentArrays` of ``net`` (released with the network)."""
    return cached(net, "segment_arrays", SegmentArrays)


def _empty() -> EdgeCandidates:
    z = np.zeros(0, dtype=np.int64)
    return EdgeCandidates(z, z, np.zeros(0), np.zeros((0, 2)), np.zeros(0))


def edge_candidates(net: RoadNetwork, xy: np.ndarray, radius_m: float, max_per_point: int = 8) -> EdgeCandidates:
    """For each point, the nearest position on each edge within ``radius_m`` (best ``max_per_point``).

    Same result as ``net.edge_candidates(xy, radius_m, max_per_point)``.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if net.n_edges == 0 or len(xy) == 0:
        return _empty()
    s = segment_arrays(net)
    hits = s.tree.query_ball_point(xy, r=radius_m + s.reach, return_sorted=True)
    counts = np.fromiter(map(len, hits), dtype=np.int64, count=len(hits))
    if counts.sum() == 0:
        return _empty()
    pt = np.repeat(np.arange(len(xy)), counts)
    seg = np.fromiter((i for h in hits for i in h), dtype=np.int64, count=int(counts.sum()))
    qx, qy = xy[pt, 0], xy[pt, 1]
    ax, ay, abx, aby = s.ax[seg], s.ay[seg], s.abx[seg], s.aby[seg]
    t = np.clip(((qx - ax) * abx + (qy - ay) * aby) / s.denom[seg], 0.0, 1.0)
    px, py = ax + t * abx, ay + t * aby
    d = np.hypot(qx - px, qy - py)
    keep = np.nonzero(d <= radius_m)[0]
    if len(keep) == 0:
        return _empty()
    pk, dk = pt[keep], d[keep]
    edge_k = s.edge[seg[keep]]
    # best segment per (point, edge): sort by (point, edge, distance), stable on the hit order
    key = pk * s.n_edges + edge_k
    order = np.lexsort((dk, key))
    ks = key[order]
    first = np.ones(len(ks), dtype=bool)
    first[1:] = ks[1:] != ks[:-1]
    best = order[first]  # indices into the kept hits, in (point, edge) order
    # best max_per_point edges per point by distance (ties keep the edge order)
    best = best[np.lexsort((dk[best], pk[best]))]
    pb = pk[best]
    rank = np.arange(len(pb)) - np.searchsorted(pb, pb, side="left")
    best = best[rank < max_per_point]
    rows = keep[best]  # indices into the hit arrays
    sg = seg[rows]
    off = s.offset[sg] + t[rows] * s.seg_len[sg] * s.scale[sg]
    return EdgeCandidates(pk[best], edge_k[best], off, np.column_stack([px[rows], py[rows]]), dk[best])


#: columns of a memo row: one candidate of one point
ROW_EDGE, ROW_OFFSET, ROW_X, ROW_Y, ROW_DIST, ROW_U, ROW_V, ROW_TAIL = range(8)


class CandidateMemo:
    """Candidates of points already seen, per (radius, max_per_point), for one network.

    Signaling observations come from a finite set of positions (each cell's coverage centre,
    the boundary midpoint of each handover pair), so windows of one city ask for the same points
    again and again; their candidates are kept (exact float keys; at most ``max_points`` over
    all settings, after which the memo starts afresh) and only new points are searched. A point's
    entry is an ``(n, 8)`` float array, one row per candidate in :func:`edge_candidates` order:
    edge, offset, x, y, distance, the edge's start and end nodes, and the edge length left after
    the offset (what the matcher's transitions read). Results are identical to
    :func:`edge_candidates`.
    """

    def __init__(self, max_points: int = 200_000) -> None:
        self.max_points = int(max_points)
        self._store: dict[tuple[float, int], dict[bytes, np.ndarray]] = {}
        self._n = 0
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        """Forget every stored point and reset the counters."""
        self._store.clear()
        self._n = 0
        self.hits = self.misses = 0

    def rows(self, net: RoadNetwork, xy: np.ndarray, radius_m: float, max_per_point: int) -> list[np.ndarray]:
        """Per point of ``xy`` its ``(n, 8)`` candidate rows (``n = 0``: no road within ``radius_m``)."""
        xy = np.ascontiguousarray(xy, dtype=np.float64).reshape(-1, 2)
        store = self._store.setdefault((float(radius_m), int(max_per_point)), {})
        raw = xy.tobytes()
        keys = [raw[i:i + 16] for i in range(0, len(raw), 16)]
        rows = [store.get(k) for k in keys]
        missing = [i for i, r in enumerate(rows) if r is None]
        self.misses += len(missing)
        self.hits += len(rows) - len(missing)
        if missing:
            if self._n + len(missing) > self.max_points:
                self.clear()
                store = self._store.setdefault((float(radius_m), int(max_per_point)), {})
            c = edge_candidates(net, xy[missing], radius_m, max_per_point)
            table = np.column_stack([c.edge.astype(np.float64), c.offset_m, c.xy, c.distance_m,
                                     net.edge_u[c.edge], net.edge_v[c.edge], net.edge_length_m[c.edge] - c.offset_m])
            bounds = np.searchsorted(c.point, np.arange(len(missing) + 1))
            for j, i in enumerate(missing):
                rows[i] = table[bounds[j]:bounds[j + 1]]
                store[keys[i]] = rows[i]
            self._n += len(missing)
        return rows

    def query(self, net: RoadNetwork, xy: np.ndarray, radius_m: float, max_per_point: int) -> EdgeCandidates:
        """``edge_candidates(net, xy, radius_m, max_per_point)``, from the memo where possible."""
        rows = self.rows(net, xy, radius_m, max_per_point)
        counts = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        flat = np.concatenate(rows) if len(rows) else np.zeros((0, 8))
        return EdgeCandidates(np.repeat(np.arange(len(rows)), counts), flat[:, ROW_EDGE].astype(np.int64),
                              flat[:, ROW_OFFSET], flat[:, ROW_X:ROW_Y + 1], flat[:, ROW_DIST])


def candidate_memo(net: RoadNetwork) -> CandidateMemo:
    """The network's :class:`CandidateMemo` (created on first use, released with the network)."""
    return cached(net, "candidate_memo", lambda _n: CandidateMemo())
