"""Checks on models and reports (``ml.checks``) and their blocking asset checks (issue 28, item 3).

Unit tests of each library check, passing and failing: a checkpoint with NaN weights, a good tiny one, a
truncated one; windows decoded or not; an evaluation report missing a method, over the failure bound, with
a NaN median; rendered arrays whose index does not match the samples or whose shards have other shapes.
Then in-process Dagster runs on a tiny ci city materialised once for this module (up to ``rendered_videos``,
about 25 s): a deliberately broken checkpoint fails its blocking check and the asset below it does not run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import torch
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from ml.checks import (check_evaluation_report, check_rendered_arrays, check_video_checkpoint, check_video_weights,
                       configured_methods, judge_decoded_windows, read_evaluation_report)
from ml.evaluation import EvaluationConfig, MethodRun
from ml.models import VideoFlowModel, model_preset
from ml.models.checkpoint import save_video_model

REPO = Path(__file__).resolve().parents[1]
CI_BASE = REPO / "models" / "sig2gps-base-ci-32px-k9.pt"  # the shipped ci base: decodes the ci city's windows


def _tiny_checkpoint(path: Path, nan: bool = False) -> Path:
    model = VideoFlowModel(model_preset("ci", frames=5))
    if nan:
        with torch.no_grad():
            next(p for p in model.parameters() if p.requires_grad).view(-1)[:3] = float("nan")
    return save_video_model(path, model)


def _nan_copy(src: Path, dst: Path) -> Path:
    """``src`` with a few weights of one tensor set to NaN (as a diverged step leaves them)."""
    obj = torch.load(src, map_location="cpu", weights_only=True)
    name = next(k for k, v in obj["state_dict"].items() if v.is_floating_point() and v.numel() > 4)
    obj["state_dict"][name] = obj["state_dict"][name].clone()
    obj["state_dict"][name].view(-1)[:4] = float("nan")
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, dst)
    return dst


# --------------------------------------------------------------------------- checkpoints


def test_a_good_tiny_checkpoint_has_finite_weights(tmp_path: Path) -> None:
    out = check_video_weights(_tiny_checkpoint(tmp_path / "model.pt"))
    assert out.passed, out.description
    assert out.metadata["non_finite_values"] == 0 and out.metadata["parameters"] > 0


def test_nan_weights_fail_and_name_the_file_and_tensor(tmp_path: Path) -> None:
    path = _tiny_checkpoint(tmp_path / "model.pt", nan=True)
    out = check_video_weights(path)
    assert not out.passed
    assert str(path) in out.description and "NaN or infinite" in out.description and "every weight finite" in out.description
    assert out.metadata["non_finite_values"] == 3 and out.metadata["non_finite_tensors"] == 1
    # the full check stops at the weights: no decoding of a NaN model (no rendered arrays needed to say so)
    full = check_video_checkpoint(path, tmp_path / "no_arrays", [], EvaluationConfig())
    assert not full.passed and full.description == out.description


def test_a_truncated_or_missing_checkpoint_fails_with_the_readers_message(tmp_path: Path) -> None:
    path = _tiny_checkpoint(tmp_path / "model.pt")
    path.write_bytes(path.read_bytes()[:1000])
    out = check_video_weights(path)
    assert not out.passed and "truncated or corrupted" in out.description and str(path) in out.description
    missing = check_video_weights(tmp_path / "absent.pt")
    assert not missing.passed and "does not exist" in missing.description


def test_decoded_windows_pass_only_when_every_window_is_finite() -> None:
    ctxs = [SimpleNamespace(sample_id=f"s{i}", n_eval=3) for i in range(3)]
    good = MethodRun("m", "signaling", {c.sample_id: np.zeros((3, 2)) for c in ctxs}, {})
    assert judge_decoded_windows(good, ctxs).passed
    partial = MethodRun("m", "signaling", {**good.predictions, "s1": np.array([[0, 0], [np.nan, 1], [2, 2.0]])}, {})
    out = judge_decoded_windows(partial, ctxs)
    assert not out.passed and "s1: 1 of 3 positions not finite" in out.description and out.metadata["failed"] == 1
    labelled = MethodRun("m", "signaling", dict(good.predictions), {}, failures={"s2": "nothing decoded"})
    out = judge_decoded_windows(labelled, ctxs)
    assert not out.passed and "s2: nothing decoded" in out.description
    assert not judge_decoded_windows(good, []).passed  # nothing checked is not a pass


# --------------------------------------------------------------------------- evaluation report


def _report(**rows) -> dict:
    base = {"n": 10, "n_failed": 0, "median_error_m": 150.0}
    return {"city": "t", "split": "test", "n_samples": 10,
            "tracks": {"signaling": {m: {**base, **r} for m, r in rows.items()}}}


def test_a_complete_report_passes() -> None:
    out = check_evaluation_report(_report(mar={}, video_sft={"n_failed": 2}), {"signaling": ["mar", "video_sft"]}, 0.2)
    assert out.passed, out.description
    assert out.metadata["worst_failure_share"] == 0.2 and out.metadata["missing"] == "none"


def test_a_report_missing_a_configured_method_fails() -> None:
    out = check_evaluation_report(_report(mar={}), {"signaling": ["mar", "video_gdpo"], "mr": ["wcl"]}, 0.2,
                                  source="report/evaluation.json")
    assert not out.passed
    assert out.description.startswith("report/evaluation.json: 2 configured method(s) missing")
    assert "signaling/video_gdpo" in out.description and "mr/wcl" in out.description


def test_a_failure_share_over_the_bound_fails() -> None:
    out = check_evaluation_report(_report(mar={}, video_sft={"n_failed": 3}), {"signaling": ["mar"]}, 0.2)
    assert not out.passed
    assert "signaling/video_sft: 3 of 10" in out.description and "max_failure_share" in out.description
    assert out.metadata["worst_failure_share"] == 0.3


def test_a_method_without_a_finite_median_fails() -> None:
    out = check_evaluation_report(_report(mar={"median_error_m": None}), {"signaling": ["mar"]}, 1.0)
    assert not out.passed and "signaling/mar" in out.description and "median_error_m finite" in out.description


def test_read_evaluation_report_names_a_missing_or_bad_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no evaluation report"):
        read_evaluation_report(tmp_path / "evaluation.json")
    (tmp_path / "evaluation.json").write_text(json.dumps({"city": "t"}))
    with pytest.raises(ValueError, match="no 'tracks' object"):
        read_evaluation_report(tmp_path / "evaluation.json")


def test_configured_methods_follow_the_model_files(tmp_path: Path) -> None:
    from ml.baselines import MR_METHODS

    sft, gdpo, s2s = tmp_path / "sft.pt", tmp_path / "gdpo.pt", tmp_path / "s2s.pt"
    sft.write_bytes(b"x")
    m = configured_methods({"video_sft": sft, "video_gdpo": gdpo}, s2s, with_mr=False, include_peers=False)
    assert set(m) == {"signaling"} and "video_sft" in m["signaling"] and "video_gdpo" not in m["signaling"]
    assert {"mar", "industrial_hmm", "learned_hmm", "oracle_records"} <= set(m["signaling"])
    assert "seq2seq" not in m["signaling"]
    s2s.write_bytes(b"x")
    m = configured_methods({"video_sft": sft}, s2s, with_mr=True, include_peers=False)
    assert "seq2seq" in m["signaling"] and m["mr"] == list(MR_METHODS)


# --------------------------------------------------------------------------- rendered arrays


@pytest.fixture()
def toy_arrays(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    from ml.models.data import make_toy_rendered_arrays

    d = make_toy_rendered_arrays(tmp_path / "r32_k5", n=8, resolution=32, frames=5, shard_size=4)
    index = pd.read_parquet(d / "index.parquet")
    return d, index[["sample_id", "split"]].copy()


def test_rendered_arrays_matching_the_samples_pass(toy_arrays) -> None:
    d, samples = toy_arrays
    out = check_rendered_arrays(d, samples, 32, 5)
    assert out.passed, out.description
    assert out.metadata["rendered"] == out.metadata["samples"] == 8 and out.metadata["shards"] == 2


def test_a_rendered_index_that_does_not_match_the_samples_fails(toy_arrays) -> None:
    d, samples = toy_arrays
    fewer = samples.iloc[1:]  # a rendered window that is not a sample
    out = check_rendered_arrays(d, fewer, 32, 5)
    assert not out.passed and "1 rendered id(s) are not in the samples table" in out.description
    assert out.metadata["not_in_samples"] == 1 and samples["sample_id"].iloc[0] in out.description
    more = pd.concat([samples, pd.DataFrame({"sample_id": ["extra"], "split": ["test"]})])
    out = check_rendered_arrays(d, more, 32, 5)
    assert not out.passed and "1 sample(s) not rendered (extra)" in out.description
    moved = samples.assign(split=["test"] + list(samples["split"].iloc[1:]))
    assert "another split" in check_rendered_arrays(d, moved, 32, 5).description


def test_rendered_shards_of_other_shapes_fail(toy_arrays) -> None:
    d, samples = toy_arrays
    out = check_rendered_arrays(d, samples, 32, 9)  # the render config says 9 frames, the arrays hold 5
    assert not out.passed and "column 'frames' holds [5], the render config says 9" in out.description
    video = np.load(d / "video_0001.npy")
    np.save(d / "video_0001.npy", video[:2])  # fewer rows than the index reads
    out = check_rendered_arrays(d, samples, 32, 5)
    assert not out.passed and "video_0001.npy: 2 rows, index.parquet reads 4" in out.description


# --------------------------------------------------------------------------- the blocking checks in Dagster

CITY = "tinytown"


@pytest.fixture(scope="module")
def city_root(tmp_path_factory) -> Path:
    """A tiny ci city materialised up to ``rendered_videos`` (its check included), in-process."""
    from ml.cities import CityConfig, RoadSource, write_city
    from dagster_project.runner import run_city

    root = tmp_path_factory.mktemp("model_checks")
    write_city(CityConfig(name=CITY, seed=3, roads=RoadSource(source="synthetic", kind="grid", size_km=1.5)), root)
    mp = pytest.MonkeyPatch()
    mp.setenv("SIG2GPS_ROOT", str(root))
    try:
        with dg.instance_for_test() as inst:
            assert run_city(CITY, selection="*rendered_videos", profile="ci", root=root, instance=inst,
                            raise_on_error=True)
            rec = _check_record(inst, "rendered_videos", "rendered_arrays_match_samples")
            assert rec.status == AssetCheckExecutionRecordStatus.SUCCEEDED
    finally:
        mp.undo()
    return root


def _check_record(instance: dg.DagsterInstance, asset: str, check: str):
    key = dg.AssetCheckKey(dg.AssetKey(asset), check)
    return instance.event_log_storage.get_latest_asset_check_execution_by_key([key]).get(key)


def _evaluation(rec):
    from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluation

    data = rec.event.dagster_event.event_specific_data
    assert isinstance(data, AssetCheckEvaluation)
    return data


def _fake_training(monkeypatch: pytest.MonkeyPatch, sft_weights: Path, gdpo_weights: Path | None = None) -> None:
    """The training steps write the given model files instead of training (seconds, not minutes); registering
    in MLflow is left out. Everything else, the checks included, is the pipeline's own code."""
    import ml.train
    import ml.train.gdpo
    from dagster_project.assets import training

    def write(src: Path, dst: Path) -> SimpleNamespace:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        return SimpleNamespace(checkpoint_path=str(dst), global_step=1, resumed_from_step=None, metrics={},
                               mlflow_run_id=None, selected="last")

    monkeypatch.setattr(ml.train, "train_sft", lambda data, out_dir, *a, **k: write(sft_weights, Path(out_dir) / "model.pt"))
    if gdpo_weights is not None:
        monkeypatch.setattr(ml.train.gdpo, "train_gdpo",
                            lambda data, sft, out_dir, *a, **k: write(gdpo_weights, Path(out_dir) / "gdpo.pt"))
    monkeypatch.setattr(training, "_register", lambda *a, **k: {})


