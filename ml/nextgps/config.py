"""Typed configuration of next-GPS prediction (defaults = the ``demo`` profile).

Fields marked **size** are what the ``ci`` profile shortens (``ml/config.py``, stage ``next_gps``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class NextGPSConfig(BaseModel):
    """Next-GPS prediction: the window's signaling plus the GPS of its first ``known_s`` seconds are given;
    the positions at ``known_s + h`` for each horizon ``h`` are predicted and scored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    split: str = Field("test", description="windows the reported numbers come from (scored once)")
    val_split: str = Field("val", description="windows every choice (the video model's Euler steps) is made on")
    known_s: float = Field(
        150.0, gt=0, description="GPS known from t0 to t0 + known_s; 150 s is frame 8 of K = 17 over W = 300 s "
        "(and frame 4 of the ci profile's K = 9), so the known frames end exactly where the prefix does")
    horizons_s: tuple[float, ...] = Field((30.0, 60.0, 120.0), description="prediction horizons after known_s")
    # the evaluation's 100 test windows (two video runs a window: the continuation and its no-prefix
    # ablation, about a second each on the CPU); the gpu profile scores all
    max_samples: int | None = Field(100, ge=1, description="size: cap on scored test windows")
    val_max_samples: int | None = Field(16, ge=1, description="size: cap on val windows used for the choices")
    video_checkpoint: Literal["sft", "gdpo"] = Field("sft", description="which video checkpoint continues the drawing")
    video_steps_choices: tuple[int, ...] = Field(
        (1, 2), description="size: Euler steps tried on val; with one step the known frames are pure source "
        "at the only model call, so the prefix can only inform the model from two steps on")
    video_noise_scale: float = Field(0.0, ge=0.0, description="initial-noise scale, as EvaluationConfig's")
    video_batch_size: int = Field(8, ge=1, description="size: conditions sampled at once")
    video_seed: int = 0
    speed_window_s: float = Field(60.0, gt=0, description="constant velocity: speed from the prefix's last this many s (checked on gridville val: "
                                  "15, 30, 60, 150 s gave 140, 124, 101, 112 m median at +30 s)")
    min_heading_m: float = Field(5.0, gt=0, description="constant velocity: below this displacement the car stands")
    snap_radius_m: float = Field(40.0, gt=0, description="constant velocity: heading edge searched within this radius")

    @model_validator(mode="after")
    def _check(self) -> "NextGPSConfig":
        if not self.horizons_s or min(self.horizons_s) <= 0:
            raise ValueError("next_gps.horizons_s must be one or more positive durations (s)")
        if not self.video_steps_choices or min(self.video_steps_choices) < 1:
            raise ValueError("next_gps.video_steps_choices must be one or more step counts >= 1")
        return self

    def target_times(self) -> list[float]:
        """Seconds since t0 of the predicted positions, one per horizon."""
        return [self.known_s + h for h in self.horizons_s]

