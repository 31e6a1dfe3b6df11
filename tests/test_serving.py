"""Serving: the pyfunc reconstructs trajectories, registers with an alias, batch reconstruction, and
``mlflow models serve`` answers a request on loopback (slow)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub

import mlflow  # noqa: E402 - a core dependency: a broken install fails collection, it is not skipped
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from ml.serving import log_video_model, reconstruct_file  # noqa: E402
from ml.serving.pyfunc import TrajectoryReconstructor  # noqa: E402

torch.set_num_threads(1)

DURATION_S = 600.0


@pytest.fixture(scope="module")
def served(grid_net, tmp_path_factory):
    from ml.models.backbone import VideoFlowModel
    from ml.models.checkpoint import save_video_model
    from ml.models.config import model_preset
    from ml.render.config import RenderConfig

    d = tmp_path_factory.mktemp("serving")
    torch.manual_seed(0)
    ckpt = save_video_model(d / "model.pt", VideoFlowModel(model_preset("ci", frames=5)))
    rng = np.random.default_rng(0)
    nodes = rng.choice(grid_net.n_nodes, 12, replace=False)
    lonlat = grid_net.projection.to_lonlat(grid_net.node_xy[nodes])
    towers = pd.DataFrame({"cell_id": np.arange(1, 13, dtype=np.int64), "site_id": np.arange(1, 13, dtype=np.int64),
                           "lon": lonlat[:, 0], "lat": lonlat[:, 1]})
    roads = d / "roads.npz"
    grid_net.save_npz(roads)
    return dict(dir=d, ckpt=ckpt, towers=towers, roads=roads, net=grid_net,
                render=RenderConfig(resolution=32, frames=5), uri=f"sqlite:///{d / 'mlflow.db'}")


def _request() -> pd.DataFrame:
    t0 = pd.Timestamp("2024-03-01T08:00:00Z")
    rows = [("a", 0, 1), ("a", 250, 2), ("a", 590, 3), ("b", 10, 4), ("b", 400, 5)]
    return pd.DataFrame({"sample_id": [r[0] for r in rows], "ts": [str(t0 + pd.Timedelta(seconds=r[1])) for r in rows],
                         "cell_id": [r[2] for r in rows]})


def _check_output(out: pd.DataFrame, net) -> None:
    assert set(out.columns) >= {"sample_id", "ts", "lon", "lat"}
    assert sorted(out["sample_id"].unique()) == ["a", "b"]
    assert (out.groupby("sample_id").size() == int(DURATION_S / 30) + 1).all()
    assert np.isfinite(out[["lon", "lat"]].to_numpy(float)).all()
    xy = net.projection.to_xy(out["lon"].to_numpy(float), out["lat"].to_numpy(float))
    x0, y0, x1, y1 = net.bounds
    assert ((xy[:, 0] > x0 - 2000) & (xy[:, 0] < x1 + 2000) & (xy[:, 1] > y0 - 2000) & (xy[:, 1] < y1 + 2000)).all()


def test_reconstructor_direct(served):
    cfg = {"duration_s": DURATION_S, "eval_interval_s": 30.0, "n_steps": 2, "render": served["render"].model_dump()}
    rec = TrajectoryReconstructor(served["ckpt"], served["towers"], served["net"], cfg)
    out = rec.reconstruct(_request())
    _check_output(out, served["net"])
    with pytest.raises(ValueError, match="cell_id.*999"):
        rec.reconstruct(pd.DataFrame({"sample_id": ["x"], "ts": ["2024-01-01T00:00:00Z"], "cell_id": [999]}))


@pytest.mark.slow
def test_log_register_and_serve(served):
    logged = log_video_model(served["ckpt"], "toy", served["towers"], served["roads"], DURATION_S,
                             tracking_uri=served["uri"], alias="sft", n_steps=2, render_cfg=served["render"])
    client = MlflowClient(served["uri"])
    mv = client.get_model_version_by_alias("sig2gps-video-toy", "sft")
    assert str(mv.version) == logged.version
    mlflow.set_tracking_uri(served["uri"])
    model = mlflow.pyfunc.load_model(logged.alias_uri)
    _check_output(model.predict(_request()), served["net"])

    # batch reconstruction: records cut into windows per device
    sig = _request().rename(columns={"sample_id": "device_id"})
    out = reconstruct_file(None, "toy", _write(sig, served["dir"] / "sig.parquet"), served["dir"] / "pred.parquet",
                           tracking_uri=served["uri"])
    pred = pd.read_parquet(out)
    assert len(pred) and pd.api.types.is_datetime64_any_dtype(pred["ts"])

    # mlflow models serve on loopback answers a request
    port = _free_port()
    bindir = str(Path(sys.executable).parent)  # the server runs uvicorn from the same environment
    env = dict(os.environ, MLFLOW_TRACKING_URI=served["uri"], OMP_NUM_THREADS="1",
               PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    mlflow_bin = str(Path(bindir) / "mlflow")
    proc = subprocess.Popen([mlflow_bin, "models", "serve", "-m", logged.alias_uri, "-h", "127.0.0.1", "-p", str(port),
                             "--env-manager", "local", "-w", "1"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        body = json.dumps({"dataframe_split": _request().to_dict(orient="split")}).encode()
        deadline = time.time() + 120
        resp = None
        while time.time() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"mlflow models serve exited: {proc.stdout.read().decode()[-3000:]}")
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=60) as r:
                    resp = json.loads(r.read())
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.25)
        assert resp is not None, "server did not answer in time"
        out = pd.DataFrame(resp["predictions"])
        _check_output(out, served["net"])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _write(df: pd.DataFrame, path: Path) -> Path:
    df.to_parquet(path, index=False)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_shipped_base_model_answers_with_video(grid_net):
    """The shipped base model (models/, 64 px, 17 frames) reconstructs requests itself: every window it decodes
    is answered with ``method = "video"`` and those positions are the decoded ones, not the MaR fallback."""
    from ml.train.sft.config import sft_profile
    from ml.geo.track import interpolate_positions
    from ml.train.sft.loop import _resolve_init

    base = _resolve_init(sft_profile("demo").init_checkpoint)
    rng = np.random.default_rng(3)
    nodes = rng.choice(grid_net.n_nodes, 12, replace=False)
    lonlat = grid_net.projection.to_lonlat(grid_net.node_xy[nodes])
    towers = pd.DataFrame({"cell_id": np.arange(1, 13, dtype=np.int64), "site_id": np.arange(1, 13, dtype=np.int64),
                           "lon": lonlat[:, 0], "lat": lonlat[:, 1]})
    cfg = {"duration_s": 300.0, "eval_interval_s": 30.0, "n_steps": 4}
    rec = TrajectoryReconstructor(base, towers, grid_net, cfg)
    t0 = pd.Timestamp("2024-03-01T08:00:00Z")
    rows = [(w, t, c) for w, cells in enumerate([(1, 2, 3), (4, 5, 6, 7), (8, 9), (10, 11, 12)])
            for t, c in zip(np.linspace(0, 290, len(cells)).round(), cells)]
    req = pd.DataFrame({"sample_id": [f"w{r[0]}" for r in rows],
                        "ts": [str(t0 + pd.Timedelta(seconds=float(r[1]))) for r in rows], "cell_id": [r[2] for r in rows]})
    out = rec.reconstruct(req)
    methods = out.groupby("sample_id")["method"].first()
    assert (methods == "video").sum() >= 3, methods.to_dict()
    # a "video" answer is the decoded trajectory, not the serving towers interpolated in time
    for sid, g in out[out["method"] == "video"].groupby("sample_id"):
        r = req[req["sample_id"] == sid]
        cell_xy = grid_net.projection.to_xy(towers.set_index("cell_id").loc[r["cell_id"], "lon"].to_numpy(float),
                                            towers.set_index("cell_id").loc[r["cell_id"], "lat"].to_numpy(float))
        rt = (pd.to_datetime(r["ts"], utc=True) - t0).dt.total_seconds().to_numpy()
        mar = interpolate_positions(rt, cell_xy, rec.eval_t)
        got = grid_net.projection.to_xy(g["lon"].to_numpy(float), g["lat"].to_numpy(float))
        assert np.abs(got - mar).max() > 1.0, sid
