"""Faults survived (issue 14, item 3) and two bad inputs (item 4), on a tiny ci-profile city.

* SIGKILL during simulation, rendering, SFT and GDPO, at a deterministic point (the child process
  stops itself where the fault is injected and says so in a marker file; the test then kills it):
  earlier materialisations stay byte-identical and recorded, a rerun resumes training from its last
  checkpoint, and nothing half-written is read or versioned.
* Two cities materialised at once by two processes: DVC, MLflow and the Dagster instance stay
  consistent. The same seed and config give the same data hash on two runs.
* A full disk, an unwritable output folder and a file where an output folder should be give one clear
  error (path, what happened, what to do) and overwrite nothing.
* A truncated rendered-array shard and truncated checkpoints give one clear message and leave earlier
  materialisations byte-identical.

The pipeline is materialised once per module (``city_root``); tests that change files work on a
``shutil.copytree`` of it. Killed runs are ``sig2gps run`` in a child process with the test's root,
``DAGSTER_HOME`` and MLflow store.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from ml.cities import CityConfig, RoadSource, write_city
from ml.paths import CityPaths

pytestmark = pytest.mark.slow  # about 2.5 minutes of CPU in all: real child processes, two pipelines at once

CITY, OTHER, PROFILE = "tinytown", "smallburg", "ci"
# smallburg runs on the regular network: on a 1.5 km town of a few sites the layered network's far cells leave
# the pairing no pair (tinytown, the suite's ci city, runs the layered network through every stage)
CITIES = {CITY: dict(seed=3, kind="grid", simulation={}), OTHER: dict(seed=4, kind="grid",
                                                                      simulation={"scenario": "regular"})}
TIMEOUT_S = 300  # one ci-profile stage takes seconds; this bounds every wait on a child process
#: what `two_city_root` materialises: every stage the faults hit (simulation to GDPO) and the predictions
PIPELINE = "*gdpo_checkpoint,predictions"


def city_paths(root: Path, city: str = CITY) -> CityPaths:
    return CityPaths(root, city, PROFILE)


def env_for(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIG2GPS_", "DAGSTER_", "MLFLOW_"))}
    env.update(SIG2GPS_ROOT=str(root), DAGSTER_HOME=str(root / ".dagster_home"), GX_ANALYTICS_ENABLED="false",
               HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def make_root(root: Path, cities=(CITY,)) -> Path:
    for name in cities:
        c = CITIES[name]
        write_city(CityConfig(name=name, seed=c["seed"], roads=RoadSource(source="synthetic", kind=c["kind"],
                                                                          size_km=1.5), simulation=c["simulation"]),
                   root)
    (root / ".dagster_home").mkdir(parents=True, exist_ok=True)
    return root


def _cli_code(city: str, select: str, fault: str = "") -> str:
    return "\n".join([textwrap.dedent(fault), "from dagster_project.cli import main",
                      f"raise SystemExit(main(['run', {city!r}, '--profile', {PROFILE!r}, '--select', {select!r}]))"])


def start_cli(root: Path, select: str, city: str = CITY, fault: str = "", log: Path | None = None) -> subprocess.Popen:
    """``sig2gps run <city> --profile ci --select <select>`` in a child process (own process group), with
    ``fault`` (Python source) run first; stdout and stderr go to ``log``."""
    log = log or root / f"cli_{city}_{time.monotonic_ns()}.log"
    f = log.open("w")
    proc = subprocess.Popen([sys.executable, "-c", _cli_code(city, select, fault)], cwd=root, env=env_for(root),
                            stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    f.close()
    proc.log = log  # type: ignore[attr-defined]
    return proc


def wait_cli(proc: subprocess.Popen, timeout: float = TIMEOUT_S) -> str:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail(f"sig2gps run did not finish in {timeout} s:\n{proc.log.read_text()[-4000:]}")
    return proc.log.read_text()


def run_cli(root: Path, select: str, city: str = CITY, fault: str = "", expect_ok: bool = True) -> str:
    proc = start_cli(root, select, city, fault)
    out = wait_cli(proc)
    if expect_ok:
        assert proc.returncode == 0, out[-6000:]
    return out


#: the fault injections stop the child here: write the marker, then wait to be killed
HANG = """
import os as _os, time as _time
from pathlib import Path as _Path
MARKER = _Path(_os.environ["SIG2GPS_ROOT"]) / "fault_reached"
def hang(what):
    MARKER.write_text(what)
    while True:
        _time.sleep(60)
