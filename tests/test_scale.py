"""Operator scale (ml.scale): the sharded day generator and the out-of-core pairing and cutting on DuckDB.

A tiny day (3 shards of 12 phones, 6 taxis, the ci profile's short shifts) on a synthetic grid: the
generator must not depend on the number of workers, and the out-of-core pairing and window cutting
must give what the in-memory ``pair_devices`` and ``cut_samples`` give on the same day.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from ml.cities import CityConfig, RoadSource
from ml.config import stage_config
from ml.pairing import cut_samples, pair_devices, pairing_quality
from ml.pairing.pairing import projection_for
from ml.scale import OperatorDayConfig, day_files, generate_operator_day
from ml.scale.pairing import OutOfCoreConfig, cut_day, pair_day
from ml.simulate.tables import make_table

CITY = CityConfig(name="scale_grid", seed=5, roads=RoadSource(source="synthetic", kind="grid", size_km=2.0))


def _day_config() -> OperatorDayConfig:
    return OperatorDayConfig(n_devices=36, n_taxis=6, shard_devices=12, seed=5,
                             simulation=stage_config("simulation", "ci"))


def _read(files: list[str], table: str) -> pd.DataFrame:
    return make_table(table, pd.concat([pd.read_parquet(f) for f in files], ignore_index=True).to_dict("series"))


@pytest.fixture(scope="module")
def tiny_day(tmp_path_factory):
    out = tmp_path_factory.mktemp("opday") / "day"
    manifest = generate_operator_day(CITY, out, _day_config(), workers=2, progress=lambda *_: None)
    return out, manifest


def test_day_is_sharded_partitioned_and_counted(tiny_day):
    out, manifest = tiny_day
    assert manifest["devices"] == 36 and manifest["taxis"] == 6
    sig_files = day_files(out, "signaling")
    assert all("/day=2024-03-04/hour=" in f for f in sig_files)
    sig = _read(sig_files, "signaling")
    assert len(sig) == manifest["rows"]["signaling"]
    assert sig["device_id"].nunique() <= 36
    # every record of an hour folder lies in that hour
    for f in sig_files[:5]:
        hour = int(f.split("hour=")[1][:2])
        assert (pd.read_parquet(f)["ts"].dt.hour == hour).all()
    # the first shard alone is a smaller day: 12 phones, 2 taxis
    truth0 = pd.read_parquet(out / "truth_links" / "shard-00000.parquet")
    assert len(truth0) == 12 and (truth0["kind"] == "driver").sum() == 2
    assert set(_read(day_files(out, "signaling", n_shards=1), "signaling")["device_id"]) <= set(truth0["device_id"])


def test_same_config_same_files_whatever_the_workers(tiny_day, tmp_path):
    out, _ = tiny_day
    again = tmp_path / "again"
    generate_operator_day(CITY, again, _day_config(), workers=1, progress=lambda *_: None)
    for table in ("signaling", "gps"):
        a, b = _read(day_files(out, table), table), _read(day_files(again, table), table)
        key = ["device_id" if table == "signaling" else "vehicle_id", "ts"]
        pd.testing.assert_frame_equal(a.sort_values(key, ignore_index=True), b.sort_values(key, ignore_index=True))


def test_a_different_config_is_refused_in_the_same_folder(tiny_day):
    out, _ = tiny_day
    with pytest.raises(ValueError, match="another config"):
        generate_operator_day(CITY, out, _day_config().model_copy(update={"seed": 6}), progress=lambda *_: None)


def test_out_of_core_pairing_equals_the_dense_pairing(tiny_day, tmp_path):
    out, _ = tiny_day
    towers = pd.read_parquet(out / "towers.parquet")
    cfg = stage_config("pairing", "ci")
    sig_files, gps_files = day_files(out, "signaling"), day_files(out, "gps")
    # several device buckets, so bucketing is exercised
    ooc = OutOfCoreConfig(records_per_bucket=400, memory_limit_mb=512, threads=1)
    pairs, stats = pair_day(sig_files, gps_files, towers, cfg, tmp_path / "work", ooc, progress=lambda *_: None)
    assert stats["buckets"] >= 3 and not (tmp_path / "work").exists()
    sig, gps = _read(sig_files, "signaling"), _read(gps_files, "gps")
    dense = pair_devices(sig, towers, gps, cfg)
    assert len(dense) >= 4  # the day must give pairs for the comparison to mean something
    key = ["device_id", "vehicle_id", "day"]
    pd.testing.assert_frame_equal(pairs[key], dense[key])
    for col in ("overlap_h", "moving_h", "mismatch_m"):
        assert (pairs[col] - dense[col]).abs().max() < 1e-6, col
    truth = pd.concat([pd.read_parquet(f) for f in glob.glob(str(out / "truth_links" / "*.parquet"))])
    assert pairing_quality(pairs, truth, sig) == pairing_quality(dense, truth, sig)

    # window cutting bucket by bucket of pairs (two pairs per bucket) equals one call over the day
    crs = projection_for(towers).crs  # the pairing's projection: the UTM zone of the towers
    scfg = stage_config("samples", "ci")
    counts = cut_day(pairs, sig_files, gps_files, towers, crs, scfg, seed=7, out_dir=tmp_path / "cut",
                     ooc=OutOfCoreConfig(pairs_per_cut_bucket=2, threads=1))
    whole, whole_truth = cut_samples(pairs, sig, towers, gps, crs, scfg, seed=7)
    got = pd.concat([pd.read_parquet(f) for f in sorted(glob.glob(str(tmp_path / "cut" / "samples" / "*.parquet")))])
    assert counts["samples"] == len(whole) > 0 and counts["truth_rows"] == len(whole_truth)
    got = got.sort_values("sample_id", ignore_index=True)
    assert list(got["sample_id"]) == list(whole["sample_id"])
    assert list(got["split"]) == list(whole["split"])


def test_an_operator_day_folder_is_taken_as_it_is(tiny_day, tmp_path):
    """``operator_day_inputs`` reads the day's own roads and towers (no registered city); a folder that is not a
    day names what it lacks."""
    from ml.batch import operator_day_inputs

    out, _ = tiny_day
    inputs, signaling = operator_day_inputs(out)
    assert signaling == out / "signaling" and len(inputs.towers) == len(pd.read_parquet(out / "towers.parquet"))
    assert inputs.network().n_nodes > 0
    with pytest.raises(FileNotFoundError, match=r"missing towers .*road network .*signaling"):
        operator_day_inputs(tmp_path)


@pytest.mark.slow  # a local Ray (about 10 s)
def test_sig2gps_reconstructs_an_operator_day_without_copying_anything(tiny_day, tmp_path, capsys):
    """``sig2gps reconstruct --operator-day DIR`` on the day as ``ml.scale generate`` wrote it: every phone's
    windows reconstructed with industrial_hmm, none failed, output partitioned by day."""
    from dagster_project import cli

    out, manifest = tiny_day
    rc = cli.main(["reconstruct", "--operator-day", str(out), "--method", "industrial_hmm", "--profile", "ci",
                   "--out", str(tmp_path / "traj")])
    msg = capsys.readouterr()
    assert rc == 0, msg.err
    got = pd.read_parquet(tmp_path / "traj")
    assert got["device_id"].nunique() == pd.read_parquet(out / "signaling")["device_id"].nunique()
    assert "0 failed" in msg.out and got[["lon", "lat"]].notna().all().all()
    assert [p.name for p in (tmp_path / "traj").iterdir() if p.is_dir() and not p.name.startswith("_")] == ["day=2024-03-04"]
    assert cli.main(["reconstruct", "--operator-day", str(out), "--city", "gridville", "--out", str(tmp_path / "x"),
                     "--method", "industrial_hmm"]) == 2
    assert "leave out --city" in capsys.readouterr().err
    # the unit of work is a typed setting: a value breaking its rule is named, before any work
    assert cli.main(["reconstruct", "--operator-day", str(out), "--method", "industrial_hmm", "--profile", "ci",
                     "--out", str(tmp_path / "y"), "--records-per-bucket", "5"]) == 2
    assert "records_per_bucket" in capsys.readouterr().err and not (tmp_path / "y").exists()


def _published(out: Path) -> list[Path]:
    """The output files a reader of ``out`` sees (pyarrow skips ``_``- and ``.``-prefixed entries). Hidden folders
    are not entered: a killed run's last Ray process may still be removing its staging folder while this looks."""
    found = []
    for folder, dirs, files in os.walk(out):
        dirs[:] = [d for d in dirs if not d.startswith(("_", "."))]
        found += [Path(folder) / f for f in files if f.endswith(".parquet") and not f.startswith(("_", "."))]
    return sorted(found)


