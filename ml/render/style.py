"""Colours and widths of the map-visual representation (a contract with the decoder and rewards).

All colours are RGB ``uint8``. They are chosen so that a decoder can separate the layers by colour
alone, even on blurred or colour-drifted generated frames:

- ``BACKGROUND`` and the road greys are neutral (R = G = B): zero "redness" and "blueness".
- ``RAMP_START`` -> ``RAMP_END`` (the signaling polyline, early -> late) stays green: its
  redness ``R - max(G, B)`` and blueness ``B - max(R, G)`` are both <= -20.
- ``TOWER`` is near-black and neutral.
- ``PATH`` (the ground-truth path drawn so far) is saturated red: redness 190.
- ``HEAD`` (the current-position dot, wider than the path) is saturated blue: blueness 175.

The decoder (``ml.decode``) thresholds these two scores; see ``REDNESS_THRESHOLD`` and
``BLUENESS_THRESHOLD``.
"""

from __future__ import annotations

import numpy as np

BACKGROUND: tuple[int, int, int] = (246, 244, 238)
"""Light paper background (slightly warm; redness/blueness within 2 of neutral)."""

# Road grey level per class (index = ml.cities.ROAD_CLASSES: motorway, trunk, primary, secondary,
# tertiary, residential, other); major roads darker.
ROAD_GREY: tuple[int, ...] = (90, 105, 120, 140, 160, 178, 195)
# Road line width in pixels at the reference resolution ``REFERENCE_RESOLUTION`` (scaled linearly).
ROAD_WIDTH_PX: tuple[float, ...] = (2.5, 2.5, 2.0, 1.5, 1.0, 1.0, 1.0)

RAMP_START: tuple[int, int, int] = (20, 150, 110)
"""Signaling polyline colour at the window start (teal green)."""
RAMP_END: tuple[int, int, int] = (165, 195, 25)
"""Signaling polyline colour at the window end (yellow green)."""
TOWER: tuple[int, int, int] = (35, 35, 35)
"""Serving-tower marker (near black square)."""
PATH: tuple[int, int, int] = (220, 30, 30)
"""Ground-truth path drawn up to the frame time (red)."""
HEAD: tuple[int, int, int] = (30, 60, 235)
"""Head dot at the frame time (blue, wider than the path)."""

# The drawing layer the video model generates (ml.models.layer): channel order, a decoder contract too.
LAYER_CHANNELS: int = 2
PATH_CHANNEL: int = 0
"""Layer channel of the path drawn so far."""
HEAD_CHANNEL: int = 1
"""Layer channel of the head (a soft blob)."""

REFERENCE_RESOLUTION: int = 64
"""Widths in pixels are given at this resolution and scaled by ``resolution / 64``."""

REDNESS_THRESHOLD: float = 60.0
"""Decoder: a pixel is path-coloured when ``R - max(G, B)`` exceeds this (PATH scores 190)."""
BLUENESS_THRESHOLD: float = 60.0
"""Decoder: a pixel is head-coloured when ``B - max(R, G)`` exceeds this (HEAD scores 175)."""


def redness(img: np.ndarray) -> np.ndarray:
    """``R - max(G, B)`` of an ``(..., 3)`` image (uint8 or float in [0, 255]) as float32."""
    a = np.asarray(img, dtype=np.float32)
    return a[..., 0] - np.maximum(a[..., 1], a[..., 2])


def blueness(img: np.ndarray) -> np.ndarray:
    """``B - max(R, G)`` of an ``(..., 3)`` image (uint8 or float in [0, 255]) as float32."""
    a = np.asarray(img, dtype=np.float32)
    return a[..., 2] - np.maximum(a[..., 0], a[..., 1])


def ramp_colours(frac: np.ndarray) -> np.ndarray:
    """Signaling ramp colour for time fractions in [0, 1]: ``(n, 3)`` uint8."""
    f = np.clip(np.asarray(frac, dtype=np.float64), 0.0, 1.0)[:, None]
    c = (1.0 - f) * np.asarray(RAMP_START, dtype=np.float64) + f * np.asarray(RAMP_END, dtype=np.float64)
    return np.round(c).astype(np.uint8)
