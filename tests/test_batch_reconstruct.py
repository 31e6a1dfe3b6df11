"""Batch reconstruction on Ray Data (ml.batch), on a local multi-process Ray (two CPUs, worker processes).

A few synthetic trajectories on the 2 km grid city, shifted so that windows straddle the hour folders of a
hive-partitioned table: the Ray run with two actors must produce the windows and the positions that the
same map functions produce in one process on the whole table (``industrial_hmm``: exactly), and a tiny
video checkpoint must reconstruct every window through ``TrajectoryReconstructor``.
"""

from __future__ import annotations

import json
import os
import socket

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

ray = pytest.importorskip("ray")  # a core dependency; importorskip only keeps collection readable

from ml.observation.context import synthetic_signaling_tables  # noqa: E402
from ml.batch import (  # noqa: E402
    OUTPUT_COLUMNS, BatchConfig, CityInputs, VideoSource, reconstruct_dataset, window_records, window_rows, write_partitioned_signaling,
)
from ml.batch.reconstruct import HMMWindows, VideoWindows  # noqa: E402
from ml.serving import windows_from_signaling  # noqa: E402

DURATION_S = 600.0
EVAL_S = 30.0


@pytest.fixture(scope="module")
def tables(grid_net, tmp_path_factory):
    """Signaling of 4 devices (15 min each, starting at hh:52), written as day=/hour= partitions."""
    t = synthetic_signaling_tables(grid_net, n_samples=4, seed=3, duration_s=900.0, mean_gap_s=45.0)
    sig = t["signaling"].assign(ts=lambda d: d["ts"] + pd.Timedelta(minutes=52))
    d = tmp_path_factory.mktemp("batch")
    files = write_partitioned_signaling(sig, d / "signaling")
    return dict(sig=sig, towers=t["towers"], net=grid_net, inputs=CityInputs.from_objects(grid_net, t["towers"]),
                dir=d, files=files)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# runs before the module's Ray is started (file order): nothing may be initialised yet
def test_unreachable_ray_address_fails_with_the_address(tables):
    assert not ray.is_initialized()
    addr = f"127.0.0.1:{_free_port()}"
    with pytest.raises(ConnectionError, match=addr):
        reconstruct_dataset(tables["dir"] / "signaling", tables["dir"] / "out_bad", "industrial_hmm", tables["inputs"],
                            duration_s=DURATION_S, ray_address=addr)
    assert not ray.is_initialized()


def test_cli_reports_a_bad_address(tables, capsys):
    from dagster_project.cli import _reconstruct_ray, build_parser

    addr = f"127.0.0.1:{_free_port()}"
    args = build_parser().parse_args(["reconstruct", "--city", "gridville", "--signaling", str(tables["dir"] / "signaling"),
                                      "--out", str(tables["dir"] / "out_cli"), "--method", "industrial_hmm",
                                      "--ray-address", addr])
    from unittest import mock

    # the city's data may not be materialised here: the address check is what is tested
    with mock.patch("ml.batch.city_inputs", return_value=tables["inputs"]):
        rc = _reconstruct_ray(args, tables["dir"] / "signaling", "sqlite:///unused.db", tables["dir"])
    assert rc == 2
    assert addr in capsys.readouterr().err


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_windows_straddle_hour_partitions(tables):
    """Precondition of the tests below: some window holds records from two hour folders."""
    w = windows_from_signaling(tables["sig"], DURATION_S)
    hours = w.groupby("sample_id")["ts"].agg(lambda s: s.dt.hour.nunique())
    assert (hours > 1).any()
    # windowing one partition at a time would cut other windows: the grouping by device matters
    naive = pd.concat([windows_from_signaling(pd.read_parquet(f), DURATION_S) for f in tables["files"]])
    assert set(naive["sample_id"]) != set(w["sample_id"]) or len(naive.groupby("sample_id")) != len(w.groupby("sample_id"))


