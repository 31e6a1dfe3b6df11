"""Helpers for tests that import a city from files: raw tables with recognisable personal ids.

The tables come from the simulator (the ``ci`` profile, a small synthetic grid city), with every
device and vehicle id replaced by a string a search would spot (``PHONE-ALICE-0001``,
``TAXI-BOB-0002``). They are written as CSV or Parquet under ``<root>/incoming/<fmt>/`` and a city
file ``cities/<name>.toml`` imports them (``data_source = "import"``) over the same road network.
Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from ml.cities import CityConfig, ImportedTables, RoadSource, write_city

KEY = "test-pseudonym-key-0123456789abcdef"
ROADS = dict(source="synthetic", kind="grid", size_km=1.5)
SEED = 3
NAMES = ["ALICE", "BOB", "CAROL", "DAVE", "ERIN", "FRANK", "GRACE", "HEIDI", "IVAN", "JUDY", "MALLORY", "OSCAR",
         "PEGGY", "RUPERT", "SYBIL", "TRENT", "VICTOR", "WALTER"]
TABLES = ("towers", "gps", "signaling", "mr", "truth_links")


def simulate_raw_tables() -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Contract tables of a simulated ci-profile city with recognisable raw device/vehicle ids, and those ids."""
    import tempfile

    from ml.cities import load_road_network
    from ml.config import stage_config
    from ml.simulate import simulate_measurement_reports, simulate_signaling, simulate_taxi_gps, simulate_towers

    city = CityConfig(name="rawsource", seed=SEED, roads=RoadSource(**ROADS))
    with tempfile.TemporaryDirectory() as tmp:
        net = load_road_network(city, cache_dir=Path(tmp))
    cfg = stage_config("simulation", "ci", city)
    base = city.seed * 1000  # the stage seeds of dagster_project.assets.raw
    towers, antennas = simulate_towers(net, cfg, seed=base + 1)
    gps = simulate_taxi_gps(net, cfg, seed=base + 2)
    signaling, truth = simulate_signaling(net, antennas, gps, cfg, seed=base + 3)
    mr = simulate_measurement_reports(net, antennas, gps, signaling, truth, cfg, seed=base + 3)

    devices = sorted(set(signaling["device_id"]) | set(truth["device_id"]) | set(mr["device_id"]))
    vehicles = sorted(set(gps["vehicle_id"]) | set(truth["vehicle_id"].dropna()))
    dev_map = {d: f"PHONE-{NAMES[i % len(NAMES)]}-{i + 1:04d}" for i, d in enumerate(devices)}
    veh_map = {v: f"TAXI-{NAMES[(i + 1) % len(NAMES)]}-{i + 40:04d}" for i, v in enumerate(vehicles)}

    def rename(df: pd.DataFrame) -> pd.DataFrame:
        out = df.copy()
        if "device_id" in out:
            out["device_id"] = out["device_id"].map(dev_map)
        if "vehicle_id" in out:
            out["vehicle_id"] = out["vehicle_id"].map(veh_map).where(out["vehicle_id"].notna(), None)
        return out

    tables = {"towers": towers, "gps": rename(gps), "signaling": rename(signaling), "mr": rename(mr),
              "truth_links": rename(truth)}
    raw_ids = set(dev_map.values()) | set(veh_map.values())
    assert "PHONE-ALICE-0001" in raw_ids and any(v.startswith("TAXI-BOB-") for v in raw_ids)
    return tables, sorted(raw_ids)


def write_table(df: pd.DataFrame, path: Path) -> None:
    """As a user would export it: CSV with ISO 8601 UTC timestamps, or Parquet with the frame's dtypes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        out = df.copy()
        for c in out.columns:
            if isinstance(out[c].dtype, pd.DatetimeTZDtype):
                out[c] = out[c].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        out.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False)


def write_import_city(root: Path, name: str, fmt: str, tables: dict[str, pd.DataFrame]) -> dict[str, str]:
    """Write the raw tables under ``incoming/<fmt>/`` and ``cities/<name>.toml`` importing them.

    Returns table -> the path as the city file gives it (relative to ``root``).
    """
    rel = {t: f"incoming/{fmt}/{t}.{fmt}" for t in TABLES}
    for t in TABLES:
        write_table(tables[t], root / rel[t])
    write_city(CityConfig(name=name, seed=SEED, roads=RoadSource(**ROADS), data_source="import",
                          imported=ImportedTables(**rel)), root, overwrite=True)
    return rel


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (relative path -> hex digest)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def step_failures(instance, run_id: str) -> list[str]:
    """The error text of every failed step of a run: the message, and the user error it wraps."""
    import dagster as dg

    out = []
    for rec in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records:
        err = rec.event_log_entry.dagster_event.step_failure_data.error
        parts = []
        while err is not None:
            parts.append(err.message.strip())
            err = err.cause
        out.append("\n".join(parts))
    return out
