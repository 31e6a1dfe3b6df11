"""What every peer engine shares: the industrial pipeline's observations, a per-network engine
cache, and the turn from an engine's matched route into positions at the evaluation times.

A peer gets exactly what ``industrial_hmm`` gets: :func:`ml.baselines.signaling.cell_observations`
(coverage centres, handovers on the boundary, ping-pong removed) at their times, and the same
cell-sized noise figure ``sigma`` (``sigma_factor`` x the median site spacing, clipped). Its output
is a :class:`PeerRoute`: the matched route as one polyline and each observation's distance along
it; positions at ``ctx.eval_t`` then come from the shared
:func:`ml.mapmatch.interpolate_along_route` (held before the first and after the last matched
observation). Where an engine matches its input in several pieces (a break), the pieces are
joined by a straight segment: the engine gave no road there, and no other algorithm fills it in.
"""

from __future__ import annotations

import hashlib
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml.observation.context import SampleContext
from ml.baselines.signaling import window_observations  # noqa: F401  (the peers' input, re-exported)
from ml.cities.network import RoadNetwork
from ml.mapmatch import interpolate_along_route, polyline_cum_m


INSTALL_HINT = 'pip install -e ".[peers]"'


def missing_modules(key: str, modules: tuple[str, ...], what: str) -> str | None:
    """None when every module imports, else the one-line reason ``key`` is skipped."""
    import importlib

    try:
        for m in modules:
            importlib.import_module(m)
    except ImportError as exc:  # needed: peers are an optional extra; the skip is reported, nothing substituted
        return f"{key} skipped: {what} not installed ({exc}); {INSTALL_HINT}"
    return None


def package_version(name: str) -> str | None:
    """Installed version of a distribution (None when absent)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


class PeerUnavailable(RuntimeError):
    """A peer engine's package is not installed (or cannot run on this interpreter)."""


class PeerMatchError(RuntimeError):
    """A peer engine matched none of a window's observations (the window counts as failed)."""


@dataclass
class PeerRoute:
    """An engine's answer for one window, in projected metres."""

    route_xy: np.ndarray  # (m, 2) matched route (pieces joined by straight segments)
    route_cum_m: np.ndarray  # (m,) cumulative length along route_xy
    point_route_m: np.ndarray  # (n_obs,) distance of each observation along route_xy, NaN if unmatched
    n_pieces: int  # matched pieces (1 = no break)

    @property
    def n_matched(self) -> int:
        return int(np.isfinite(self.point_route_m).sum())


def route_from_pieces(pieces: list[tuple[np.ndarray, dict[int, float]]], n_obs: int) -> PeerRoute:
    """Join matched pieces into one :class:`PeerRoute`.

    Each piece is ``(polyline (m, 2), {observation index: position in the polyline})`` where a
    position ``v + f`` is the fraction ``f`` of the way from vertex ``v`` to vertex ``v + 1``. The
    pieces, in time order, are concatenated (a straight segment between consecutive pieces).
    """
    if not pieces:
        return PeerRoute(np.zeros((0, 2)), np.zeros(0), np.full(n_obs, np.nan), 0)
    lines, obs, pos, base = [], [], [], 0
    for line, at in pieces:
        line = np.asarray(line, dtype=np.float64).reshape(-1, 2)
        lines.append(line)
        obs.extend(int(i) for i in at)
        pos.extend(base + float(v) for v in at.values())
        base += len(line)
    route = np.vstack(lines)
    cum = polyline_cum_m(route)
    point_m = np.full(n_obs, np.nan)
    obs_a, pos_a = np.asarray(obs, dtype=np.int64), np.asarray(pos, dtype=np.float64)
    ok = (obs_a >= 0) & (obs_a < n_obs)
    point_m[obs_a[ok]] = np.interp(pos_a[ok], np.arange(len(route), dtype=np.float64), cum)
    return PeerRoute(route, cum, point_m, len(pieces))


def positions_from_route(ctx: SampleContext, route: PeerRoute, obs_t: np.ndarray, engine: str) -> np.ndarray:
    """Positions ``(n_eval, 2)`` at ``ctx.eval_t`` along the route (the shared interpolation).

    Raises :class:`PeerMatchError` when the engine matched no observation.
    """
    if route.n_matched == 0 or len(route.route_xy) == 0:
        raise PeerMatchError(f"{engine}: matched none of {len(obs_t)} observations of window {ctx.sample_id}")
    return interpolate_along_route(route.route_xy, route.route_cum_m, route.point_route_m, obs_t, ctx.eval_t)


def network_fingerprint(net: RoadNetwork) -> str:
    """Content hash of a road network (nodes, edges, geometry): names engine caches on disk."""
    h = hashlib.sha1()
    for a in (net.node_xy, net.edge_u, net.edge_v, net.edge_length_m, net.geom_offsets, net.geom_xy):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(net.crs.encode())
    return h.hexdigest()[:16]


class EngineCache:
    """One engine object per road network (keyed by the network object, released with it).

    ``get(net, factory)`` builds with ``factory(net)`` on first use and records the wall time it
    took in ``setup_s[id(net)]``.
    """

    def __init__(self) -> None:
        self._items: dict[int, tuple[weakref.ref, Any]] = {}
        self.setup_s: dict[int, float] = {}

    def get(self, net: RoadNetwork, factory: Callable[[RoadNetwork], Any]) -> Any:
        key = id(net)
        hit = self._items.get(key)
        if hit is not None and hit[0]() is net:
            return hit[1]
        t0 = time.perf_counter()
        engine = factory(net)
        self.setup_s[key] = time.perf_counter() - t0

        def _drop(_r: weakref.ref, k: int = key) -> None:
            self._items.pop(k, None)
            self.setup_s.pop(k, None)

        self._items[key] = (weakref.ref(net, _drop), engine)
        return engine

    def clear(self) -> None:
        """Drop every cached engine."""
        self._items.clear()
        self.setup_s.clear()