def test_window_rows_round_trip(tables):
    rows = window_rows(tables["sig"], DURATION_S)
    rec = window_records(rows)
    ref = windows_from_signaling(tables["sig"], DURATION_S)
    assert rows.num_rows == ref["sample_id"].nunique()
    assert len(rec) == len(ref)
    np.testing.assert_array_equal(rec["sample_id"].to_numpy(), ref["sample_id"].astype(str).to_numpy())
    np.testing.assert_array_equal(rec["ts"].to_numpy(), ref["ts"].to_numpy())
    np.testing.assert_array_equal(rec["cell_id"].to_numpy(), ref["cell_id"].to_numpy())


@pytest.mark.slow  # a local Ray: worker and actor processes (about 15 s)
def test_industrial_hmm_on_ray_equals_one_process(tables, local_ray):
    out = tables["dir"] / "out_hmm"
    res = reconstruct_dataset(tables["dir"] / "signaling", out, "industrial_hmm", tables["inputs"],
                              duration_s=DURATION_S, eval_interval_s=EVAL_S, num_workers=2, batch_size=2)
    got = pd.read_parquet(out).sort_values(["sample_id", "ts"]).reset_index(drop=True)
    ref = HMMWindows(tables["inputs"], DURATION_S, EVAL_S)(window_rows(tables["sig"], DURATION_S))
    ref = ref.sort_values(["sample_id", "ts"]).reset_index(drop=True)
    assert res.n_windows == ref["sample_id"].nunique() == got["sample_id"].nunique()
    assert res.n_failed == 0 and res.n_rows == len(ref) and res.failures_by_reason == {}
    assert res.buckets_from == "hash" and res.n_buckets == res.n_buckets_run == 1  # part-0 files: bucketed on DuckDB
    assert list(got["sample_id"]) == list(ref["sample_id"])
    np.testing.assert_array_equal(got["ts"].to_numpy(), ref["ts"].to_numpy())
    np.testing.assert_allclose(got[["lon", "lat"]].to_numpy(float), ref[["lon", "lat"]].to_numpy(float), rtol=0, atol=1e-12)
    assert np.isfinite(got[["lon", "lat"]].to_numpy(float)).all()
    assert set(got["method"]) == {"industrial_hmm"}
    assert (got["device_id"] == got["sample_id"].str.rsplit("_", n=1).str[0]).all()
    # output partitioned by the window's day and hour (of its start), in the columns OUTPUT_COLUMNS
    assert sorted(got.columns) == sorted(OUTPUT_COLUMNS)
    assert (got["day"].astype(str) == ref["day"]).all() and (got["hour"].astype(int) == ref["hour"].astype(int)).all()
    parts = sorted(str(p.parent.relative_to(out)) for p in out.rglob("*.parquet") if not p.relative_to(out).parts[0].startswith("_"))
    assert parts == sorted(f"day={d}/hour={h}" for d, h in ref[["day", "hour"]].drop_duplicates().itertuples(index=False))
    assert json.loads((out / "_manifest.json").read_text())["complete"] is True
    # the same run again: nothing left to do (resume), the same totals
    again = reconstruct_dataset(tables["dir"] / "signaling", out, "industrial_hmm", tables["inputs"],
                                duration_s=DURATION_S, eval_interval_s=EVAL_S, num_workers=2, batch_size=2)
    assert again.n_buckets_run == 0 and again.n_windows == res.n_windows and again.n_rows == res.n_rows
    # another setting into the same folder is refused, naming what differs; overwrite starts over
    with pytest.raises(ValueError, match=r"eval_interval_s: 30.0 -> 15.0.*--overwrite"):
        reconstruct_dataset(tables["dir"] / "signaling", out, "industrial_hmm", tables["inputs"], duration_s=DURATION_S,
                            batch_size=2)
    (tables["dir"] / "stranger").mkdir(exist_ok=True)
    (tables["dir"] / "stranger" / "x.txt").write_text("not a batch run")
    with pytest.raises(FileExistsError, match="not empty"):
        reconstruct_dataset(tables["dir"] / "signaling", tables["dir"] / "stranger", "industrial_hmm", tables["inputs"],
                            duration_s=DURATION_S)


