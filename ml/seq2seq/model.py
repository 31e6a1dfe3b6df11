"""The seq2seq network: a transformer encoder over the records, evaluation-time queries that attend to them.

Each query starts from its prior position (the records' observation positions interpolated to its
time) and the network adds a correction; the output layer is zero-initialised, so an untrained model
predicts the prior. Positions and times enter through Fourier features.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ml.seq2seq.config import Seq2SeqConfig
from ml.seq2seq.data import EVENT_GPS, EVENT_UNKNOWN


class FourierFeatures(nn.Module):
    """(..., d) -> (..., d * (2 n_freqs + 1)): the values and their sines and cosines at octave frequencies."""

    def __init__(self, n_freqs: int, base: float = math.pi / 4.0) -> None:
        super().__init__()
        self.register_buffer("freqs", base * 2.0 ** torch.arange(n_freqs, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ang = x[..., None] * self.freqs  # (..., d, F)
        return torch.cat([x, ang.sin().flatten(-2), ang.cos().flatten(-2)], dim=-1)

    def out_dim(self, d: int) -> int:
        return d * (2 * len(self.freqs) + 1)


class RecordsToPositions(nn.Module):
    """(records, masks, query times, priors) -> positions (B, Q, 2) in model units."""

    def __init__(self, cfg: Seq2SeqConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.fourier = FourierFeatures(cfg.n_freqs)
        self.record_spread = cfg.record_spread
        # the spread enters as its log (spreads span tens to hundreds of metres), beside the Fourier features
        self.record_in = nn.Sequential(nn.Linear(self.fourier.out_dim(3) + int(cfg.record_spread), d), nn.GELU(),
                                       nn.Linear(d, d))
        # one more event id, the known GPS positions, only for next-GPS models (reconstruction checkpoints keep theirs)
        self.event = nn.Embedding(EVENT_GPS + 1 if cfg.prefix_s is not None else EVENT_UNKNOWN + 1, d)
        self.query_in = nn.Sequential(nn.Linear(self.fourier.out_dim(3), d), nn.GELU(), nn.Linear(d, d))
        enc = nn.TransformerEncoderLayer(d, cfg.n_heads, 4 * d, cfg.dropout, batch_first=True, norm_first=True)
        dec = nn.TransformerDecoderLayer(d, cfg.n_heads, 4 * d, cfg.dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(enc, cfg.encoder_layers, enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(dec, cfg.decoder_layers)
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, 2)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, records: torch.Tensor, record_mask: torch.Tensor, query_t: torch.Tensor,
                query_prior: torch.Tensor, query_mask: torch.Tensor) -> torch.Tensor:
        event = records[..., 3].long().clamp(0, self.event.num_embeddings - 1)
        feats = self.fourier(records[..., :3])
        if self.record_spread:
            feats = torch.cat([feats, torch.log(records[..., 4:5].clamp_min(1e-3))], dim=-1)
        tokens = self.record_in(feats) + self.event(event)
        memory = self.encoder(tokens, src_key_padding_mask=~record_mask)
        q = self.query_in(self.fourier(torch.cat([query_prior, query_t[..., None]], dim=-1)))
        h = self.decoder(q, memory, tgt_key_padding_mask=~query_mask, memory_key_padding_mask=~record_mask)
        return query_prior + self.out(self.norm(h))
