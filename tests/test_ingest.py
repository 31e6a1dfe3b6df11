"""Import of user-supplied CSV/Parquet tables: coercion with clear errors, keyed pseudonyms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml.cities import CityConfig, ImportedTables, RoadSource
from ml.ingest import (
    KEY_ENV_VAR,
    IngestError,
    PseudonymKeyError,
    coerce_table,
    key_from_env,
    load_imported_tables,
    pseudonymise,
)
from ml.validation import TABLE_COLUMNS, ValidationContext, dtype_matches, validate_tables

KEY = "test-key-0123456789abcdef"
RAW_DEVICES = ["+4915112345678", "imsi-262011234567890", "dev-three"]
RAW_VEHICLES = ["TAXI-B-1234", "TAXI-B-5678"]


def raw_frames() -> dict[str, pd.DataFrame]:
    """Raw tables as a user would supply them: text timestamps, raw personal ids, an extra column."""
    rng = np.random.default_rng(1)
    towers = pd.DataFrame({
        "cell_id": np.arange(1, 7), "site_id": [1, 1, 1, 2, 2, 2],
        "lon": rng.uniform(11.01, 11.09, 6), "lat": rng.uniform(48.01, 48.09, 6),
        "azimuth_deg": [0, 120, 240, 0, 120, 240], "height_m": [25.0] * 6, "tx_power_dbm": [46.0] * 6,
    })
    times = pd.date_range("2024-03-01 08:00", periods=8, freq="30s", tz="UTC")
    gps = pd.DataFrame({
        "vehicle_id": [RAW_VEHICLES[1]] * 4 + [RAW_VEHICLES[0]] * 4,
        "ts": [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in times],
        "lon": rng.uniform(11.02, 11.08, 8), "lat": rng.uniform(48.02, 48.08, 8), "speed_mps": [8.0] * 8,
    })
    signaling = pd.DataFrame({
        "device_id": [RAW_DEVICES[i % 3] for i in range(12)],
        "ts": [(times[0] + pd.Timedelta(seconds=20 * i)).strftime("%Y-%m-%d %H:%M:%S") for i in range(12)],
        "cell_id": rng.integers(1, 7, 12), "event": ["periodic", "handover", "data"] * 4,
        "msisdn": ["+49..."] * 12,  # not in the contract: dropped on import
    })
    mr = pd.DataFrame({
        "device_id": [RAW_DEVICES[0]] * 3, "ts": ["2024-03-01T08:00:00+01:00"] * 3,
        "cell_id": [1, 2, 3], "rsrp_dbm": [-85.0, -92.5, -101.0],
    })
    truth = pd.DataFrame({
        "device_id": RAW_DEVICES, "vehicle_id": [RAW_VEHICLES[0], None, None],
        "kind": ["driver", "passenger", "stationary"],
    })
    return {"towers": towers, "gps": gps, "signaling": signaling, "mr": mr, "truth_links": truth}


def write_city(root: Path, fmt: str, frames: dict[str, pd.DataFrame] | None = None) -> CityConfig:
    frames = frames or raw_frames()
    folder = root / "incoming"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, df in frames.items():
        path = folder / f"{name}.{fmt}"
        df.to_csv(path, index=False) if fmt == "csv" else df.to_parquet(path, index=False)
        paths[name] = f"incoming/{name}.{fmt}"
    return CityConfig(
        name="imported_city", roads=RoadSource(source="synthetic", kind="grid"), data_source="import",
        imported=ImportedTables(**paths),
    )


@pytest.fixture()
def key_env(monkeypatch):
    monkeypatch.setenv(KEY_ENV_VAR, KEY)


def _all_text(tables: dict[str, pd.DataFrame]) -> str:
    return "\n".join(df.to_csv(index=False) for df in tables.values())


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_import_coerces_pseudonymises_and_validates(tmp_path, key_env, fmt):
    city = write_city(tmp_path, fmt)
    tables = load_imported_tables(city, tmp_path)
    assert set(tables) == {"towers", "gps", "signaling", "mr", "truth_links"}
    for name, df in tables.items():
        assert list(df.columns) == list(TABLE_COLUMNS[name])  # extra columns dropped, contract order
        for column, kind in TABLE_COLUMNS[name].items():
            assert dtype_matches(df[column], kind), (name, column, df[column].dtype)
        if "ts" in df:
            assert str(df["ts"].dtype) == "datetime64[ns, UTC]"
    # +01:00 offsets are converted to UTC
    assert tables["mr"]["ts"].iloc[0] == pd.Timestamp("2024-03-01 07:00", tz="UTC")
    # raw ids never appear in any output cell; the key neither
    text = _all_text(tables)
    for raw in RAW_DEVICES + RAW_VEHICLES + [KEY]:
        assert raw not in text
    # pseudonyms are consistent across tables, so foreign keys still join
    assert set(tables["mr"]["device_id"]) <= set(tables["signaling"]["device_id"])
    assert tables["truth_links"]["vehicle_id"].isna().sum() == 2
    assert tables["truth_links"]["vehicle_id"].dropna().iloc[0] in set(tables["gps"]["vehicle_id"])
    # contract row order
    gps = tables["gps"]
    assert gps.equals(gps.sort_values(["vehicle_id", "ts"]).reset_index(drop=True))
    # and the result passes the data contract
    ctx = ValidationContext.from_bbox((11.0, 48.0, 11.1, 48.1))
    reports = validate_tables(tables, ctx)
    assert all(r.success for r in reports.values()), [r.summary() for r in reports.values()]


def test_csv_and_parquet_give_the_same_tables(tmp_path, key_env):
    a = load_imported_tables(write_city(tmp_path / "a", "csv"), tmp_path / "a")
    b = load_imported_tables(write_city(tmp_path / "b", "parquet"), tmp_path / "b")
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=False)


def test_missing_key_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV_VAR, raising=False)
    city = write_city(tmp_path, "csv")
    with pytest.raises(PseudonymKeyError, match=KEY_ENV_VAR):
        load_imported_tables(city, tmp_path)
    monkeypatch.setenv(KEY_ENV_VAR, "short")
    with pytest.raises(PseudonymKeyError, match="too short") as info:
        key_from_env()
    assert "short'" not in str(info.value) and "=short" not in str(info.value)


def test_unparsable_timestamps_name_file_column_rows(tmp_path, key_env):
    frames = raw_frames()
    frames["signaling"].loc[3, "ts"] = "yesterday"
    frames["signaling"].loc[8, "ts"] = "2024-13-45 99:00"
    city = write_city(tmp_path, "csv", frames)
    with pytest.raises(IngestError) as info:
        load_imported_tables(city, tmp_path)
    msg = str(info.value)
    assert ("signaling.csv: column 'ts': 2 values cannot be parsed as timestamps, "
            "e.g. rows 4, 9: 'yesterday', '2024-13-45 99:00'") in msg


def test_missing_column_and_bad_numbers(tmp_path, key_env):
    frames = raw_frames()
    frames["towers"] = frames["towers"].drop(columns=["azimuth_deg"])
    with pytest.raises(IngestError, match=r"towers.csv: missing required column 'azimuth_deg'"):
        load_imported_tables(write_city(tmp_path / "a", "csv", frames), tmp_path / "a")
    frames = raw_frames()
    frames["signaling"]["cell_id"] = frames["signaling"]["cell_id"].astype(object)
    frames["signaling"].loc[1, "cell_id"] = "cell-7"
    frames["signaling"].loc[2, "cell_id"] = "7.5"
    frames["mr"]["rsrp_dbm"] = frames["mr"]["rsrp_dbm"].astype(object)
    frames["mr"].loc[0, "rsrp_dbm"] = "strong"
    city = write_city(tmp_path / "b", "csv", frames)
    with pytest.raises(IngestError) as info:
        load_imported_tables(city, tmp_path / "b")
    assert "signaling.csv: column 'cell_id': 1 value cannot be parsed as integers, e.g. row 2: 'cell-7'" in str(info.value)
    assert "signaling.csv: column 'cell_id': 1 value is not a whole number, e.g. row 3: '7.5'" in str(info.value)
    frames["signaling"] = raw_frames()["signaling"]
    city = write_city(tmp_path / "c", "csv", frames)
    with pytest.raises(IngestError, match=r"mr.csv: column 'rsrp_dbm': 1 value cannot be parsed as numbers, e.g. row 1: 'strong'"):
        load_imported_tables(city, tmp_path / "c")


def test_id_values_are_never_shown_in_errors():
    raw = pd.DataFrame({"device_id": ["+4915100000000"], "ts": ["2024-03-01T08:00:00Z"], "cell_id": ["x"], "event": ["data"]})
    with pytest.raises(IngestError) as info:
        coerce_table("signaling", raw, "signaling.csv")
    assert "+4915100000000" not in str(info.value) and "'x'" in str(info.value)


def test_missing_file_and_no_import_section(tmp_path, key_env):
    city = write_city(tmp_path, "csv")
    (tmp_path / "incoming" / "gps.csv").unlink()
    with pytest.raises(IngestError, match=r"gps.csv: file not found .*\[imported\].gps"):
        load_imported_tables(city, tmp_path)
    plain = CityConfig(name="sim", roads=RoadSource(source="synthetic", kind="grid"))
    with pytest.raises(IngestError, match="no \\[imported\\] section"):
        load_imported_tables(plain, tmp_path)


def test_timestamp_forms():
    raw = pd.DataFrame({
        "vehicle_id": ["a", "a", "a"], "ts": ["1709280000", "1709280005", "1709280010"],
        "lon": ["11.05"] * 3, "lat": ["48.05"] * 3, "speed_mps": ["1", "2", ""],
    })
    out = coerce_table("gps", raw, "gps.csv")
    assert out["ts"].iloc[0] == pd.Timestamp("2024-03-01 08:00", tz="UTC")  # Unix seconds
    assert np.isnan(out["speed_mps"].iloc[2])  # empty cell -> NaN, left to validation (not_null)
    naive = raw.assign(ts=pd.to_datetime(["2024-03-01 08:00:00"] * 3))
    assert coerce_table("gps", naive, "gps.parquet")["ts"].iloc[0] == pd.Timestamp("2024-03-01 08:00", tz="UTC")


def test_pseudonymise_stable_key_dependent_and_null_preserving():
    ids = pd.Series(["dev-1", "dev-2", None, "dev-1", "42"], index=[5, 6, 7, 8, 9], name="device_id")
    a = pseudonymise(ids, b"k" * 32, "device")
    b = pseudonymise(ids.sample(frac=1, random_state=0), b"k" * 32, "device").loc[a.index]
    other = pseudonymise(ids, b"j" * 32, "device")
    assert a.index.equals(ids.index) and a.name == "device_id"
    assert a.equals(b)  # deterministic, independent of order
    assert a.iloc[0] == a.iloc[3] and a.iloc[0] != a.iloc[1]
    assert pd.isna(a.iloc[2])
    assert not (a.dropna() == other.dropna()).any()  # another key, unrelated pseudonyms
    assert pseudonymise(ids, b"k" * 32, "vehicle").iloc[0] != a.iloc[0]  # namespaces separate
    assert pseudonymise(pd.Series([42]), b"k" * 32, "device").iloc[0] == a.iloc[4]  # ids compared as text
    assert a.dropna().str.fullmatch(r"[0-9a-f]{20}").all()
    assert not set(a.dropna()) & {"dev-1", "dev-2", "42"}


def test_pseudonymise_many_rows_is_vectorised():
    rng = np.random.default_rng(0)
    ids = pd.Series(np.char.add("dev", rng.integers(0, 2000, 300_000).astype(str)))
    out = pseudonymise(ids, b"k" * 32, "device")
    assert out.nunique() == ids.nunique() and len(out) == len(ids)


def test_only_the_tables_asked_for_are_read(tmp_path, key_env):
    """An asset imports only its own table: a bad file elsewhere does not fail it."""
    city = write_city(tmp_path, "csv")
    (tmp_path / "incoming" / "signaling.csv").write_text("not,a,signaling\ntable,at,all\n")
    towers = load_imported_tables(city, tmp_path, only=["towers"])
    assert list(towers) == ["towers"] and len(towers["towers"]) == 6
    with pytest.raises(IngestError, match=r"incoming/signaling.csv: missing required column"):
        load_imported_tables(city, tmp_path, only=["signaling", "truth_links"])
    with pytest.raises(ValueError, match="unknown table"):
        load_imported_tables(city, tmp_path, only=["trips"])
