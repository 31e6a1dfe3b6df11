"""Moving along the road network: the heading edge of a known position and constant-velocity advance.

Pure numpy on :class:`ml.cities.RoadNetwork` arrays (projected metres); edges are directed (u -> v),
their polylines run from u to v.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ml.cities.network import RoadNetwork


@dataclass(frozen=True)
class RoadPosition:
    """A point on a directed edge: ``offset_m`` from the edge's start along its polyline."""

    edge: int
    offset_m: float


def _cum(geom: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(geom, axis=0).T))])


def point_on_edge(net: RoadNetwork, edge: int, offset_m: float) -> np.ndarray:
    """(2,) position ``offset_m`` along the edge's polyline (clipped to the polyline)."""
    geom = net.edge_geometry(edge)
    cum = _cum(geom)
    d = float(np.clip(offset_m, 0.0, cum[-1]))
    return np.array([np.interp(d, cum, geom[:, 0]), np.interp(d, cum, geom[:, 1])])


def edge_tangent(net: RoadNetwork, edge: int, offset_m: float) -> np.ndarray:
    """Unit direction of travel (2,) on ``edge`` at ``offset_m`` (the polyline segment holding it)."""
    geom = net.edge_geometry(edge)
    cum = _cum(geom)
    i = int(np.clip(np.searchsorted(cum, offset_m, side="right") - 1, 0, len(geom) - 2))
    v = geom[i + 1] - geom[i]
    n = float(np.hypot(*v))
    return v / n if n > 0 else np.zeros(2)


class RoadWalker:
    """Advances positions along the road network at the junctions' straightest continuation.

    Built once per network (the out-edges of every node, sorted); ``advance`` then walks edge by edge.
    """

    def __init__(self, net: RoadNetwork) -> None:
        self.net = net
        order = np.argsort(net.edge_u, kind="stable")
        self._out = order
        self._start = np.searchsorted(net.edge_u[order], np.arange(net.n_nodes + 1))
        self._length = np.array([_cum(net.edge_geometry(e))[-1] for e in range(net.n_edges)])

    def out_edges(self, node: int) -> np.ndarray:
        """Edges leaving ``node``."""
        return self._out[self._start[node] : self._start[node + 1]]

    def next_edge(self, edge: int) -> int | None:
        """The edge after ``edge`` at its end node: the smallest turn, a U-turn only at a dead end."""
        net = self.net
        u, v = int(net.edge_u[edge]), int(net.edge_v[edge])
        cands = self.out_edges(v)
        if len(cands) == 0:
            return None
        back = net.edge_v[cands] == u
        if (~back).any():
            cands = cands[~back]
        t_in = edge_tangent(net, edge, self._length[edge])
        cos = np.array([float(t_in @ edge_tangent(net, int(e), 0.0)) for e in cands])
        return int(cands[int(np.argmax(cos))])

    def advance(self, pos: RoadPosition, distance_m: float, max_edges: int = 10_000) -> np.ndarray:
        """(2,) position ``distance_m`` further along the road from ``pos`` (staying put for distance <= 0)."""
        edge, offset, left = pos.edge, float(pos.offset_m), max(float(distance_m), 0.0)
        for _ in range(max_edges):
            room = self._length[edge] - offset
            if left <= room:
                return point_on_edge(self.net, edge, offset + left)
            nxt = self.next_edge(edge)
            if nxt is None:  # a dead end without a way back (not in a strongly connected network): stop there
                return point_on_edge(self.net, edge, self._length[edge])
            left -= max(room, 0.0)
            edge, offset = nxt, 0.0
        return point_on_edge(self.net, edge, offset)

    def heading_edge(self, xy: np.ndarray, heading: np.ndarray, radius_m: float) -> RoadPosition | None:
        """Map-match a point with its direction of travel: of the directed edges within ``radius_m`` of ``xy``
        (``RoadNetwork.edge_candidates``), the one that runs most along ``heading`` (its distance a tie-break).

        Returns None when no edge is within the radius or none runs within 90 degrees of the heading.
        """
        c = self.net.edge_candidates(np.asarray(xy, dtype=np.float64).reshape(1, 2), radius_m, max_per_point=16)
        if len(c.edge) == 0:
            return None
        h = np.asarray(heading, dtype=np.float64)
        h = h / max(float(np.hypot(*h)), 1e-9)
        cos = np.array([float(h @ edge_tangent(self.net, int(e), float(o))) for e, o in zip(c.edge, c.offset_m)])
        # the direction decides between the two carriageways of a road and between crossing roads; the
        # distance only breaks near-ties (a car is on the road it drives along, not on a parallel one)
        score = cos - 0.5 * c.distance_m / radius_m
        ok = cos > 0
        if not ok.any():
            return None
        i = int(np.argmax(np.where(ok, score, -np.inf)))
        return RoadPosition(int(c.edge[i]), float(c.offset_m[i]))
