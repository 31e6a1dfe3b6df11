"""Vehicle and pedestrian movement on the road network, as time-stamped knots.

An agent's day is a piecewise-linear function of time given by knots ``(t, x, y, v)``
(non-decreasing ``t``; repeated positions while it stands still). Positions at any time follow by
``np.interp``. Routes come from scipy Dijkstra on travel times perturbed per agent-day (so routes
are plausible but not always the shortest); speed profiles along a route are computed in closed
form on an arc-length grid (acceleration / deceleration limits as running minima, speed limits by
road class, slowing for turns, random stops at intersections).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra

from ml.cities.network import RoadNetwork
from ml.geo.track import interpolate_positions
from ml.simulate.config import SimulationConfig

MAJOR_CLASS_MAX = 3  # class index <= 3: motorway, trunk, primary, secondary


@dataclass
class Knots:
    """A piecewise-linear trajectory: times (s), positions (m, projected) and speeds (m/s)."""

    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    v: np.ndarray

    @staticmethod
    def concat(parts: list["Knots"]) -> "Knots":
        return Knots(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("t", "x", "y", "v")))

    @staticmethod
    def still(t0: float, t1: float, xy: np.ndarray) -> "Knots":
        """Standing at ``xy`` from ``t0`` to ``t1``."""
        return Knots(np.array([t0, t1], dtype=np.float64), np.full(2, float(xy[0])), np.full(2, float(xy[1])), np.zeros(2))

    def position(self, t: np.ndarray) -> np.ndarray:
        """(n, 2) positions at times ``t`` (clamped to the first / last knot)."""
        return interpolate_positions(self.t, np.column_stack([self.x, self.y]), t, "knots")

    def speed(self, t: np.ndarray) -> np.ndarray:
        return np.interp(t, self.t, self.v)

    def clip(self, t0: float, t1: float) -> "Knots":
        """The part between ``t0`` and ``t1`` with exact end knots."""
        inside = (self.t > t0) & (self.t < t1)
        t = np.concatenate([[t0], self.t[inside], [t1]])
        xy = self.position(t)
        return Knots(t, xy[:, 0], xy[:, 1], np.interp(t, self.t, self.v))

    @property
    def end_xy(self) -> np.ndarray:
        return np.array([self.x[-1], self.y[-1]])


class RoutePlanner:
    """Routes by perturbed travel time (or length, for walkers) with batched scipy Dijkstra."""

    def __init__(self, net: RoadNetwork) -> None:
        self.net = net
        self.edge_time = net.edge_length_m / net.edge_speed_mps
        # cheapest parallel edge per (u, v): geometry and speed come from that edge
        self.edge_of = net.edge_lookup

    def tree(self, sources: np.ndarray, rng: np.random.Generator, noise_sigma: float, by: str = "time"):
        """Dijkstra from several sources with one draw of log-normal edge-cost noise."""
        base = self.edge_time if by == "time" else self.net.edge_length_m
        w = base * rng.lognormal(0.0, noise_sigma, len(base)) if noise_sigma > 0 else base
        adj = sp.csr_matrix((w, (self.net.edge_u, self.net.edge_v)), shape=(self.net.n_nodes, self.net.n_nodes))
        # csr_matrix sums duplicate (parallel) edges; keep the cheaper one instead
        if adj.nnz < len(w):
            order = np.lexsort((w, self.net.edge_v, self.net.edge_u))
            u, v, ww = self.net.edge_u[order], self.net.edge_v[order], w[order]
            first = np.ones(len(u), dtype=bool)
            first[1:] = (u[1:] != u[:-1]) | (v[1:] != v[:-1])
            adj = sp.csr_matrix((ww[first], (u[first], v[first])), shape=adj.shape)
        _, pred = dijkstra(adj, directed=True, indices=np.asarray(sources), return_predecessors=True)
        return pred

    def edges_of_path(self, nodes: list[int]) -> np.ndarray:
        return np.fromiter((self.edge_of[(a, b)] for a, b in zip(nodes[:-1], nodes[1:])), dtype=np.int64,
                           count=max(len(nodes) - 1, 0))

    def pick_destination(self, src: int, rng: np.random.Generator, dist_range: tuple[float, float]) -> int:
        """A random node at a straight-line distance within ``dist_range`` of ``src`` (nearest range if none)."""
        d = np.hypot(*(self.net.node_xy - self.net.node_xy[src]).T)
        ok = np.nonzero((d >= dist_range[0]) & (d <= dist_range[1]))[0]
        if len(ok) == 0:
            ok = np.argsort(np.abs(d - dist_range[0]))[:10]
            ok = ok[ok != src] if np.any(ok != src) else ok
        return int(rng.choice(ok))


def _turn_cos(net: RoadNetwork, edges: np.ndarray) -> np.ndarray:
    """Cosine of the heading change at each internal node of a route (1 = straight on)."""
    off = net.geom_offsets
    end_dir = net.geom_xy[off[edges[:-1] + 1] - 1] - net.geom_xy[off[edges[:-1] + 1] - 2]
    start_dir = net.geom_xy[off[edges[1:]] + 1] - net.geom_xy[off[edges[1:]]]
    n1 = np.maximum(np.hypot(*end_dir.T), 1e-9)
    n2 = np.maximum(np.hypot(*start_dir.T), 1e-9)
    return (end_dir * start_dir).sum(axis=1) / (n1 * n2)


def drive(net: RoadNetwork, edges: np.ndarray, t0: float, cfg: SimulationConfig, rng: np.random.Generator,
          walking_speed: float | None = None) -> Knots:
    """Knots of one trip along ``edges``, starting at rest at time ``t0`` and ending at rest.

    Vehicles: speed limit by road class times a per-trip factor, turn speed at intersections that
    turn, random red-light stops (more likely where two major roads cross), acceleration and
    deceleration limits. Walkers (``walking_speed``) move at constant speed.
    """
    parts = [net.edge_geometry(e) for e in edges]
    poly = np.vstack([parts[0]] + [p[1:] for p in parts[1:]])
    seg_len = np.hypot(*np.diff(poly, axis=0).T)
    cum = np.concatenate([[0.0], np.cumsum(seg_len)])
    edge_len = np.array([np.hypot(*np.diff(p, axis=0).T).sum() for p in parts])
    node_s = np.concatenate([[0.0], np.cumsum(edge_len)])
    total = node_s[-1]
    if total <= 0.5:
        return Knots.still(t0, t0 + 1.0, poly[0])
    if walking_speed is not None:
        s = node_s
        t = t0 + s / walking_speed
        xy = np.column_stack([np.interp(s, cum, poly[:, 0]), np.interp(s, cum, poly[:, 1])])
        return Knots(t, xy[:, 0], xy[:, 1], np.full(len(s), walking_speed))

    step = cfg.kinematic_step_m
    s = np.unique(np.concatenate([np.arange(0.0, total, step), node_s]))
    edge_at = np.clip(np.searchsorted(node_s, s, side="right") - 1, 0, len(edges) - 1)
    factor = rng.uniform(*cfg.speed_factor)
    vlim = net.edge_speed_mps[edges][edge_at] * factor
    dwell = np.zeros(len(s))
    if len(edges) > 1:
        inner = np.searchsorted(s, node_s[1:-1])
        cos = _turn_cos(net, edges)
        turning = cos < np.cos(np.radians(25.0))
        cls = net.edge_class[edges]
        major = (cls[:-1] <= MAJOR_CLASS_MAX) & (cls[1:] <= MAJOR_CLASS_MAX)
        p_red = np.where(major, cfg.red_light_probability[1], cfg.red_light_probability[0])
        red = rng.random(len(inner)) < p_red
        node_v = np.where(turning, cfg.turn_speed_mps, np.inf)
        node_v = np.where(red, 0.0, node_v)
        vlim[inner] = np.minimum(vlim[inner], node_v)
        dwell[inner[red]] = rng.uniform(*cfg.red_light_s, red.sum())
    vlim[0] = vlim[-1] = 0.0
    # closed-form kinematics: v^2(s_i) = min_j (vlim^2(s_j) + 2 a |s_i - s_j|) over j before (accel) / after (decel)
    v2 = np.minimum.accumulate(vlim**2 - 2 * cfg.accel_mps2 * s) + 2 * cfg.accel_mps2 * s
    back = (vlim**2 + 2 * cfg.decel_mps2 * s)[::-1]
    v2 = np.minimum(v2, np.minimum.accumulate(back)[::-1] - 2 * cfg.decel_mps2 * s)
    v = np.sqrt(np.maximum(v2, 0.0))
    dt = 2.0 * np.diff(s) / np.maximum(v[:-1] + v[1:], 0.3)
    arrive = t0 + np.concatenate([[0.0], np.cumsum(dt)]) + np.concatenate([[0.0], np.cumsum(dwell)[:-1]])
    xy = np.column_stack([np.interp(s, cum, poly[:, 0]), np.interp(s, cum, poly[:, 1])])
    stops = np.nonzero(dwell > 0)[0]
    if len(stops) == 0:
        return Knots(arrive, xy[:, 0], xy[:, 1], v)
    # a stop is two knots at the same place: arrival and departure
    idx = np.sort(np.concatenate([np.arange(len(s)), stops]))
    dup = np.zeros(len(idx), dtype=bool)
    dup[1:] = idx[1:] == idx[:-1]
    t = arrive[idx] + np.where(dup, dwell[idx], 0.0)
    return Knots(t, xy[idx, 0], xy[idx, 1], v[idx])


def vehicle_day(planner: RoutePlanner, start_node: int, t_start: float, t_end: float, cfg: SimulationConfig,
                rng: np.random.Generator, stop_s: tuple[float, float], break_probability: float,
                break_minutes: tuple[float, float], walking_speed: float | None = None,
                dist_range: tuple[float, float] | None = None, batch: int = 24) -> tuple[Knots, int]:
    """Chain trips (with stops and breaks) from ``t_start`` until ``t_end``; returns knots and the final node.

    Destinations are drawn ahead in batches so that one Dijkstra call (one cost-noise draw per
    batch) routes them all.
    """
    dist_range = dist_range or cfg.trip_distance_m
    by = "length" if walking_speed is not None else "time"
    node = int(start_node)
    t = float(t_start)
    parts: list[Knots] = [Knots.still(t, t, planner.net.node_xy[node])]
    while t < t_end:
        chain = [node]
        for _ in range(batch):
            chain.append(planner.pick_destination(chain[-1], rng, dist_range))
        pred = planner.tree(np.unique(chain[:-1]), rng, cfg.route_noise_sigma, by=by)
        row_of = {int(n): i for i, n in enumerate(np.unique(chain[:-1]))}
        for src, dst in zip(chain[:-1], chain[1:]):
            if t >= t_end:
                break
            if rng.random() < break_probability:
                dur = 60.0 * rng.uniform(*break_minutes)
                parts.append(Knots.still(t, t + dur, planner.net.node_xy[src]))
                t += dur
            nodes = planner.net.node_path(pred[row_of[src]], dst)
            if len(nodes) < 2:
                continue
            trip = drive(planner.net, planner.edges_of_path(nodes), t, cfg, rng, walking_speed)
            parts.append(trip)
            t = float(trip.t[-1])
            dur = rng.uniform(*stop_s)
            parts.append(Knots.still(t, t + dur, trip.end_xy))
            t += dur
            node = dst
    knots = Knots.concat(parts)
    return knots.clip(t_start, t_end), node
