"""The ``transfer_base_models`` and ``transfer_report`` assets: they check their inputs themselves, and
materialise the source set's models then the matrix over two tiny cities."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from ml.cities import CityConfig, RoadSource, write_city


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throw-away project root with two tiny synthetic cities (a grid and a radial town)."""
    write_city(CityConfig(name="srctown", seed=3, roads=RoadSource(source="synthetic", kind="grid", size_km=1.5)),
               tmp_path)
    # the radial town on the regular network: on its few sites the layered network's far cells leave the pairing
    # no pair (the transfer mechanics are what is tested; srctown runs the layered network)
    write_city(CityConfig(name="tgttown", seed=5, roads=RoadSource(source="synthetic", kind="radial", size_km=1.5),
                          simulation={"scenario": "regular"}), tmp_path)
    monkeypatch.setenv("SIG2GPS_ROOT", str(tmp_path))
    monkeypatch.delenv("SIG2GPS_MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.fixture()
def instance() -> dg.DagsterInstance:
    with dg.instance_for_test() as inst:
        yield inst


BASES_FIELDS = ("source_sets", "profile", "methods", "video_base_steps")


def _materialise(project: Path, instance: dg.DagsterInstance, only: str | None = None,
                 **config) -> dg.ExecuteInJobResult:
    """Both assets (the job ``sig2gps transfer`` runs), or ``only`` one, each with its share of ``config``."""
    from dagster_project.assets.transfer import transfer_base_models, transfer_report
    from dagster_project.runner import resources_for

    configs = {"transfer_base_models": {k: v for k, v in config.items() if k in BASES_FIELDS},
               "transfer_report": {k: v for k, v in config.items() if k != "video_base_steps"}}
    assets = [a for a in (transfer_base_models, transfer_report) if only in (None, a.key.to_user_string())]
    return dg.materialize(assets, instance=instance, resources=resources_for("ci", project), raise_on_error=False,
                          run_config=dg.RunConfig({k: {"config": v} for k, v in configs.items()
                                                   if only in (None, k)}))


def test_missing_samples_fail_naming_the_city_and_table(project: Path, instance: dg.DagsterInstance) -> None:
    """Nothing materialised: each asset fails before any work, naming each city and table it lacks (the models
    read the sources only; the matrix every city)."""
    def failure(res: dg.ExecuteInJobResult) -> str:
        assert not res.success
        ev = next(e for e in res.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
        return ev.step_failure_data.user_failure_data.description

    msg = failure(_materialise(project, instance, source_sets=["srctown"], targets=["tgttown"], profile="ci"))
    assert "city 'srctown': table 'samples' not materialised for profile 'ci'" in msg and "tgttown" not in msg, msg
    msg = failure(_materialise(project, instance, only="transfer_report", source_sets=["srctown"],
                               targets=["tgttown", "nowhere"], profile="ci"))
    assert "city 'srctown': table 'samples' not materialised for profile 'ci'" in msg, msg
    assert "city 'tgttown': table 'samples'" in msg and "city 'nowhere' is not registered" in msg, msg
    assert "sig2gps run srctown --profile ci" in msg, msg
    assert not (project / "outputs" / "transfer").exists()


def test_cli_names_what_is_missing_before_any_work(project: Path, capsys: pytest.CaptureFixture) -> None:
    """``sig2gps transfer`` runs the two assets; with nothing materialised it stops first, naming the inputs."""
    from dagster_project import cli

    assert cli.main(["transfer", "--train", "srctown", "--test", "tgttown", "--profile", "ci"]) == 2
    err = capsys.readouterr().err
    assert "city 'srctown': table 'samples' not materialised for profile 'ci'" in err, err
    assert not (project / "outputs" / "transfer").exists()


def test_defaults_are_the_readme_command() -> None:
    from dagster_project.assets.transfer import TransferConfig

    cfg = TransferConfig()
    assert cfg.source_sets == ["gridville", "gridville,ringtown"]
    assert cfg.targets == ["krems", "aguascalientes", "bayreuth"] and cfg.profile == "demo"


@pytest.mark.slow
def test_transfer_report_over_two_tiny_cities(project: Path, instance: dg.DagsterInstance) -> None:
    """Both cities materialised up to their rendered videos (ci profile); the asset writes the matrix with
    the industrial HMM, seq2seq and the video model from random weights, and logs it to MLflow."""
    import mlflow

    from dagster_project.runner import run_city

    for city in ("srctown", "tgttown"):
        assert run_city(city, selection="*rendered_videos", profile="ci", root=project, instance=instance,
                        raise_on_error=True)
    # rendered arrays missing for the video rows: a clear failure too
    (project / "outputs" / "tgttown" / "ci" / "render").rename(project / "render_aside")
    res = _materialise(project, instance, only="transfer_report", source_sets=["srctown"], targets=["tgttown"],
                       profile="ci", methods=["video"])
    assert not res.success
    (project / "render_aside").rename(project / "outputs" / "tgttown" / "ci" / "render")

    res = _materialise(project, instance, source_sets=["srctown"], targets=["tgttown"], profile="ci",
                       finetune_steps=2, max_test=3, methods=["industrial_hmm", "seq2seq", "video"],
                       video_base_steps=2, video_finetune_steps=2)
    assert res.success
    out = project / "outputs" / "transfer" / "ci"
    rows = json.loads((out / "transfer.json").read_text())["rows"]
    got = {(r["method"], r["regime"].split(" (")[0]) for r in rows}
    assert got == {("industrial_hmm", "no training"), ("seq2seq", "zero-shot"), ("seq2seq", "fine-tuned"),
                   ("video", "zero-shot"), ("video", "fine-tuned")}, got
    assert all(r["target"] == "tgttown" and r["n"] == 3 and 0 <= r["decoded_share"] <= 1 for r in rows)
    assert (out / "transfer.md").is_file() and (out / "transfer.png").stat().st_size > 1000
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary left behind
    # the video base came from random weights, on the source's windows only
    base = json.loads((out.parent / "models" / "ci" / "video_srctown" / "sft" / "sft_result.json").read_text())
    assert base["global_step"] == 2
    md = res.asset_materializations_for_node("transfer_report")[0].metadata
    client = mlflow.MlflowClient(tracking_uri=md["mlflow_tracking_uri"].value)
    run = client.get_run(md["mlflow_run_id"].value)
    assert run.data.tags["dagster_run_id"] == res.run_id and run.data.tags["targets"] == "tgttown"
    assert client.get_experiment(run.info.experiment_id).name == "sig2gps-transfer"
    assert "video.srctown.tgttown.zero-shot" in run.data.metrics
    # lineage: the report read the models the upstream asset trained (its manifest), in the same run
    bases_md = res.asset_materializations_for_node("transfer_base_models")[0].metadata
    assert bases_md["models"].value == str(out.parent / "models" / "ci" / "bases.json")
    settings = json.loads((out / "transfer.json").read_text())["settings"]
    assert settings["bases"]["srctown"]["video"]["global_step"] == 2
