"""``RoadNetwork``: the projected drivable graph as flat numpy arrays, for vectorised stages.

Every stage that needs roads (simulation, rendering, snapping, map matching, metrics) works on
this one structure instead of walking networkx objects in hot loops. Coordinates are metres in
the city's projected CRS (its UTM zone).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import networkx as nx
import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from ml.geo import CityProjection

# Road classes, most important first. Index = class id used in arrays and by the renderer.
ROAD_CLASSES: tuple[str, ...] = (
    "motorway",
    "trunk",
    "primary",
    "secondary",
    "tertiary",
    "residential",
    "other",
)
DEFAULT_SPEED_KPH: dict[str, float] = {
    "motorway": 100.0,
    "trunk": 80.0,
    "primary": 60.0,
    "secondary": 50.0,
    "tertiary": 40.0,
    "residential": 30.0,
    "other": 25.0,
}


def road_class_of(highway: object) -> int:
    """Map an OSM ``highway`` value (str or list, ``*_link`` included) to a class index."""
    if isinstance(highway, (list, tuple)):
        return min((road_class_of(h) for h in highway), default=len(ROAD_CLASSES) - 1)
    h = str(highway).removesuffix("_link")
    return ROAD_CLASSES.index(h) if h in ROAD_CLASSES else len(ROAD_CLASSES) - 1


@dataclass
class EdgeCandidates:
    """Candidate road positions for a batch of query points (flattened; ``point`` says whose)."""

    point: np.ndarray  # (C,) index of the query point
    edge: np.ndarray  # (C,) edge index
    offset_m: np.ndarray  # (C,) distance from the edge's start (u) along its geometry
    xy: np.ndarray  # (C, 2) the projected position on the edge
    distance_m: np.ndarray  # (C,) distance from the query point


@dataclass
class RoadNetwork:
    """A projected, strongly connected, simplified drivable road network."""

    crs: str
    node_ids: np.ndarray  # (N,) int64 OSM ids
    node_xy: np.ndarray  # (N, 2) float64
    edge_u: np.ndarray  # (E,) int64 node index
    edge_v: np.ndarray  # (E,) int64 node index
    edge_length_m: np.ndarray  # (E,) float64
    edge_speed_mps: np.ndarray  # (E,) float64
    edge_class: np.ndarray  # (E,) int8 index into ROAD_CLASSES
    geom_offsets: np.ndarray  # (E + 1,) int64: edge e's polyline is geom_xy[geom_offsets[e]:geom_offsets[e+1]]
    geom_xy: np.ndarray  # (M, 2) float64, each polyline runs from u to v
    stats: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_graph(cls, G: nx.MultiDiGraph, stats: dict | None = None) -> "RoadNetwork":
        """Build from an osmnx projected graph (edges need ``length``; ``speed_kph``/``highway`` optional)."""
        crs = str(G.graph.get("crs"))
        nodes = list(G.nodes)
        index = {n: i for i, n in enumerate(nodes)}
        node_xy = np.array([[G.nodes[n]["x"], G.nodes[n]["y"]] for n in nodes], dtype=np.float64)
        eu, ev, el, es, ec, offs, geoms = [], [], [], [], [], [0], []
        for u, v, data in G.edges(data=True):
            iu, iv = index[u], index[v]
            cls_id = road_class_of(data.get("highway", "other"))
            if "geometry" in data:
                coords = np.asarray(data["geometry"].coords, dtype=np.float64)[:, :2]
            else:
                coords = np.vstack([node_xy[iu], node_xy[iv]])
            # osmnx stores geometries from u to v, but guard against reversed ones.
            if np.hypot(*(coords[0] - node_xy[iu])) > np.hypot(*(coords[-1] - node_xy[iu])):
                coords = coords[::-1]
            seg = np.hypot(*np.diff(coords, axis=0).T).sum()
            length = float(data.get("length", seg)) or float(seg)
            speed = data.get("speed_kph")
            try:
                speed = float(speed if not isinstance(speed, list) else speed[0])
            except (TypeError, ValueError):
                speed = DEFAULT_SPEED_KPH[ROAD_CLASSES[cls_id]]
            eu.append(iu)
            ev.append(iv)
            el.append(max(length, 0.1))
            es.append(speed / 3.6)
            ec.append(cls_id)
            geoms.append(coords)
            offs.append(offs[-1] + len(coords))
        return cls(
            crs=crs,
            node_ids=np.asarray(nodes, dtype=np.int64),
            node_xy=node_xy,
            edge_u=np.asarray(eu, dtype=np.int64),
            edge_v=np.asarray(ev, dtype=np.int64),
            edge_length_m=np.asarray(el, dtype=np.float64),
            edge_speed_mps=np.asarray(es, dtype=np.float64),
            edge_class=np.asarray(ec, dtype=np.int8),
            geom_offsets=np.asarray(offs, dtype=np.int64),
            geom_xy=np.vstack(geoms) if geoms else np.zeros((0, 2)),
            stats=dict(stats or {}),
        )

    # ------------------------------------------------------------------ basic facts
    @property
    def n_nodes(self) -> int:
        return len(self.node_ids)

    @property
    def n_edges(self) -> int:
        return len(self.edge_u)

    @cached_property
    def projection(self) -> CityProjection:
        return CityProjection(self.crs)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of all road geometry."""
        lo, hi = self.geom_xy.min(axis=0), self.geom_xy.max(axis=0)
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])

    def edge_geometry(self, e: int) -> np.ndarray:
        return self.geom_xy[self.geom_offsets[e] : self.geom_offsets[e + 1]]

    def km_by_class(self) -> dict[str, float]:
        """Kilometres of road per class, counting each two-way street once."""
        km = {}
        # A two-way street is two directed edges; count the pair once by keeping u < v twins once.
        pair = np.minimum(self.edge_u, self.edge_v) * self.n_nodes + np.maximum(self.edge_u, self.edge_v)
        _, first = np.unique(np.column_stack([pair, np.round(self.edge_length_m)]), axis=0, return_index=True)
        for c, name in enumerate(ROAD_CLASSES):
            m = self.edge_class[first] == c
            km[name] = float(self.edge_length_m[first][m].sum() / 1000.0)
        return km

    # ------------------------------------------------------------------ segments for snapping
    @cached_property
    def segments(self) -> dict[str, np.ndarray]:
        """All straight segments of all edge polylines, with their edge and offset along the edge."""
        n_pts = np.diff(self.geom_offsets)
        edge_of_pt = np.repeat(np.arange(self.n_edges), n_pts)
        last = np.zeros(len(self.geom_xy), dtype=bool)
        last[self.geom_offsets[1:] - 1] = True
        start_idx = np.nonzero(~last)[0]
        a = self.geom_xy[start_idx]
        b = self.geom_xy[start_idx + 1]
        seg_len = np.hypot(*(b - a).T)
        edge = edge_of_pt[start_idx]
        # cumulative offset of each segment's start within its edge
        cum = np.cumsum(seg_len)
        edge_first_seg = np.searchsorted(start_idx, self.geom_offsets[:-1])
        base = np.concatenate([[0.0], cum])[edge_first_seg]
        offset = np.concatenate([[0.0], cum[:-1]]) - base[edge]
        # rescale so offsets add up to the edge's recorded length
        geo_len = np.bincount(edge, weights=seg_len, minlength=self.n_edges)
        scale = np.where(geo_len > 0, self.edge_length_m / np.maximum(geo_len, 1e-9), 1.0)
        return {"a": a, "b": b, "edge": edge, "offset": offset * scale[edge], "scale": scale[edge], "len": seg_len}

    @cached_property
    def _segment_tree(self) -> cKDTree:
        s = self.segments
        return cKDTree((s["a"] + s["b"]) / 2.0)

    @cached_property
    def _max_half_segment(self) -> float:
        return float(self.segments["len"].max() / 2.0) if self.n_edges else 0.0

    def edge_candidates(self, xy: np.ndarray, radius_m: float, max_per_point: int = 8) -> EdgeCandidates:
        """For each point, the nearest position on each edge within ``radius_m`` (best ``max_per_point``).

        Vectorised: a k-d tree over segment midpoints gives candidate segments, exact
        point-to-segment projections rank them, and one candidate per (point, edge) is kept.
        """
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        s = self.segments
        hits = self._segment_tree.query_ball_point(xy, r=radius_m + self._max_half_segment)
        counts = np.fromiter((len(h) for h in hits), dtype=np.int64, count=len(hits))
        if counts.sum() == 0:
            z = np.zeros(0, dtype=np.int64)
            return EdgeCandidates(z, z, np.zeros(0), np.zeros((0, 2)), np.zeros(0))
        pt = np.repeat(np.arange(len(xy)), counts)
        seg = np.concatenate([np.asarray(h, dtype=np.int64) for h in hits if len(h)])
        a, b = s["a"][seg], s["b"][seg]
        ab = b - a
        denom = np.maximum((ab**2).sum(axis=1), 1e-12)
        t = np.clip(((xy[pt] - a) * ab).sum(axis=1) / denom, 0.0, 1.0)
        proj = a + t[:, None] * ab
        d = np.hypot(*(xy[pt] - proj).T)
        keep = d <= radius_m
        pt, seg, t, proj, d = pt[keep], seg[keep], t[keep], proj[keep], d[keep]
        edge = s["edge"][seg]
        off = s["offset"][seg] + t * s["len"][seg] * s["scale"][seg]
        # best segment per (point, edge), then best max_per_point edges per point
        order = np.lexsort((d, edge, pt))
        pt, edge, off, proj, d = pt[order], edge[order], off[order], proj[order], d[order]
        first = np.ones(len(pt), dtype=bool)
        first[1:] = (pt[1:] != pt[:-1]) | (edge[1:] != edge[:-1])
        pt, edge, off, proj, d = pt[first], edge[first], off[first], proj[first], d[first]
        order = np.lexsort((d, pt))
        pt, edge, off, proj, d = pt[order], edge[order], off[order], proj[order], d[order]
        rank = np.arange(len(pt)) - np.searchsorted(pt, pt, side="left")
        k = rank < max_per_point
        return EdgeCandidates(pt[k], edge[k], off[k], proj[k], d[k])

    def nearest_nodes(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index of and distance to the nearest graph node for each point."""
        d, i = self._node_tree.query(np.asarray(xy, dtype=np.float64).reshape(-1, 2))
        return i.astype(np.int64), d

    @cached_property
    def _node_tree(self) -> cKDTree:
        return cKDTree(self.node_xy)

    # ------------------------------------------------------------------ routing
    def adjacency(self, weight: str = "length") -> sp.csr_matrix:
        """Sparse (N, N) matrix of the cheapest parallel edge: ``length`` (m) or ``time`` (s)."""
        w = self.edge_length_m if weight == "length" else self.edge_length_m / self.edge_speed_mps
        order = np.lexsort((w, self.edge_v, self.edge_u))
        u, v, w = self.edge_u[order], self.edge_v[order], w[order]
        first = np.ones(len(u), dtype=bool)
        first[1:] = (u[1:] != u[:-1]) | (v[1:] != v[:-1])
        return sp.csr_matrix((w[first], (u[first], v[first])), shape=(self.n_nodes, self.n_nodes))

    @cached_property
    def adjacency_length(self) -> sp.csr_matrix:
        return self.adjacency("length")

    @cached_property
    def edge_lookup(self) -> dict[tuple[int, int], int]:
        """(u, v) -> index of the shortest edge between them."""
        out: dict[tuple[int, int], int] = {}
        for e in np.argsort(-self.edge_length_m):
            out[(int(self.edge_u[e]), int(self.edge_v[e]))] = int(e)
        return out

    def shortest_paths_from(self, sources: np.ndarray, limit_m: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
        """Bounded Dijkstra (scipy) from node indices: (distances, predecessors), each (S, N)."""
        dist, pred = dijkstra(
            self.adjacency_length, directed=True, indices=np.asarray(sources), return_predecessors=True, limit=limit_m
        )
        return dist, pred

    def node_path(self, pred_row: np.ndarray, target: int) -> list[int]:
        """Node indices from the Dijkstra source to ``target`` using one predecessor row."""
        path = [int(target)]
        while pred_row[path[-1]] >= 0:
            path.append(int(pred_row[path[-1]]))
        return path[::-1]

    def path_polyline(self, nodes: list[int]) -> np.ndarray:
        """The road geometry along a node path, as an (n, 2) polyline."""
        if len(nodes) < 2:
            return self.node_xy[nodes].reshape(-1, 2)
        parts = [self.edge_geometry(self.edge_lookup[(a, b)]) for a, b in zip(nodes[:-1], nodes[1:])]
        return np.vstack([parts[0]] + [p[1:] for p in parts[1:]])

    def to_networkx(self) -> nx.MultiDiGraph:
        """A light networkx view (node indices, lengths): for tests and one-off analysis, not hot loops."""
        G = nx.MultiDiGraph(crs=self.crs)
        G.add_nodes_from((i, {"x": x, "y": y}) for i, (x, y) in enumerate(self.node_xy))
        G.add_edges_from(
            (int(u), int(v), {"length": float(l), "edge": i})
            for i, (u, v, l) in enumerate(zip(self.edge_u, self.edge_v, self.edge_length_m))
        )
        return G

    # ------------------------------------------------------------------ persistence
    def save_npz(self, path) -> None:
        np.savez_compressed(
            path,
            crs=np.array(self.crs),
            **{k: getattr(self, k) for k in ("node_ids", "node_xy", "edge_u", "edge_v", "edge_length_m",
                                            "edge_speed_mps", "edge_class", "geom_offsets", "geom_xy")},
        )

    @classmethod
    def load_npz(cls, path) -> "RoadNetwork":
        with np.load(path) as z:
            kw = {k: z[k] for k in z.files if k != "crs"}
            return cls(crs=str(z["crs"]), **kw)
