"""Deterministic file locations for one city (the Dagster paths resource wraps this)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

@dataclass(frozen=True)
class CityPaths:
    """``data/<city>/`` holds the dataset (DVC-versioned); ``outputs/<city>/`` derived files."""

    root: Path
    city: str

    @property
    def data(self) -> Path:
        return self.root / "data" / self.city

    @property
    def outputs(self) -> Path:
        return self.root / "outputs" / self.city

    def table(self, name: str) -> Path:
        """Parquet file of a data-contract table (``towers``, ``gps``, ...) or an auxiliary one."""
        return self.data / f"{name}.parquet"

    @property
    def roads_dir(self) -> Path:
        return self.data / "roads"

    @property
    def truth_links(self) -> Path:
        """Hidden simulator truth (device -> vehicle); read only to score the pairing."""
        return self.data / "truth_links.parquet"

    @property
    def sample_truth(self) -> Path:
        """Ground-truth positions of every sample at the evaluation interval."""
        return self.data / "sample_truth.parquet"

    def render_dir(self, resolution: int, frames: int) -> Path:
        return self.outputs / "render" / f"r{resolution}_k{frames}"

    @property
    def checkpoints(self) -> Path:
        return self.outputs / "checkpoints"

    @property
    def predictions(self) -> Path:
        return self.outputs / "predictions"

    @property
    def report(self) -> Path:
        return self.outputs / "report"