@pytest.mark.slow  # a local Ray (about 10 s)
def test_hash_buckets_bound_the_unit_of_work_and_give_the_same_output(tables, local_ray, tmp_path):
    """``records_per_bucket`` cuts the table into several device buckets (DuckDB): each bucket holds whole devices,
    and the output equals the one-bucket run's."""
    small = BatchConfig(records_per_bucket=max(10, len(tables["sig"]) // 3))
    out = tmp_path / "out"
    res = reconstruct_dataset(tables["dir"] / "signaling", out, "industrial_hmm", tables["inputs"],
                              duration_s=DURATION_S, eval_interval_s=EVAL_S, num_workers=2, config=small)
    assert res.n_buckets >= 2 and res.buckets_from == "hash"
    markers = [json.loads(p.read_text()) for p in sorted((out / "_done").glob("*.json"))]
    assert len(markers) == res.n_buckets and sum(m["windows"] for m in markers) == res.n_windows
    devices = [set(pd.concat(pd.read_parquet(out / f) for f in m["files"])["device_id"]) for m in markers if m["files"]]
    assert sum(len(d) for d in devices) == len(set().union(*devices))  # a device lives in one bucket
    got = pd.read_parquet(out).sort_values(["sample_id", "ts"], ignore_index=True)
    ref = HMMWindows(tables["inputs"], DURATION_S, EVAL_S)(window_rows(tables["sig"], DURATION_S))
    ref = ref.sort_values(["sample_id", "ts"], ignore_index=True)
    pd.testing.assert_frame_equal(got[["sample_id", "device_id", "ts", "lon", "lat"]].astype({"ts": "datetime64[ns, UTC]"}),
                                  ref[["sample_id", "device_id", "ts", "lon", "lat"]].astype({"ts": "datetime64[ns, UTC]"}))
    assert not (out / "_work").exists() and not (out / "_staging").exists()


def test_a_failing_bucket_publishes_nothing_and_its_rerun_completes_it(tables, tmp_path):
    """The unit of work in one process: a fault in the middle of a bucket leaves no file and no marker of it;
    run again, it publishes the same output as a bucket that never failed."""
    from ml.batch import Bucket, run_bucket

    files = [str(f) for f in tables["files"]]
    bucket = Bucket("bucket-00000", tuple(files), len(tables["sig"]))
    fn = HMMWindows(tables["inputs"], DURATION_S, EVAL_S)
    calls = {"n": 0}

    def faulty(windows):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk pulled out")
        return fn(windows)

    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk pulled out"):
        run_bucket(faulty, bucket, out, DURATION_S, windows_per_call=2)
    visible = [p for p in out.rglob("*.parquet") if not p.relative_to(out).parts[0].startswith("_")]
    assert visible == [] and not (out / "_done").exists()
    # an interrupted publish (files renamed in, no marker yet) is cleared before the bucket runs again
    stray = out / "day=2024-03-04" / "hour=00" / "bucket-00000.parquet"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"half")
    summary = run_bucket(fn, bucket, out, DURATION_S, windows_per_call=2)
    assert not stray.exists()
    clean = run_bucket(fn, bucket, tmp_path / "clean", DURATION_S, windows_per_call=1000)
    assert {k: v for k, v in summary.items() if k not in ("seconds", "pid", "peak_rss_mb")} == \
        {k: v for k, v in clean.items() if k not in ("seconds", "pid", "peak_rss_mb")}
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(tmp_path / "clean"))
    assert json.loads((out / "_done" / "bucket-00000.json").read_text())["windows"] == summary["windows"] > 0


