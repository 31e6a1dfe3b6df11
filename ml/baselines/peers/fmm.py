"""``fmm``: Fast Map Matching (Yang & Gidofalvi 2018) through the ``fastmm`` package.

The network is the project's ``RoadNetwork`` (every directed edge with its geometry, projected
metres), so FMM sees the same roads as ``industrial_hmm``. FMM precomputes an upper-bounded
origin-destination table (UBODT, bound ``delta_m``) once per network; it is generated into a
cache directory on first use (the setup time) and reused for every window.

Trap handled here: ``fastmm.FastMapMatch`` keeps a raw reference to its ``Network``; if the
Python ``Network`` object is garbage-collected first, matching segfaults. :class:`FMMEngine`
holds both for its whole life.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ml.observation.context import SampleContext
from ml.baselines.peers.common import (
    EngineCache, PeerRoute, PeerUnavailable, missing_modules, network_fingerprint, package_version,
    positions_from_route, route_from_pieces, window_observations,
)
from ml.cities.network import RoadNetwork

def available() -> str | None:
    """None when ``fastmm`` imports, else the reason it cannot run."""
    return missing_modules("fmm", ("fastmm",), "the fastmm package is")


def version() -> str | None:
    """Installed fastmm version (None when absent)."""
    return package_version("fastmm")


@dataclass(frozen=True)
class FMMParams:
    """FMM settings for cell-level noise, relative to the industrial HMM's sigma (``sigma_m``).

    ``gps_error`` (FMM's emission standard deviation) = ``gps_error_factor`` x sigma; candidates
    within ``radius_factor`` x sigma, at most ``max_candidates`` (the industrial HMM's 2.5 and 12);
    ``reverse_tolerance`` = ``reverse_factor`` x sigma (the industrial HMM's backward tolerance).
    ``delta_m`` bounds the UBODT: transitions longer than that are impossible (a break).
    The defaults are the setting ``bench/peers.py`` chose on gridville's val windows.
    """

    gps_error_factor: float = 1.0
    radius_factor: float = 2.5
    max_candidates: int = 12
    reverse_factor: float = 1.0
    delta_m: float = 5000.0

    def __post_init__(self) -> None:
        for k in ("gps_error_factor", "radius_factor", "delta_m"):
            if not getattr(self, k) > 0:
                raise ValueError(f"FMMParams.{k} must be > 0 (got {getattr(self, k)})")
        if self.max_candidates < 1 or self.reverse_factor < 0:
            raise ValueError(f"FMMParams: max_candidates >= 1 and reverse_factor >= 0 required ({self})")


@contextlib.contextmanager
def _quiet_fds():
    """Silence C++ logging (spdlog writes to the process's stdout/stderr) while building."""
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


class FMMEngine:
    """fastmm ``Network`` + ``FastMapMatch`` (UBODT) for one road network."""

    def __init__(self, net: RoadNetwork, delta_m: float = 5000.0, cache_dir: str | Path | None = None,
                 quiet: bool = True) -> None:
        reason = available()
        if reason:
            raise PeerUnavailable(reason)
        import fastmm

        self.net = net
        self.delta_m = float(delta_m)
        root = Path(cache_dir) if cache_dir is not None else Path(tempfile.gettempdir()) / "sig2gps-peers"
        self.cache_dir = root / "fmm" / network_fingerprint(net)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        ctx = _quiet_fds() if quiet else contextlib.nullcontext()
        with ctx:
            network = fastmm.Network()
            for e in range(net.n_edges):
                network.add_edge(e, source=int(net.edge_u[e]), target=int(net.edge_v[e]),
                                 geom=[tuple(p) for p in net.edge_geometry(e).tolist()])
            network.finalize()
            matcher = fastmm.FastMapMatch(network, fastmm.TransitionMode.SHORTEST,
                                          max_distance_between_candidates=self.delta_m, cache_dir=self.cache_dir)
        # keep the Network alive as long as the matcher (fastmm segfaults otherwise)
        self._network, self._matcher, self._fastmm = network, matcher, fastmm

    def match(self, obs_xy: np.ndarray, obs_t: np.ndarray, sigma_m: float, params: FMMParams) -> PeerRoute:
        """Match observations (projected metres, strictly increasing times) into a :class:`PeerRoute`."""
        fm = self._fastmm
        pts = np.column_stack([obs_xy, obs_t]).tolist()
        res = self._matcher.match(fm.Trajectory.from_xyt_tuples(pts), max_candidates=params.max_candidates,
                                  candidate_search_radius=params.radius_factor * sigma_m,
                                  gps_error=params.gps_error_factor * sigma_m,
                                  reverse_tolerance=params.reverse_factor * sigma_m)
        pieces = []
        for sub in res.subtrajectories:
            if sub.error_code != fm.MatchErrorCode.SUCCESS or not sub.segments:
                continue
            line: list[tuple[float, float]] = []
            at: dict[int, float] = {}
            for seg in sub.segments:
                at.setdefault(int(seg.p0.trajectory_index), float(len(line)))
                for ed in seg.edges:
                    line.extend((p.x, p.y) for p in ed.points)
                at[int(seg.p1.trajectory_index)] = float(len(line) - 1)
            if line:
                pieces.append((np.asarray(line), at))
        return route_from_pieces(pieces, len(obs_xy))


ENGINES = EngineCache()
DEFAULT_PARAMS = FMMParams()


def engine_for(net: RoadNetwork, params: FMMParams = DEFAULT_PARAMS, cache_dir: str | Path | None = None) -> FMMEngine:
    """The cached :class:`FMMEngine` of ``net`` (built on first use; rebuilt if ``delta_m`` changed)."""
    eng = ENGINES.get(net, lambda n: FMMEngine(n, params.delta_m, cache_dir or os.environ.get("SIG2GPS_PEER_CACHE")))
    if eng.delta_m != params.delta_m:
        ENGINES.clear()
        eng = ENGINES.get(net, lambda n: FMMEngine(n, params.delta_m, cache_dir or os.environ.get("SIG2GPS_PEER_CACHE")))
    return eng


def fmm(ctx: SampleContext, params: FMMParams | None = None) -> np.ndarray:
    """FMM on the industrial pipeline's cell observations; positions at ``ctx.eval_t`` along its route.

    A window without records gives NaN (as ``industrial_hmm``); one where FMM matches nothing
    raises :class:`ml.baselines.peers.common.PeerMatchError` (counted as a failed window).
    """
    params = params or DEFAULT_PARAMS
    if len(ctx.records) == 0:
        return np.full((ctx.n_eval, 2), np.nan)
    obs_t, obs_xy, sigma = window_observations(ctx)
    route = engine_for(ctx.net, params).match(obs_xy, obs_t, sigma, params)
    return positions_from_route(ctx, route, obs_t, "fmm")
