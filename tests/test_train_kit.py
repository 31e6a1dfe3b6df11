"""The training kit's bookkeeping (``ml.train.kit``) as pure functions: run keys, resume or supersede, weight
selection, MLflow run continuation, the result record and the CLI override convention. No fit here: the
trainers' tests (test_sft, test_gdpo, test_seq2seq) keep one fit each for what needs Lightning."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ml.train.kit import (RUN_KEY_FILE, TrainResult, apply_overrides, content_sha256, data_files_key,
                          files_fingerprint, mlflow_logger, parse_overrides, parse_tags, resume_or_supersede,
                          select_step)


def test_fingerprints_follow_the_files_not_the_folder(tmp_path: Path) -> None:
    a = tmp_path / "a" / "r64_k17"
    a.mkdir(parents=True)
    (a / "index.parquet").write_bytes(b"x" * 10)
    (a / "shard0.npz").write_bytes(b"y" * 20)
    key = data_files_key(a)
    b = tmp_path / "b" / "r64_k17"
    b.parent.mkdir()
    os.rename(a, b)  # moved: the same data
    assert data_files_key(b) == key
    (b / "shard0.npz").write_bytes(b"y" * 21)  # rewritten: new data
    assert data_files_key(b) != key
    assert files_fingerprint([]) == files_fingerprint([])
    w = tmp_path / "w.pt"
    w.write_bytes(b"weights")
    h = content_sha256(w)
    w.write_bytes(b"weights2")  # a new base shipped under the same name is another start
    assert content_sha256(w) != h and content_sha256(None) is None


def test_resume_or_supersede(tmp_path: Path) -> None:
    out = tmp_path / "run"
    state = out / "checkpoints" / "last.ckpt"
    key = {"model": {"d": 8}, "data": "r"}
    assert resume_or_supersede(out, key, state, resume=True) is False  # nothing saved: a new run
    assert json.loads((out / RUN_KEY_FILE).read_text()) == key
    state.parent.mkdir(parents=True)
    state.write_text("step 5")
    (out / "selection").mkdir()
    assert resume_or_supersede(out, key, state, resume=True) is True  # the same run: continue
    assert resume_or_supersede(out, key, state, resume=False) is False  # asked to start afresh: nothing moved
    assert state.is_file()
    other = {**key, "model": {"d": 16}}
    assert resume_or_supersede(out, other, state, resume=True, move_aside=("checkpoints", "selection")) is False
    (kept,) = out.glob("checkpoints_superseded_*")
    assert (kept / "last.ckpt").read_text() == "step 5" and (kept / "selection").is_dir()
    assert not state.exists() and json.loads((out / RUN_KEY_FILE).read_text()) == other


def test_select_step_rule() -> None:
    # lowest wins, ties to the later step
    assert select_step({0: 5.0, 10: 4.0, 20: 4.0, 30: 4.5}, "min") == 20
    # the starting weights stay unless beaten by the margin
    assert select_step({0: 1.0, 10: 1.05}, "max", min_gain=0.1) == 0
    assert select_step({0: 1.0, 10: 1.2, 20: 1.2}, "max", min_gain=0.1) == 20
    assert select_step({0: 3.0, 5: 3.0}, "min") == 5  # a tie with the start goes to the trained weights
    # a validation that decoded nothing never wins
    assert select_step({0: 2.0, 10: math.inf, 20: math.nan}, "min") == 0
    assert select_step({0: 2.0, 10: math.nan}, "max") == 0
    assert select_step({3: 1.0}, "min", start_step=None) == 3
    with pytest.raises(ValueError, match="no validation scores"):
        select_step({}, "min")
    with pytest.raises(ValueError, match="mode"):
        select_step({1: 1.0}, "lowest")  # type: ignore[arg-type]


@given(st.dictionaries(st.integers(1, 50), st.floats(-10, 10), min_size=1), st.floats(-10, 10),
       st.floats(0, 1))
def test_select_step_picks_a_best_score_or_keeps_the_start(scores: dict[int, float], start: float, gain: float) -> None:
    step = select_step({0: start, **scores}, "max", min_gain=gain)
    best = max(scores.values())
    if step == 0:
        assert best < start + gain
    else:
        assert scores[step] == best and best >= start + gain
        assert step == max(k for k, v in scores.items() if v == best)


def test_a_resumed_training_continues_its_mlflow_run_or_opens_a_new_one(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "run"
    out.mkdir()
    assert mlflow_logger(out, None, "e", None, None, resuming=False) is None
    first = mlflow_logger(out, uri, "sig2gps-test", "r", {"city": "toy"}, resuming=False)
    first.log_hyperparams({"lr": 0.1})
    run_id = first.run_id
    assert (out / "mlflow_run_id.txt").read_text() == run_id
    again = mlflow_logger(out, uri, "sig2gps-test", "r", None, resuming=True)
    assert again.run_id == run_id
    again.log_hyperparams({"lr": 0.2, "batch": 4})  # a logged param keeps its first value; a new one is added
    params = again.experiment.get_run(run_id).data.params
    assert params["lr"] == "0.1" and params["batch"] == "4"
    (out / "mlflow_run_id.txt").write_text("0123456789abcdef0123456789abcdef")  # a run the store never had
    assert mlflow_logger(out, uri, "sig2gps-test", "r", None, resuming=True).run_id not in (run_id, None,
                                                                                            "0123456789abcdef0123456789abcdef")
    assert mlflow_logger(out, uri, "sig2gps-test", "r", None, resuming=False).run_id != run_id


def test_result_record_and_cli_overrides(tmp_path: Path) -> None:
    from ml.train.sft.config import sft_profile

    r = TrainResult(checkpoint_path=tmp_path / "model.pt", metrics={"a": 1.0}, global_step=3)
    assert json.loads(r.write(tmp_path / "r.json").read_text())["checkpoint_path"] == str(tmp_path / "model.pt")
    over = parse_overrides(["lr=1e-4", "model.prior_residual=false", "run_name=my run"])
    assert over == {"lr": 1e-4, "model": {"prior_residual": False}, "run_name": "my run"}
    cfg = apply_overrides(sft_profile("ci"), over)
    assert cfg.lr == 1e-4 and cfg.model.prior_residual is False and cfg.run_name == "my run"
    with pytest.raises(SystemExit, match="unknown config field.*model.no_such"):
        apply_overrides(sft_profile("ci"), {"model": {"no_such": 1}})
    with pytest.raises(SystemExit, match="FIELD=VALUE"):
        parse_overrides(["lr"])
    assert parse_tags(["city=toy", "a=b=c"]) == {"city": "toy", "a": "b=c"}
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        parse_tags(["city"])
