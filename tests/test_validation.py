"""Data validation: Great Expectations suites plus vectorised rules, one report per table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ml.validation import (
    DataValidationError,
    ValidationContext,
    ValidationReport,
    TABLE_COLUMNS,
    dtype_matches,
    validate_table,
    validate_tables,
)

BBOX = (11.0, 48.0, 11.1, 48.1)  # west, south, east, north
T0 = pd.Timestamp("2024-03-01 08:00", tz="UTC")


def _ts(seconds) -> pd.Series:
    return (T0 + pd.to_timedelta(np.asarray(seconds, dtype=np.int64), unit="s")).astype("datetime64[ns, UTC]")


def _str(values) -> pd.Series:
    return pd.Series(list(values), dtype="str")


def make_tables() -> dict[str, pd.DataFrame]:
    """Small tables with the contract dtypes that satisfy every rule."""
    rng = np.random.default_rng(3)
    n_cells = 12
    towers = pd.DataFrame({
        "cell_id": np.arange(100, 100 + n_cells, dtype=np.int64),
        "site_id": np.arange(n_cells, dtype=np.int64) // 3,
        "lon": rng.uniform(11.01, 11.09, n_cells),
        "lat": rng.uniform(48.01, 48.09, n_cells),
        "azimuth_deg": np.tile([0.0, 120.0, 240.0], n_cells // 3),
        "height_m": rng.uniform(20, 40, n_cells),
        "tx_power_dbm": np.full(n_cells, 46.0),
    })
    n_gps = 20
    gps = pd.DataFrame({
        "vehicle_id": _str(["veh_a"] * 10 + ["veh_b"] * 10),
        "ts": _ts(np.r_[np.arange(10) * 5, np.arange(10) * 5]),
        "lon": rng.uniform(11.02, 11.08, n_gps),
        "lat": rng.uniform(48.02, 48.08, n_gps),
        "speed_mps": rng.uniform(0, 15, n_gps),
    })
    # Signaling sorted by time overall, devices interleaved: order per device is still increasing.
    n_sig = 16
    signaling = pd.DataFrame({
        "device_id": _str(["dev_1", "dev_2"] * (n_sig // 2)),
        "ts": _ts(np.arange(n_sig) * 7),
        "cell_id": rng.integers(100, 100 + n_cells, n_sig).astype(np.int64),
        "event": _str(["handover", "periodic", "data", "call", "sms", "attach", "data", "data"] * 2),
    })
    mr = pd.DataFrame({
        "device_id": _str(["dev_1"] * 6),
        "ts": _ts([0, 0, 0, 10, 10, 10]),
        "cell_id": np.array([100, 101, 102, 100, 103, 104], dtype=np.int64),
        "rsrp_dbm": [-80.0, -95.0, -101.5, -82.0, -97.0, -110.0],
    })
    pairs = pd.DataFrame({
        "device_id": _str(["dev_1"]), "vehicle_id": _str(["veh_a"]), "day": _str(["2024-03-01"]),
        "overlap_h": [7.5], "moving_h": [5.0], "mismatch_m": [210.0], "margin": [0.4],
    })
    samples = pd.DataFrame({
        "sample_id": _str(["s0", "s1"]), "device_id": _str(["dev_1", "dev_1"]),
        "vehicle_id": _str(["veh_a", "veh_a"]), "t0": _ts([0, 30]), "t1": _ts([30, 60]),
        "split": _str(["train", "val"]), "n_records": np.array([5, 6], dtype=np.int64),
        "tile_crs": _str(["EPSG:32632"] * 2), "tile_x0": [650_000.0, 651_000.0],
        "tile_y0": [5_320_000.0, 5_320_500.0], "tile_size_m": [1000.0, 1000.0],
    })
    sample_truth = pd.DataFrame({
        "sample_id": _str(["s0"] * 4 + ["s1"] * 4), "ts": _ts([0, 10, 20, 30, 30, 40, 50, 60]),
        "lon": rng.uniform(11.02, 11.08, 8), "lat": rng.uniform(48.02, 48.08, 8),
    })
    truth_links = pd.DataFrame({
        "device_id": _str(["dev_1", "dev_2"]), "vehicle_id": pd.Series(["veh_a", None], dtype="str"),
        "kind": _str(["driver", "pedestrian"]),
    })
    return {"towers": towers, "gps": gps, "signaling": signaling, "mr": mr, "pairs": pairs,
            "samples": samples, "sample_truth": sample_truth, "truth_links": truth_links}


@pytest.fixture()
def tables() -> dict[str, pd.DataFrame]:
    return make_tables()


@pytest.fixture()
def ctx(tables) -> ValidationContext:
    return ValidationContext.from_bbox(BBOX, margin_m=2000).with_tables(tables)


def _failure(report: ValidationReport, column: str | None, rule: str):
    matches = [f for f in report.failures if f.column == column and f.rule == rule]
    assert matches, f"expected {column}:{rule} failure, got {report.summary()}"
    return matches[0]


def _raises(report: ValidationReport, *fragments: str) -> str:
    with pytest.raises(DataValidationError) as info:
        report.raise_if_failed()
    msg = str(info.value)
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in message:\n{msg}"
    return msg


def test_fixture_has_contract_dtypes(tables):
    for name, df in tables.items():
        for column, kind in TABLE_COLUMNS[name].items():
            assert dtype_matches(df[column], kind), (name, column, df[column].dtype)


def test_good_tables_pass(tables, ctx):
    reports = validate_tables(tables, ctx)
    assert set(reports) == set(tables)
    for name, report in reports.items():
        assert report.success, report.summary()
        assert report.n_rules > len(TABLE_COLUMNS[name])
        assert report.skipped == []
        assert report.raise_if_failed() is report
    meta = reports["signaling"].to_metadata()
    assert meta["success"] is True and meta["n_failed_rules"] == 0 and meta["n_rows"] == 16


def test_validate_tables_fills_foreign_keys_from_tables(tables):
    bare = ValidationContext.from_bbox(BBOX)
    bad = dict(tables)
    bad["signaling"] = tables["signaling"].assign(cell_id=np.int64(999))
    reports = validate_tables(bad, bare)
    assert _failure(reports["signaling"], "cell_id", "foreign_key").n_failed == len(bad["signaling"])
    with pytest.raises(DataValidationError, match="signaling.cell_id"):
        validate_tables(bad, bare, raise_on_failure=True)


def test_missing_column(tables, ctx):
    report = validate_table("signaling", tables["signaling"].drop(columns=["event"]), ctx)
    assert not report.success
    _failure(report, "event", "column_exists")
    _raises(report, "signaling.event", "column_exists", "required column is missing")


def test_unparsable_timestamps(tables, ctx):
    sig = tables["signaling"].copy()
    text = sig["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ").astype(object)
    text.iloc[[3, 8]] = ["yesterday", "25:99"]
    sig["ts"] = text
    report = validate_table("signaling", sig, ctx)
    failure = _failure(report, "ts", "timestamp_parseable")
    assert failure.n_failed == 2
    assert [e["row"] for e in failure.examples] == [3, 8]
    _raises(report, "signaling.ts", "timestamp_parseable", "'yesterday'", "row 3")


def test_text_and_naive_timestamps_are_dtype_errors(tables, ctx):
    sig = tables["signaling"].copy()
    sig["ts"] = sig["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    _raises(validate_table("signaling", sig, ctx), "signaling.ts", "dtype", "text timestamps")
    gps = tables["gps"].copy()
    gps["ts"] = gps["ts"].dt.tz_localize(None)
    _raises(validate_table("gps", gps, ctx), "gps.ts", "dtype", "naive")


def test_other_timestamp_units_are_accepted(tables, ctx):
    gps = tables["gps"].copy()
    gps["ts"] = gps["ts"].astype("datetime64[us, UTC]")
    assert validate_table("gps", gps, ctx).success


def test_coordinates_far_outside_city(tables, ctx):
    gps = tables["gps"].copy()
    gps.loc[4, "lon"] = 13.5  # about 190 km east
    gps.loc[[6, 7], "lat"] = -48.05
    report = validate_table("gps", gps, ctx)
    lon = _failure(report, "lon", "inside_city_bbox")
    lat = _failure(report, "lat", "inside_city_bbox")
    assert (lon.n_failed, lat.n_failed) == (1, 2)
    assert lon.examples[0]["row"] == 4 and lon.examples[0]["lon"] == 13.5
    assert lon.examples[0]["vehicle_id"] == "veh_a"
    _raises(report, "gps.lon", "inside_city_bbox", "gps.lat", "13.5")


def test_bbox_margin_tolerates_points_just_outside(tables):
    towers = tables["towers"].copy()
    towers.loc[0, "lon"] = 11.1 + 0.01  # ~740 m east of the bbox
    assert validate_table("towers", towers, ValidationContext.from_bbox(BBOX, margin_m=2000)).success
    assert not validate_table("towers", towers, ValidationContext.from_bbox(BBOX, margin_m=0)).success


def test_unknown_cell_ids(tables, ctx):
    sig = tables["signaling"].copy()
    sig.loc[[2, 5, 11], "cell_id"] = [555, 556, 100]
    report = validate_table("signaling", sig, ctx)
    failure = _failure(report, "cell_id", "foreign_key")
    assert failure.n_failed == 2
    assert [(e["row"], e["cell_id"]) for e in failure.examples] == [(2, 555), (5, 556)]
    _raises(report, "signaling.cell_id", "foreign_key", "towers.cell_id", "555")
    mr = tables["mr"].copy()
    mr.loc[1, "cell_id"] = 7
    _raises(validate_table("mr", mr, ctx), "mr.cell_id", "foreign_key")


def test_foreign_key_skipped_without_reference(tables):
    report = validate_table("signaling", tables["signaling"], ValidationContext.from_bbox(BBOX))
    assert report.success
    assert any("cell_id:foreign_key" in s for s in report.skipped)
    assert report.to_metadata()["skipped_rules"] == report.skipped


def test_pairs_and_samples_ids_must_exist(tables, ctx):
    samples = tables["samples"].copy()
    samples.loc[1, "vehicle_id"] = "veh_zzz"
    _raises(validate_table("samples", samples, ctx), "samples.vehicle_id", "foreign_key", "gps.vehicle_id")
    pairs = tables["pairs"].copy()
    pairs.loc[0, "device_id"] = "dev_zzz"
    _raises(validate_table("pairs", pairs, ctx), "pairs.device_id", "foreign_key", "signaling.device_id")
    truth = tables["sample_truth"].copy()
    truth.loc[0, "sample_id"] = "s9"
    _raises(validate_table("sample_truth", truth, ctx), "sample_truth.sample_id", "foreign_key")


@pytest.mark.parametrize("name", ["signaling", "towers", "samples"])
def test_empty_table(tables, ctx, name):
    report = validate_table(name, tables[name].iloc[:0], ctx)
    assert report.n_rows == 0
    _raises(report, f"table '{name}'", "non_empty", "at least one row")
    completely_empty = validate_table(name, pd.DataFrame(), ctx)
    assert {f.rule for f in completely_empty.failures} == {"column_exists", "non_empty"}


def test_non_monotonic_time_per_id(tables, ctx):
    gps = tables["gps"].copy()
    gps.loc[[3, 4], "ts"] = gps.loc[[4, 3], "ts"].to_numpy()  # veh_a: row 4 goes back in time
    report = validate_table("gps", gps, ctx)
    failure = _failure(report, "ts", "non_decreasing_per_id")
    assert failure.n_failed == 1
    assert failure.examples[0]["row"] == 4 and failure.examples[0]["previous_row"] == 3
    _raises(report, "gps.ts", "non_decreasing_per_id", "vehicle_id")


def test_monotonic_rule_is_per_id_not_global(tables, ctx):
    # Two vehicles one after the other: time drops between ids, which is fine.
    assert validate_table("gps", tables["gps"], ctx).success
    sig = tables["signaling"].copy()
    sig.loc[sig["device_id"] == "dev_2", "ts"] = sig.loc[sig["device_id"] == "dev_2", "ts"].iloc[::-1].to_numpy()
    failure = _failure(validate_table("signaling", sig, ctx), "ts", "non_decreasing_per_id")
    assert failure.n_failed == 7
    assert all(e["device_id"] == "dev_2" for e in failure.examples)


def test_out_of_range_rsrp(tables, ctx):
    mr = tables["mr"].copy()
    mr.loc[2, "rsrp_dbm"] = -170.0
    mr.loc[4, "rsrp_dbm"] = 5.0
    report = validate_table("mr", mr, ctx)
    failure = _failure(report, "rsrp_dbm", "in_range")
    assert failure.n_failed == 2 and [e["rsrp_dbm"] for e in failure.examples] == [-170.0, 5.0]
    _raises(report, "mr.rsrp_dbm", "in_range", ">= -140 and <= -44", "-170.0")


def test_other_value_rules(tables, ctx):
    towers = tables["towers"].copy()
    towers.loc[1, "cell_id"] = towers.loc[0, "cell_id"]
    towers.loc[2, "azimuth_deg"] = 400.0
    towers.loc[3, "height_m"] = 0.0
    report = validate_table("towers", towers, ctx)
    assert {(f.column, f.rule) for f in report.failures} == {
        ("cell_id", "unique"), ("azimuth_deg", "in_range"), ("height_m", "in_range")}
    gps = tables["gps"].copy()
    gps.loc[0, "speed_mps"] = 90.0
    gps.loc[1, "vehicle_id"] = None
    report = validate_table("gps", gps, ctx)
    assert {(f.column, f.rule) for f in report.failures} >= {("speed_mps", "in_range"), ("vehicle_id", "not_null")}
    sig = tables["signaling"].copy()
    sig.loc[0, "event"] = "paging"
    _raises(validate_table("signaling", sig, ctx), "signaling.event", "in_set", "'paging'")
    samples = tables["samples"].copy()
    samples.loc[0, "split"] = "holdout"
    samples.loc[1, "t1"] = samples.loc[1, "t0"]
    samples.loc[1, "sample_id"] = "s0"
    report = validate_table("samples", samples, ctx)
    assert {(f.column, f.rule) for f in report.failures} == {
        ("split", "in_set"), ("t1+t0", "t1_after_t0"), ("sample_id", "unique")}
    pairs = tables["pairs"].copy()
    pairs.loc[0, "day"] = "01/03/2024"
    _raises(validate_table("pairs", pairs, ctx), "pairs.day", "date_format")


def test_wrong_dtype_is_reported_not_raised(tables, ctx):
    towers = tables["towers"].copy()
    towers["cell_id"] = towers["cell_id"].astype(str)
    towers["lon"] = towers["lon"].astype("float32")
    report = validate_table("towers", towers, ctx)
    assert {(f.column, f.rule) for f in report.failures} == {("cell_id", "dtype"), ("lon", "dtype")}
    _raises(report, "towers.cell_id", "dtype", "expected int64")


def test_index_is_ignored_and_examples_are_row_positions(tables, ctx):
    mr = tables["mr"].copy()
    mr.index = [10, 11, 12, 13, 14, 15]
    mr.loc[13, "rsrp_dbm"] = -10.0
    failure = _failure(validate_table("mr", mr, ctx), "rsrp_dbm", "in_range")
    assert failure.examples[0]["row"] == 3


def test_examples_are_capped_and_metadata_is_json(tables, ctx):
    sig = tables["signaling"].copy()
    sig["cell_id"] = np.int64(1)
    report = validate_table("signaling", sig, ctx)
    failure = _failure(report, "cell_id", "foreign_key")
    assert failure.n_failed == len(sig) and len(failure.examples) == 5
    meta = report.to_metadata()
    assert meta["success"] is False and meta["failed_rules"] == ["cell_id:foreign_key"]
    decoded = json.loads(json.dumps(meta))
    assert decoded["failures"][0]["examples"][0]["ts"].startswith("2024-03-01T08:00:00")


def test_unknown_table_and_bad_context():
    with pytest.raises(ValueError, match="unknown table 'trips'"):
        validate_table("trips", pd.DataFrame(), ValidationContext.from_bbox(BBOX))
    with pytest.raises(ValueError, match="lon_min <= lon_max"):
        ValidationContext(lon_min=12, lat_min=48, lon_max=11, lat_max=49)


def test_context_from_road_network():
    from ml.geo import CityProjection

    proj = CityProjection("EPSG:32632")
    xy = proj.to_xy(np.array([11.0, 11.1]), np.array([48.0, 48.1]))

    class FakeNet:
        bounds = (float(xy[:, 0].min()), float(xy[:, 1].min()), float(xy[:, 0].max()), float(xy[:, 1].max()))
        projection = proj

    ctx = ValidationContext.from_road_network(FakeNet(), margin_m=500)
    assert ctx.lon_min == pytest.approx(11.0, abs=2e-3) and ctx.lat_max == pytest.approx(48.1, abs=2e-3)
    lo, hi = ctx.lat_bounds()
    assert hi - ctx.lat_max == pytest.approx(500 / 111_320)


@pytest.mark.slow  # a fresh interpreter importing Great Expectations (about 4 s)
def test_validation_opens_no_network_connection():
    """GE runs offline: a fresh process with sockets disabled validates a table end to end."""
    import subprocess
    import sys
    from pathlib import Path

    code = """
import socket
def _blocked(*args, **kwargs):
    raise RuntimeError("network access attempted")
socket.socket.connect = _blocked
socket.create_connection = _blocked
socket.getaddrinfo = _blocked
import sys; sys.path.insert(0, "tests")
from test_validation import make_tables, BBOX
from ml.validation import ValidationContext, validate_tables
reports = validate_tables(make_tables(), ValidationContext.from_bbox(BBOX))
assert all(r.success for r in reports.values())
import os; assert os.environ["GX_ANALYTICS_ENABLED"] == "false"
print("ok")
"""
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]
