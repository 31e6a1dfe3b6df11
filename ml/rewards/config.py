"""Typed configuration of the Traj-GDPO verifiable rewards."""

from __future__ import annotations

from pydantic import BaseModel, Field


class RewardConfig(BaseModel):
    """Parameters of the reward mappings (defaults are the ``demo`` profile).

    - ``distance_scale_m`` (d0): a head dot ``d`` metres from the truth scores ``exp(-d / d0)``;
      0 m -> 1, d0 -> 0.37, 3 d0 -> 0.05. A missing generated dot scores 0 (the worst value).
    - ``n_distance_frames``: how many frames the distance reward looks at (first, last and the
      rest evenly spaced in between; 5 = first, last and three intermediate frames).
    - ``min_displacement_px``: a start-to-end displacement shorter than this (generated or true)
      has no direction; the direction reward is then 0 (neither right nor wrong).
    """

    distance_scale_m: float = Field(200.0, gt=0)
    n_distance_frames: int = Field(5, ge=2)
    min_displacement_px: float = Field(0.5, ge=0)
