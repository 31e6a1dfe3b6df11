"""``leuven``: leuvenmapmatching's ``DistanceMatcher`` (Newson-Krumm style HMM with non-emitting
states, KU Leuven), on the project's road network.

Leuven's map is a graph of straight segments between labelled nodes, so every edge polyline of
the ``RoadNetwork`` becomes a chain: its end nodes keep their node index, interior vertices get
labels of their own (``n_nodes + vertex index``). Coordinates are projected metres given as
``(y, x)`` (``use_latlon=False``), with an R-tree over the edges (the ``rtree`` package).

Leuven stops at the first observation it cannot reach and returns the index of the last matched
one; as its documentation suggests, matching is restarted from the next observation, and the
pieces are joined as every peer's are (:func:`ml.baselines.peers.common.route_from_pieces`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ml.observation.context import SampleContext
from ml.baselines.peers.common import (
    EngineCache, PeerRoute, PeerUnavailable, missing_modules, package_version, positions_from_route,
    route_from_pieces, window_observations,
)
from ml.cities.network import RoadNetwork

def available() -> str | None:
    """None when leuvenmapmatching (and rtree, its edge index) import, else the reason."""
    return missing_modules("leuven", ("leuvenmapmatching", "rtree"), "leuvenmapmatching or rtree is")


def version() -> str | None:
    """Installed leuvenmapmatching version (None when absent)."""
    return package_version("leuvenmapmatching")


@dataclass(frozen=True)
class LeuvenParams:
    """DistanceMatcher settings for cell-level noise, relative to the industrial HMM's sigma.

    ``obs_noise`` = ``obs_noise_factor`` x sigma (emission standard deviation; Leuven's
    ``dist_noise``, on |route - straight line|, defaults to it); candidate edges within
    ``radius_factor`` x sigma (``max_dist`` and ``max_dist_init``); ``max_lattice_width``
    states kept per observation (the industrial HMM's 12 candidates); non-emitting states
    on (they let the match pass through edges between sparse observations). The default
    ``obs_noise_factor`` is the one ``bench/peers.py`` chose on gridville's val windows.
    """

    obs_noise_factor: float = 0.25
    radius_factor: float = 2.5
    max_lattice_width: int = 12
    non_emitting_states: bool = True

    def __post_init__(self) -> None:
        if not self.obs_noise_factor > 0 or not self.radius_factor > 0 or self.max_lattice_width < 1:
            raise ValueError(f"LeuvenParams: factors > 0 and max_lattice_width >= 1 required ({self})")


class LeuvenEngine:
    """An ``InMemMap`` of the road network (R-tree over edges) for leuvenmapmatching."""

    def __init__(self, net: RoadNetwork) -> None:
        reason = available()
        if reason:
            raise PeerUnavailable(reason)
        from leuvenmapmatching.map.inmem import InMemMap

        logging.getLogger("be.kuleuven.cs.dtai.mapmatching").setLevel(logging.ERROR)
        self.net = net
        m = InMemMap("sig2gps", use_latlon=False, use_rtree=True, index_edges=True)
        n = net.n_nodes
        self.coords: dict[int, tuple[float, float]] = {}
        for i, (x, y) in enumerate(net.node_xy.tolist()):
            m.add_node(i, (y, x))
            self.coords[i] = (x, y)
        offs, gxy = net.geom_offsets, net.geom_xy
        for e in range(net.n_edges):
            g0, g1 = int(offs[e]), int(offs[e + 1])
            labels = [int(net.edge_u[e])]
            for v in range(g0 + 1, g1 - 1):  # interior vertices
                lab = n + v
                x, y = gxy[v]
                m.add_node(lab, (float(y), float(x)))
                self.coords[lab] = (float(x), float(y))
                labels.append(lab)
            labels.append(int(net.edge_v[e]))
            for a, b in zip(labels[:-1], labels[1:]):
                if a != b:
                    m.add_edge(a, b)
        self.map = m

    def _matcher(self, sigma_m: float, params: LeuvenParams):
        from leuvenmapmatching.matcher.distance import DistanceMatcher

        r = params.radius_factor * sigma_m
        return DistanceMatcher(self.map, obs_noise=params.obs_noise_factor * sigma_m, max_dist=r, max_dist_init=r,
                               max_lattice_width=params.max_lattice_width,
                               non_emitting_states=params.non_emitting_states)

    def match(self, obs_xy: np.ndarray, obs_t: np.ndarray, sigma_m: float, params: LeuvenParams) -> PeerRoute:
        """Match observations (projected metres) into a :class:`PeerRoute` (times are not used by Leuven)."""
        path = [(float(y), float(x)) for x, y in np.asarray(obs_xy, dtype=np.float64)]
        pieces = []
        start = 0
        while start < len(path):
            matcher = self._matcher(sigma_m, params)
            _, last = matcher.match(path[start:])
            best = matcher.lattice_best or []
            piece = self._piece(best, start)
            if piece is not None:
                pieces.append(piece)
            # Leuven returns the last matched index (relative); go on after it, or skip the point
            # it could not start from
            start += (int(last) + 1) if best else 1
        return route_from_pieces(pieces, len(path))

    def _piece(self, best: list, offset: int) -> tuple[np.ndarray, dict[int, float]] | None:
        """Polyline through the matched edges and each emitting state's position on it."""
        nodes: list[int] = []
        at: dict[int, float] = {}
        prev = None
        for m in best:
            l1, l2 = m.edge_m.l1, m.edge_m.l2
            if l2 is None:  # a node state (not used with only_edges, kept for safety)
                l2 = l1
            if prev is None:
                nodes += [l1, l2]
            elif (l1, l2) != prev:
                if nodes[-1] == l1:
                    nodes.append(l2)
                else:  # not connected to the previous edge: Leuven's penalised jump
                    nodes += [l1, l2]
            prev = (l1, l2)
            if m.is_emitting():
                ti = float(m.edge_m.ti) if l1 != l2 else 0.0
                at[offset + int(m.obs)] = len(nodes) - 2 + min(max(ti, 0.0), 1.0)
        if not nodes or not at:
            return None
        return np.array([self.coords[v] for v in nodes], dtype=np.float64), at


ENGINES = EngineCache()
DEFAULT_PARAMS = LeuvenParams()


def engine_for(net: RoadNetwork) -> LeuvenEngine:
    """The cached :class:`LeuvenEngine` of ``net`` (built on first use)."""
    return ENGINES.get(net, LeuvenEngine)


def leuven(ctx: SampleContext, params: LeuvenParams | None = None) -> np.ndarray:
    """Leuven on the industrial pipeline's cell observations; positions at ``ctx.eval_t`` along its route.

    A window without records gives NaN; one where Leuven matches nothing raises
    :class:`ml.baselines.peers.common.PeerMatchError` (counted as a failed window).
    """
    params = params or DEFAULT_PARAMS
    if len(ctx.records) == 0:
        return np.full((ctx.n_eval, 2), np.nan)
    obs_t, obs_xy, sigma = window_observations(ctx)
    route = engine_for(ctx.net).match(obs_xy, obs_t, sigma, params)
    return positions_from_route(ctx, route, obs_t, "leuven")
