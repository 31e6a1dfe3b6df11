"""The hand-made observation model: where a record puts the phone, from the tower table alone.

A record sits at its cell's coverage centre (the site shifted along the sector azimuth); a handover
record midway between the centres of the cell it left and the cell it entered. Its log-likelihood
over road positions is an isotropic Gaussian around that point with a cell-sized sigma (the
industrial HMM's emission). Every signaling method reads records through this model or through the
learned one (:mod:`ml.observation.learned`), which shrinks toward it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ml.observation.context import TowerTable


@dataclass(frozen=True)
class HandmadeObservationConfig:
    """Settings of the hand-made observation model (defaults for 300-600 m inter-site distance).

    Checked on the gridville 'val' split (never on 'test'): the observation model (sector shift,
    handover boundary) moves the industrial HMM's point error by ~40 m RMSE, sigma by a few metres.
    """

    # A cell's coverage centre is its site shifted along the sector azimuth by
    # sector_shift_factor * (median site spacing): the centroid of a 120 deg sector of radius R
    # lies at 2 R sin(60 deg) / (3 * pi / 3) = 0.55 R from the mast, and R is about one site
    # spacing. 0.5 (val: 0.4-0.6 within 3 m RMSE; 0 = the mast, the old co-site position).
    # Cells without an azimuth (omni, or no azimuth_deg column) stay at the mast.
    sector_shift_factor: float = 0.5
    # A handover record is taken on the boundary between the cell left and the cell entered: its
    # observation is the midpoint of the two coverage centres (per-record RMSE to the truth on
    # val: 206 m at the new cell's centre, 134 m at the midpoint; 300 m at the mast).
    handover_boundary: bool = True
    sigma_m: float | None = None  # emission sigma; None: sigma_factor * median site spacing, clipped
    sigma_factor: float = 0.5
    sigma_min_m: float = 100.0
    sigma_max_m: float = 800.0


def left_cells(cell: np.ndarray, event: np.ndarray, handover_boundary: bool = True) -> np.ndarray:
    """The cell each record's handover left (the previous record's cell), ``-1`` for a record that is not a
    handover between two different cells (or for every record when ``handover_boundary`` is off).

    ``(cell, left)`` is a record's observation key: a plain cell, or a (left, entered) handover pair.
    """
    cell = np.asarray(cell, dtype=np.int64).reshape(-1)
    left = np.full(len(cell), -1, dtype=np.int64)
    if handover_boundary and len(cell) > 1:
        ho = (np.asarray(event[1:]).astype(str) == "handover") & (cell[1:] != cell[:-1])
        left[1:][ho] = cell[:-1][ho]
    return left


def sector_unit_vectors(towers: TowerTable, cell_ids: np.ndarray) -> np.ndarray:
    """Unit vectors (east, north) of the cells' sector azimuths, ``(n, 2)``; zero where unknown."""
    return towers.sector_units[towers.index_of(cell_ids)]  # computed once per table: a hot path per window


def coverage_centres(cell: np.ndarray, towers: TowerTable, cfg: HandmadeObservationConfig | None = None) -> np.ndarray:
    """Each cell's coverage centre ``(n, 2)``: its site shifted along the sector azimuth."""
    cfg = cfg or HandmadeObservationConfig()
    cell = np.asarray(cell, dtype=np.int64).reshape(-1)
    if len(cell) == 0:
        return np.zeros((0, 2))
    spacing = towers.median_site_spacing_m
    shift = cfg.sector_shift_factor * spacing if np.isfinite(spacing) else 0.0
    # site + shift x sector direction, per cell once per table (elementwise the same arithmetic as per record)
    return towers.coverage_centres_by_row(float(shift))[towers.index_of(cell)]


