"""Typed configuration of the seq2seq baseline and its profiles (sizes only)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Seq2SeqConfig(BaseModel):
    """Model, training and snapping settings (defaults: the ``demo`` profile, CPU)."""

    model_config = ConfigDict(extra="forbid")

    # model
    d_model: int = Field(64, ge=8, description="size: width of the transformer")
    n_heads: int = Field(4, ge=1)
    encoder_layers: int = Field(3, ge=1, description="size: self-attention layers over the records")
    decoder_layers: int = Field(2, ge=1, description="size: layers of the evaluation-time queries")
    # 0: gridville val (python -m bench.seq2seq --footprints), snapped median of the first 100 val windows 113.8 m
    # against 114.4 m at 0.1 (unsnapped, all val windows, 114.8 vs 116.8), and dropout's random masks were a
    # quarter of a CPU training step
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    n_freqs: int = Field(6, ge=1, description="Fourier frequencies of positions and times")
    max_records: int = Field(64, ge=2, description="records per window (longer traces are subsampled evenly)")
    scale_m: float = Field(1000.0, gt=0.0, description="metres per model unit (positions are relative to the "
                           "window's mean observation position)")
    # off: gridville val (python -m bench.seq2seq --footprints), snapped median of the first 100 val windows 118.3 m
    # with it (best step 1,600) against 114.4 m without (best step 700); unsnapped, all val windows, 116.4 vs 116.8
    record_spread: bool = Field(False, description="each record token also reads how far to trust its position: "
                                "the observation model's RMS spread of the key's phones (ObservationModel.spread_m; "
                                "the footprint's where the cell has history)")
    # next-GPS (ml.nextgps): the window's GPS up to prefix_s is given as extra tokens
    prefix_s: float | None = Field(None, gt=0.0, description="None: reconstruction (the signaling only). A number: "
                                   "the GPS truth at the evaluation times <= prefix_s is read as extra tokens, the "
                                   "prior of the later times starts there and only the later times count in the loss")
    # 'records': gridville val (python -m bench.seq2seq_prefix), mean over +30/60/120 s of the median error
    # 114.3 m; 'blended' 126.8 m, 'anchored' 135.1 m: the network places the future from the prefix tokens itself
    prefix_prior: Literal["anchored", "blended", "records"] = Field(
        "records", description="prior of the times after the prefix: 'anchored' = the records' prior shifted so that "
        "it starts at the last known GPS position; 'blended' = that shift fading linearly to none at the window's "
        "end; 'records' = the records' prior as in reconstruction")
    # training
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.01, ge=0.0)
    warmup_steps: int = Field(50, ge=0)
    # `make demo` within ten minutes: on gridville val the best step was 700-1,600 (1,200 for the default;
    # bench.seq2seq), so 1,200 steps cap it and four validations without improvement end it sooner
    max_steps: int = Field(1200, ge=1, description="size: optimiser steps at most (early stopping ends sooner)")
    val_every_n_steps: int = Field(100, ge=1)
    patience: int = Field(4, ge=1, description="validations without improvement of val/loss before stopping")
    augment_rotation: bool = Field(True, description="rotate each training window by a random angle (records, "
                                   "priors and truth together): the model sees shapes, not the city's orientation")
    seed: int = 0
    accelerator: str = "auto"
    progress_bar: bool = True
    experiment_name: str = "sig2gps-seq2seq"
    run_name: str | None = None
    # snapping of the regressed positions (ml.decode.snap_route, the video decoder's road snapping)
    snap: bool = True
    # 120 m: gridville val windows, median error 137.7 m at 120 m (30 m: 141.0, 60 m: 138.4, 250 m: 137.8)
    snap_sigma_m: float = Field(120.0, gt=0.0, description="emission sigma of the snapping HMM")


def seq2seq_profile(name: str, **overrides) -> Seq2SeqConfig:
    """The Seq2SeqConfig of a profile (``ci``, ``demo``, ``gpu``) plus field overrides."""
    table: dict[str, dict] = {
        "ci": dict(d_model=32, encoder_layers=1, decoder_layers=1, max_steps=30, val_every_n_steps=10, batch_size=8,
                   warmup_steps=0, progress_bar=False),
        "demo": {},
        "gpu": dict(d_model=256, n_heads=8, encoder_layers=6, decoder_layers=4, batch_size=256, max_steps=20000, patience=8,
                    val_every_n_steps=500, warmup_steps=500),
    }
    if name not in table:
        raise ValueError(f"unknown seq2seq profile '{name}' (choose one of {', '.join(table)})")
    return Seq2SeqConfig.model_validate({**table[name], **overrides})