"""


def kill_at_fault(root: Path, select: str, fault: str) -> str:
    """Run the CLI with ``fault`` injected, wait (bounded) until it reports the fault point, then SIGKILL
    its process group. Returns the child's output."""
    marker = root / "fault_reached"
    marker.unlink(missing_ok=True)
    proc = start_cli(root, select, fault=HANG + textwrap.dedent(fault))
    deadline = time.monotonic() + TIMEOUT_S
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before reaching the fault point:\n"
                        f"{proc.log.read_text()[-6000:]}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"fault point not reached in {TIMEOUT_S} s:\n{proc.log.read_text()[-4000:]}")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    return proc.log.read_text()


def rerun(root: Path, select: str, monkeypatch) -> None:
    """Run again after the kill, in this process (``run_city``, the CLI's code path) with the project's
    Dagster instance, so that the materialisation is recorded where the killed run's would have been."""
    from dagster_project.runner import run_city

    monkeypatch.setenv("SIG2GPS_ROOT", str(root))
    inst = instance_at(root)
    try:
        assert run_city(CITY, selection=select, profile=PROFILE, root=root, instance=inst)
    finally:
        inst.dispose()


def is_temp(p: Path) -> bool:
    return any(part.startswith(".") and (".tmp" in part or ".old" in part) for part in p.parts)


def snapshot(root: Path, city: str = CITY) -> dict[str, str]:
    """sha256 of every file the city's assets wrote (its data and outputs; run logs left out)."""
    out = {}
    for base in (root / "data" / city, root / "outputs" / city):
        for p in sorted(base.rglob("*")):
            rel = p.relative_to(root)
            if p.is_file() and "logs" not in rel.parts:
                out[str(rel)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def temps(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for base in (root / "data", root / "outputs") if base.is_dir()
                  for p in base.rglob("*") if is_temp(p.relative_to(root)))


def assert_unchanged(before: dict[str, str], after: dict[str, str], allow_changed: tuple[str, ...] = ()) -> None:
    """Every file from before is still there with the same bytes (temporaries and ``allow_changed`` aside)."""
    changed = [k for k, v in before.items() if after.get(k) != v and not k.endswith(allow_changed)]
    assert not changed, f"earlier materialisations changed or vanished: {changed}"


def instance_at(root: Path) -> dg.DagsterInstance:
    from dagster._core.instance.ref import InstanceRef

    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(root / ".dagster_home")))


def latest(instance: dg.DagsterInstance, asset: str, city: str = CITY):
    recs = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset),
                                                                 asset_partitions=[city]), limit=1).records
    return recs[0].event_log_entry if recs else None


def copy_root(src: Path, dst: Path) -> Path:
    """A copy of a materialised project; its MLflow store is dropped (the copy makes its own: artifact
    locations in the store are absolute, so the copy would otherwise write into the original)."""
    shutil.copytree(src, dst, symlinks=True)
    shutil.rmtree(dst / "mlflow", ignore_errors=True)
    return dst


@pytest.fixture(scope="module")
def city_root(ci_city) -> Path:
    """The whole pipeline materialised once for a tiny city with the ci profile: the session's ``ci_city`` (read
    only here; the tests that change files work on ``project``, a copy)."""
    assert (ci_city.city, ci_city.profile) == (CITY, PROFILE)
    return ci_city.root


