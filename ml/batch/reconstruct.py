"""Batch reconstruction of a partitioned signaling table on Ray Data.

``reconstruct_dataset(signaling, out_dir, method, inputs, ...)`` reads a Parquet signaling table
(one file, or a folder of hive partitions such as ``day=2024-03-04/hour=07/part-0.parquet``; columns
``device_id``, ``ts``, ``cell_id`` and optionally ``event``), cuts each device's records into
windows, reconstructs every window with one method and writes the trajectories as Parquet
partitioned by the window's day (``out_dir/day=YYYY-MM-DD/*.parquet``; columns ``sample_id``,
``device_id``, ``ts``, ``lon``, ``lat``, ``method``, ``error``).

Pipeline (one Ray Data dataset, streamed):

1. ``ray.data.read_parquet`` of the input (hive partition columns are dropped: only the record
   columns are read).
2. **Windows across partition boundaries.** A device's records are spread over the hour folders,
   and its windows start at its first record (``ml.serving.windows_from_signaling``: consecutive
   windows of ``duration_s`` from the device's first record), so no partition alone knows where a
   window starts or which records it holds. The records are therefore shuffled by device
   (``groupby("device_id").map_groups``): each group holds all of one device's records, from every
   partition, and :func:`window_rows` cuts them with ``windows_from_signaling`` itself (the one
   windowing of the project) into one row per window (its records as list columns). A window is
   then never split between two batches of step 3.
3. ``map_batches`` with a callable class on an actor pool of ``num_workers`` actors: each actor
   loads the road network and towers (and the model) once, then reconstructs batches of windows:
   ``industrial_hmm`` and ``learned_hmm`` (with the city's footprints) through ``build_sample_contexts`` +
   ``ml.evaluation.methods.run_method``; ``video`` through
   ``ml.serving.pyfunc.TrajectoryReconstructor.reconstruct`` (the pyfunc's pipeline, batched on the
   model). Video actors ask Ray for one GPU each when the cluster reports GPUs.
4. ``write_parquet(out_dir, partition_cols=["day"])``.

Ray runs in local mode (a fresh local instance with worker processes) unless ``ray_address`` names
a running cluster; an already initialised Ray (e.g. by a test) is used as it is. On a cluster every
node needs the ``sig2gps`` package installed, and a checkpoint path or an MLflow store must be
readable from the workers (the road network and towers travel with the actors).
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

log = logging.getLogger(__name__)

METHODS: tuple[str, ...] = ("industrial_hmm", "learned_hmm", "video")
RECORD_COLUMNS: tuple[str, ...] = ("device_id", "ts", "cell_id")  # required; "event" is optional
OUTPUT_COLUMNS: list[str] = ["sample_id", "device_id", "ts", "lon", "lat", "method", "error", "day"]
WINDOW_SCHEMA = pa.schema([
    ("sample_id", pa.string()), ("device_id", pa.string()), ("t0", pa.timestamp("ns", tz="UTC")),
    ("day", pa.string()), ("ts", pa.list_(pa.int64())), ("cell_id", pa.list_(pa.int64())),
    ("event", pa.list_(pa.string())),
])


# ---------------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class CityInputs:
    """What every actor needs about the city: the road network (``RoadNetwork.save_npz`` bytes, so it
    travels to workers on other nodes without a shared file system) and the towers table."""

    roads_npz: bytes
    towers: pd.DataFrame
    footprints: pd.DataFrame | None = None  # the city's cell footprints (``learned_hmm`` needs them)

    @classmethod
    def from_objects(cls, net: Any, towers: pd.DataFrame, footprints: pd.DataFrame | None = None) -> "CityInputs":
        """From a loaded ``RoadNetwork``, a towers table (cell_id, site_id, lon, lat, ...) and optionally the
        city's cell footprints."""
        buf = io.BytesIO()
        net.save_npz(buf)
        return cls(roads_npz=buf.getvalue(), towers=towers.reset_index(drop=True), footprints=footprints)

    def network(self) -> Any:
        """The ``RoadNetwork`` (rebuilt from the bytes; caches start empty in each actor)."""
        from ml.cities.network import RoadNetwork

        return RoadNetwork.load_npz(io.BytesIO(self.roads_npz))


