"""Dagster wiring: definitions load, the city sensor syncs partitions, assets materialise in-process."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from ml.cities import CityConfig, RoadSource, write_city


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throw-away project root with one tiny synthetic city."""
    write_city(CityConfig(name="tinytown", seed=3, roads=RoadSource(source="synthetic", kind="grid", size_km=1.5)), tmp_path)
    monkeypatch.setenv("SIG2GPS_ROOT", str(tmp_path))
    return tmp_path


@pytest.fixture()
def instance() -> dg.DagsterInstance:
    with dg.instance_for_test() as inst:
        yield inst


def test_definitions_load() -> None:
    from dagster_project.definitions import defs

    dg.Definitions.validate_loadable(defs)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert "road_network" in keys


def test_sensor_syncs_partitions_with_registry(project: Path, instance: dg.DagsterInstance) -> None:
    from dagster_project.sensors import city_registry_sensor

    instance.add_dynamic_partitions("cities", ["ghost"])
    result = city_registry_sensor(dg.build_sensor_context(instance=instance))
    reqs = result.dynamic_partitions_requests
    added = [k for r in reqs if isinstance(r, dg.AddDynamicPartitionsRequest) for k in r.partition_keys]
    removed = [k for r in reqs if isinstance(r, dg.DeleteDynamicPartitionsRequest) for k in r.partition_keys]
    assert added == ["tinytown"] and removed == ["ghost"]


def test_road_network_materialises_in_process(project: Path, instance: dg.DagsterInstance) -> None:
    from dagster_project.runner import run_city

    assert run_city("tinytown", selection="road_network", profile="ci", root=project, instance=instance, raise_on_error=True)
    assert (project / "data" / "tinytown" / "roads" / "roads.graphml").is_file()
    mat = instance.get_latest_materialization_event(dg.AssetKey("road_network")).asset_materialization
    assert mat.partition == "tinytown"
    assert mat.metadata["nodes"].value > 50 and "preview" in mat.metadata
    assert "tinytown" in instance.get_dynamic_partitions("cities")


def test_cli_city_add_and_list(project: Path, instance: dg.DagsterInstance, capsys, monkeypatch) -> None:
    from dagster_project import cli

    monkeypatch.setattr(cli, "_instance", lambda: instance)
    osm = project / "mini.osm"
    osm.write_text('<?xml version="1.0"?><osm version="0.6"></osm>')
    assert cli.main(["city", "add", "mini", "--osm", str(osm)]) == 0
    assert (project / "cities" / "mini.toml").is_file()
    assert "mini" in instance.get_dynamic_partitions("cities")
    assert cli.main(["city", "list"]) == 0
    assert "mini" in capsys.readouterr().out
    # bad input: a missing file and a bad name get clear errors, nothing written
    assert cli.main(["city", "add", "nofile", "--osm", str(project / "absent.osm.gz")]) == 2
    assert not (project / "cities" / "nofile.toml").exists()
    capsys.readouterr()
    assert cli.main(["city", "add", "Bad-Name", "--synthetic", "grid"]) == 2
    assert "name 'Bad-Name' must match" in capsys.readouterr().err
    assert not (project / "cities" / "Bad-Name.toml").exists()