@pytest.fixture()
def project(city_root: Path, tmp_path: Path) -> Path:
    return copy_root(city_root, tmp_path / "project")


# --------------------------------------------------------------------------- 1. SIGKILL, then rerun


def test_sigkill_while_writing_a_simulated_table(project: Path, monkeypatch) -> None:
    """Killed half-way through writing ``gps.parquet``: the previous table and its materialisation stay,
    the half-written bytes are never at the table's path, and the rerun cleans up and writes the same bytes."""
    before, gps = snapshot(project), city_paths(project).table("gps")
    old_mat = latest(instance_at(project), "taxi_gps")
    kill_at_fault(project, "taxi_gps", """
        import io, pandas as pd
        _to_parquet = pd.DataFrame.to_parquet
        def half_then_hang(self, path, *a, **k):
            if "gps" not in _os.path.basename(str(path)):
                return _to_parquet(self, path, *a, **k)
            buf = io.BytesIO()
            _to_parquet(self, buf, *a, **k)
            with open(path, "wb") as f:  # the bytes that reach the disk before the kill
                f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            hang("writing gps")
        pd.DataFrame.to_parquet = half_then_hang
    """)
    assert_unchanged(before, snapshot(project))
    assert latest(instance_at(project), "taxi_gps").run_id == old_mat.run_id
    # the rerun removes what the killed writer left and writes the same table again (seeded simulation)
    rerun(project, "taxi_gps", monkeypatch)
    assert temps(project) == []
    assert snapshot(project)[str(gps.relative_to(project))] == before[str(gps.relative_to(project))]
    assert latest(instance_at(project), "taxi_gps").run_id != old_mat.run_id


def test_sigkill_while_rendering(project: Path, monkeypatch) -> None:
    """Killed after the first shard of a re-render: the previous arrays stay (the folder is swapped in only
    when complete), no reader takes the partial folder for output, and the rerun replaces it cleanly."""
    before = snapshot(project)
    kill_at_fault(project, "rendered_videos", """
        import numpy as np
        _save = np.save
        def save_then_hang(file, arr, *a, **k):
            _save(file, arr, *a, **k)
            if _os.path.basename(str(file)).startswith("video_"):
                hang("rendered one shard")
        np.save = save_then_hang
    """)
    assert_unchanged(before, snapshot(project))
    left = temps(project)
    assert left, "the fault was injected after a shard was written into the temporary folder"
    from ml.config import stage_config
    from ml.render.arrays import RenderedArrays

    rcfg = stage_config("render", PROFILE)
    reader = RenderedArrays(city_paths(project).render_dir(rcfg.resolution, rcfg.frames))
    assert len(reader) > 0  # the previous, complete folder
    rerun(project, "rendered_videos", monkeypatch)
    assert temps(project) == []
    after = snapshot(project)
    npy = [k for k in before if k.endswith((".npy", "index.parquet")) and "/render/" in k]
    assert npy and all(after[k] == before[k] for k in npy)  # the same arrays, rendered again