@pytest.mark.slow  # a killed subprocess with its own Ray, then two local Ray runs (about 40 s)
def test_a_killed_run_leaves_whole_buckets_and_a_rerun_completes_only_the_rest(tiny_day, tmp_path):
    """Deliverable 5 of issue 29: the driver and its Ray workers killed (SIGKILL to the whole process group) right
    after the first bucket's done marker leave only that bucket's files, each whole; the same command again
    reconstructs only the other buckets, and the day equals an uninterrupted run's."""
    from ml.batch import operator_day_inputs, reconstruct_dataset

    day, _ = tiny_day
    out = tmp_path / "traj"
    log = (tmp_path / "run.log").open("w")
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, str(root / "tests" / "batch_killed_run.py"), str(day), str(out),
                             "after-marker"],
                            cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not list((out / "_done").glob("*.json")):
            assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no bucket finished in 240 s"
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver, Ray's services and its workers (they share the session)
        proc.wait()
    markers = {p.stem: json.loads(p.read_text()) for p in (out / "_done").glob("*.json")}
    assert len(markers) == 1
    (first, marker), = markers.items()
    published = _published(out)
    assert sorted(str(p.relative_to(out)) for p in published) == sorted(marker["files"])
    assert all(pq.read_table(p).num_rows > 0 for p in published)  # whole files, of the finished bucket only
    assert json.loads((out / "_manifest.json").read_text())["complete"] is False
    stamps = {p: p.stat().st_mtime_ns for p in [*published, out / "_done" / f"{first}.json"]}

    inputs, signaling = operator_day_inputs(day)
    res = reconstruct_dataset(signaling, out, "industrial_hmm", inputs, duration_s=300.0, eval_interval_s=15.0,
                              num_workers=1)
    assert res.buckets_from == "shards" and res.n_buckets == 3 and res.n_buckets_run == 2
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # the finished bucket was not redone
    ref = reconstruct_dataset(signaling, tmp_path / "uninterrupted", "industrial_hmm", inputs, duration_s=300.0,
                              eval_interval_s=15.0, num_workers=2)
    assert (res.n_windows, res.n_rows, res.n_failed) == (ref.n_windows, ref.n_rows, ref.n_failed) and res.n_windows > 0
    key = ["sample_id", "ts"]
    pd.testing.assert_frame_equal(pd.read_parquet(out).sort_values(key, ignore_index=True),
                                  pd.read_parquet(tmp_path / "uninterrupted").sort_values(key, ignore_index=True))
    # a changed input is refused, not mixed in: one shard file rewritten
    f = Path(day_files(day, "signaling", n_shards=1)[0])
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 1_000_000_000))
    with pytest.raises(ValueError, match="signaling.*--overwrite"):
        reconstruct_dataset(signaling, out, "industrial_hmm", inputs, duration_s=300.0, eval_interval_s=15.0)