@pytest.mark.slow  # starts the module's local Ray when run alone (about 5 s)
def test_missing_column_names_the_column(tables, local_ray, tmp_path):
    bad = tmp_path / "bad"
    write_partitioned_signaling(tables["sig"], bad)
    for f in bad.rglob("*.parquet"):
        pd.read_parquet(f).drop(columns=["cell_id"]).to_parquet(f, index=False)
    with pytest.raises(ValueError, match="cell_id"):
        reconstruct_dataset(bad, tmp_path / "o", "industrial_hmm", tables["inputs"], duration_s=DURATION_S)


@pytest.mark.slow  # a local Ray with two video actors (about 20 s)
def test_video_on_ray_reconstructs_every_window(tables, local_ray):
    import torch

    from ml.models.backbone import VideoFlowModel
    from ml.models.checkpoint import save_video_model
    from ml.models.config import model_preset
    from ml.render.config import RenderConfig

    torch.manual_seed(0)
    ckpt = save_video_model(tables["dir"] / "model.pt", VideoFlowModel(model_preset("ci", frames=5)))
    cfg = {"duration_s": DURATION_S, "eval_interval_s": EVAL_S, "n_steps": 1, "noise_scale": 0.0, "batch_size": 4,
           "render": RenderConfig(resolution=32, frames=5).model_dump(mode="json")}
    source = VideoSource(checkpoint=str(ckpt), serving_config=cfg)
    out = tables["dir"] / "out_video"
    res = reconstruct_dataset(tables["dir"] / "signaling", out, "video", tables["inputs"], video=source, num_workers=2)
    got = pd.read_parquet(out)
    ref_windows = window_rows(tables["sig"], DURATION_S)
    assert res.n_windows == ref_windows.num_rows
    assert set(got["sample_id"]) == set(ref_windows["sample_id"].to_pylist())
    assert (got.groupby("sample_id").size() == int(DURATION_S / EVAL_S) + 1).all()
    assert np.isfinite(got[["lon", "lat"]].to_numpy(float)).all()
    assert set(got["method"]) <= {"video", "fallback_mar"}
    assert res.gpus_per_worker == (1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0)
    # the same windows in one process through the same map function give the same times
    ref = VideoWindows(source, tables["inputs"])(ref_windows)
    assert len(ref) == len(got)
    with pytest.raises(ValueError, match="trained on windows of 600"):
        reconstruct_dataset(tables["dir"] / "signaling", tables["dir"] / "o2", "video", tables["inputs"], video=source,
                            duration_s=300.0)


def test_learned_hmm_needs_the_city_footprints(tables, tmp_path):
    """No silent switch to industrial_hmm: without footprints the command stops before any work, naming them."""
    with pytest.raises(ValueError, match="cell footprints"):
        reconstruct_dataset(tables["dir"] / "signaling", tmp_path / "out", "learned_hmm", tables["inputs"],
                            duration_s=DURATION_S)


def test_learned_hmm_actor_reads_the_footprints(tables):
    """The batch actor runs learned_hmm with the city's footprints: its windows differ from industrial_hmm's."""
    from ml.observation import build_cell_footprints, build_sample_contexts, synthetic_signaling_tables

    t = synthetic_signaling_tables(tables["net"], 30, seed=11, duration_s=DURATION_S)
    fp = build_cell_footprints(build_sample_contexts(t["samples"], t["signaling"], t["towers"], tables["net"],
                                                     sample_truth=t["sample_truth"], split="train"), tables["net"])
    rows = window_rows(t["signaling"], DURATION_S)
    inputs = CityInputs.from_objects(tables["net"], t["towers"], fp)
    learned = HMMWindows(inputs, DURATION_S, EVAL_S, method="learned_hmm")(rows)
    plain = HMMWindows(inputs, DURATION_S, EVAL_S)(rows)
    assert set(learned["method"]) == {"learned_hmm"} and (learned["error"].fillna("") == "").all()
    assert len(learned) == len(plain)
    assert not np.allclose(learned[["lon", "lat"]].to_numpy(float), plain[["lon", "lat"]].to_numpy(float))
