"""Dagster wiring: definitions load, the city sensor syncs partitions, assets materialise in-process."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluation
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from ml.cities import CityConfig, RoadSource, write_city


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throw-away project root with one tiny synthetic city."""
    write_city(CityConfig(name="tinytown", seed=3, roads=RoadSource(source="synthetic", kind="grid", size_km=1.5)), tmp_path)
    monkeypatch.setenv("SIG2GPS_ROOT", str(tmp_path))
    return tmp_path


ALL_CHECKS = [("cell_towers", "towers_contract"), ("taxi_gps", "gps_contract"),
              ("signaling_records", "signaling_contract"), ("measurement_reports", "mr_contract"),
              ("raw_pairs", "pairs_contract"), ("samples", "samples_contract"),
              ("cell_footprints", "footprints_contract"), ("cell_footprints", "footprints_from_train"),
              # checks on models and reports (ml.checks), each a step of its own after its asset
              ("rendered_videos", "rendered_arrays_match_samples"), ("sft_checkpoint", "sft_model_decodes"),
              ("gdpo_checkpoint", "gdpo_model_decodes"), ("evaluation_report", "evaluation_report_complete")]
#: the stages of the method as the UI's asset groups show them
GROUPS = {"road_network": "raw", "cell_towers": "raw", "taxi_gps": "raw", "signaling_records": "raw",
          "truth_links": "raw", "measurement_reports": "raw", "dataset_version": "raw",
          "raw_pairs": "pairing", "samples": "pairing", "sample_truth": "pairing",
          "cell_footprints": "observation", "rendered_videos": "video", "sft_checkpoint": "video",
          "gdpo_checkpoint": "video", "seq2seq_checkpoint": "baselines", "seq2seq_prefix_checkpoint": "baselines",
          "predictions": "evaluation", "next_gps_report": "evaluation", "evaluation_report": "evaluation",
          "transfer_base_models": "evaluation", "transfer_report": "evaluation"}


def check_evaluation(instance: dg.DagsterInstance, asset: str, check: str):
    """The latest execution record of one asset check and its evaluation (None if it never evaluated)."""
    key = dg.AssetCheckKey(dg.AssetKey(asset), check)
    rec = instance.event_log_storage.get_latest_asset_check_execution_by_key([key]).get(key)
    assert rec is not None, (asset, check, "no execution record")
    data = rec.event.dagster_event.event_specific_data if rec.event is not None and rec.event.dagster_event else None
    return rec, data if isinstance(data, AssetCheckEvaluation) else None


@pytest.fixture()
def instance() -> dg.DagsterInstance:
    with dg.instance_for_test() as inst:
        yield inst


def test_definitions_load() -> None:
    from dagster_project.definitions import defs

    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert "road_network" in keys
    # every Great Expectations gate and every model and report check is blocking, so a failed one stops its
    # downstream assets (tests/test_model_checks.py shows it for a checkpoint with NaN weights)
    assert {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys} == set(ALL_CHECKS)
    assert all(graph.get_check_spec(k).blocking for k in graph.asset_check_keys)
    # pairing is a stage of its own: raw_pairs and the samples cut from the pairs are not raw data
    assert {k: graph.get(dg.AssetKey(k)).group_name for k in GROUPS} == GROUPS
    # tables written beside another are assets of their own (lineage), from the same step
    assert {"truth_links", "sample_truth"} <= keys
    # every asset has a code version that follows the library code it runs
    versions = {k.to_user_string(): graph.get(k).code_version for k in graph.get_all_asset_keys()}
    assert set(versions) == set(ALL_ASSETS) | set(OPERATOR_ASSETS) | set(CROSS_CITY_ASSETS) and all(v and len(v) == 12 for v in versions.values()), versions
    assert versions["signaling_records"] == versions["truth_links"] != versions["road_network"]


def test_code_version_changes_with_the_code_it_hashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster_project import code_versions

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    monkeypatch.setattr(code_versions, "ML", tmp_path)
    monkeypatch.setitem(code_versions.ASSET_CODE, "probe", ("pkg",))
    code_versions.code_version.cache_clear()
    before = code_versions.code_version("probe")
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    code_versions.code_version.cache_clear()
    assert code_versions.code_version("probe") != before
    code_versions.code_version.cache_clear()


