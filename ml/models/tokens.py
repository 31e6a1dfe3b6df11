"""Signaling records as cross-attention tokens (the ablation flag ``ModelConfig.signaling_tokens``).

Tensor format of a batch of records: ``records`` float32 (B, R, 4) with columns

* 0: column of the record's position in the tile, as a fraction of the tile side (0 = west edge, 1 = east);
  the position is the observation model's (``ml.observation.record_positions``: the cell's coverage
  centre, a handover on the cell boundary), not the mast;
* 1: row of that position, as a fraction of the tile side (0 = north edge, 1 = south);
* 2: time fraction of the record inside the window, in [0, 1];
* 3: event type id (index into ``EVENT_TYPES``, as a float; ``EVENT_UNKNOWN`` for a name outside it);

and ``mask`` bool (B, R), True where a row holds a record. Padded rows may hold anything.

On disk (``tokens_<shard:04d>.npy`` written by ``ml.render.dataset.render_samples``) the same
columns, float32 (n, R, 4), padding rows NaN. The event vocabulary is the data contract's
(``ml.validation.contract.EVENTS``), so ids agree between the renderer and this encoder.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ml.render.arrays import subsample_evenly
from ml.validation.contract import EVENTS

#: Event vocabulary of the token encoder: the data contract's, in its order (one shared constant).
EVENT_TYPES: tuple[str, ...] = EVENTS
EVENT_ID: dict[str, int] = {e: i for i, e in enumerate(EVENT_TYPES)}
#: id of an event name outside ``EVENT_TYPES`` (< ``ModelConfig.n_event_types`` = 8).
EVENT_UNKNOWN: int = len(EVENT_TYPES)


def records_to_array(
    colrow_frac: np.ndarray, time_frac: np.ndarray, events: Sequence[str] | np.ndarray, max_records: int
) -> tuple[np.ndarray, np.ndarray]:
    """One sample's records -> ((max_records, 4) float32, (max_records,) bool mask).

    ``colrow_frac`` (n, 2) are tile fractions (pixel / resolution), ``time_frac`` (n,) in [0, 1],
    ``events`` names from ``EVENT_TYPES`` (unknown names map to the last id + 1) or integer ids.
    Traces longer than ``max_records`` are subsampled evenly in time order (first and last kept).
    """
    colrow_frac = np.asarray(colrow_frac, dtype=np.float32).reshape(-1, 2)
    time_frac = np.asarray(time_frac, dtype=np.float32).reshape(-1)
    n = len(time_frac)
    if len(colrow_frac) != n or len(events) != n:
        raise ValueError(f"records_to_array: {len(colrow_frac)} positions, {n} times, {len(events)} events differ")
    ev = np.array([EVENT_ID.get(e, EVENT_UNKNOWN) if isinstance(e, str) else int(e) for e in events], np.float32)
    idx = subsample_evenly(n, max_records)
    out = np.zeros((max_records, 4), np.float32)
    mask = np.zeros(max_records, bool)
    m = len(idx)
    out[:m, :2] = colrow_frac[idx]
    out[:m, 2] = time_frac[idx]
    out[:m, 3] = ev[idx]
    mask[:m] = True
    return out, mask


class SignalingTokenEncoder(nn.Module):
    """(B, R, 4) records + (B, R) mask -> (B, R, text_dim) tokens.

    Positions and times go through Fourier features, the event type through an embedding, then a
    two-layer MLP. Padded rows are replaced by the caller (see ``VideoFlowModel``) with the null token.
    """

    def __init__(self, text_dim: int, n_event_types: int = 8, n_freqs: int = 8) -> None:
        super().__init__()
        self.n_event_types = n_event_types
        self.register_buffer("freqs", (2.0 ** torch.arange(n_freqs, dtype=torch.float32)) * math.pi, persistent=False)
        fdim = 3 * 2 * n_freqs + 3
        self.event_embedding = nn.Embedding(n_event_types, text_dim)
        self.mlp = nn.Sequential(nn.Linear(fdim, text_dim), nn.SiLU(), nn.Linear(text_dim, text_dim))

    def forward(self, records: torch.Tensor) -> torch.Tensor:
        pos = records[..., :3].float()
        ang = pos.unsqueeze(-1) * self.freqs  # (B, R, 3, F)
        feats = torch.cat([pos, ang.sin().flatten(-2), ang.cos().flatten(-2)], dim=-1)
        ev = records[..., 3].round().long().clamp(0, self.n_event_types - 1)
        return self.mlp(feats) + self.event_embedding(ev)
