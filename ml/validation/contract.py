"""The data contract (docs/architecture.md, "Tables"): required columns and their logical types.

Shared by validation (dtype rules) and ingest (coercion of imported CSV/Parquet files).
Logical kinds:

- ``"int"``: int64 (numpy ``int64`` or pandas nullable ``Int64``)
- ``"float"``: float64 (numpy ``float64`` or pandas ``Float64``)
- ``"str"``: strings (pandas ``str``/``string`` dtype, or ``object`` holding only strings)
- ``"ts"``: timezone-aware UTC timestamps, ``datetime64[<unit>, UTC]`` (``ns`` on disk; any
  unit is accepted by validation, ingest always produces ``ns``)
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

Kind = Literal["int", "float", "str", "ts"]

EVENTS: tuple[str, ...] = ("handover", "periodic", "data", "call", "sms", "attach")
SPLITS: tuple[str, ...] = ("train", "val", "test")
TRUTH_KINDS: tuple[str, ...] = ("driver", "passenger", "pedestrian", "car", "stationary")

#: Required columns per table, in contract order, with their logical kind.
TABLE_COLUMNS: dict[str, dict[str, Kind]] = {
    "towers": {
        "cell_id": "int", "site_id": "int", "lon": "float", "lat": "float",
        "azimuth_deg": "float", "height_m": "float", "tx_power_dbm": "float",
    },
    "gps": {"vehicle_id": "str", "ts": "ts", "lon": "float", "lat": "float", "speed_mps": "float"},
    "signaling": {"device_id": "str", "ts": "ts", "cell_id": "int", "event": "str"},
    "mr": {"device_id": "str", "ts": "ts", "cell_id": "int", "rsrp_dbm": "float"},
    "pairs": {
        "device_id": "str", "vehicle_id": "str", "day": "str", "overlap_h": "float",
        "moving_h": "float", "mismatch_m": "float", "margin": "float",
    },
    "samples": {
        "sample_id": "str", "device_id": "str", "vehicle_id": "str", "t0": "ts", "t1": "ts",
        "split": "str", "n_records": "int", "tile_crs": "str", "tile_x0": "float",
        "tile_y0": "float", "tile_size_m": "float",
    },
    "sample_truth": {"sample_id": "str", "ts": "ts", "lon": "float", "lat": "float"},
    "truth_links": {"device_id": "str", "vehicle_id": "str", "kind": "str"},
    # ml.observation.footprints: one row per (cell or handover pair, road point); no device or vehicle id
    "footprints": {
        "kind": "str", "cell_id": "int", "left_cell_id": "int", "n_records": "int", "mean_x": "float",
        "mean_y": "float", "mean_lon": "float", "mean_lat": "float", "spread_m": "float", "point_x": "float",
        "point_y": "float", "point_lon": "float", "point_lat": "float", "weight": "float",
    },
}
FOOTPRINT_KINDS: tuple[str, ...] = ("cell", "handover")

#: ``df.attrs`` key of an imported frame: the file it was read from, as the city file names it.
SOURCE_ATTR = "sig2gps_source"
#: Index name of an imported frame whose index holds each row's 0-based data-row position in that file.
SOURCE_ROW_INDEX = "source_row"

#: Columns holding personal identifiers, pseudonymised on import (namespace per column).
PSEUDONYMISED_COLUMNS: dict[str, str] = {"device_id": "device", "vehicle_id": "vehicle"}

KIND_LABEL: dict[str, str] = {
    "int": "int64",
    "float": "float64",
    "str": "str",
    "ts": "datetime64[ns, UTC]",
}


def dtype_matches(series: pd.Series, kind: Kind) -> bool:
    """True when ``series`` has the dtype the contract asks for ``kind`` (O(1) except object columns)."""
    dtype = series.dtype
    if kind == "int":
        return pd.api.types.is_integer_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype) and dtype.itemsize == 8
    if kind == "float":
        return pd.api.types.is_float_dtype(dtype) and dtype.itemsize == 8
    if kind == "ts":
        return isinstance(dtype, pd.DatetimeTZDtype) and str(dtype.tz) == "UTC"
    if kind == "str":
        if isinstance(dtype, pd.StringDtype):
            return True
        if dtype == np.dtype(object):
            values = series.dropna()
            # pandas' inference is vectorised in C; an all-null object column counts as strings.
            return len(values) == 0 or pd.api.types.infer_dtype(values, skipna=True) == "string"
        return False
    raise ValueError(f"unknown column kind {kind!r}")