def test_each_profile_writes_its_own_folders(project: Path, instance: dg.DagsterInstance) -> None:
    """A run with another profile never overwrites what an earlier profile's run materialised."""
    from ml.paths import CityPaths
    from dagster_project.runner import run_city

    assert run_city("tinytown", selection="road_network,cell_towers", profile="ci", root=project, instance=instance,
                    raise_on_error=True)
    ci = CityPaths(project, "tinytown", "ci").table("towers")
    before = ci.read_bytes()
    assert run_city("tinytown", selection="cell_towers", profile="demo", root=project, instance=instance,
                    raise_on_error=True)
    demo = CityPaths(project, "tinytown", "demo").table("towers")
    assert demo.is_file() and demo != ci and ci.read_bytes() == before


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


ALL_ASSETS = ["road_network", "cell_towers", "taxi_gps", "signaling_records", "truth_links", "measurement_reports",
              "raw_pairs", "samples", "sample_truth", "cell_footprints", "dataset_version", "rendered_videos", "sft_checkpoint",
              "gdpo_checkpoint", "seq2seq_checkpoint", "seq2seq_prefix_checkpoint", "predictions", "next_gps_report",
              "evaluation_report"]
# partitioned by city x day (tests/test_operator_assets.py materialises them)
OPERATOR_ASSETS = ["operator_signaling", "operator_pairs", "operator_samples", "operator_trajectories"]
# not partitioned: they span cities, so a city's run ("*") leaves them out (tests/test_transfer_asset.py)
CROSS_CITY_ASSETS = ["transfer_base_models", "transfer_report"]


