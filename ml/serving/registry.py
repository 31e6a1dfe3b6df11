"""Log and register the video pyfunc in MLflow; batch reconstruction with a registered model."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


def registered_name(city: str) -> str:
    """Registry name of a city's video model."""
    return f"sig2gps-video-{city}"


@dataclass
class LoggedModel:
    """Where a logged pyfunc lives: run, model URI, registry name, version and alias."""

    run_id: str
    model_uri: str
    name: str
    version: str
    alias: str

    @property
    def alias_uri(self) -> str:
        return f"models:/{self.name}@{self.alias}"


def learned_hmm_registered_name(city: str) -> str:
    """Registry name of a city's ``learned_hmm`` (its footprints with the network and towers)."""
    return f"sig2gps-learned-hmm-{city}"


def log_learned_hmm_model(city: str, towers: pd.DataFrame, roads: Any, footprints: str | Path, duration_s: float,
                          eval_interval_s: float, footprint_cfg: Any = None, tracking_uri: str | None = None,
                          run_id: str | None = None, alias: str = "evaluated") -> LoggedModel:
    """Log ``learned_hmm`` as a pyfunc (``ml.serving.hmm_pyfunc``: towers, roads, the footprint table, serving
    config) into ``run_id`` (or a new run of ``sig2gps-serving``) and register it as
    ``sig2gps-learned-hmm-<city>`` with ``alias``."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from ml.serving.hmm_pyfunc import LearnedHMMModel

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    name = learned_hmm_registered_name(city)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        towers.to_parquet(tmp / "towers.parquet", index=False)
        roads.save_npz(tmp / "roads.npz")
        fcfg = footprint_cfg.model_dump(mode="json") if hasattr(footprint_cfg, "model_dump") else dict(footprint_cfg or {})
        cfg = {"city": city, "crs": roads.crs, "duration_s": float(duration_s), "eval_interval_s": float(eval_interval_s),
               "footprints": fcfg}
        (tmp / "serving_config.json").write_text(json.dumps(cfg, indent=2))
        artifacts = {"towers": str(tmp / "towers.parquet"), "roads": str(tmp / "roads.npz"),
                     "footprints": str(footprints), "serving_config": str(tmp / "serving_config.json")}
        if run_id is None:
            from ml.tracking import ensure_experiment

            exp_id = ensure_experiment("sig2gps-serving", mlflow.get_tracking_uri())
            ctx = mlflow.start_run(experiment_id=exp_id, run_name=f"{city}-learned-hmm-pyfunc", tags={"city": city})
        else:
            ctx = mlflow.start_run(run_id=run_id)
        with ctx as run:
            info = mlflow.pyfunc.log_model(name="learned_hmm_pyfunc", python_model=LearnedHMMModel(),
                                           artifacts=artifacts, registered_model_name=name, input_example=None,
                                           pip_requirements=["sig2gps"])
            rid = run.info.run_id
    version = str(info.registered_model_version)
    MlflowClient().set_registered_model_alias(name, alias, version)
    log.info("registered %s version %s alias %s", name, version, alias)
    return LoggedModel(run_id=rid, model_uri=info.model_uri, name=name, version=version, alias=alias)


def input_example() -> pd.DataFrame:
    """A request with the expected columns (used in docs and tests)."""
    ts = pd.Timestamp("2024-01-01T08:00:00Z")
    return pd.DataFrame({"sample_id": ["a", "a", "a"], "ts": [str(ts + pd.Timedelta(seconds=s)) for s in (0, 200, 550)],
                         "cell_id": [1, 2, 3]})


def log_video_model(
    checkpoint_path: str | Path,
    city: str,
    towers: pd.DataFrame | str | Path,
    roads: Any,
    duration_s: float,
    tracking_uri: str | None = None,
    alias: str = "sft",
    eval_interval_s: float = 30.0,
    n_steps: int = 20,
    noise_scale: float = 1.0,
    shift: float = 1.0,
    seed: int = 0,
    render_cfg: Any = None,
    run_id: str | None = None,
    experiment_name: str = "sig2gps-serving",
    tags: dict[str, str] | None = None,
    footprints: str | Path | None = None,
    footprint_cfg: Any = None,
    record_evidence_weight: float = 0.0,
) -> LoggedModel:
    """Log the checkpoint as a pyfunc (with towers, roads and serving config) and register it.

    ``towers``: DataFrame or parquet path (cell_id, lon, lat); ``roads``: a ``RoadNetwork`` or a
    ``.npz`` written by ``RoadNetwork.save_npz``; ``duration_s``: the window length W the model was
    trained on; ``render_cfg``: the ``RenderConfig`` (or dict) the training images were drawn with.
    The model is registered as ``sig2gps-video-<city>`` and ``alias`` (``sft`` or ``gdpo``) is set
    on the new version. Logs into ``run_id`` when given, else into a new run. ``footprints`` (the city's
    ``cell_footprints`` parquet, with ``footprint_cfg``) travel with the model when its training arrays
    placed records through them, so serving places them the same way. ``record_evidence_weight``: the
    decoder's weight of the records beside the drawing (``EvaluationConfig.video_record_evidence_weight``).
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    from ml.serving.pyfunc import VideoTrajectoryModel

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    name = registered_name(city)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tw = towers if isinstance(towers, pd.DataFrame) else pd.read_parquet(towers)
        tw = tw[[c for c in ("cell_id", "site_id", "lon", "lat", "azimuth_deg") if c in tw.columns]]
        tw.to_parquet(tmp / "towers.parquet", index=False)
        if isinstance(roads, (str, Path)):
            roads_path = Path(roads)
            crs = None
        else:
            roads_path = tmp / "roads.npz"
            roads.save_npz(roads_path)
            crs = roads.crs
        if crs is None:
            from ml.cities.network import RoadNetwork

            crs = RoadNetwork.load_npz(roads_path).crs
        rc = render_cfg.model_dump(mode="json") if hasattr(render_cfg, "model_dump") else dict(render_cfg or {})
        rc.pop("resolution", None)
        rc.pop("frames", None)
        cfg = {"city": city, "crs": crs, "duration_s": float(duration_s), "eval_interval_s": float(eval_interval_s),
               "n_steps": int(n_steps), "noise_scale": float(noise_scale), "shift": float(shift), "seed": int(seed),
               "record_evidence_weight": float(record_evidence_weight), "render": rc}
        if footprints is not None:
            cfg["footprints"] = (footprint_cfg.model_dump(mode="json") if hasattr(footprint_cfg, "model_dump")
                                 else dict(footprint_cfg or {}))
        (tmp / "serving_config.json").write_text(json.dumps(cfg, indent=2))
        artifacts = {"checkpoint": str(checkpoint_path), "towers": str(tmp / "towers.parquet"),
                     "roads": str(roads_path), "serving_config": str(tmp / "serving_config.json")}
        if footprints is not None:
            artifacts["footprints"] = str(footprints)
        if run_id is None:
            from ml.tracking import ensure_experiment

            exp_id = ensure_experiment(experiment_name, mlflow.get_tracking_uri())
            ctx = mlflow.start_run(experiment_id=exp_id, run_name=f"{city}-{alias}-pyfunc",
                                   tags={"city": city, "alias": alias, **(tags or {})})
        else:
            ctx = mlflow.start_run(run_id=run_id)
        with ctx as run:
            info = mlflow.pyfunc.log_model(
                name="video_pyfunc", python_model=VideoTrajectoryModel(), artifacts=artifacts,
                registered_model_name=name, input_example=None, pip_requirements=["sig2gps"],
            )
            rid = run.info.run_id
    client = MlflowClient()
    version = str(info.registered_model_version)
    client.set_registered_model_alias(name, alias, version)
    log.info("registered %s version %s alias %s", name, version, alias)
    return LoggedModel(run_id=rid, model_uri=info.model_uri, name=name, version=version, alias=alias)


