"""Bad input, every kind: each is rejected with one clear message and earlier materialisations stay as they were.

A small ci-profile city is simulated, its tables exported with recognisable raw ids as CSV and as
Parquet, and imported by two city files (``imp_csv``, ``imp_parquet``) whose raw stages are
materialised once for the module. Each case then overwrites one input file (or the city file, the
OSM extract, the pseudonym key) with a bad version, re-runs the asset that reads it, in-process
through Dagster as ``sig2gps run`` does, and checks that:

- the run fails with exactly one failed step whose message names the file as the city file or the
  command line gives it (never the resolved absolute path), the field and the rule, and the example
  rows of the user's file where rows are at fault;
- every file under ``data/`` and ``outputs/`` (run logs aside) is byte-identical to before, and the
  asset's latest materialisation is still the good one;
- no raw device or vehicle id appears in the message.
"""

from __future__ import annotations

import gzip
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from imported_city import KEY, TABLES, simulate_raw_tables, step_failures, tree_digest, write_import_city, write_table
from ml.ingest import KEY_ENV_VAR

pytestmark = pytest.mark.slow  # two imported cities materialised, then about 15 Dagster runs (about 20 s)

FORMATS = ("csv", "parquet")
RAW_STAGES = "road_network,cell_towers,taxi_gps,signaling_records,measurement_reports"


@dataclass
class Project:
    root: Path
    instance: dg.DagsterInstance
    tables: dict[str, pd.DataFrame]
    raw_ids: list[str]
    rel: dict[str, dict[str, str]]  # format -> table -> path as the city file gives it


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    """Two imported cities (CSV, Parquet) of the same simulated tables, raw stages materialised once."""
    from dagster_project.runner import run_city

    root = tmp_path_factory.mktemp("bad_input")
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test() as instance:
        mp.setenv("SIG2GPS_ROOT", str(root))
        mp.setenv(KEY_ENV_VAR, KEY)
        mp.delenv("SIG2GPS_MLFLOW_TRACKING_URI", raising=False)
        tables, raw_ids = simulate_raw_tables()
        rel = {fmt: write_import_city(root, f"imp_{fmt}", fmt, tables) for fmt in FORMATS}
        for fmt in FORMATS:
            assert run_city(f"imp_{fmt}", selection=RAW_STAGES, profile="ci", root=root, instance=instance,
                            raise_on_error=True)
        yield Project(root, instance, tables, raw_ids, rel)


def _snapshot(root: Path) -> dict[str, str]:
    """Digest of data/ and outputs/, run logs aside (each run adds its own log file)."""
    digest = {}
    for top in ("data", "outputs"):
        if (root / top).is_dir():
            digest.update({f"{top}/{k}": v for k, v in tree_digest(root / top).items() if "/logs/" not in f"/{k}"})
    return digest


def _latest_materialisation_runs(instance: dg.DagsterInstance) -> dict[str, str | None]:
    keys = ["road_network", "cell_towers", "taxi_gps", "signaling_records", "measurement_reports"]
    out = {}
    for k in keys:
        ev = instance.get_latest_materialization_event(dg.AssetKey(k))
        out[k] = ev.run_id if ev is not None else None
    return out


def _run_failing(p: Project, city: str, asset: str) -> str:
    """Run ``asset`` for ``city``; it must fail with exactly one failed step. Returns that step's message."""
    from dagster_project.runner import run_city

    assert not run_city(city, selection=asset, profile="ci", root=p.root, instance=p.instance), "bad input was accepted"
    failures = step_failures(p.instance, p.instance.get_runs(limit=1)[0].run_id)
    assert len(failures) == 1, failures
    return failures[0]


def _check_message(p: Project, msg: str, fragments: list[str]) -> None:
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in the message:\n{msg}"
    assert str(p.root) not in msg, f"the message shows a resolved path, not the path as given:\n{msg}"
    for raw in p.raw_ids:
        assert raw not in msg, f"raw id {raw} in the message:\n{msg}"


# --------------------------------------------------------------------------- bad tables, CSV and Parquet
@dataclass(frozen=True)
class TableCase:
    """Overwrite ``table``'s file with ``make(good, fmt)``; ``asset`` reads it; ``expect(rel)`` are the fragments."""

    table: str
    asset: str
    make: Callable[[pd.DataFrame, str], pd.DataFrame | bytes]
    expect: Callable[[str], list[str]]
    formats: tuple[str, ...] = FORMATS


def _drop_event(df, fmt):
    return df.drop(columns=["event"])


def _bad_times(df, fmt):
    out = df.copy()
    out["ts"] = out["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ").astype(object)
    out.loc[out.index[[5, 9]], "ts"] = ["yesterday", "2024-13-45 99:00"]
    return out


def _bad_number(df, fmt):
    out = df.copy()
    out["height_m"] = out["height_m"].astype(str).astype(object)
    out.loc[out.index[2], "height_m"] = "tall"
    return out


