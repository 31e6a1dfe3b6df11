"""Video flow model (the specification): Wan backbone, flow matching, Euler and SDE samplers, GDPO's pure
functions (advantages, policy loss, rollouts), checkpoints. The trainers are in ``ml.train`` (sft, gdpo).

Names are imported lazily (``from ml.models import VideoFlowModel`` works) so that importing one
sub-module (e.g. ``ml.models.sde``) does not pull in Lightning or diffusers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "ModelConfig": "ml.models.config",
    "model_preset": "ml.models.config",
    "VideoFlowModel": "ml.models.backbone",
    "build_video_model": "ml.models.backbone",
    "PretrainedNotFoundError": "ml.models.backbone",
    "interpolate": "ml.models.flow_matching",
    "target_velocity": "ml.models.flow_matching",
    "sample_timesteps": "ml.models.flow_matching",
    "flow_matching_loss": "ml.models.flow_matching",
    "timestep_grid": "ml.models.flow_matching",
    "euler_sample": "ml.models.sampling",
    "save_video_model": "ml.models.checkpoint",
    "load_video_model": "ml.models.checkpoint",
    "RenderedVideoDataModule": "ml.models.data",
    "RenderedVideoDataset": "ml.models.data",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ml.models' has no attribute '{name}'")
