"""Deterministic file locations for one city (the Dagster paths resource wraps this)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

def roads_dir(root: Path, city: str) -> Path:
    """``data/<city>/roads/``: the road network, the same for every profile."""
    return Path(root) / "data" / city / "roads"


@dataclass(frozen=True)
class CityPaths:
    """Where one city's files live for one profile.

    ``data/<city>/<profile>/`` holds the dataset (DVC-versioned per city and profile, pointer
    ``data/<city>/<profile>.dvc``); ``outputs/<city>/<profile>/`` the derived files. Profiles change
    sizes, so each has its own folders: a ``gpu`` run never overwrites what a ``demo`` run wrote.
    The road network does not depend on the profile and is shared (``data/<city>/roads/``).
    """

    root: Path
    city: str
    profile: str

    def __post_init__(self) -> None:
        from ml.config import PROFILES

        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile '{self.profile}' (choose one of {', '.join(PROFILES)})")

    @property
    def data(self) -> Path:
        return self.root / "data" / self.city / self.profile

    @property
    def data_version_file(self) -> Path:
        """DVC's pointer file of :attr:`data` (written by ``dvc add``)."""
        return self.data.with_name(f"{self.profile}.dvc")

    @property
    def outputs(self) -> Path:
        return self.root / "outputs" / self.city / self.profile

    @property
    def logs(self) -> Path:
        return self.outputs / "logs"

    def table(self, name: str) -> Path:
        """Parquet file of a data-contract table (``towers``, ``gps``, ...) or an auxiliary one."""
        return self.data / f"{name}.parquet"

    def operator_day(self, day: str) -> Path:
        """``data/<city>/<profile>/operator/<day>/``: one simulated operator day (``ml.scale``), its pairs and windows."""
        return self.data / "operator" / day

    @property
    def roads_dir(self) -> Path:
        return roads_dir(self.root, self.city)

    @property
    def truth_links(self) -> Path:
        """Hidden simulator truth (device -> vehicle); read only to score the pairing."""
        return self.data / "truth_links.parquet"

    @property
    def footprints(self) -> Path:
        """The city's cell footprints (``ml.observation.footprints``), learned from the train windows."""
        return self.data / "cell_footprints.parquet"

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