def test_sigkill_during_sft_resumes_from_the_last_checkpoint(project: Path, monkeypatch) -> None:
    """Killed while writing ``last.ckpt`` (its second save, step 10): model.pt and the earlier materialisation
    stay, the checkpoint on disk is the intact one of step 5, and the rerun resumes from it."""
    import torch

    sft = city_paths(project).checkpoints / "sft"
    shutil.rmtree(sft / "checkpoints")  # a fresh training (the fixture's is complete); model.pt stays
    before = snapshot(project)
    old_mat = latest(instance_at(project), "sft_checkpoint")
    kill_at_fault(project, "sft_checkpoint", """
        import io, torch
        _save = torch.save
        _seen = []
        def save_half_of_the_second_last_ckpt(obj, f, *a, **k):
            if "last.ckpt" not in _os.path.basename(str(f)):
                return _save(obj, f, *a, **k)
            _seen.append(f)
            if len(_seen) < 2:
                return _save(obj, f, *a, **k)
            buf = io.BytesIO()
            _save(obj, buf, *a, **k)
            with open(f, "wb") as out:
                out.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            hang("writing last.ckpt")
        torch.save = save_half_of_the_second_last_ckpt
    """)
    # (mlflow_run_id.txt names the MLflow run a resume continues: it is written when training starts)
    assert_unchanged(before, snapshot(project), allow_changed=("mlflow_run_id.txt",))
    assert latest(instance_at(project), "sft_checkpoint").run_id == old_mat.run_id
    ck = torch.load(sft / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ck["global_step"] == 5
    rerun(project, "sft_checkpoint", monkeypatch)
    assert temps(project) == []
    md = latest(instance_at(project), "sft_checkpoint").asset_materialization.metadata
    assert md["resumed_from_step"].value == 5
    assert md["global_step"].value == 20


def test_sigkill_during_gdpo_resumes_from_the_last_iteration(project: Path, city_root: Path, monkeypatch) -> None:
    """Killed after GDPO saved its state after iteration 1 of 2: gdpo.pt and the earlier materialisation stay,
    the rerun continues from iteration 1, and its weights equal the uninterrupted run's."""
    import torch

    gdpo = city_paths(project).checkpoints / "gdpo"
    resume_files = [p for p in gdpo.rglob("*") if p.is_file() and p.parent != gdpo]
    assert resume_files, "GDPO keeps a resumable state beside gdpo.pt"
    for p in resume_files:
        p.unlink()  # a fresh training (the fixture's is complete); gdpo.pt stays
    before = snapshot(project)
    old_mat = latest(instance_at(project), "gdpo_checkpoint")
    kill_at_fault(project, "gdpo_checkpoint", """
        _replace = _os.replace
        def replace_then_hang(src, dst, *a, **k):
            _replace(src, dst, *a, **k)
            if "/checkpoints/gdpo/" in str(dst) and not str(dst).endswith(("gdpo.pt", ".json", ".txt")):
                hang("GDPO state saved")
        _os.replace = replace_then_hang
    """)
    # as for SFT: mlflow_run_id.txt names the training in progress (the one a rerun resumes into)
    assert_unchanged(before, snapshot(project), allow_changed=("mlflow_run_id.txt",))
    assert latest(instance_at(project), "gdpo_checkpoint").run_id == old_mat.run_id
    rerun(project, "gdpo_checkpoint", monkeypatch)
    md = latest(instance_at(project), "gdpo_checkpoint").asset_materialization.metadata
    resumed = [v.value for k, v in md.items() if k.endswith("resumed_from_iteration")]
    assert resumed == [1], {k: v.value for k, v in md.items() if "resum" in k}
    # the resumed run ends where the uninterrupted one (the fixture's) ended
    a = torch.load(city_paths(city_root).checkpoints / "gdpo" / "gdpo.pt", weights_only=True)["state_dict"]
    b = torch.load(gdpo / "gdpo.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- 2. two cities at once; 3. same hash


@pytest.fixture(scope="module")
def two_city_root(tmp_path_factory) -> Path:
    """Two cities materialised at the same time by two ``sig2gps run`` processes sharing the project root,
    the Dagster instance, DVC and the MLflow store."""
    root = make_root(tmp_path_factory.mktemp("concurrent") / "project", cities=(CITY, OTHER))
    procs = [start_cli(root, "*gdpo_checkpoint", city) for city in (CITY, OTHER)]
    outs = [wait_cli(p) for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-6000:]
    return root


def test_two_cities_at_once_keep_dvc_mlflow_and_dagster_consistent(two_city_root: Path) -> None:
    import mlflow
    import yaml

    from ml.tracking import default_tracking_uri

    root = two_city_root
    # Dagster: both runs succeeded, every asset of both cities is recorded
    inst = instance_at(root)
    runs = inst.get_runs()
    assert len(runs) == 2 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), [r.status for r in runs]
    for asset in ("samples", "dataset_version", "rendered_videos", "sft_checkpoint", "gdpo_checkpoint"):
        assert inst.get_materialized_partitions(dg.AssetKey(asset)) >= {CITY, OTHER}, asset
    # DVC: each city's pointer file holds the hash its dataset_version recorded, and the workspace matches
    for city in (CITY, OTHER):
        pointer = city_paths(root, city).data_version_file
        md5 = yaml.safe_load(pointer.read_text())["outs"][0]["md5"]
        assert latest(inst, "dataset_version", city).asset_materialization.metadata["data_version"].value == md5
    st = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=root, env=env_for(root), capture_output=True,
                        text=True, timeout=TIMEOUT_S)
    assert st.returncode == 0 and "up to date" in st.stdout.lower(), st.stdout + st.stderr
    # MLflow: each city's runs are there, finished and readable, and both models registered
    client = mlflow.MlflowClient(tracking_uri=default_tracking_uri(root))
    for city in (CITY, OTHER):
        for exp in ("sig2gps-sft", "sig2gps-gdpo"):
            found = client.search_runs([client.get_experiment_by_name(exp).experiment_id],
                                       filter_string=f"tags.city = '{city}'")
            assert found and all(r.info.status == "FINISHED" for r in found), (city, exp)
            assert client.get_run(found[0].info.run_id).data.tags["city"] == city
        sft_run = latest(inst, "sft_checkpoint", city).asset_materialization.metadata["mlflow_run_id"].value
        assert client.list_artifacts(sft_run), (city, "no artifacts")
        assert set(client.get_registered_model(f"sig2gps-video-{city}").aliases) >= {"sft", "gdpo"}


