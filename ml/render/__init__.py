"""Map-visual representation: conditioning images, target videos, rendered training arrays.

Colours (a contract with :mod:`ml.decode` and :mod:`ml.rewards`) are in :mod:`ml.render.style`.
"""

from ml.render import style
from ml.render.config import RenderConfig
from ml.render.image import frame_times, render_condition_image, render_road_layer, render_target_video

__all__ = [
    "style",
    "RenderConfig",
    "frame_times",
    "render_condition_image",
    "render_road_layer",
    "render_target_video",
]