def test_a_checkpoint_with_nan_weights_fails_its_check_and_stops_gdpo(city_root: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from ml.paths import CityPaths
    from dagster_project.runner import run_city

    monkeypatch.setenv("SIG2GPS_ROOT", str(city_root))
    _fake_training(monkeypatch, _nan_copy(CI_BASE, tmp_path / "nan.pt"))
    with dg.instance_for_test() as inst:
        ok = run_city(CITY, selection="sft_checkpoint,gdpo_checkpoint", profile="ci", root=city_root, instance=inst)
        assert not ok
        # the asset was written and recorded, but not registered in MLflow; its blocking check failed, naming the
        # file and the rule
        from dagster_project.assets.training import NOT_REGISTERED

        mat = inst.get_latest_materialization_event(dg.AssetKey("sft_checkpoint"))
        assert mat is not None and mat.asset_materialization.metadata["registered_model"].value == NOT_REGISTERED
        rec = _check_record(inst, "sft_checkpoint", "sft_model_decodes")
        assert rec is not None and rec.status == AssetCheckExecutionRecordStatus.FAILED, rec
        ev = _evaluation(rec)
        assert not ev.passed and ev.metadata["non_finite_values"].value == 4
        assert str(CityPaths(city_root, CITY, "ci").sft_model) in ev.description and "NaN" in ev.description
        # what is below it did not run: no GDPO materialisation, its check never evaluated
        assert inst.get_latest_materialization_event(dg.AssetKey("gdpo_checkpoint")) is None
        gdpo = _check_record(inst, "gdpo_checkpoint", "gdpo_model_decodes")
        assert gdpo is None or gdpo.status == AssetCheckExecutionRecordStatus.PLANNED, gdpo
    # the console names the failed check and says what is wrong, in the check's words
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("check sft_checkpoint/"))
    assert line.startswith("check sft_checkpoint/sft_model_decodes failed: ") and "NaN or infinite" in line, line


def test_a_good_sft_passes_and_a_nan_gdpo_model_stops_the_predictions(city_root: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster_project.runner import run_city

    monkeypatch.setenv("SIG2GPS_ROOT", str(city_root))
    _fake_training(monkeypatch, CI_BASE, gdpo_weights=_nan_copy(CI_BASE, tmp_path / "nan.pt"))
    with dg.instance_for_test() as inst:
        ok = run_city(CITY, selection="sft_checkpoint,gdpo_checkpoint,predictions", profile="ci", root=city_root,
                      instance=inst)
        assert not ok
        sft = _check_record(inst, "sft_checkpoint", "sft_model_decodes")
        assert sft.status == AssetCheckExecutionRecordStatus.SUCCEEDED
        ev = _evaluation(sft)
        assert ev.passed and ev.metadata["decoded"].value == ev.metadata["windows"].value == 4, ev.description
        gdpo = _check_record(inst, "gdpo_checkpoint", "gdpo_model_decodes")
        assert gdpo.status == AssetCheckExecutionRecordStatus.FAILED
        assert inst.get_latest_materialization_event(dg.AssetKey("gdpo_checkpoint")) is not None
        assert inst.get_latest_materialization_event(dg.AssetKey("predictions")) is None
