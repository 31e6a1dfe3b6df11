"""The operator assets in Dagster: partitioned by city x day, materialised day by day in-process (ci sizes)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from ml.cities import CityConfig, RoadSource, write_city


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_city(CityConfig(name="tinytown", seed=3, roads=RoadSource(source="synthetic", kind="grid", size_km=1.5)), tmp_path)
    monkeypatch.setenv("SIG2GPS_ROOT", str(tmp_path))
    return tmp_path


@pytest.fixture()
def instance() -> dg.DagsterInstance:
    with dg.instance_for_test() as inst:
        yield inst


@pytest.mark.slow  # three Dagster runs, two simulated operator days, each reconstructed on a local Ray (about 30 s)
def test_operator_days_materialise_one_at_a_time(project: Path, instance: dg.DagsterInstance) -> None:
    from dagster_project.runner import run_city

    assert run_city("tinytown", selection="road_network", profile="ci", root=project, instance=instance,
                    raise_on_error=True)
    # the city pipeline's "*" holds no per-day asset (one run, one kind of partition key)
    from dagster_project.partitions import cities_partitions
    from dagster_project.definitions import defs, partitioned_by
    from dagster_project.runner import parse_selection

    city_keys = (parse_selection("*") & partitioned_by(cities_partitions)).resolve(defs.resolve_asset_graph())
    assert dg.AssetKey("operator_pairs") not in city_keys and dg.AssetKey("samples") in city_keys

    days = project / "data" / "tinytown" / "ci" / "operator"
    assert run_city("tinytown", selection="*", profile="ci", root=project, instance=instance, raise_on_error=True,
                    day="2024-03-04")
    first_pairs = days / "2024-03-04" / "pairs.parquet"
    stamp = first_pairs.stat().st_mtime_ns
    assert run_city("tinytown", selection="*", profile="ci", root=project, instance=instance, raise_on_error=True,
                    day="2024-03-05")
    # a new day adds its own files and leaves the day before as it was
    assert first_pairs.stat().st_mtime_ns == stamp
    for day in ("2024-03-04", "2024-03-05"):
        assert (days / day / "windows" / "samples").is_dir()
        sig = pd.concat(pd.read_parquet(f) for f in (days / day / "signaling").rglob("*.parquet"))
        assert (pd.to_datetime(sig["ts"], utc=True).dt.strftime("%Y-%m-%d") == day).all()
    # two days are two different days (mobility is seeded per day), not one day relabelled
    g1 = pd.concat(pd.read_parquet(f) for f in (days / "2024-03-04" / "gps").rglob("*.parquet"))
    g2 = pd.concat(pd.read_parquet(f) for f in (days / "2024-03-05" / "gps").rglob("*.parquet"))
    assert len(g1) != len(g2) or not (g1["lon"].to_numpy() == g2["lon"].to_numpy()).all()

    for key in ("operator_signaling", "operator_pairs", "operator_samples", "operator_trajectories"):
        mats = instance.fetch_materializations(dg.AssetKey(key), limit=10).records
        assert sorted(m.partition_key for m in mats) == ["tinytown|2024-03-04", "tinytown|2024-03-05"], key
    ev = instance.get_latest_materialization_event(dg.AssetKey("operator_pairs")).asset_materialization
    assert ev.metadata["records"].value > 0 and ev.metadata["peak_rss_mb"].value > 0

    # every phone of each day reconstructed (industrial_hmm, the default config), partitioned by day and hour
    for day in ("2024-03-04", "2024-03-05"):
        traj = pd.read_parquet(days / day / "trajectories")
        sig = pd.concat(pd.read_parquet(f) for f in (days / day / "signaling").rglob("*.parquet"))
        assert set(traj["device_id"]) == set(sig["device_id"].astype(str))
        assert traj[["lon", "lat"]].notna().all().all() and set(traj["method"]) == {"industrial_hmm"}
        assert set(traj["day"].astype(str)) == {day}
    md = instance.get_latest_materialization_event(dg.AssetKey("operator_trajectories")).asset_materialization.metadata
    assert md["dagster/row_count"].value == len(traj) and md["windows"].value == traj["sample_id"].nunique()
    assert md["failed_windows"].value == 0 and md["failures_by_reason"].value == {}
    assert md["workers"].value == 1 and md["buckets_from"].value == "shards" and md["buckets_run"].value == md["buckets"].value
    assert md["windows_per_s"].value > 0 and md["ray_job_id"].value and md["peak_rss_mb_per_worker"].value > 0


@pytest.mark.slow  # one Dagster run on a local Ray (about 15 s)
def test_operator_trajectories_method_is_config_and_a_rematerialisation_resumes(project: Path,
                                                                                  instance: dg.DagsterInstance) -> None:
    """The method comes from the run config; learned_hmm on a day whose towers are not the city's is refused, naming
    why; materialised again with the same config, nothing is redone (every bucket has its done marker)."""
    from dagster_project.assets.operator import operator_trajectories

    day = dg.MultiPartitionKey({"city": "tinytown", "day": "2024-03-04"})
    from dagster_project.runner import resources_for, run_city

    assert run_city("tinytown", selection="road_network", profile="ci", root=project, instance=instance,
                    raise_on_error=True)
    assert run_city("tinytown", selection="operator_signaling", profile="ci", root=project, instance=instance,
                    raise_on_error=True, day="2024-03-04")
    assets = [operator_trajectories]
    res = resources_for("ci", project, None)

    def materialise(method: str) -> dg.ExecuteInProcessResult:
        return dg.materialize(assets, partition_key=day, instance=instance, resources=res, raise_on_error=False,
                              run_config={"ops": {"operator_trajectories": {"config": {"method": method}}}})

    bad = materialise("learned_hmm")
    assert not bad.success
    assert "cell_towers" in str(bad.get_step_failure_events()[0].step_failure_data.error)
    first = materialise("industrial_hmm")
    assert first.success
    again = materialise("industrial_hmm")
    md = instance.get_latest_materialization_event(dg.AssetKey("operator_trajectories")).asset_materialization.metadata
    assert again.success and md["buckets_run"].value == 0 and md["buckets"].value > 0