@pytest.mark.slow  # a subprocess with its own Ray, one worker killed and restarted, then a local Ray (about 40 s)
def test_a_killed_ray_worker_is_restarted_and_its_bucket_redone_whole(tiny_day, tmp_path):
    """Deliverable 5 of issue 29, one Ray worker process killed (SIGKILL) while it holds a bucket: Ray Data restarts
    the actor and runs the bucket again from the start; the run completes and equals an uninterrupted run."""
    from ml.batch import operator_day_inputs, reconstruct_dataset

    day, _ = tiny_day
    out = tmp_path / "traj"
    root = Path(__file__).resolve().parents[1]
    with (tmp_path / "run.log").open("w") as log:
        proc = subprocess.Popen([sys.executable, str(root / "tests" / "batch_killed_run.py"), str(day), str(out),
                                 "worker"], cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            pids = Path(f"{out}.pids")
            deadline = time.monotonic() + 240
            while not (pids.is_dir() and list(pids.iterdir())):
                assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "no worker started a bucket in 240 s"
                time.sleep(0.05)
            victim = next(pids.iterdir())
            os.kill(int(victim.name), signal.SIGKILL)  # the worker, in the middle of its first bucket
            rc = proc.wait(timeout=240)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    text = (tmp_path / "run.log").read_text()
    assert rc == 0, text[-3000:]
    assert "buckets run 3 of 3" in text
    assert len(list(pids.iterdir())) >= 2  # a second worker process took the killed one's place
    inputs, signaling = operator_day_inputs(day)
    ref = reconstruct_dataset(signaling, tmp_path / "uninterrupted", "industrial_hmm", inputs, duration_s=300.0,
                              eval_interval_s=15.0, num_workers=1)
    key = ["sample_id", "ts"]
    got = pd.read_parquet(out).sort_values(key, ignore_index=True)
    assert len(got) == ref.n_rows > 0
    pd.testing.assert_frame_equal(got, pd.read_parquet(tmp_path / "uninterrupted").sort_values(key, ignore_index=True))
    assert sorted(p.stem for p in (out / "_done").glob("*.json")) == ["shard-00000", "shard-00001", "shard-00002"]