def windows_from_signaling(df: pd.DataFrame, duration_s: float) -> pd.DataFrame:
    """Add ``sample_id`` (and ``t0``) cutting each device's records into consecutive windows of ``duration_s``.

    Kept as is when the frame already has a ``sample_id``.
    """
    if "sample_id" in df.columns:
        return df
    if "device_id" not in df.columns:
        raise ValueError("signaling: need a 'sample_id' or 'device_id' column")
    out = df.copy()
    out["ts"] = pd.to_datetime(out["ts"], utc=True)
    out = out.sort_values(["device_id", "ts"], kind="stable")
    first = out.groupby("device_id")["ts"].transform("min")
    k = ((out["ts"] - first).dt.total_seconds() // float(duration_s)).astype(np.int64)
    out["t0"] = first + pd.to_timedelta(k * float(duration_s), unit="s")
    out["sample_id"] = out["device_id"].astype(str) + "_" + k.astype(str)
    return out


def reconstruct_file(model_uri: str | None, city: str, signaling_path: str | Path, out_path: str | Path,
                     tracking_uri: str | None = None, alias: str = "sft") -> Path:
    """Reconstruct every window of a signaling file (parquet or CSV) with a logged model; write parquet/CSV.

    ``model_uri`` defaults to ``models:/sig2gps-video-<city>@<alias>``. Records without a
    ``sample_id`` are cut per device into windows of the model's duration.
    """
    import mlflow

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    uri = model_uri or f"models:/{registered_name(city)}@{alias}"
    model = mlflow.pyfunc.load_model(uri)
    sig_path = Path(signaling_path)
    df = pd.read_csv(sig_path) if sig_path.suffix.lower() == ".csv" else pd.read_parquet(sig_path)
    impl = model.unwrap_python_model()._impl
    df = windows_from_signaling(df, impl.duration_s)
    res = model.predict(df)
    res["ts"] = pd.to_datetime(res["ts"], utc=True)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        res.to_csv(out, index=False)
    else:
        res.to_parquet(out, index=False)
    return out


def seq2seq_registered_name(city: str) -> str:
    """Registry name of a city's seq2seq baseline."""
    return f"sig2gps-seq2seq-{city}"


def log_seq2seq_model(checkpoint_path: str | Path, city: str, tracking_uri: str, run_id: str,
                      alias: str = "best_val") -> LoggedModel:
    """Log the seq2seq network (MLflow's PyTorch flavour) into its training run and register it as
    ``sig2gps-seq2seq-<city>`` with ``alias`` on the new version, beside the video model.

    It is the network itself (inputs: the arrays of ``ml.seq2seq.window_batch``); the evaluation reads
    the checkpoint file (``ml.evaluation.seq2seq``), which is logged in the same run.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    from ml.seq2seq import load_seq2seq

    model, _ = load_seq2seq(checkpoint_path)
    mlflow.set_tracking_uri(tracking_uri)
    name = seq2seq_registered_name(city)
    with mlflow.start_run(run_id=run_id):
        # pickled module (its class is sig2gps's): the traced pt2 format cannot export the masked attention
        info = mlflow.pytorch.log_model(model, name="seq2seq", registered_model_name=name, pip_requirements=["sig2gps"],
                                        serialization_format="pickle")
    version = str(info.registered_model_version)
    MlflowClient(tracking_uri).set_registered_model_alias(name, alias, version)
    log.info("registered %s version %s alias %s", name, version, alias)
    return LoggedModel(run_id=run_id, model_uri=info.model_uri, name=name, version=version, alias=alias)
