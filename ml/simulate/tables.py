"""Column order and dtypes of the tables this package produces (docs/architecture.md)."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

TS_DTYPE = "datetime64[ns, UTC]"
EVENTS: tuple[str, ...] = ("handover", "periodic", "data", "call", "sms", "attach")

SCHEMAS: dict[str, dict[str, str]] = {
    "towers": {"cell_id": "int64", "site_id": "int64", "lon": "float64", "lat": "float64",
               "azimuth_deg": "float64", "height_m": "float64", "tx_power_dbm": "float64"},
    # hidden simulator truth: the antennas the radio simulates (the towers table is the operator's record of them)
    "antennas": {"cell_id": "int64", "site_id": "int64", "lon": "float64", "lat": "float64",
                 "azimuth_deg": "float64", "height_m": "float64", "tx_power_dbm": "float64", "layer": "int64",
                 "downtilt_deg": "float64", "overshoot": "bool"},
    "gps": {"vehicle_id": "str", "ts": TS_DTYPE, "lon": "float64", "lat": "float64", "speed_mps": "float64"},
    "signaling": {"device_id": "str", "ts": TS_DTYPE, "cell_id": "int64", "event": "str"},
    "mr": {"device_id": "str", "ts": TS_DTYPE, "cell_id": "int64", "rsrp_dbm": "float64"},
    "truth_links": {"device_id": "str", "vehicle_id": "str", "kind": "str"},
    "pairs": {"device_id": "str", "vehicle_id": "str", "day": "str", "overlap_h": "float64",
              "moving_h": "float64", "mismatch_m": "float64", "margin": "float64"},
    "samples": {"sample_id": "str", "device_id": "str", "vehicle_id": "str", "t0": TS_DTYPE, "t1": TS_DTYPE,
                "split": "str", "n_records": "int64", "tile_crs": "str", "tile_x0": "float64",
                "tile_y0": "float64", "tile_size_m": "float64"},
    "sample_truth": {"sample_id": "str", "ts": TS_DTYPE, "lon": "float64", "lat": "float64"},
}


def make_table(name: str, columns: dict[str, object]) -> pd.DataFrame:
    """Build a table with the contract's column order and dtypes (``str`` columns use pandas' string dtype)."""
    schema = SCHEMAS[name]
    missing = set(schema) - set(columns)
    if missing:
        raise ValueError(f"table '{name}': missing columns {sorted(missing)}")
    out = {}
    for col, dtype in schema.items():
        values = columns[col]
        if dtype == TS_DTYPE:
            out[col] = pd.to_datetime(np.asarray(values, dtype="datetime64[ns]"), utc=True)
        elif dtype == "str":
            # pandas' own string dtype (what a Parquet round trip gives back in pandas 3); None -> missing
            out[col] = pd.array(np.asarray(values, dtype=object), dtype="str")
        else:
            out[col] = np.asarray(values, dtype=dtype)
    df = pd.DataFrame(out)
    return df


def seconds_to_ts(seconds: np.ndarray, epoch: np.datetime64) -> np.ndarray:
    """Float seconds since ``epoch`` -> datetime64[ns] (rounded to the millisecond for stable files)."""
    ms = np.round(np.asarray(seconds, dtype=np.float64) * 1000.0).astype(np.int64)
    return epoch.astype("datetime64[ns]") + ms.astype("timedelta64[ms]").astype("timedelta64[ns]")


def ts_to_seconds(ts: pd.Series | np.ndarray, epoch: np.datetime64) -> np.ndarray:
    """datetime column (tz-aware or naive UTC, any resolution) -> float seconds since ``epoch``."""
    ns = pd.DatetimeIndex(pd.to_datetime(ts, utc=True)).as_unit("ns").asi8
    return (ns - epoch.astype("datetime64[ns]").astype(np.int64)) / 1e9


def stable_int(text: str) -> int:
    """A platform-independent 32-bit integer from a string (seeds per-device random streams)."""
    return zlib.crc32(text.encode("utf-8"))


def random_ids(rng: np.random.Generator, n: int, prefix: str, n_hex: int = 12) -> list[str]:
    """``n`` distinct random hex ids: they carry no information about order or links."""
    ids: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        raw = rng.integers(0, 16, size=(n - len(out), n_hex))
        for row in raw:
            s = prefix + "".join("0123456789abcdef"[d] for d in row)
            if s not in ids:
                ids.add(s)
                out.append(s)
    return out