def record_positions(cell: np.ndarray, event: np.ndarray, towers: TowerTable,
                     cfg: HandmadeObservationConfig | None = None) -> np.ndarray:
    """Projected position ``(n, 2)`` of each record of one time-ordered trace: the hand-made model.

    A record sits at its cell's coverage centre (the site shifted along the sector azimuth by
    ``sector_shift_factor`` x the median site spacing); a handover record (``handover_boundary``)
    midway between the centres of the cell it left (the previous record's) and the cell it entered.
    ``cfg`` is any :class:`HandmadeObservationConfig` (``IndustrialHMMConfig`` is one).
    """
    cfg = cfg or HandmadeObservationConfig()
    return positions_of_keys(np.asarray(cell, dtype=np.int64).reshape(-1),
                             left_cells(cell, event, cfg.handover_boundary), towers, cfg)


def positions_of_keys(cell: np.ndarray, left: np.ndarray, towers: TowerTable,
                      cfg: HandmadeObservationConfig | None = None) -> np.ndarray:
    """Hand-made position ``(n, 2)`` of each observation key: the cell's coverage centre, or for a
    handover (``left >= 0``) the midpoint of the centres of the cell left and the cell entered."""
    cell = np.asarray(cell, dtype=np.int64).reshape(-1)
    left = np.asarray(left, dtype=np.int64).reshape(-1)
    if len(cell) == 0:
        return np.zeros((0, 2))
    pos = coverage_centres(cell, towers, cfg)
    ho = left >= 0
    if ho.any():
        pos[ho] = 0.5 * (pos[ho] + coverage_centres(left[ho], towers, cfg))
    return pos


def emission_sigma_m(towers: TowerTable, cfg: HandmadeObservationConfig | None = None) -> float:
    """The hand-made model's Gaussian sigma for a tower table: ``sigma_factor`` x median site spacing
    (300 m when unknown), clipped to ``[sigma_min_m, sigma_max_m]``; ``cfg.sigma_m`` when set."""
    cfg = cfg or HandmadeObservationConfig()
    sigma = cfg.sigma_m
    if sigma is None:
        spacing = towers.median_site_spacing_m
        sigma = cfg.sigma_factor * spacing if np.isfinite(spacing) else 300.0
    return float(np.clip(sigma, cfg.sigma_min_m, cfg.sigma_max_m))


def gaussian_log_density(xy: np.ndarray, centre: np.ndarray, sigma_m: float | np.ndarray) -> np.ndarray:
    """Log-density (per square metre) of an isotropic 2-D Gaussian: ``xy (n, K, 2)``, ``centre (n, 2)`` -> ``(n, K)``."""
    s = np.asarray(sigma_m, dtype=np.float64)
    s = s.reshape(-1, 1) if s.ndim else s
    d2 = ((np.asarray(xy) - np.asarray(centre)[:, None, :]) ** 2).sum(axis=-1)
    return -0.5 * d2 / s**2 - np.log(2.0 * np.pi * s**2)


@dataclass(frozen=True)
class HandmadeObservationModel:
    """The hand-made model bound to a city's towers: point estimates and their Gaussian log-likelihood."""

    towers: TowerTable
    cfg: HandmadeObservationConfig = HandmadeObservationConfig()

    name: ClassVar[str] = "handmade"

    @property
    def sigma_m(self) -> float:
        return emission_sigma_m(self.towers, self.cfg)

    def positions(self, cell: np.ndarray, left: np.ndarray) -> np.ndarray:
        """Point estimate ``(n, 2)`` of each observation key (``left``: :func:`left_cells`)."""
        return positions_of_keys(cell, left, self.towers, self.cfg)

    def spread_m(self, cell: np.ndarray, left: np.ndarray) -> np.ndarray:
        """RMS distance ``(n,)`` of each key's phone from its point estimate: sqrt(2) sigma (a 2-D Gaussian)."""
        return np.full(len(np.asarray(cell).reshape(-1)), np.sqrt(2.0) * self.sigma_m)

    def log_likelihood(self, cell: np.ndarray, left: np.ndarray, xy: np.ndarray) -> np.ndarray:
        """Log-density (per m^2) of each record's phone at candidate positions ``xy (n, K, 2)`` -> ``(n, K)``."""
        return gaussian_log_density(xy, self.positions(cell, left), self.sigma_m)
