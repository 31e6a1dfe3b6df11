"""Map-visual representation: conditioning images, target videos, rendered training arrays.

Colours (a contract with :mod:`ml.decode` and :mod:`ml.rewards`) are in :mod:`ml.render.style`.
Nothing here decodes (``ml.decode`` imports this package, not the other way round): the round-trip
floor and the gallery, which render and decode, are :mod:`ml.evaluation.floor` and
:mod:`ml.evaluation.preview`.
"""

from ml.render import style

# imported on first use: the training path reads only ``style`` and must not pull in pyproj and the geo stack
_LAZY = {
    "RenderConfig": "ml.render.config",
    "frame_times": "ml.render.image",
    "render_condition_image": "ml.render.image",
    "render_road_layer": "ml.render.image",
    "render_target_video": "ml.render.image",
    "RenderedArrays": "ml.render.arrays",
    "render_samples": "ml.render.dataset",
    "prepare_samples": "ml.render.dataset",
    "video_to_model_space": "ml.render.dataset",
    "image_to_model_space": "ml.render.dataset",
    "video_from_model_space": "ml.render.dataset",
}


def __getattr__(name: str):
    """Entry points beyond ``style`` (pyproj, pandas, matplotlib) are imported on first use."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ml.render' has no attribute '{name}'")


__all__ = [*_LAZY, "style"]
