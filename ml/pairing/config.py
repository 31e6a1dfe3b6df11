"""Typed configuration of pairing and sample cutting (defaults = the ``demo`` profile).

Fields marked **size** are what the ``ci`` profile shortens (the ``ci`` world simulates only a few
hours, so the overlap and mobility thresholds must shrink with it).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class PairingConfig(BaseModel):
    """Rules for linking a signaling device to a taxi within a day (paper section 4.1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_overlap_h: float = Field(6.0, ge=0, description="size: time coverage; the paper uses 6 h")
    min_moving_h: float = Field(2.0, ge=0, description="size: the taxi must move this long within the overlap")
    min_records: int = Field(40, ge=1, description="size: device records with a time-aligned taxi position")
    moving_speed_mps: float = Field(2.0, gt=0, description="GPS speed above which the taxi counts as moving")
    max_gps_gap_s: float = Field(60.0, gt=0, description="a record is compared only if a GPS fix is this close in time")
    distance_cap_m: float = Field(3000.0, gt=0, description="distances are clipped here before averaging (robustness)")
    outlier_distance_m: float = Field(2000.0, gt=0, description="a record this far from the taxi is inconsistent")
    # a real network serves a phone from far cells now and then (overshooting masts, cells booked at the wrong
    # site in the tower table): 0.05 / 700 m, chosen on the regular network, paired 8-55 % of the drivers on the
    # layered one; 0.25 / 1,000 m pairs 97.5-100 % of them at precision 1.000 on the four demo cities (issue 27)
    max_outlier_share: float = Field(0.25, ge=0, le=1, description="share of inconsistent records tolerated")
    max_mismatch_m: float = Field(1000.0, gt=0, description="mean (clipped) distance GPS -> serving tower allowed")
    min_spread_ratio: float = Field(
        0.5, ge=0, description="radius of gyration of the serving towers / that of the taxi over the same records: "
        "a phone in the taxi moves with it (rejects stationary phones near a taxi's beat)")
    min_margin: float = Field(0.5, ge=0, description="runner-up mismatch must exceed the best by this fraction")


class SampleConfig(BaseModel):
    """Fixed-duration windows cut from accepted pairs, their evaluation grid, splits and tiles."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_s: float = Field(300.0, gt=0, description="window duration W; with K = 17 frames every 18.75 s the round-trip floor meets 15 m (docs/results.md)")
    stride_s: float = Field(150.0, gt=0, description="window start spacing (< window_s: overlapping windows, same split)")
    min_records: int = Field(4, ge=1, description="signaling records required inside a window")
    max_edge_gap_s: float = Field(
        120.0, gt=0, description="first record at most this long after t0, last at most this long before t1 "
        "(the records, hence the tile, must span the window)")
    min_movement_m: float = Field(500.0, ge=0, description="GPS path length required inside a window")
    max_gps_gap_s: float = Field(30.0, gt=0, description="largest GPS gap allowed inside a window (truth quality)")
    eval_interval_s: float = Field(15.0, gt=0, description="ground truth resampled every this many seconds")
    split_fractions: tuple[float, float, float] = Field((0.7, 0.15, 0.15), description="train, val, test by (day, taxi)")
    max_samples_per_pair: int | None = Field(None, ge=1, description="size: cap windows per accepted pair")

    @model_validator(mode="after")
    def _check(self) -> "SampleConfig":
        if abs(sum(self.split_fractions) - 1.0) > 1e-6 or min(self.split_fractions) < 0:
            raise ValueError("samples.split_fractions must be three non-negative numbers summing to 1")
        if self.eval_interval_s > self.window_s:
            raise ValueError("samples.eval_interval_s must not exceed samples.window_s")
        return self