def city_inputs(city: str, profile: str = "demo", root: Path | None = None, footprints: bool = False) -> CityInputs:
    """The road network and towers of a registered city (``data/<city>/roads/``, ``data/<city>/<profile>/towers.parquet``),
    with its cell footprints (``data/<city>/<profile>/cell_footprints.parquet``) when ``footprints``."""
    from ml.cities import load_city, load_road_network
    from ml.cities.config import project_root
    from ml.paths import CityPaths

    root = Path(root) if root is not None else project_root()
    cfg = load_city(city)
    paths = CityPaths(root, city, profile)
    towers_path = paths.table("towers")
    if not towers_path.is_file():
        raise FileNotFoundError(f"{towers_path}: no towers table for city '{city}' profile '{profile}' "
                                f"(materialise it first: sig2gps run {city} --profile {profile} --select cell_towers)")
    fp = None
    if footprints:
        if not paths.footprints.is_file():
            raise FileNotFoundError(f"{paths.footprints}: no cell footprints for city '{city}' profile '{profile}' "
                                    f"(materialise them first: sig2gps run {city} --profile {profile} "
                                    "--select '*cell_footprints')")
        fp = pd.read_parquet(paths.footprints)
    return CityInputs.from_objects(load_road_network(cfg, paths.roads_dir), pd.read_parquet(towers_path), fp)


def operator_day_inputs(day_dir: str | Path) -> tuple[CityInputs, Path]:
    """An operator day's folder as ``python -m ml.scale generate`` writes it, taken as it is: its own road
    network (``roads/roads.npz``) and towers (``towers.parquet``), and its signaling folder (``signaling/``,
    partitioned by day and hour). No registered city is needed."""
    from ml.cities.network import RoadNetwork

    day = Path(day_dir)
    need = {"towers": day / "towers.parquet", "road network": day / "roads" / "roads.npz",
            "signaling": day / "signaling"}
    missing = [f"{what} ({path})" for what, path in need.items() if not path.exists()]
    if missing:
        raise FileNotFoundError(f"operator day {day}: missing {', '.join(missing)}; is it a folder written by "
                                "`python -m ml.scale generate`?")
    net = RoadNetwork.load_npz(need["road network"])
    return CityInputs.from_objects(net, pd.read_parquet(need["towers"])), need["signaling"]


@dataclass(frozen=True)
class VideoSource:
    """Where a video actor gets its model: a registered MLflow model (``model_uri``, loaded with
    ``mlflow.pyfunc.load_model`` in each actor) or a ``save_video_model`` checkpoint with the serving
    config the pyfunc would carry (``checkpoint`` + ``serving_config``, with the city's ``CityInputs``)."""

    model_uri: str | None = None
    tracking_uri: str | None = None
    checkpoint: str | None = None
    serving_config: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if (self.model_uri is None) == (self.checkpoint is None):
            raise ValueError("VideoSource: give exactly one of model_uri (MLflow) or checkpoint (+ serving_config)")
        if self.checkpoint is not None and not (self.serving_config or {}).get("duration_s"):
            raise ValueError("VideoSource: a checkpoint needs serving_config with 'duration_s' (the trained window length)")

    def duration_s(self) -> float:
        """The window length the model was trained on (read from the MLflow model's serving config)."""
        if self.checkpoint is not None:
            return float(self.serving_config["duration_s"])  # type: ignore[index]
        import json

        import mlflow

        if self.tracking_uri:
            mlflow.set_tracking_uri(self.tracking_uri)
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=self.model_uri))
        found = sorted(local.rglob("serving_config.json"))
        if not found:
            raise ValueError(f"model '{self.model_uri}': no serving_config.json artifact (not a sig2gps video pyfunc)")
        return float(json.loads(found[0].read_text())["duration_s"])


