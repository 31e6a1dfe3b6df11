"""Resources: file locations, MLflow tracking and compute settings."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from ml.cities.config import project_root
from ml.paths import CityPaths


class PathsResource(dg.ConfigurableResource):
    """Where data (``data/``, DVC-versioned) and derived outputs (``outputs/``) live."""

    root: str = ""

    @property
    def root_path(self) -> Path:
        return Path(self.root).resolve() if self.root else project_root()

    def city(self, city: str, profile: str) -> CityPaths:
        """The city's folders for ``profile`` (each profile has its own, see ``ml.paths.CityPaths``)."""
        return CityPaths(self.root_path, city, profile)


class MLflowResource(dg.ConfigurableResource):
    """MLflow tracking: an absolute ``sqlite:///`` URI under ``mlflow/`` unless a server URI is given
    (resource config, or ``SIG2GPS_MLFLOW_TRACKING_URI``). Not ``MLFLOW_TRACKING_URI``: mlflow itself
    rewrites that variable whenever any code calls ``mlflow.set_tracking_uri`` in the process."""

    tracking_uri: str = ""

    def uri(self, root: Path) -> str:
        from ml.tracking import default_tracking_uri

        return self.tracking_uri or os.environ.get("SIG2GPS_MLFLOW_TRACKING_URI") or default_tracking_uri(root)


class ComputeResource(dg.ConfigurableResource):
    """Profile (sizes) and device settings for the heavy stages."""

    profile: str = "demo"
    accelerator: str = "auto"
    devices: int = 1
    # the radio network of simulated cities (ml.simulate.config.SCENARIOS); empty: the city file's, else the
    # default layered network. 'regular' reproduces the results made before issue 27.
    scenario: str = ""

    def torch_device(self) -> str:
        """The device sampling runs on (evaluation): ``cuda`` when the accelerator allows it and one is present."""
        import torch

        if self.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
            return "cuda"
        if self.accelerator in ("gpu", "cuda"):
            raise RuntimeError(f"compute.accelerator is '{self.accelerator}' but no CUDA device is available")
        return "cpu"

    def stage_config(self, stage: str, city=None, **overrides):
        from ml.config import stage_config

        if stage == "simulation" and self.scenario:
            overrides = {"scenario": self.scenario, **overrides}
        return stage_config(stage, self.profile, city, **overrides)
