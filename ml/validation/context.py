"""What a table is validated against: the city's bounding box and the reference tables for foreign keys."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Mapping

import numpy as np
import pandas as pd

METRES_PER_DEGREE_LAT = 111_320.0


def _unique_ids(values: Any) -> pd.Index | None:
    """Unique non-null ids as a hash-indexed ``pd.Index`` (object dtype for text: fast C lookups)."""
    if values is None:
        return None
    if isinstance(values, pd.Index) and values.is_unique and not values.hasnans:
        return values
    unique = pd.unique(pd.Series(values).dropna())
    arr = np.asarray(unique)
    if not (np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)):
        arr = np.asarray(unique, dtype=object)
    return pd.Index(arr, dtype=arr.dtype, copy=False)


@dataclass(frozen=True, eq=False)
class ValidationContext:
    """City bounding box (WGS84 degrees) with a margin, plus reference ids for foreign keys.

    A reference left as ``None`` means the corresponding foreign-key rule is skipped (and listed in
    ``ValidationReport.skipped``), e.g. when validating ``towers`` no reference is needed. References
    may be given as any array-like; they are stored as unique ``pd.Index`` (hash lookups reused
    across validations).
    """

    lon_min: float
    lat_min: float
    lon_max: float
    lat_max: float
    margin_m: float = 3000.0
    tower_cell_ids: pd.Index | None = None
    device_ids: pd.Index | None = None
    vehicle_ids: pd.Index | None = None
    sample_ids: pd.Index | None = None

    def __post_init__(self) -> None:
        for name in ("tower_cell_ids", "device_ids", "vehicle_ids", "sample_ids"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _unique_ids(value))
        if not (self.lon_min <= self.lon_max and self.lat_min <= self.lat_max):
            raise ValueError(
                f"ValidationContext: bbox must satisfy lon_min <= lon_max and lat_min <= lat_max, got "
                f"({self.lon_min}, {self.lat_min}, {self.lon_max}, {self.lat_max})"
            )
        if self.margin_m < 0:
            raise ValueError(f"ValidationContext: margin_m must be >= 0, got {self.margin_m}")

    # ------------------------------------------------------------------ bbox with margin
    def lon_bounds(self) -> tuple[float, float]:
        """Allowed longitude interval: bbox widened by ``margin_m`` at the bbox's worst latitude."""
        worst_lat = min(89.0, max(abs(self.lat_min), abs(self.lat_max)))
        pad = self.margin_m / (METRES_PER_DEGREE_LAT * math.cos(math.radians(worst_lat)))
        return self.lon_min - pad, self.lon_max + pad

    def lat_bounds(self) -> tuple[float, float]:
        """Allowed latitude interval: bbox widened by ``margin_m``."""
        pad = self.margin_m / METRES_PER_DEGREE_LAT
        return self.lat_min - pad, self.lat_max + pad

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_bbox(
        cls, bbox: tuple[float, float, float, float], margin_m: float = 3000.0, **references: Any
    ) -> "ValidationContext":
        """From ``(west, south, east, north)`` degrees (the ``roads.bbox`` order of city files)."""
        w, s, e, n = (float(v) for v in bbox)
        ctx = cls(lon_min=w, lat_min=s, lon_max=e, lat_max=n, margin_m=margin_m)
        return ctx.with_references(**references) if references else ctx

    @classmethod
    def from_road_network(cls, net: Any, margin_m: float = 3000.0) -> "ValidationContext":
        """From a :class:`ml.cities.RoadNetwork` (projected bounds converted back to lon/lat)."""
        xmin, ymin, xmax, ymax = net.bounds
        corners = np.array([[xmin, ymin], [xmin, ymax], [xmax, ymin], [xmax, ymax]], dtype=np.float64)
        lonlat = net.projection.to_lonlat(corners)
        return cls(
            lon_min=float(lonlat[:, 0].min()), lat_min=float(lonlat[:, 1].min()),
            lon_max=float(lonlat[:, 0].max()), lat_max=float(lonlat[:, 1].max()), margin_m=margin_m,
        )

    def with_references(
        self,
        *,
        tower_cell_ids: Any = None,
        device_ids: Any = None,
        vehicle_ids: Any = None,
        sample_ids: Any = None,
    ) -> "ValidationContext":
        """A copy with the given reference ids set (unique values are kept; others unchanged)."""
        updates: dict[str, Any] = {}
        for name, values in (
            ("tower_cell_ids", tower_cell_ids), ("device_ids", device_ids),
            ("vehicle_ids", vehicle_ids), ("sample_ids", sample_ids),
        ):
            if values is not None:
                updates[name] = values
        return replace(self, **updates)

    def with_tables(self, tables: Mapping[str, pd.DataFrame]) -> "ValidationContext":
        """A copy whose references come from already-validated tables (towers, signaling, gps, samples)."""
        refs: dict[str, Any] = {}
        sources = (
            ("tower_cell_ids", "towers", "cell_id"), ("device_ids", "signaling", "device_id"),
            ("vehicle_ids", "gps", "vehicle_id"), ("sample_ids", "samples", "sample_id"),
        )
        for key, table, column in sources:
            df = tables.get(table)
            if df is not None and column in df.columns:
                refs[key] = df[column]
        return self.with_references(**refs)
