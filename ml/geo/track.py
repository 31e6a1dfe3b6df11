"""The one interpolation of positions along time (MaR, the MR baselines, the serving fallback)."""

from __future__ import annotations

import numpy as np


def collapse_same_time(t: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A track with strictly increasing times: sorted, positions sharing a time averaged.

    A track whose times already increase strictly is returned as given (same arrays).
    """
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if len(t) <= 1 or (np.diff(t) > 0).all():
        return t, xy
    ut, inv = np.unique(t, return_inverse=True)
    cnt = np.bincount(inv, minlength=len(ut))
    return ut, np.column_stack([np.bincount(inv, weights=xy[:, k], minlength=len(ut)) / cnt for k in (0, 1)])


def interpolate_positions(t: np.ndarray, xy: np.ndarray, query_t: np.ndarray, what: str = "positions") -> np.ndarray:
    """Piecewise-linear positions ``(n_query, 2)`` float64 at ``query_t`` from a track ``(t, xy)``.

    * Positions are held before the first and after the last time (``np.interp``); one position
      is held everywhere.
    * Positions sharing a time are averaged, and the track is sorted by time (``np.interp``
      needs increasing times). A strictly increasing track is used as given.
    * An empty track raises ``ValueError`` naming ``what``: there is nothing to interpolate, and
      a caller that wants NaN for an empty window (MaR) says so itself.
    """
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    q = np.asarray(query_t, dtype=np.float64)
    if len(t) != len(xy):
        raise ValueError(f"interpolate_positions: {len(t)} times but {len(xy)} {what}")
    if len(t) == 0:
        raise ValueError(f"cannot interpolate {what} in time: the track is empty")
    t, xy = collapse_same_time(t, xy)
    return np.column_stack([np.interp(q, t, xy[:, 0]), np.interp(q, t, xy[:, 1])])
