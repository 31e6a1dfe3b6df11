"""Square map tiles chosen from the signaling positions alone, and their pixel georeference.

Pixel convention: row 0 is the north edge, column 0 the west edge; pixel (r, c) covers
x in [x0 + c*mpp, x0 + (c+1)*mpp) and y in (y1 - (r+1)*mpp, y1 - r*mpp], with y1 = y0 + size_m.
Continuous pixel coordinates (col, row) have pixel centres at integer + 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Tile:
    """A square tile in a projected CRS: lower-left corner (x0, y0) and side ``size_m`` in metres."""

    crs: str
    x0: float
    y0: float
    size_m: float

    def metres_per_pixel(self, resolution: int) -> float:
        return self.size_m / float(resolution)

    def xy_to_pixel(self, xy: np.ndarray, resolution: int) -> np.ndarray:
        """(n, 2) projected metres -> (n, 2) continuous pixel coordinates (col, row)."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        mpp = self.metres_per_pixel(resolution)
        col = (xy[:, 0] - self.x0) / mpp
        row = (self.y0 + self.size_m - xy[:, 1]) / mpp
        return np.column_stack([col, row])

    def pixel_to_xy(self, colrow: np.ndarray, resolution: int) -> np.ndarray:
        """(n, 2) continuous pixel coordinates (col, row) -> (n, 2) projected metres."""
        colrow = np.asarray(colrow, dtype=np.float64).reshape(-1, 2)
        mpp = self.metres_per_pixel(resolution)
        x = self.x0 + colrow[:, 0] * mpp
        y = self.y0 + self.size_m - colrow[:, 1] * mpp
        return np.column_stack([x, y])

    def contains(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        return (
            (xy[:, 0] >= self.x0)
            & (xy[:, 0] <= self.x0 + self.size_m)
            & (xy[:, 1] >= self.y0)
            & (xy[:, 1] <= self.y0 + self.size_m)
        )

    def as_dict(self) -> dict:
        return {"tile_crs": self.crs, "tile_x0": self.x0, "tile_y0": self.y0, "tile_size_m": self.size_m}

    @classmethod
    def from_record(cls, rec) -> "Tile":
        """Build from a mapping/row with ``tile_crs``, ``tile_x0``, ``tile_y0``, ``tile_size_m``."""
        return cls(str(rec["tile_crs"]), float(rec["tile_x0"]), float(rec["tile_y0"]), float(rec["tile_size_m"]))


def choose_tile(
    signaling_xy: np.ndarray,
    crs: str,
    zoom_sizes_m: Sequence[float],
    margin_m: float,
) -> Tile:
    """Choose the tile for a window from its signaling (serving-tower) positions only.

    The tile is centred on the bounding box of the positions; its side is the smallest of
    ``zoom_sizes_m`` that holds the box plus ``margin_m`` on every side (the largest if none does),
    so that a few scales repeat across samples. It never looks at the ground truth, which is
    unknown at inference.
    """
    xy = np.asarray(signaling_xy, dtype=np.float64).reshape(-1, 2)
    if len(xy) == 0:
        raise ValueError("choose_tile needs at least one signaling position")
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    need = float(np.max(hi - lo)) + 2.0 * margin_m
    sizes = sorted(float(s) for s in zoom_sizes_m)
    size = next((s for s in sizes if s >= need), sizes[-1])
    cx, cy = (lo + hi) / 2.0
    return Tile(crs=crs, x0=float(cx - size / 2.0), y0=float(cy - size / 2.0), size_m=size)
