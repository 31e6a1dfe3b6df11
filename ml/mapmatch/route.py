"""Polyline helpers shared by the map matcher, the decoder and the baselines.

All coordinates are projected metres. A route is an ``(m, 2)`` polyline with its cumulative
length ``(m,)`` (``route_cum_m[0] == 0``; zero-length segments are allowed).
"""

from __future__ import annotations

import math

import numpy as np


def polyline_cum_m(xy: np.ndarray) -> np.ndarray:
    """Cumulative Euclidean length along an ``(m, 2)`` polyline, starting at 0."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if len(xy) == 0:
        return np.zeros(0)
    out = np.zeros(len(xy))
    d = xy[1:] - xy[:-1]
    np.cumsum(np.hypot(d[:, 0], d[:, 1]), out=out[1:])
    return out


def point_at_distance(route_xy: np.ndarray, route_cum_m: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Positions ``(q, 2)`` at distances ``s`` along a route (clipped to ``[0, length]``)."""
    route_xy = np.asarray(route_xy, dtype=np.float64).reshape(-1, 2)
    cum = np.asarray(route_cum_m, dtype=np.float64)
    s = np.atleast_1d(np.asarray(s, dtype=np.float64))
    if len(route_xy) == 0:
        return np.full((len(s), 2), np.nan)
    if len(route_xy) == 1:
        return np.repeat(route_xy, len(s), axis=0)
    s = np.clip(s, 0.0, cum[-1])
    idx = np.clip(np.searchsorted(cum, s, side="right") - 1, 0, len(cum) - 2)
    seg = cum[idx + 1] - cum[idx]
    frac = np.where(seg > 0, (s - cum[idx]) / np.where(seg > 0, seg, 1.0), 0.0)
    return route_xy[idx] + frac[:, None] * (route_xy[idx + 1] - route_xy[idx])


def interpolate_along_route(
    route_xy: np.ndarray,
    route_cum_m: np.ndarray,
    anchor_route_m: np.ndarray,
    anchor_t: np.ndarray,
    query_t: np.ndarray,
) -> np.ndarray:
    """Positions ``(q, 2)`` at ``query_t`` by linear interpolation of route distance between anchors.

    Anchors are (time, distance along the route) pairs, e.g. ``MatchResult.point_route_m`` with the
    observation times. NaN anchors are ignored; anchors are sorted by time, anchors sharing a time
    keep their largest distance, and distances are made monotone non-decreasing (a vehicle does
    not move backwards along its own route). Before the first and after the last anchor the
    position is held. With no usable anchor (or an empty route) the result is all NaN.
    """
    q = np.atleast_1d(np.asarray(query_t, dtype=np.float64))
    a_m = np.atleast_1d(np.asarray(anchor_route_m, dtype=np.float64))
    a_t = np.atleast_1d(np.asarray(anchor_t, dtype=np.float64))
    if a_m.shape != a_t.shape:
        raise ValueError(f"anchor_route_m {a_m.shape} and anchor_t {a_t.shape} must have the same shape")
    ok = np.isfinite(a_m) & np.isfinite(a_t)
    a_m, a_t = a_m[ok], a_t[ok]
    if len(a_m) == 0 or len(np.asarray(route_xy).reshape(-1, 2)) == 0:
        return np.full((len(q), 2), np.nan)
    order = np.argsort(a_t, kind="stable")
    a_t, a_m = a_t[order], np.maximum.accumulate(a_m[order])
    # collapse equal times: keep the last (largest, since monotone) distance
    last = np.ones(len(a_t), dtype=bool)
    last[:-1] = a_t[1:] != a_t[:-1]
    a_t, a_m = a_t[last], a_m[last]
    s = np.interp(q, a_t, a_m)  # holds the end values outside [a_t[0], a_t[-1]]
    return point_at_distance(route_xy, route_cum_m, s)


def edge_subline(geom: np.ndarray, edge_length_m: float, o1: float, o2: float) -> np.ndarray:
    """The part of an edge polyline between offsets ``o1 <= o2`` (metres in edge-length units).

    Offsets are expressed in the edge's recorded length (as ``EdgeCandidates.offset_m`` is); they
    are rescaled to the geometry's own length before cutting.
    """
    geom = np.asarray(geom, dtype=np.float64)
    if len(geom) == 2:  # straight edge: the common case, done without cumulative sums
        d = geom[1] - geom[0]
        total = math.hypot(d[0], d[1])
        f = total / edge_length_m / total if edge_length_m > 0 and total > 0 else 0.0
        f1 = min(max(o1 * f, 0.0), 1.0)
        f2 = min(max(o2 * f, f1), 1.0)
        return np.array([geom[0] + f1 * d, geom[0] + f2 * d])
    cum = polyline_cum_m(geom)
    total = cum[-1]
    scale = total / edge_length_m if edge_length_m > 0 else 0.0
    s1 = min(max(o1 * scale, 0.0), total)
    s2 = min(max(o2 * scale, s1), total)
    ends = np.column_stack([np.interp([s1, s2], cum, geom[:, 0]), np.interp([s1, s2], cum, geom[:, 1])])
    inner = geom[(cum > s1) & (cum < s2)]
    return np.vstack([ends[:1], inner, ends[1:]])
