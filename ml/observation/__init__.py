"""The window contract and the observation model: what every method reads about a record.

* :mod:`ml.observation.context`: ``SampleContext`` (one window as the methods see it), ``TowerTable``,
  ``build_sample_contexts``.
* One interface, :class:`ObservationModel`: an observation key (a record's cell, and the cell its
  handover left, from :func:`left_cells`) -> a point estimate and a log-likelihood over candidate
  road positions. Two implementations: :class:`HandmadeObservationModel` (coverage centres, a
  Gaussian) and :class:`LearnedObservationModel` (the city's cell footprints, shrunk toward the
  hand-made model by record count).

Baselines, rendering, serving, seq2seq and the decoder all read records through this package (the decoder
through :class:`RecordEvidence`: a window's records as weighted log-likelihoods for its snapping HMM).
"""

from typing import Protocol

import numpy as np

from ml.observation.context import SampleContext, TowerTable, build_sample_contexts, synthetic_signaling_tables
from ml.observation.config import FootprintConfig
from ml.observation.footprints import (FOOTPRINT_COLUMNS, FOOTPRINT_SPLIT, CellFootprints,
                                       build_cell_footprints, empty_footprints, footprint_problems, footprint_summary,
                                       truth_at_records)
from ml.observation.handmade import (HandmadeObservationConfig, HandmadeObservationModel, emission_sigma_m, left_cells,
                                     positions_of_keys, record_positions, sector_unit_vectors)
from ml.observation.learned import LearnedObservationModel
from ml.observation.evidence import RecordEvidence, context_evidence, record_evidence


class ObservationModel(Protocol):
    """A record, by its key ``(cell, left)``, -> where the phone is."""

    name: str

    @property
    def sigma_m(self) -> float: ...

    def positions(self, cell: np.ndarray, left: np.ndarray) -> np.ndarray:
        """Point estimate ``(n, 2)`` of each key."""

    def spread_m(self, cell: np.ndarray, left: np.ndarray) -> np.ndarray:
        """RMS distance ``(n,)`` of each key's phone from its point estimate (how far to trust it)."""

    def log_likelihood(self, cell: np.ndarray, left: np.ndarray, xy: np.ndarray) -> np.ndarray:
        """Log-density ``(n, K)`` of each key's phone at candidate positions ``xy (n, K, 2)``."""


__all__ = [
    "SampleContext", "TowerTable", "build_sample_contexts", "synthetic_signaling_tables", "ObservationModel",
    "HandmadeObservationConfig", "HandmadeObservationModel", "LearnedObservationModel",
    "CellFootprints", "FootprintConfig", "FOOTPRINT_COLUMNS", "FOOTPRINT_SPLIT", "build_cell_footprints",
    "empty_footprints", "footprint_summary", "footprint_problems", "truth_at_records", "emission_sigma_m", "left_cells",
    "positions_of_keys", "record_positions", "sector_unit_vectors", "RecordEvidence", "record_evidence",
    "context_evidence",
]
