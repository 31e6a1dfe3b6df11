"""Lon/lat <-> projected metres for one city (its UTM zone)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pyproj import CRS, Transformer


def utm_crs_for(lon: float, lat: float) -> str:
    """Return the EPSG code (``"EPSG:326xx"``/``"EPSG:327xx"``) of the UTM zone containing a point."""
    if not (-180.0 <= lon <= 180.0 and -80.0 <= lat <= 84.0):
        raise ValueError(f"lon/lat ({lon}, {lat}) outside the UTM domain")
    zone = int((lon + 180.0) // 6.0) % 60 + 1
    return f"EPSG:{32600 + zone if lat >= 0 else 32700 + zone}"


@dataclass(frozen=True)
class CityProjection:
    """Vectorised conversion between WGS84 lon/lat and the city's projected CRS (metres)."""

    crs: str
    _fwd: Transformer = field(init=False, repr=False, compare=False)
    _inv: Transformer = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        crs = CRS.from_user_input(self.crs)
        object.__setattr__(self, "_fwd", Transformer.from_crs("EPSG:4326", crs, always_xy=True))
        object.__setattr__(self, "_inv", Transformer.from_crs(crs, "EPSG:4326", always_xy=True))

    def to_xy(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Lon/lat arrays -> (n, 2) array of projected metres."""
        x, y = self._fwd.transform(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
        return np.column_stack([np.atleast_1d(x), np.atleast_1d(y)])

    def to_lonlat(self, xy: np.ndarray) -> np.ndarray:
        """(n, 2) projected metres -> (n, 2) array of (lon, lat)."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        lon, lat = self._inv.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([np.atleast_1d(lon), np.atleast_1d(lat)])