def video_source_from_checkpoint(checkpoint: str | Path, city: str | None = None, profile: str = "demo",
                                 **overrides: Any) -> VideoSource:
    """A checkpoint with the serving config the pipeline registers with it (``dagster_project`` ``_register``):
    window length and evaluation interval from the ``samples`` stage, Euler steps and noise scale from
    ``evaluation``, the ``render`` config, the footprint settings (the city's footprints come with its
    ``CityInputs``); ``overrides`` replace single keys (e.g. ``batch_size``)."""
    from ml.cities import load_city
    from ml.config import stage_config

    cc = load_city(city) if city else None
    samples = stage_config("samples", profile, cc)
    ev = stage_config("evaluation", profile, cc)
    rc = stage_config("render", profile, cc).model_dump(mode="json")
    rc.pop("resolution", None)
    rc.pop("frames", None)
    cfg = {"duration_s": float(samples.window_s), "eval_interval_s": float(samples.eval_interval_s),
           "n_steps": int(ev.video_sampling_steps), "noise_scale": float(ev.video_noise_scale), "shift": 1.0,
           "seed": 0, "batch_size": int(ev.video_batch_size), "render": rc,
           "footprints": stage_config("footprints", profile, cc).model_dump(mode="json"), **overrides}
    return VideoSource(checkpoint=str(checkpoint), serving_config=cfg)