@pytest.mark.slow
def test_end_to_end_every_asset_for_a_tiny_city(ci_city) -> None:
    """The whole pipeline of a tiny synthetic city materialised in-process with the ci profile: the session's
    ``ci_city`` (tests/conftest.py runs ``run_city("tinytown", selection="*", ..., raise_on_error=True)`` once;
    nothing here runs on its instance)."""
    import json

    project, instance = ci_city.root, ci_city.instance
    for key in ALL_ASSETS:
        ev = instance.get_latest_materialization_event(dg.AssetKey(key))
        assert ev is not None and ev.asset_materialization.partition == "tinytown", key
    from ml.paths import CityPaths

    paths = CityPaths(project, "tinytown", "ci")
    out = paths.outputs
    assert out == project / "outputs" / "tinytown" / "ci"  # keyed by profile
    ev = json.loads((out / "report" / "evaluation.json").read_text())
    assert ev["city"] == "tinytown" and ev["n_samples"] > 0
    sig = ev["tracks"]["signaling"]
    assert {"mar", "industrial_hmm", "learned_hmm", "oracle_records", "video_sft", "video_gdpo", "seq2seq"} <= set(sig)
    assert sig["learned_hmm"]["n_failed"] == 0 and "oracle_records" in ev["references"]
    assert "oracle_records (bound, needs the truth)" in (out / "report" / "evaluation.md").read_text()
    fp_md = instance.get_latest_materialization_event(dg.AssetKey("cell_footprints")).asset_materialization.metadata
    assert fp_md["cells_with_history"].value > 0 and 0 < fp_md["test_records_with_cell_history"].value <= 1
    assert {"median_error_m", "rmse_m", "tme_pct", "route_f1", "road_adherence", "latency_ms", "n"} <= set(sig["mar"])
    assert "reward_distance" in sig["video_sft"]
    # the video model draws: most windows decode to a trajectory (failures are counted, never hidden)
    assert sig["video_sft"]["n"] > 0 and sig["video_sft"]["n_failed"] <= sig["video_sft"]["n"] // 2, sig["video_sft"]
    assert sig["video_sft"]["head_detect_rate"] >= 0.5, sig["video_sft"]
    assert {"mar", "wcl", "hmm_wcl", "msr", "hre", "hrea"} <= set(ev["tracks"]["mr"])
    assert (out / "report" / "evaluation.md").is_file()
    # next-GPS prediction: the video model and the baselines on the same windows, embedded in the evaluation report
    ng = json.loads((out / "next_gps" / "next_gps.json").read_text())
    assert {"video_continuation", "constant_velocity_road", "industrial_hmm_joined", "seq2seq",
            "seq2seq_prefix"} <= set(ng["methods"]), ng
    assert "## Next-GPS prediction" in (out / "report" / "evaluation.md").read_text()
    # tables carry Dagster's standard table metadata; MLflow runs are linked
    for key in ("cell_towers", "signaling_records", "truth_links", "samples", "sample_truth"):
        md = instance.get_latest_materialization_event(dg.AssetKey(key)).asset_materialization.metadata
        assert md["dagster/row_count"].value > 0, key
        assert [c.name for c in md["dagster/column_schema"].schema.columns][:1], key
    for key in ("sft_checkpoint", "gdpo_checkpoint", "seq2seq_checkpoint", "evaluation_report"):
        md = instance.get_latest_materialization_event(dg.AssetKey(key)).asset_materialization.metadata
        assert md["mlflow_run"].value.startswith("http://127.0.0.1:5000/#/experiments/"), key
        assert md["mlflow_run"].value.endswith(md["mlflow_run_id"].value), key
    assert json.loads((out / "pairing.json").read_text())["n_pairs"] > 0
    assert paths.data_version_file == project / "data" / "tinytown" / "ci.dvc" and paths.data_version_file.is_file()
    # traceability: Dagster materialisation -> MLflow run -> data version, git commit, Dagster run, and back
    import mlflow

    from ml.tracking import data_version

    mat = instance.get_latest_materialization_event(dg.AssetKey("sft_checkpoint"))
    run_id = mat.asset_materialization.metadata["mlflow_run_id"].value
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow' / 'mlflow.db'}")
    tags = client.get_run(run_id).data.tags
    assert tags["dagster_run_id"] == mat.run_id
    assert tags["data_version"] == data_version(paths.data_version_file) != "unversioned"
    assert tags["city"] == "tinytown" and "git_commit" in tags
    assert client.get_run(run_id).info.run_name == "tinytown-sft"
    # the evaluation's per-method runs live in its experiment, tagged like every other run
    ev_exp = client.get_experiment_by_name("sig2gps-evaluation").experiment_id
    children = client.search_runs([ev_exp], filter_string="tags.method = 'industrial_hmm'")
    assert children and all(r.data.tags["data_version"] == tags["data_version"] and "git_commit" in r.data.tags
                            for r in children)
    assert set(client.get_registered_model("sig2gps-video-tinytown").aliases) >= {"sft", "gdpo"}
    assert "best_val" in client.get_registered_model("sig2gps-seq2seq-tinytown").aliases
    assert "evaluated" in client.get_registered_model("sig2gps-learned-hmm-tinytown").aliases
    # every GE check ran in this run and passed
    run_id = instance.get_runs(limit=1)[0].run_id
    for asset, check in ALL_CHECKS:
        rec, evaluation = check_evaluation(instance, asset, check)
        assert rec.run_id == run_id, (asset, check)
        assert rec.status == AssetCheckExecutionRecordStatus.SUCCEEDED, (asset, check, rec.status)
        assert evaluation is not None and evaluation.passed, (asset, check)


