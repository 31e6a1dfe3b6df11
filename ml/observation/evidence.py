"""A window's records as evidence for a decoder's map matching.

The video decoder snaps the drawn route to the roads with an HMM whose emission trusts the drawing
(``ml.decode.trajectory.snap_route``). :class:`RecordEvidence` adds what the records themselves say at
their times: each record's log-likelihood under an observation model (the city's footprints), weighted,
on the route point nearest in time. The drawing chooses the candidates; the records re-weigh them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ml.observation.handmade import left_cells


@dataclass(frozen=True)
class RecordEvidence:
    """Records of one window (``t``: seconds since the window start) read through ``model``, scaled by ``weight``."""

    t: np.ndarray
    cell: np.ndarray
    left: np.ndarray
    model: object  # an ml.observation.ObservationModel
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not (len(self.t) == len(self.cell) == len(self.left)):
            raise ValueError(f"RecordEvidence: t, cell and left differ in length ({len(self.t)}, {len(self.cell)}, "
                             f"{len(self.left)})")
        if not self.weight >= 0:
            raise ValueError(f"RecordEvidence: weight must be >= 0 (got {self.weight})")

    def __len__(self) -> int:
        return len(self.t)

    def log_likelihood(self, rows: np.ndarray, cand_xy: np.ndarray) -> np.ndarray:
        """``weight`` x the log-likelihood ``(q, K)`` of records ``rows (q,)`` at candidates ``cand_xy (q, K, 2)``."""
        rows = np.asarray(rows, dtype=np.int64)
        return self.weight * self.model.log_likelihood(self.cell[rows], self.left[rows], cand_xy)


def record_evidence(t: np.ndarray, cell: np.ndarray, event: np.ndarray, model: object,
                    weight: float = 1.0) -> RecordEvidence:
    """Evidence of records ``(t, cell_id, event)`` under ``model``: keys as every method reads them (``left_cells``)."""
    cell = np.asarray(cell, dtype=np.int64).reshape(-1)
    return RecordEvidence(np.asarray(t, dtype=np.float64).reshape(-1), cell, left_cells(cell, np.asarray(event)),
                          model, float(weight))


def context_evidence(ctx, weight: float) -> RecordEvidence | None:
    """A window's (``SampleContext``) records as evidence under its observation model (the hand-made one when
    the window carries none); ``None`` when ``weight`` is 0 (the decoder then reads the drawing alone)."""
    if weight <= 0:
        return None
    model = ctx.observation
    if model is None:
        from ml.observation.handmade import HandmadeObservationModel

        model = HandmadeObservationModel(ctx.towers_xy)
    return record_evidence(ctx.record_t, ctx.records["cell_id"].to_numpy(), ctx.records["event"].to_numpy(), model,
                           weight)
