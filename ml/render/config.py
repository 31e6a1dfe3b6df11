"""Typed configuration of the map-visual representation (defaults are the ``demo`` profile)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ml.render import style


class RenderConfig(BaseModel):
    """Rendering sizes. Colours are fixed constants in :mod:`ml.render.style` (a decoder contract).

    - ``resolution``: image side in pixels (32 tests, 64 CPU demo, 128 or 256 GPU).
    - ``frames``: K frames of the target video, ``4k + 1`` (9 default, 17 finer); frame ``k``
      shows the truth up to ``t0 + k * W / (K - 1)``.
    - ``zoom_sizes_m`` / ``margin_m``: tile sides (quantised zoom levels) and margin used by
      ``ml.geo.choose_tile`` on the serving-tower positions of a window.
    - ``max_token_records``: rows of the signaling-token shards (``ml.models.tokens`` format).
    - widths are in pixels at 64 px and scale linearly with the resolution (``min_width_px``
      floor), so a picture looks the same at every resolution.
    """

    model_config = ConfigDict(extra="forbid")

    resolution: int = Field(64, ge=16, le=1024)
    frames: int = Field(17, ge=2, le=129, description="K; the floor depends on W / (K - 1), see docs/results.md")
    zoom_sizes_m: tuple[float, ...] = Field((1500.0, 2500.0, 4000.0, 6000.0), min_length=1)
    margin_m: float = Field(300.0, ge=0.0)
    road_width_px: tuple[float, ...] = Field(style.ROAD_WIDTH_PX, min_length=7, max_length=7)
    signal_width_px: float = Field(1.0, gt=0.0)
    tower_size_px: float = Field(2.0, gt=0.0, description="side of the square tower marker")
    towers: Literal["serving", "all"] = Field("serving", description="mark the window's serving towers or all towers in the tile")
    trace: Literal["serving_towers", "records"] = Field(
        "records", description="what the signaling polyline joins, in time order: the serving towers, or each "
        "record's position under the city's observation model (its footprint's point when the city has history)")
    path_width_px: float = Field(1.0, gt=0.0)
    head_radius_px: float = Field(2.0, gt=0.0, description="must stay wider than the path line")
    min_width_px: float = Field(1.0, gt=0.0, description="floor of every scaled width")
    min_head_radius_px: float = Field(1.5, gt=0.0, description="floor of the scaled head radius")
    shard_size: int = Field(256, ge=1)
    workers: int = Field(2, ge=1)
    n_previews: int = Field(4, ge=0)
    max_token_records: int = Field(64, ge=1, description="R of tokens_<shard>.npy: signaling records kept per "
                                   "window as tokens (more are subsampled evenly in time; fewer padded with NaN)")

    @field_validator("frames")
    @classmethod
    def _four_k_plus_one(cls, v: int) -> int:
        if (v - 1) % 4 != 0:
            raise ValueError(f"frames must be 4k + 1 (5, 9, 17, ...), got {v}")
        return v

    def scaled(self, width_px: float, resolution: int | None = None) -> float:
        """A width given at 64 px, scaled to ``resolution`` (default this config's) with the floor."""
        res = self.resolution if resolution is None else resolution
        return max(self.min_width_px, width_px * res / style.REFERENCE_RESOLUTION)

    def head_radius(self, resolution: int | None = None) -> float:
        res = self.resolution if resolution is None else resolution
        r = max(self.min_head_radius_px, self.head_radius_px * res / style.REFERENCE_RESOLUTION)
        return max(r, 0.5 * self.scaled(self.path_width_px, res) + 1.0)

    def trace_xy(self, serving_xy, record_obs_xy):
        """The points the signaling polyline joins (``trace``): the serving towers' or the records' own positions."""
        return serving_xy if self.trace == "serving_towers" else record_obs_xy
