"""Map-visual representation: conditioning images, target videos, rendered training arrays.

Colours (a contract with :mod:`ml.decode` and :mod:`ml.rewards`) are in :mod:`ml.render.style`.
Nothing here decodes (``ml.decode`` imports this package, not the other way round): the round-trip
floor and the gallery, which render and decode, are :mod:`ml.evaluation.floor` and
:mod:`ml.evaluation.preview`.
"""

from ml.render import style
from ml.render.config import RenderConfig
from ml.render.image import frame_times, render_condition_image, render_road_layer, render_target_video

_LAZY = {
    "RenderedArrays": "ml.render.arrays",
    "render_samples": "ml.render.dataset",
    "prepare_samples": "ml.render.dataset",
    "video_to_model_space": "ml.render.dataset",
    "image_to_model_space": "ml.render.dataset",
    "video_from_model_space": "ml.render.dataset",
}


def __getattr__(name: str):
    """Heavier entry points (pandas, matplotlib) are imported on first use."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ml.render' has no attribute '{name}'")


__all__ = [
    *_LAZY,
    "style",
    "RenderConfig",
    "frame_times",
    "render_condition_image",
    "render_road_layer",
    "render_target_video",
]
