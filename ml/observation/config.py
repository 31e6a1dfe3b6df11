"""Settings of the cell footprints and the learned observation model (the ``footprints`` stage)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class FootprintConfig(BaseModel):
    """How footprints are counted and read. ``bandwidth_m`` and ``prior_strength`` were chosen on the
    val windows of four cities (``python -m bench.footprints``, docs/results.md); never on test."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # road points every this many metres along each edge: fine against the kernel, a cell's support stays small
    point_spacing_m: float = Field(20.0, gt=0, description="spacing of the road points records are counted on")
    bandwidth_m: float = Field(150.0, gt=0, description="h: Gaussian kernel around each counted road point")
    prior_strength: float = Field(1.0, gt=0, description="alpha: records' worth of the hand-made model in each "
                                  "footprint (w = n / (n + alpha))")
    handover_prior: Literal["handmade", "cells"] = Field(
        "handmade", description="what a handover pair's footprint shrinks toward: the hand-made boundary point, or "
        "the midpoint of the two cells' own learned points (each shrunk toward its hand-made centre)")
