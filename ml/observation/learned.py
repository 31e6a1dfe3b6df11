"""The learned observation model: each record read through its cell's (or handover pair's) footprint.

A record with key ``k`` (a cell, or a (left, entered) handover pair) puts the phone at ``p`` with density

    f_k(p) = w_k * sum_j pi_kj N(p; r_kj, h^2 I) + (1 - w_k) * N(p; c_k, sigma^2 I),   w_k = n_k / (n_k + alpha)

where ``r_kj`` are the road points the key's train records were counted on, with weights ``pi_kj``
(:mod:`ml.observation.footprints`), ``h`` the kernel bandwidth, ``c_k`` and ``sigma`` the hand-made
model's point and spread, ``n_k`` the key's record count and ``alpha`` the prior strength in records:
a Dirichlet-style mix that is the hand-made model for a key without history and tends to the
empirical kernel density as its history grows. The point estimate is the same mix of the means,
``w_k * mean_k + (1 - w_k) * c_k``. ``h`` and ``alpha`` (``FootprintConfig``) are chosen
on val windows (``bench/footprints.py``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml.observation.config import FootprintConfig
from ml.observation.context import TowerTable
from ml.observation.footprints import CellFootprints
from ml.observation.handmade import HandmadeObservationConfig, HandmadeObservationModel, gaussian_log_density


class LearnedObservationModel:
    """Footprints bound to a city's towers: point estimates and log-likelihoods of observation keys."""

    name = "learned"

    def __init__(self, footprints: pd.DataFrame | CellFootprints, towers: TowerTable,
                 cfg: FootprintConfig | None = None,
                 handmade: HandmadeObservationConfig | None = None) -> None:
        self.footprints = footprints if isinstance(footprints, CellFootprints) else CellFootprints(footprints, towers)
        self.towers = towers
        self.cfg = cfg or FootprintConfig()
        self.handmade = HandmadeObservationModel(towers, handmade or HandmadeObservationConfig())

    @property
    def sigma_m(self) -> float:
        """The hand-made model's sigma (the HMM's candidate radius and transition scale follow it)."""
        return self.handmade.sigma_m

    def history_weight(self, cell: np.ndarray, left: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(row, w)``: each key's footprint row (-1 without history) and its weight ``n / (n + alpha)``."""
        row = self.footprints.lookup(cell, left)
        n = np.zeros(len(row))
        has = row >= 0
        n[has] = self.footprints.n_records[row[has]]
        return row, n / (n + self.cfg.prior_strength)

    def prior_positions(self, cell: np.ndarray, left: np.ndarray) -> np.ndarray:
        """The point each key shrinks toward: the hand-made one; for a handover pair with
        ``handover_prior == "cells"``, the midpoint of the two cells' own (learned) point estimates."""
        cell = np.asarray(cell, dtype=np.int64).reshape(-1)
        left = np.asarray(left, dtype=np.int64).reshape(-1)
        ho = left >= 0
        if self.cfg.handover_prior == "handmade" or not ho.any():
            return self.handmade.positions(cell, left)
        pos = self.positions(cell, np.full(len(cell), -1, dtype=np.int64))
        pos[ho] = 0.5 * (pos[ho] + self.positions(left[ho], np.full(int(ho.sum()), -1, dtype=np.int64)))
        return pos

    def positions(self, cell: np.ndarray, left: np.ndarray) -> np.ndarray:
        """Point estimate ``(n, 2)`` of each key: the history mean and the prior point, mixed by count."""
        prior = self.prior_positions(cell, left)
        row, w = self.history_weight(cell, left)
        mean = prior.copy()
        mean[row >= 0] = self.footprints.mean_xy[row[row >= 0]]
        return w[:, None] * mean + (1.0 - w[:, None]) * prior

    def spread_m(self, cell: np.ndarray, left: np.ndarray) -> np.ndarray:
        """RMS distance ``(n,)`` of each key's phone from its point estimate ``p``: the history's share
        ``w (spread^2 + |mean - p|^2)`` plus the hand-made share ``(1 - w) (2 sigma^2 + |prior - p|^2)``
        (``spread``: the train records' RMS distance from their mean; the kernel's smoothing is left out, so a
        key whose phones sit on one street reads as tight)."""
        prior = self.prior_positions(cell, left)
        row, w = self.history_weight(cell, left)
        p = self.positions(cell, left)
        var = (1.0 - w) * (2.0 * self.sigma_m**2 + ((prior - p) ** 2).sum(-1))
        has = row >= 0
        if has.any():
            fp, r = self.footprints, row[has]
            d_mean = ((fp.mean_xy[r] - p[has]) ** 2).sum(-1)
            var[has] += w[has] * (fp.spread_m[r] ** 2 + d_mean)
        return np.sqrt(var)

    def log_likelihood(self, cell: np.ndarray, left: np.ndarray, xy: np.ndarray) -> np.ndarray:
        """Log-density (per m^2) of each key's phone at candidate positions ``xy (n, K, 2)`` -> ``(n, K)``.

        NaN candidates (padding) give NaN.
        """
        xy = np.asarray(xy, dtype=np.float64)
        log_prior = gaussian_log_density(xy, self.prior_positions(cell, left), self.sigma_m)
        row, w = self.history_weight(cell, left)
        has = row >= 0
        out = np.log1p(-w)[:, None] + log_prior
        if not has.any():
            return out
        fp = self.footprints
        idx = np.nonzero(has)[0]
        lo, hi = fp.offsets[row[idx]], fp.offsets[row[idx] + 1]
        cnt = hi - lo
        which = np.repeat(np.arange(len(idx)), cnt)  # support point -> position in idx
        starts = np.concatenate([[0], np.cumsum(cnt)[:-1]])
        sup = np.arange(int(cnt.sum())) - starts[which] + lo[which]  # rows of the keys' support points
        h = self.cfg.bandwidth_m
        d2 = ((xy[idx][which] - fp.points[sup][:, None, :]) ** 2).sum(axis=-1)  # (S, K)
        comp = np.log(fp.weights[sup])[:, None] - 0.5 * d2 / h**2  # log pi_j + kernel, without the constant
        safe = np.where(np.isfinite(comp), comp, -np.inf)
        top = np.maximum.reduceat(safe, starts, axis=0)  # (m, K)
        top_s = np.where(np.isfinite(top), top, 0.0)
        with np.errstate(divide="ignore"):  # padding candidates (NaN) sum to 0: log 0 = -inf, then NaN below
            lse = top_s + np.log(np.add.reduceat(np.exp(safe - top_s[which]), starts, axis=0))
        log_kde = lse - np.log(2.0 * np.pi * h**2) + np.log(w[idx])[:, None]
        with np.errstate(invalid="ignore"):
            out[idx] = np.logaddexp(out[idx], log_kde)
        out[~np.isfinite(xy).all(axis=-1)] = np.nan
        return out