def test_same_seed_and_config_give_the_same_data_hash(city_root: Path, two_city_root: Path) -> None:
    """The same city file materialised in two fresh roots (one alone, one beside another city) gives the
    same tables, byte for byte, and the same DVC hash."""
    a, b = city_paths(city_root), city_paths(two_city_root)
    files = sorted(p.relative_to(a.data) for p in a.data.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(b.data) for p in b.data.rglob("*") if p.is_file())
    assert all((a.data / f).read_bytes() == (b.data / f).read_bytes() for f in files)
    hashes = [latest(instance_at(r), "dataset_version").asset_materialization.metadata["data_version"].value
              for r in (city_root, two_city_root)]
    assert hashes[0] == hashes[1] != "unversioned"
    assert a.data_version_file.read_text() == b.data_version_file.read_text()


# --------------------------------------------------------------------------- 4. full disk, unwritable folder


def _run_in_process(root: Path, select: str, capsys, monkeypatch) -> tuple[bool, str]:
    """``run_city`` in this process (faults injected with monkeypatch) on a throw-away Dagster instance."""
    from dagster_project.runner import run_city

    monkeypatch.setenv("SIG2GPS_ROOT", str(root))  # the city registry the partition sync reads
    capsys.readouterr()
    with dg.instance_for_test() as inst:
        ok = run_city(CITY, selection=select, profile=PROFILE, root=root, instance=inst)
    return ok, capsys.readouterr().out


def _failure_lines(out: str, step: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln.startswith(f"step {step} failed:")]


def test_full_disk_gives_a_clear_error_and_overwrites_nothing(project: Path, monkeypatch, capsys) -> None:
    import pandas as pd

    before, towers = snapshot(project), city_paths(project).table("towers")

    def disk_full(self, path, *a, **k):
        with open(path, "wb") as f:
            f.write(b"PAR1 partial")  # what reached the disk before it filled up
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(pd.DataFrame, "to_parquet", disk_full)
    ok, out = _run_in_process(project, "cell_towers", capsys, monkeypatch)
    assert not ok
    [line] = _failure_lines(out, "cell_towers")
    assert str(towers) in line and "No space left on device" in line and "free space" in line, line
    assert ".tmp" not in line  # the output as the user knows it, not the hidden temporary
    assert_unchanged(before, snapshot(project))
    assert temps(project) == []