def test_bad_input_stops_downstream_and_keeps_previous_materialisation(project: Path, instance: dg.DagsterInstance,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A corrupted towers table fails its check: nothing is written and downstream assets do not run."""
    import pandas as pd

    import ml.simulate
    from dagster_project.runner import run_city

    assert run_city("tinytown", selection="road_network,cell_towers", profile="ci", root=project, instance=instance,
                    raise_on_error=True)
    towers_path = project / "data" / "tinytown" / "ci" / "towers.parquet"
    before = towers_path.read_bytes()
    good = ml.simulate.simulate_towers

    def corrupted(*a, **k):
        t, antennas = good(*a, **k)
        t.loc[t.index[:3], "lat"] = 10.0  # thousands of km away from the city
        return t, antennas

    monkeypatch.setattr(ml.simulate, "simulate_towers", corrupted)
    ok = run_city("tinytown", selection="cell_towers,taxi_gps,signaling_records", profile="ci", root=project,
                  instance=instance)
    assert not ok
    assert towers_path.read_bytes() == before
    assert not (project / "data" / "tinytown" / "ci" / "signaling.parquet").exists()
    bad_run, good_run = (r.run_id for r in instance.get_runs(limit=2))
    # the towers check ran in the bad run and failed, with the suite's report as metadata
    rec, evaluation = check_evaluation(instance, "cell_towers", "towers_contract")
    assert rec.run_id == bad_run and rec.status == AssetCheckExecutionRecordStatus.FAILED, rec
    assert evaluation is not None and not evaluation.passed and evaluation.metadata
    # the blocking check stopped downstream: signaling_records never ran (its check was not evaluated),
    # cell_towers keeps its previous materialisation; taxi_gps, independent of the towers, still ran
    assert instance.get_latest_materialization_event(dg.AssetKey("signaling_records")) is None
    sig_key = dg.AssetCheckKey(dg.AssetKey("signaling_records"), "signaling_contract")
    sig = instance.event_log_storage.get_latest_asset_check_execution_by_key([sig_key]).get(sig_key)
    assert sig is None or sig.status == AssetCheckExecutionRecordStatus.PLANNED, sig
    assert instance.get_latest_materialization_event(dg.AssetKey("cell_towers")).run_id == good_run
    assert instance.get_latest_materialization_event(dg.AssetKey("taxi_gps")).run_id == bad_run
    rec, evaluation = check_evaluation(instance, "taxi_gps", "gps_contract")
    assert rec.run_id == bad_run and rec.status == AssetCheckExecutionRecordStatus.SUCCEEDED and evaluation.passed


def test_console_shows_info_and_a_step_table_the_full_log_goes_to_a_file(project: Path, instance: dg.DagsterInstance,
                                                                         capsys) -> None:
    """`sig2gps run` prints what the assets report and one line per step; the DEBUG event stream is in the
    run's log file (its path printed), not on the console."""
    from dagster_project.runner import run_city

    assert run_city("tinytown", selection="road_network", profile="ci", root=project, instance=instance,
                    raise_on_error=True)
    out = capsys.readouterr()
    console = out.out + out.err
    assert "STEP_START" not in console and "DEBUG" not in console  # the event stream stays off the console
    # a line per asset as it finishes, with its duration and key figure
    live = next(ln for ln in out.out.splitlines() if ln.startswith("  done    road_network "))
    assert "km of road" in live and float(live.split()[2]) >= 0.0, live
    step_line = next(ln for ln in out.out.splitlines() if ln.startswith("road_network "))
    assert "success" in step_line
    log_path = Path(next(ln for ln in out.out.splitlines() if ln.startswith("full log: ")).split(": ", 1)[1])
    text = log_path.read_text()
    assert log_path.parent == project / "outputs" / "tinytown" / "ci" / "logs"
    assert "DEBUG" in text and "Finished execution of step \"road_network\"" in text


def test_the_multiprocess_executor_runs_each_step_in_its_own_process(project: Path, instance: dg.DagsterInstance) -> None:
    """The same definitions beyond one process: ``city_pipeline`` with Dagster's multiprocess executor."""
    import os

    from dagster_project.definitions import city_pipeline_job
    from dagster_project.sensors import sync_city_partitions

    sync_city_partitions(instance)
    keys = [dg.AssetKey(k) for k in ("road_network", "cell_towers", "taxi_gps")]
    with dg.execute_job(dg.reconstructable(city_pipeline_job), instance=instance, tags={"dagster/partition": "tinytown"},
                        asset_selection=keys, run_config={"execution": {"config": {"max_concurrent": 2}}}) as result:
        assert result.success
        starts = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START]
    assert {e.step_key for e in starts} == {"road_network", "cell_towers", "taxi_gps"}
    pids = {e.pid for e in starts}
    assert len(pids) == 3 and os.getpid() not in pids  # one process per step, none of them this one
    for key in keys:
        assert instance.get_latest_materialization_event(key).asset_materialization.partition == "tinytown"
