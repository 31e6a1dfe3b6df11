"""The one pixel <-> model-space conversion: uint8 pixels in [0, 255] <-> floats in [-1, 1].

``model = pixel / 127.5 - 1`` and ``pixel = round((clamp(model, -1, 1) + 1) * 127.5)``. Every
place that turns rendered frames into model inputs, or model outputs back into frames, calls
these functions (``ml.models.data``, ``ml.models.sampling``, ``ml.models.layer``,
``ml.decode.heads``, ``ml.render.dataset``); they only convert values and keep the axes as they
are (moving the channel axis is the caller's business).

Each function takes a NumPy array or a torch tensor and returns the same kind. torch is not
imported here (the rendering and decoding paths run without it): a tensor is recognised by its
type's module.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SCALE: float = 127.5
"""Half the uint8 range: one unit of model space is 127.5 pixel levels."""


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def unit_from_255(x: Any) -> Any:
    """Float pixel values in [0, 255] -> [-1, 1] (same dtype, no clamping)."""
    return x / SCALE - 1.0


def unit_to_255(x: Any) -> Any:
    """Float model-space values in [-1, 1] -> [0, 255] (same dtype, no clamping, no rounding)."""
    return (x + 1.0) * SCALE


def to_model_space(pixels: Any) -> Any:
    """uint8 (or float in [0, 255]) pixels -> float32 in [-1, 1], same shape."""
    if _is_tensor(pixels):
        return unit_from_255(pixels.float())
    return unit_from_255(np.asarray(pixels, dtype=np.float32))


def to_uint8(x: Any) -> Any:
    """Model-space values -> uint8 pixels, same shape: clamped to [-1, 1], rounded half to even.

    A torch tensor is detached and converted on its device (the result stays there).
    """
    if _is_tensor(x):
        return unit_to_255(x.detach().float().clamp(-1, 1)).round().byte()
    a = np.clip(np.asarray(x, dtype=np.float32), -1.0, 1.0)
    return np.round(unit_to_255(a)).astype(np.uint8)