def _unknown_cells(df, fmt):
    out = df.copy()
    out.loc[out.index[[3, 10]], "cell_id"] = 999_999
    return out


def _empty(df, fmt):
    return df.iloc[:0]


def _zero_bytes(df, fmt):
    return b""


def _far_away(df, fmt):
    out = df.copy()
    out.loc[out.index[[7, 8]], "lat"] = 10.0  # about 4,000 km south of the city
    return out


def _duplicate_towers(df, fmt):
    out = df.copy()
    out.loc[out.index[5], "cell_id"] = out["cell_id"].iloc[0]
    return out


def _bool_times(df, fmt):
    return df.assign(ts=np.arange(len(df)) % 2 == 0)  # would become 1970-01-01 00:00:0x if coerced as numbers


def _timestamp_cell_ids(df, fmt):
    return df.assign(cell_id=pd.Timestamp("2024-03-01", tz="UTC") + pd.to_timedelta(df["cell_id"], unit="s"))


def _truncated(df, fmt):
    data = _encode(df, fmt)
    return data[: len(data) // 2]


def _encode(df: pd.DataFrame, fmt: str) -> bytes:
    import io

    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


TABLE_CASES: dict[str, TableCase] = {
    "missing_column": TableCase("signaling", "signaling_records", _drop_event, lambda rel: [
        f"{rel}: missing required column 'event' for table 'signaling'"]),
    "unparsable_time": TableCase("gps", "taxi_gps", _bad_times, lambda rel: [
        f"{rel}: column 'ts': 2 values cannot be parsed as timestamps, e.g. rows 6, 10: 'yesterday', '2024-13-45 99:00'"]),
    "unparsable_number": TableCase("towers", "cell_towers", _bad_number, lambda rel: [
        f"{rel}: column 'height_m': 1 value cannot be parsed as numbers, e.g. row 3: 'tall'"]),
    "unknown_cell_id": TableCase("signaling", "signaling_records", _unknown_cells, lambda rel: [
        f"table 'signaling' (file {rel})", "signaling.cell_id [foreign_key]: 2 row(s) fail (must exist in towers.cell_id)",
        "file row 4: ", "file row 11: ", "cell_id=999999"]),
    "empty_table": TableCase("towers", "cell_towers", _empty, lambda rel: [
        f"table 'towers' (file {rel})", "towers [non_empty]", "at least one row"]),
    "empty_file": TableCase("signaling", "signaling_records", _zero_bytes, lambda rel: [
        f"{rel}: the file is empty (rule: a header row"]),
    "far_coordinates": TableCase("gps", "taxi_gps", _far_away, lambda rel: [
        f"table 'gps' (file {rel})", "gps.lat [inside_city_bbox]: 2 row(s) fail (must lie in [", "the city bbox plus",
        "file row 8: ", "file row 9: ", "lat=10.0"]),
    "duplicate_tower_ids": TableCase("towers", "cell_towers", _duplicate_towers, lambda rel: [
        f"table 'towers' (file {rel})", "towers.cell_id [unique]: 2 row(s) fail (cell_id must be unique)",
        "file row 1: ", "file row 6: "]),
    "wrong_dtype_time": TableCase("signaling", "signaling_records", _bool_times, lambda rel: [
        f"{rel}: column 'ts': wrong dtype: expected timestamps", "got booleans (dtype bool)"], formats=("parquet",)),
    "wrong_dtype_cell_id": TableCase("towers", "cell_towers", _timestamp_cell_ids, lambda rel: [
        f"{rel}: column 'cell_id': wrong dtype: expected integers (int64), got timestamps"], formats=("parquet",)),
    "truncated_parquet": TableCase("mr", "measurement_reports", _truncated, lambda rel: [
        f"{rel}: cannot be read as Parquet (truncated or not in that format?)"], formats=("parquet",)),
}
TABLE_PARAMS = [pytest.param(fmt, name, id=f"{fmt}-{name}") for name, case in TABLE_CASES.items() for fmt in case.formats]


@pytest.mark.parametrize("fmt, case_name", TABLE_PARAMS)
def test_bad_table_is_rejected_and_nothing_is_overwritten(project: Project, fmt: str, case_name: str) -> None:
    case = TABLE_CASES[case_name]
    p, city = project, f"imp_{fmt}"
    rel = p.rel[fmt][case.table]
    path = p.root / rel
    good_bytes = path.read_bytes()
    before, runs_before = _snapshot(p.root), _latest_materialisation_runs(p.instance)
    bad = case.make(p.tables[case.table], fmt)
    try:
        if isinstance(bad, bytes):
            path.write_bytes(bad)
        else:
            write_table(bad, path)
        msg = _run_failing(p, city, case.asset)
    finally:
        path.write_bytes(good_bytes)
    _check_message(p, msg, case.expect(rel))
    assert _snapshot(p.root) == before, "a failed run changed an earlier materialisation"
    assert _latest_materialisation_runs(p.instance) == runs_before


# --------------------------------------------------------------------------- bad set-up: city file, key, OSM extract
def test_city_file_with_unknown_key(project: Project, capsys: pytest.CaptureFixture) -> None:
    """``sig2gps run`` on a city file with a misspelt key: one error naming cities/<name>.toml, the key and the rule."""
    from dagster_project import cli

    p = project
    toml = p.root / "cities" / "imp_csv.toml"
    good = toml.read_text()
    before = _snapshot(p.root)
    capsys.readouterr()
    try:
        toml.write_text('colour = "red"\n' + good.replace("signaling = ", "signalling = ", 1))
        rc = cli.main(["run", "imp_csv", "--select", "cell_towers", "--profile", "ci"])
    finally:
        toml.write_text(good)
    err = capsys.readouterr().err
    assert rc == 2
    assert len(re.findall(r"^error: ", err, flags=re.M)) == 1, err
    _check_message(p, err, [
        "error: cities/imp_csv.toml: invalid city file",
        "field 'colour': unknown key (rule: only these keys are allowed here: name, description, seed",
        "field 'imported.signalling': unknown key (rule: only these keys are allowed here: towers, gps, signaling",
        "field 'imported.signaling': Field required"])
    assert _snapshot(p.root) == before


@pytest.mark.parametrize("fmt", FORMATS)
def test_short_pseudonym_key(project: Project, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    p = project
    before, runs_before = _snapshot(p.root), _latest_materialisation_runs(p.instance)
    monkeypatch.setenv(KEY_ENV_VAR, "abc123")
    msg = _run_failing(p, f"imp_{fmt}", "taxi_gps")
    _check_message(p, msg, [f"cities/imp_{fmt}.toml [imported]: cannot import",
                            f"environment variable {KEY_ENV_VAR} is too short: use at least 16 bytes"])
    assert "abc123" not in msg  # the key is never shown
    assert _snapshot(p.root) == before
    assert _latest_materialisation_runs(p.instance) == runs_before


def test_truncated_osm_extract(project: Project, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """``city add --osm`` with a truncated .osm.gz: rejected when the city is added, with the path as given on
    the command line; the city file and the network materialised from the complete file stay as they were."""
    from dagster_project import cli
    from dagster_project.runner import run_city
    from ml.cities.synthetic import write_synthetic_osm

    p = project
    monkeypatch.chdir(p.root)
    monkeypatch.setattr(cli, "_instance", lambda: p.instance)
    osm_dir = p.root / "incoming" / "osm"
    osm_dir.mkdir(parents=True, exist_ok=True)
    write_synthetic_osm(osm_dir / "town.osm", kind="grid", size_km=1.0, center_lon=11.0, center_lat=48.0, seed=1)
    data = gzip.compress((osm_dir / "town.osm").read_bytes())
    (osm_dir / "town.osm.gz").write_bytes(data)
    (osm_dir / "town_cut.osm.gz").write_bytes(data[: len(data) * 2 // 3])

    assert cli.main(["city", "add", "osmtown", "--osm", "incoming/osm/town.osm.gz"]) == 0
    assert run_city("osmtown", selection="road_network", profile="ci", root=p.root, instance=p.instance,
                    raise_on_error=True)
    good_run = p.instance.get_latest_materialization_event(dg.AssetKey("road_network")).run_id
    before = _snapshot(p.root)
    capsys.readouterr()
    rc = cli.main(["city", "add", "osmtown", "--force", "--osm", "incoming/osm/town_cut.osm.gz"])
    assert rc == 2  # rejected when the city is added, before any run reads it
    msg = capsys.readouterr().err
    _check_message(p, msg, ["--osm incoming/osm/town_cut.osm.gz", "truncated or damaged",
                            "rule: a complete OSM file"])
    assert _snapshot(p.root) == before
    assert p.instance.get_latest_materialization_event(dg.AssetKey("road_network")).run_id == good_run


# --------------------------------------------------------------------------- and no raw id leaked on the way
def test_no_raw_id_reached_data_outputs_or_the_dagster_instance(project: Project) -> None:
    """After every bad input above: the raw ids are only in the user's own files under incoming/."""
    p = project
    needles = [r.encode() for r in p.raw_ids]
    folders = [p.root / "data", p.root / "outputs", Path(p.instance.root_directory)]
    hits = []
    n_files = 0
    for folder in folders:
        for f in folder.rglob("*"):
            if f.is_file():
                n_files += 1
                blob = f.read_bytes()
                hits += [f"{f}: {n.decode()}" for n in needles if n in blob]
    assert n_files > 10 and not hits, hits[:10]
    assert os.environ.get(KEY_ENV_VAR) == KEY
