"""Precomputed origin-destination table of a road network (FMM's UBODT idea), reused across windows.

The HMM's transitions need, at every step, the road distance from the end node of each previous
candidate's edge to the start node of each next candidate's edge, bounded by a per-step limit.
Running a bounded Dijkstra per step (scipy, dense ``(sources, N)`` outputs plus predecessor
bookkeeping) was the largest cost of ``match_trajectory``. A city's network is fixed, so the
shortest distances and predecessors between all node pairs up to ``delta_m`` are computed once
and looked up with fancy indexing:

* **dense** (``delta_m = inf``): full ``(N, N)`` distance and predecessor matrices, used when they
  fit ``max_dense_bytes`` (every city in this project: a few hundred to a few thousand nodes);
* **bounded** (FMM's upper-bounded table): only pairs with distance ``<= delta_m``, stored as one
  sorted key array ``src * N + dst`` with their distances and predecessors, searched with
  ``np.searchsorted``. A step whose limit exceeds ``delta_m`` is not answerable from the table
  and the matcher runs its per-step Dijkstra for that step (same result, only slower).

Distances are those of scipy's Dijkstra on ``RoadNetwork.adjacency_length`` (the cheapest
parallel edge), the same graph the per-step search uses.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from scipy.sparse.csgraph import dijkstra

from ml.cities.network import RoadNetwork
from ml.mapmatch.netcache import cached, set_cached

#: dense tables up to this size (distance float64 + predecessor int32 per node pair)
DEFAULT_MAX_DENSE_BYTES: int = 256 * 2**20
#: bound of the sparse table when the dense one does not fit (FMM's usual delta is 3 km)
DEFAULT_DELTA_M: float = 5000.0
_CHUNK = 256  # sources per Dijkstra call while building a bounded table


@dataclass
class ODTable:
    """Shortest road distances (m) and predecessors between node pairs up to ``delta_m``.

    Build with :meth:`build`; query with :meth:`distances` (a ``(len(src), len(dst))`` block) and
    :meth:`path` (the node path of one pair). ``build_s`` is the wall time it took to build.
    """

    n_nodes: int
    delta_m: float
    dense_dist: np.ndarray | None = None  # (N, N) float64, inf where unreachable
    dense_pred: np.ndarray | None = None  # (N, N) int32, -9999 at the source / unreachable
    keys: np.ndarray | None = None  # (T,) int64 sorted src * N + dst (bounded mode)
    dist: np.ndarray | None = None  # (T,) float64
    pred: np.ndarray | None = None  # (T,) int32
    build_s: float = 0.0

    @property
    def dense(self) -> bool:
        """True for the full matrix form (every pair, no bound)."""
        return self.dense_dist is not None

    @property
    def nbytes(self) -> int:
        """Memory held by the table."""
        arrs = (self.dense_dist, self.dense_pred, self.keys, self.dist, self.pred)
        return int(sum(a.nbytes for a in arrs if a is not None))

    def covers(self, limit_m: float) -> bool:
        """Whether every distance up to ``limit_m`` is in the table."""
        return limit_m <= self.delta_m

    @classmethod
    def build(cls, net: RoadNetwork, delta_m: float | None = None,
              max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES) -> "ODTable":
        """Compute the table of ``net``.

        ``delta_m=None`` picks the dense full table when it fits ``max_dense_bytes`` and a table
        bounded at :data:`DEFAULT_DELTA_M` otherwise; an explicit finite ``delta_m`` always builds
        the bounded form (``inf`` forces the dense form whatever its size).
        """
        if delta_m is not None and not delta_m > 0:
            raise ValueError(f"ODTable.build: delta_m must be > 0 (got {delta_m})")
        n = net.n_nodes
        t0 = time.perf_counter()
        adj = net.adjacency_length
        dense = (delta_m is None and n * n * 12 <= max_dense_bytes) or (delta_m is not None and math.isinf(delta_m))
        if dense:
            d, p = dijkstra(adj, directed=True, return_predecessors=True)
            return cls(n_nodes=n, delta_m=math.inf, dense_dist=d, dense_pred=p.astype(np.int32),
                       build_s=time.perf_counter() - t0)
        delta = float(delta_m if delta_m is not None else DEFAULT_DELTA_M)
        keys, dist, pred = [], [], []
        for a in range(0, n, _CHUNK):
            src = np.arange(a, min(a + _CHUNK, n))
            d, p = dijkstra(adj, directed=True, indices=src, return_predecessors=True, limit=delta)
            r, c = np.nonzero(np.isfinite(d))
            keys.append(src[r].astype(np.int64) * n + c)
            dist.append(d[r, c])
            pred.append(p[r, c].astype(np.int32))
        # row-major nonzero per chunk and increasing chunks: keys come out sorted
        return cls(n_nodes=n, delta_m=delta, keys=np.concatenate(keys), dist=np.concatenate(dist),
                   pred=np.concatenate(pred), build_s=time.perf_counter() - t0)

    def distances(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Road distances from nodes ``src`` to nodes ``dst`` (arrays that broadcast together).

        Pairs farther than ``delta_m`` (or unreachable) are ``inf``; the result has the broadcast
        shape (pass ``src[:, None]`` and ``dst[None, :]`` for a block).
        """
        src = np.asarray(src, dtype=np.int64)
        dst = np.asarray(dst, dtype=np.int64)
        if self.dense_dist is not None:
            return self.dense_dist[src, dst]
        q = src * self.n_nodes + dst
        if len(self.keys) == 0:
            return np.full(q.shape, np.inf)
        i = np.minimum(np.searchsorted(self.keys, q), len(self.keys) - 1)
        return np.where(self.keys[i] == q, self.dist[i], np.inf)

    def _pred_of(self, src: int, node: int) -> int:
        if self.dense_pred is not None:
            return int(self.dense_pred[src, node])
        q = src * self.n_nodes + node
        i = int(np.searchsorted(self.keys, q))
        return int(self.pred[i]) if i < len(self.keys) and self.keys[i] == q else -9999

    def path(self, src: int, dst: int) -> list[int] | None:
        """Node path ``[src, ..., dst]`` of the shortest route, or None when not in the table."""
        src, dst = int(src), int(dst)
        if src == dst:
            return [src]
        nodes = [dst]
        while nodes[-1] != src:
            p = self._pred_of(src, nodes[-1])
            if p < 0 or len(nodes) > self.n_nodes:
                return None
            nodes.append(p)
        return nodes[::-1]


def od_table_for(net: RoadNetwork, build: bool = True) -> ODTable | None:
    """The network's cached :class:`ODTable` (built with the defaults on first use when ``build``).

    The cache is keyed by the network object (not its content) and released with it.
    """
    return cached(net, "od_table", ODTable.build if build else None)


def set_od_table(net: RoadNetwork, table: ODTable | None) -> None:
    """Install ``table`` as the network's cached table (None drops it)."""
    if table is not None and table.n_nodes != net.n_nodes:
        raise ValueError(f"set_od_table: table has {table.n_nodes} nodes, network {net.n_nodes}")
    set_cached(net, "od_table", table)