# ---------------------------------------------------------------------------------------------- partitioned input
def write_partitioned_signaling(signaling: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Write a signaling table as hive partitions ``day=YYYY-MM-DD/hour=HH/part-0.parquet`` (by record time, UTC),
    the layout an operator's hourly exports have; returns the files written (for tests and benchmarks)."""
    miss = [c for c in RECORD_COLUMNS if c not in signaling.columns]
    if miss:
        raise ValueError(f"signaling: missing column(s) {miss}")
    df = signaling.assign(ts=pd.to_datetime(signaling["ts"], utc=True))
    out = Path(out_dir)
    files = []
    for (day, hour), g in df.groupby([df["ts"].dt.strftime("%Y-%m-%d"), df["ts"].dt.strftime("%H")], sort=True):
        d = out / f"day={day}" / f"hour={hour}"
        d.mkdir(parents=True, exist_ok=True)
        g.to_parquet(d / "part-0.parquet", index=False)
        files.append(d / "part-0.parquet")
    return files


# ---------------------------------------------------------------------------------------------- windows
def window_rows(records: pd.DataFrame, duration_s: float) -> pa.Table:
    """All records of some devices -> one row per window (``WINDOW_SCHEMA``: its records as lists).

    Windows are those of ``ml.serving.windows_from_signaling`` (consecutive windows of ``duration_s``
    from each device's first record), so every record of a device must be in ``records``.
    """
    from ml.serving.registry import windows_from_signaling

    cols = [c for c in (*RECORD_COLUMNS, "event") if c in records.columns]
    rec = records[cols].copy()
    rec["device_id"] = rec["device_id"].astype(str)
    if "event" not in rec.columns:
        rec["event"] = ""
    if len(rec) == 0:
        return WINDOW_SCHEMA.empty_table()
    w = windows_from_signaling(rec, float(duration_s))  # sorted by (device_id, ts): a window's rows are contiguous
    sid = w["sample_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]])
    offsets = pa.array(np.r_[starts, len(w)].astype(np.int32))
    ts_ns = w["ts"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]").astype(np.int64)
    t0 = w["t0"].iloc[starts]
    return pa.table({
        "sample_id": pa.array(sid[starts].astype(str), pa.string()),
        "device_id": pa.array(w["device_id"].to_numpy()[starts].astype(str), pa.string()),
        "t0": pa.array(t0.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]"),
                       pa.timestamp("ns")).cast(pa.timestamp("ns", tz="UTC")),
        "day": pa.array(t0.dt.strftime("%Y-%m-%d").to_numpy().astype(str), pa.string()),
        "ts": pa.ListArray.from_arrays(offsets, pa.array(ts_ns, pa.int64())),
        "cell_id": pa.ListArray.from_arrays(offsets, pa.array(w["cell_id"].to_numpy(np.int64), pa.int64())),
        "event": pa.ListArray.from_arrays(offsets, pa.array(w["event"].astype(str).to_numpy(), pa.string())),
    }, schema=WINDOW_SCHEMA)


def window_records(windows: pa.Table) -> pd.DataFrame:
    """Window rows -> one row per record: sample_id, device_id, t0, ts (UTC), cell_id, event."""
    windows = windows.combine_chunks() if windows.num_rows else windows
    parent = pc.list_parent_indices(windows["ts"]).to_numpy()
    t0 = pd.to_datetime(windows["t0"].to_pandas(), utc=True).to_numpy()
    return pd.DataFrame({
        "sample_id": windows["sample_id"].to_numpy(zero_copy_only=False)[parent].astype(str),
        "device_id": windows["device_id"].to_numpy(zero_copy_only=False)[parent].astype(str),
        "t0": pd.to_datetime(t0[parent], utc=True),
        "ts": pd.to_datetime(pc.list_flatten(windows["ts"]).to_numpy(), unit="ns", utc=True),
        "cell_id": pc.list_flatten(windows["cell_id"]).to_numpy().astype(np.int64),
        "event": pc.list_flatten(windows["event"]).to_numpy(zero_copy_only=False).astype(str),
    })


def _device_windows(group: pd.DataFrame, duration_s: float) -> pa.Table:
    """``map_groups`` function: all records of one device (from every partition) -> its window rows."""
    return window_rows(group, duration_s)


def _output_frame(df: pd.DataFrame, windows: pa.Table, method: str | pd.Series,
                  errors: dict[str, str] | None = None) -> pd.DataFrame:
    """The output columns (``OUTPUT_COLUMNS``) with device and day taken from the window rows."""
    sid = windows["sample_id"].to_numpy(zero_copy_only=False).astype(str)
    dev = dict(zip(sid, windows["device_id"].to_numpy(zero_copy_only=False).astype(str)))
    day = dict(zip(sid, windows["day"].to_numpy(zero_copy_only=False).astype(str)))
    s = df["sample_id"].astype(str)
    errors = errors or {}
    return pd.DataFrame({
        "sample_id": s.to_numpy(), "device_id": s.map(dev).to_numpy(),
        "ts": pd.to_datetime(df["ts"], utc=True).to_numpy(), "lon": df["lon"].to_numpy(np.float64),
        "lat": df["lat"].to_numpy(np.float64),
        "method": (method.to_numpy() if isinstance(method, pd.Series) else np.full(len(df), method)).astype(str),
        "error": pd.array([errors.get(k) for k in s], dtype="string"),  # typed: an all-None column must not become null
        "day": s.map(day).to_numpy(),
    }).assign(ts=lambda d: pd.to_datetime(d["ts"], utc=True))


def _empty_output() -> pd.DataFrame:
    return pd.DataFrame({"sample_id": pd.Series(dtype=object), "device_id": pd.Series(dtype=object),
                         "ts": pd.Series(dtype="datetime64[ns, UTC]"), "lon": pd.Series(dtype=float),
                         "lat": pd.Series(dtype=float), "method": pd.Series(dtype=object),
                         "error": pd.Series(dtype="string"), "day": pd.Series(dtype=object)})


# ---------------------------------------------------------------------------------------------- map functions
class HMMWindows:
    """Actor: ``industrial_hmm`` or ``learned_hmm`` on batches of window rows (the evaluation's ``run_method`` path).

    A window that fails yields NaN positions with the exception text in ``error`` (counted in
    :class:`BatchResult`), as in the evaluation; an unknown cell id fails the batch (and the job)."""

    def __init__(self, inputs: CityInputs, duration_s: float, eval_interval_s: float,
                 method: str = "industrial_hmm") -> None:
        from ml.baselines import FOOTPRINT_METHODS, SIGNALING_METHODS
        from ml.observation import LearnedObservationModel, TowerTable

        self.net = inputs.network()
        self.towers = inputs.towers
        self.duration_s = float(duration_s)
        self.eval_interval_s = float(eval_interval_s)
        self.method = method
        self.fn = {**SIGNALING_METHODS, **FOOTPRINT_METHODS}[method]
        self.observation = None
        if method in FOOTPRINT_METHODS:
            if inputs.footprints is None:
                raise ValueError(f"method '{method}' needs the city's cell footprints (CityInputs.footprints)")
            self.observation = LearnedObservationModel(inputs.footprints, TowerTable(self.towers, self.net.crs))

    def __call__(self, windows: pa.Table) -> pd.DataFrame:
        from ml.evaluation.methods import predictions_frame, run_method
        from ml.observation import build_sample_contexts

        if windows.num_rows == 0:
            return _empty_output()
        rec = window_records(windows)
        t0 = pd.to_datetime(windows["t0"].to_pandas(), utc=True)
        sid = windows["sample_id"].to_numpy(zero_copy_only=False).astype(str)
        # keyed by sample_id (not device): build_sample_contexts then takes exactly the window's records,
        # the same ones the video pyfunc gets, whatever else of the device is in this batch
        samples = pd.DataFrame({"sample_id": sid, "device_id": sid, "t0": t0.to_numpy(),
                                "t1": (t0 + pd.Timedelta(seconds=self.duration_s)).to_numpy()})
        sig = pd.DataFrame({"device_id": rec["sample_id"], "ts": rec["ts"], "cell_id": rec["cell_id"],
                            "event": rec["event"]})
        ctxs = build_sample_contexts(samples, sig, self.towers, self.net, eval_interval_s=self.eval_interval_s,
                                     observation=self.observation)
        run = run_method(self.method, "signaling", self.fn, ctxs)
        return _output_frame(predictions_frame(run, ctxs), windows, self.method, run.failures)


class VideoWindows:
    """Actor: the video model on batches of window rows, through ``TrajectoryReconstructor.reconstruct``
    (``method`` is ``video`` or ``fallback_mar``, as the pyfunc labels them)."""

    def __init__(self, source: VideoSource, inputs: CityInputs | None) -> None:
        if source.model_uri is not None:
            import mlflow

            if source.tracking_uri:
                mlflow.set_tracking_uri(source.tracking_uri)
            self.impl = mlflow.pyfunc.load_model(source.model_uri).unwrap_python_model()._impl
        else:
            from ml.serving.pyfunc import TrajectoryReconstructor

            if inputs is None:
                raise ValueError("VideoWindows: a checkpoint source needs the city's CityInputs (roads, towers)")
            self.impl = TrajectoryReconstructor(source.checkpoint, inputs.towers, inputs.network(),
                                                dict(source.serving_config or {}), footprints=inputs.footprints)

    def __call__(self, windows: pa.Table) -> pd.DataFrame:
        if windows.num_rows == 0:
            return _empty_output()
        rec = window_records(windows)
        res = self.impl.reconstruct(rec[["sample_id", "t0", "ts", "cell_id", "event"]])
        return _output_frame(res, windows, res["method"])


# ---------------------------------------------------------------------------------------------- driver
@dataclass
class BatchResult:
    """What a batch run wrote and how long it took (``seconds``: reading to the last file written)."""

    out_dir: Path
    method: str
    num_workers: int
    gpus_per_worker: float
    n_windows: int
    n_rows: int
    n_failed: int  # windows with an error (NaN positions)
    n_fallback: int  # video windows that could not be decoded (method fallback_mar)
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def windows_per_s(self) -> float:
        return self.n_windows / self.seconds if self.seconds > 0 else float("nan")


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401 - the [data] extra
    except ImportError as exc:
        raise RuntimeError(f"batch reconstruction on Ray needs 'ray[data]' ({exc}); install the project's "
                           "dependencies (pip install -e .) or use the single-machine path (--engine local)") from exc
    return ray


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast, naming the address, when nothing listens there (ray.init would retry for a minute)."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"ray address '{address}': expected host:port, ray://host:port or 'auto'")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConnectionError(f"ray address '{address}': no Ray cluster reachable ({exc})") from exc


def connect_ray(ray_address: str | None, num_workers: int) -> bool:
    """Start or join Ray; True when this call started it (the caller then shuts it down).

    Local mode starts worker processes with ``num_workers + 1`` logical CPUs at least: one per
    actor plus one for the read and shuffle tasks, which would otherwise wait for the actors.
    """
    ray = _import_ray()
    if ray.is_initialized():
        return False
    if ray_address:
        _check_reachable(ray_address)
        try:
            ray.init(address=ray_address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConnectionError(f"ray address '{ray_address}': could not join the cluster ({exc})") from exc
    else:
        ray.init(num_cpus=max(num_workers + 1, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False)
    return True


def _gpus_per_actor(method: str, num_workers: int) -> float:
    """1 for video actors when the Ray cluster reports GPUs (one actor per GPU), else 0."""
    import ray

    if method != "video":
        return 0.0
    gpus = float(ray.cluster_resources().get("GPU", 0.0))
    if gpus < 1:
        return 0.0
    if num_workers > gpus:
        raise ValueError(f"--workers {num_workers}: more video actors than the cluster's {gpus:g} GPUs "
                         "(one GPU per actor)")
    return 1.0


def _cpus_per_actor(num_workers: int) -> float:
    """Logical CPUs per actor: 1, or less on a small cluster so that one CPU stays free for the read and
    shuffle tasks (with every CPU held by actors they never run and the job waits forever)."""
    import ray

    total = float(ray.cluster_resources().get("CPU", 0.0))
    if total < 2:
        raise ValueError(f"the Ray cluster has {total:g} CPU(s): batch reconstruction needs at least 2 "
                         "(actors plus the read and shuffle tasks)")
    per = min(1.0, (total - 1.0) / num_workers)
    if per < 1.0:
        log.info("%d workers on %g CPUs: %.2f CPU per actor, 1 left for the read and shuffle tasks", num_workers, total, per)
    return per


def _summarise(out_dir: Path) -> tuple[int, int, int, int]:
    """(windows, rows, failed windows, fallback windows) of the written output."""
    import pyarrow.dataset as pads

    files = sorted(out_dir.rglob("*.parquet"))
    if not files:
        return 0, 0, 0, 0
    t = pads.dataset([str(f) for f in files], format="parquet").to_table(columns=["sample_id", "method", "error"])
    df = t.to_pandas()
    failed = df.loc[df["error"].notna(), "sample_id"].nunique()
    fallback = df.loc[df["method"] == "fallback_mar", "sample_id"].nunique()
    return int(df["sample_id"].nunique()), int(len(df)), int(failed), int(fallback)


def reconstruct_dataset(
    signaling: str | Path,
    out_dir: str | Path,
    method: str,
    inputs: CityInputs | None = None,
    *,
    video: VideoSource | None = None,
    duration_s: float | None = None,
    eval_interval_s: float = 15.0,
    num_workers: int = 1,
    ray_address: str | None = None,
    batch_size: int | None = None,
    shuffle_partitions: int | None = None,
    overwrite: bool = False,
) -> BatchResult:
    """Reconstruct every window of a (hive-)partitioned Parquet signaling table on Ray Data.

    ``method``: ``industrial_hmm`` or ``learned_hmm`` (needs ``inputs``, with its footprints for
    ``learned_hmm``, and ``duration_s``, the window length; ``eval_interval_s`` spaces its output points) or ``video`` (needs ``video``; the window length
    and output times come from the model's serving config, and ``duration_s``, if given, must
    match it). ``num_workers``: actors of the map stage. ``ray_address``: a running cluster
    (``host:port``, ``ray://host:port`` or ``auto``); default a local Ray. ``out_dir`` must be empty
    or absent unless ``overwrite``. See the module docstring for the stages.
    """
    if method not in METHODS:
        raise ValueError(f"method '{method}': choose one of {', '.join(METHODS)}")
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1 (got {num_workers})")
    src = Path(signaling)
    if not src.exists():
        raise FileNotFoundError(f"signaling {src}: no such file or folder")
    if src.is_dir() and not any(src.rglob("*.parquet")):
        raise FileNotFoundError(f"signaling {src}: folder holds no .parquet files")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"output {out}: folder is not empty (choose another or pass overwrite)")
        shutil.rmtree(out)
    if method == "video":
        if video is None:
            raise ValueError("method 'video' needs a VideoSource (a models:/ URI or a checkpoint)")
        model_duration = video.duration_s()
        if duration_s is not None and abs(float(duration_s) - model_duration) > 1e-6:
            raise ValueError(f"duration_s {duration_s}: the model was trained on windows of {model_duration} s")
        duration_s = model_duration
        fn, ctor = VideoWindows, {"source": video, "inputs": inputs}
        bs = batch_size or int((video.serving_config or {}).get("batch_size", 16))
    else:
        if inputs is None or duration_s is None:
            raise ValueError(f"method '{method}' needs the city's inputs (roads, towers) and duration_s")
        if method == "learned_hmm" and inputs.footprints is None:
            raise ValueError("method 'learned_hmm' needs the city's cell footprints (city_inputs(..., footprints=True))")
        fn, ctor = HMMWindows, {"inputs": inputs, "duration_s": float(duration_s),
                                "eval_interval_s": float(eval_interval_s), "method": method}
        bs = batch_size or 64

    ray = _import_ray()
    started = connect_ray(ray_address, num_workers)
    try:
        t_start = time.perf_counter()
        ds = ray.data.read_parquet(str(src))
        names = ds.schema().names
        missing = [c for c in RECORD_COLUMNS if c not in names]
        if missing:
            raise ValueError(f"signaling {src}: missing column(s) {missing} (need device_id, ts, cell_id; event optional)")
        ds = ds.select_columns([c for c in (*RECORD_COLUMNS, "event") if c in names])
        parts = shuffle_partitions or max(4, 2 * num_workers)
        windows = ds.groupby("device_id", num_partitions=parts).map_groups(
            _device_windows, fn_kwargs={"duration_s": float(duration_s)}, batch_format="pandas")
        gpus = _gpus_per_actor(method, num_workers)
        result = windows.map_batches(fn, fn_constructor_kwargs=ctor, batch_size=bs, batch_format="pyarrow",
                                     compute=ray.data.ActorPoolStrategy(size=num_workers),
                                     num_cpus=_cpus_per_actor(num_workers), num_gpus=gpus)
        result.write_parquet(str(out), partition_cols=["day"])
        seconds = time.perf_counter() - t_start
    finally:
        if started:
            ray.shutdown()
    n_windows, n_rows, n_failed, n_fallback = _summarise(out)
    res = BatchResult(out_dir=out, method=method, num_workers=num_workers, gpus_per_worker=gpus,
                      n_windows=n_windows, n_rows=n_rows, n_failed=n_failed, n_fallback=n_fallback, seconds=seconds)
    log.info("%s: %d windows (%d failed, %d fallback) in %.1f s with %d workers -> %s", method, n_windows, n_failed,
             n_fallback, seconds, num_workers, out)
    return res