def test_unwritable_output_folder_gives_a_clear_error_and_overwrites_nothing(project: Path, monkeypatch,
                                                                           capsys) -> None:
    """As root ``chmod`` does not stop a write, so the folder refuses writes the way it does for a user
    without permission (EACCES from the file system)."""
    import tempfile

    from ml.config import stage_config

    rcfg = stage_config("render", PROFILE)
    render = city_paths(project).render_dir(rcfg.resolution, rcfg.frames)
    before = snapshot(project)
    real = tempfile.mkdtemp

    def refuse(*a, **k):
        folder = k.get("dir", a[2] if len(a) > 2 else None)
        if folder is not None and Path(folder) == render.parent:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(Path(folder) / "tmpXXXX"))
        return real(*a, **k)

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    ok, out = _run_in_process(project, "rendered_videos", capsys, monkeypatch)
    assert not ok
    [line] = _failure_lines(out, "rendered_videos")
    assert str(render) in line and "Permission denied" in line and "writable" in line, line
    assert_unchanged(before, snapshot(project))


def test_a_file_where_an_output_folder_should_be_gives_a_clear_error(project: Path, capsys, monkeypatch) -> None:
    """A real obstruction, no mock: ``predictions`` is a file. The error names it and says to move it."""
    pred = city_paths(project).predictions
    shutil.rmtree(pred)
    pred.write_text("not a folder\n")
    before = snapshot(project)
    ok, out = _run_in_process(project, "predictions", capsys, monkeypatch)
    assert not ok
    [line] = _failure_lines(out, "predictions")
    assert str(pred) in line and "move it away" in line, line
    assert_unchanged(before, snapshot(project))
    assert pred.read_text() == "not a folder\n"


# --------------------------------------------------------------------------- 5. bad input: shard, checkpoints


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def test_truncated_rendered_shard_gives_one_clear_message(project: Path, capsys, monkeypatch) -> None:
    from ml.config import stage_config

    rcfg = stage_config("render", PROFILE)
    shard = sorted(city_paths(project).render_dir(rcfg.resolution, rcfg.frames).glob("video_*.npy"))[-1]
    _truncate(shard)
    before = snapshot(project)
    for step in ("sft_checkpoint", "gdpo_checkpoint"):
        ok, out = _run_in_process(project, step, capsys, monkeypatch)
        assert not ok
        [line] = _failure_lines(out, step)
        assert str(shard) in line and "truncated or corrupted" in line and "rendered_videos" in line, line
        assert_unchanged(before, snapshot(project))


def test_truncated_model_checkpoint_gives_one_clear_message(project: Path, capsys, monkeypatch) -> None:
    model = city_paths(project).checkpoints / "sft" / "model.pt"
    _truncate(model)
    before = snapshot(project)
    ok, out = _run_in_process(project, "gdpo_checkpoint", capsys, monkeypatch)
    assert not ok
    [line] = _failure_lines(out, "gdpo_checkpoint")
    assert str(model) in line and "truncated or corrupted" in line and "--select sft_checkpoint" in line, line
    assert_unchanged(before, snapshot(project))


def test_truncated_resume_checkpoint_gives_one_clear_message(project: Path, capsys, monkeypatch) -> None:
    last = city_paths(project).checkpoints / "sft" / "checkpoints" / "last.ckpt"
    _truncate(last)
    before = snapshot(project)
    ok, out = _run_in_process(project, "sft_checkpoint", capsys, monkeypatch)
    assert not ok
    [line] = _failure_lines(out, "sft_checkpoint")
    assert str(last) in line and "truncated or corrupted" in line and "train from the start" in line, line
    assert_unchanged(before, snapshot(project))
