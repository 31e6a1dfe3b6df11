"""Batch reconstruction of a partitioned signaling table on Ray Data, bucket by bucket, resumable.

``reconstruct_dataset(signaling, out_dir, method, inputs, ...)`` reads a Parquet signaling table
(one file, or a folder of hive partitions such as ``day=2024-03-04/hour=07/part-0.parquet``; columns
``device_id``, ``ts``, ``cell_id`` and optionally ``event``), cuts each device's records into
windows, reconstructs every window with one method and writes the trajectories as Parquet
partitioned by the window's start (UTC): ``out_dir/day=YYYY-MM-DD/hour=HH/<bucket>.parquet``
(columns ``sample_id``, ``device_id``, ``ts``, ``lon``, ``lat``, ``method``, ``error``; ``day`` and
``hour`` are the hive partition keys: ``OUTPUT_COLUMNS``).

Units of work: **buckets of devices**, written atomically.

1. **Buckets.** A device's windows start at its first record (``ml.serving.windows_from_signaling``),
   so one unit of work must hold all of a device's records, from every hour folder. An operator day
   written by ``python -m ml.scale generate`` is already cut that way: each device lives in exactly one
   ``shard-XXXXX.parquet`` (checked on DuckDB), so its shards are the buckets when none holds more than
   ``BatchConfig.records_per_bucket`` records. Any other table is bucketed out of core on DuckDB
   (``COPY ... PARTITION_BY`` a hash of ``device_id`` into ``ceil(records / records_per_bucket)`` buckets,
   DuckDB's ``memory_limit`` spilling beyond it) into ``out_dir/_work/buckets`` (renamed in when complete).
   Memory per worker is bounded by ``records_per_bucket``, whatever the size of the day.
2. **Reconstruction** on a Ray Data actor pool of ``num_workers`` actors (``map_batches`` over the bucket
   list, one bucket per call): each actor loads the road network and towers (and the model) once, then
   for each bucket reads its records, cuts them into window rows (:func:`window_rows`, the one windowing
   of the project) and runs the map function (:class:`HMMWindows`: ``industrial_hmm``, ``learned_hmm``;
   :class:`VideoWindows`: ``video``) on ``windows_per_call`` windows at a time.
3. **Atomic output.** A bucket's files are written under ``out_dir/_staging/<bucket>/``, renamed into
   ``out_dir/day=D/hour=H/<bucket>.parquet``, and its done marker ``out_dir/_done/<bucket>.json`` (windows,
   rows, failures by reason, seconds, the worker's peak memory) is written last. Readers of ``out_dir``
   (``pandas.read_parquet``, ``pyarrow.dataset``) skip the ``_``-prefixed entries.

**Resume.** ``out_dir/_manifest.json`` records what the run is (method and its settings, a fingerprint of
the signaling files, of the roads, towers, footprints and model, ``records_per_bucket``). A run into a folder
with the same manifest does only the buckets without a marker (first removing whatever an interrupted
attempt left of them); a different method, setting or input is refused with the differences named, unless
``overwrite`` (then the folder starts over). A killed worker or driver therefore leaves whole buckets
or nothing of a bucket a re-run will not redo; ``_manifest.json`` says ``"complete": true`` once every
bucket has its marker. A window that fails is written with NaN positions and its error (counted by reason
in the markers and :class:`BatchResult`), never dropped. One run at a time per output folder.

Ray runs in local mode (a fresh local instance with worker processes) unless ``ray_address`` names
a running cluster; an already initialised Ray (e.g. by a test) is used as it is. On a cluster every
node needs the ``sig2gps`` package installed, the input and output folders must be on a file system
shared by the nodes, and a checkpoint path or an MLflow store must be readable from the workers (the road
network and towers travel with the actors).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import re
import resource
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

METHODS: tuple[str, ...] = ("industrial_hmm", "learned_hmm", "video")
RECORD_COLUMNS: tuple[str, ...] = ("device_id", "ts", "cell_id")  # required; "event" is optional
#: the output table; ``day`` and ``hour`` (of the window's start, UTC) are its hive partition keys (folders)
OUTPUT_COLUMNS: list[str] = ["sample_id", "device_id", "ts", "lon", "lat", "method", "error", "day", "hour"]
PARTITION_COLUMNS: tuple[str, ...] = ("day", "hour")
#: the columns inside each output file (the partition keys are in its folder names)
FILE_SCHEMA = pa.schema([
    ("sample_id", pa.string()), ("device_id", pa.string()), ("ts", pa.timestamp("ns", tz="UTC")),
    ("lon", pa.float64()), ("lat", pa.float64()), ("method", pa.string()), ("error", pa.string()),
])
WINDOW_SCHEMA = pa.schema([
    ("sample_id", pa.string()), ("device_id", pa.string()), ("t0", pa.timestamp("ns", tz="UTC")),
    ("day", pa.string()), ("ts", pa.list_(pa.int64())), ("cell_id", pa.list_(pa.int64())),
    ("event", pa.list_(pa.string())),
])


# ---------------------------------------------------------------------------------------------- settings
class BatchConfig(BaseModel):
    """Sizes of a batch reconstruction (never its method or rules): the unit of work and the bucketing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    records_per_bucket: int = Field(250_000, ge=10, description="signaling records per bucket of devices: the unit "
                                    "of work, written atomically; bounds a worker's memory (its output is ~10 rows "
                                    "per record) whatever the size of the day")
    windows_per_call: int | None = Field(None, ge=1, description="windows per map-function call inside a bucket "
                                         "(None: 1,024 for the HMMs, the model's batch size for video)")
    memory_limit_mb: int = Field(1024, ge=128, description="DuckDB's memory_limit when bucketing by device hash "
                                 "(it spills to out_dir/_work beyond it)")
    threads: int = Field(1, ge=1, description="DuckDB threads when bucketing")


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


def operator_day_inputs(day_dir: str | Path, roads_dir: str | Path | None = None) -> tuple[CityInputs, Path]:
    """An operator day's folder as ``python -m ml.scale generate`` writes it, taken as it is: its own road
    network (``roads/roads.npz``, or ``roads_dir/roads.npz`` where the day was generated with another road cache,
    as the ``operator_signaling`` asset does) and towers (``towers.parquet``), and its signaling folder
    (``signaling/``, partitioned by day and hour). No registered city is needed."""
    from ml.cities.network import RoadNetwork

    day = Path(day_dir)
    need = {"towers": day / "towers.parquet",
            "road network": Path(roads_dir) / "roads.npz" if roads_dir is not None else day / "roads" / "roads.npz",
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


def _output_frame(df: pd.DataFrame, windows: pa.Table, method: str | pd.Series,
                  errors: dict[str, str] | None = None) -> pd.DataFrame:
    """The output columns (``OUTPUT_COLUMNS``) with device, day and hour (of the window's start) taken from the
    window rows."""
    sid = windows["sample_id"].to_numpy(zero_copy_only=False).astype(str)
    s = df["sample_id"].astype(str).to_numpy()
    pos = pd.Index(sid).get_indexer(s)  # each output row's window (vectorised: no per-row dict lookups)
    if len(pos) and pos.min() < 0:
        raise ValueError(f"output rows of window(s) not in the batch: {sorted(set(s[pos < 0]))[:3]}")
    t0 = pd.to_datetime(windows["t0"].to_pandas(), utc=True)
    errors = errors or {}
    window_error = np.array([errors.get(k) for k in sid], dtype=object)
    return pd.DataFrame({
        "sample_id": s, "device_id": windows["device_id"].to_numpy(zero_copy_only=False).astype(str)[pos],
        "ts": pd.to_datetime(df["ts"], utc=True).to_numpy(), "lon": df["lon"].to_numpy(np.float64),
        "lat": df["lat"].to_numpy(np.float64),
        "method": (method.to_numpy() if isinstance(method, pd.Series) else np.full(len(df), method)).astype(str),
        "error": pd.array(window_error[pos], dtype="string"),  # typed: an all-None column must not become null
        "day": windows["day"].to_numpy(zero_copy_only=False).astype(str)[pos],
        "hour": t0.dt.strftime("%H").to_numpy().astype(str)[pos],
    }).assign(ts=lambda d: pd.to_datetime(d["ts"], utc=True))


def _empty_output() -> pd.DataFrame:
    return pd.DataFrame({"sample_id": pd.Series(dtype=object), "device_id": pd.Series(dtype=object),
                         "ts": pd.Series(dtype="datetime64[ns, UTC]"), "lon": pd.Series(dtype=float),
                         "lat": pd.Series(dtype=float), "method": pd.Series(dtype=object),
                         "error": pd.Series(dtype="string"), "day": pd.Series(dtype=object),
                         "hour": pd.Series(dtype=object)})


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


# ---------------------------------------------------------------------------------------------- buckets
@dataclass(frozen=True)
class Bucket:
    """One unit of work: every record of some devices (``files``: Parquet files holding exactly those records)."""

    name: str
    files: tuple[str, ...]
    records: int


_SHARD_RE = re.compile(r"^shard-\d+$")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MiB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _input_files(src: Path) -> list[Path]:
    """The Parquet files of a table: the file itself, or every ``*.parquet`` under the folder (entries whose name
    starts with ``.`` or ``_`` are skipped, as pyarrow does)."""
    if src.is_file():
        return [src]
    files = sorted(p for p in src.rglob("*.parquet")
                   if not any(part.startswith((".", "_")) for part in p.relative_to(src).parts))
    if not files:
        raise FileNotFoundError(f"signaling {src}: folder holds no .parquet files")
    return files


def _check_columns(files: list[Path]) -> list[str]:
    """The record columns to read (``event`` when every file has it); a file without a required column is named."""
    has_event = True
    for f in files:
        names = pq.read_schema(f).names
        missing = [c for c in RECORD_COLUMNS if c not in names]
        if missing:
            raise ValueError(f"signaling {f}: missing column(s) {missing} (need device_id, ts, cell_id; event optional)")
        has_event &= "event" in names
    return [*RECORD_COLUMNS, *(["event"] if has_event else [])]


def _duckdb(work: Path, cfg: BatchConfig) -> Any:
    import duckdb

    work.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{cfg.memory_limit_mb}MB'")
    con.execute(f"SET threads = {cfg.threads}")
    con.execute(f"SET temp_directory = '{work / 'spill'}'")
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = false")
    return con


def _sql_files(files: list[Path]) -> str:
    return "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"


def _shards_hold_whole_devices(files: list[Path], work: Path, cfg: BatchConfig) -> bool:
    """True when no device has records in two shards (files ``shard-XXXXX.parquet`` of one stem form a shard)."""
    con = _duckdb(work, cfg)
    try:
        n = con.execute(
            f"SELECT count(*) FROM (SELECT device_id FROM read_parquet({_sql_files(files)}, filename=true, "
            "hive_partitioning=false) GROUP BY device_id "
            "HAVING count(DISTINCT regexp_extract(filename, 'shard-[0-9]+\\.parquet$')) > 1)").fetchone()[0]
    finally:
        con.close()
    return int(n) == 0


def _hash_buckets(files: list[Path], columns: list[str], total: int, work: Path, cfg: BatchConfig) -> list[Bucket]:
    """Out-of-core bucketing on DuckDB: ``hash(device_id) % n`` into ``work/buckets/b=K/*.parquet`` (written to a
    temporary folder and renamed in when complete; an existing one, from an interrupted run, is reused)."""
    dst = work / "buckets"
    if not dst.is_dir():
        tmp = work / ".buckets.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        n = max(1, math.ceil(total / cfg.records_per_bucket))
        sel = ", ".join(["CAST(device_id AS VARCHAR) AS device_id", *(c for c in columns if c != "device_id")])
        con = _duckdb(work, cfg)
        try:
            con.execute(f"COPY (SELECT {sel}, CAST(hash(CAST(device_id AS VARCHAR)) % {n} AS BIGINT) AS b "
                        f"FROM read_parquet({_sql_files(files)}, hive_partitioning=false, union_by_name=true)) "
                        f"TO '{tmp}' (FORMAT parquet, PARTITION_BY (b))")
        finally:
            con.close()
        tmp.mkdir(parents=True, exist_ok=True)  # an empty table writes nothing
        os.replace(tmp, dst)
    out = []
    for d in sorted(dst.glob("b=*"), key=lambda p: int(p.name[2:])):
        fs = sorted(str(f) for f in d.glob("*.parquet"))
        out.append(Bucket(f"bucket-{int(d.name[2:]):05d}", tuple(fs), sum(pq.ParquetFile(f).metadata.num_rows for f in fs)))
    return out


def plan_buckets(files: list[Path], columns: list[str], work: Path, cfg: BatchConfig) -> tuple[list[Bucket], str]:
    """The buckets of a table and how they were made (``"shards"``: an operator day's own shards, each holding
    whole devices and at most ``records_per_bucket`` records; ``"hash"``: bucketed by device hash on DuckDB)."""
    rows = {f: pq.ParquetFile(f).metadata.num_rows for f in files}
    total = sum(rows.values())
    if all(_SHARD_RE.match(f.stem) for f in files):
        shards: dict[str, list[Path]] = {}
        for f in files:
            shards.setdefault(f.stem, []).append(f)
        sizes = {k: sum(rows[f] for f in v) for k, v in shards.items()}
        if max(sizes.values()) <= cfg.records_per_bucket:
            if _shards_hold_whole_devices(files, work, cfg):
                return [Bucket(k, tuple(str(f) for f in v), sizes[k]) for k, v in sorted(shards.items())], "shards"
            log.info("signaling: some device has records in two shards; bucketing by device hash instead")
        else:
            log.info("signaling: a shard holds %d records (> records_per_bucket %d); bucketing by device hash instead",
                     max(sizes.values()), cfg.records_per_bucket)
    return _hash_buckets(files, columns, total, work, cfg), "hash"


def _bucket_outputs(out: Path, name: str) -> list[Path]:
    return sorted(out.glob(f"day=*/hour=*/{name}.parquet"))


def _clear_bucket(out: Path, name: str) -> None:
    """Remove whatever an interrupted attempt left of a bucket (its staging folder, its published files)."""
    shutil.rmtree(out / "_staging" / name, ignore_errors=True)
    for f in _bucket_outputs(out, name):
        f.unlink()


def failure_reason(error: str) -> str:
    """A window's failure reason: the exception's class name (``run_method`` writes ``"<Class>: <message>"``)."""
    return error.split(":", 1)[0].strip() or "unknown"


def run_bucket(fn: Callable[[pa.Table], pd.DataFrame], bucket: Bucket, out: Path, duration_s: float,
               windows_per_call: int, columns: list[str] | None = None) -> dict[str, Any]:
    """Reconstruct one bucket and publish it atomically: files staged, renamed into ``out/day=D/hour=H/<bucket>.parquet``,
    then the done marker ``out/_done/<bucket>.json`` (written last). Returns the marker's content."""
    from ml.io import write_json_atomic

    t = time.perf_counter()
    _clear_bucket(out, bucket.name)
    staging = out / "_staging" / bucket.name
    cols = columns or list(RECORD_COLUMNS)
    tables = [pq.read_table(f, columns=cols) for f in bucket.files]
    rec = (pa.concat_tables(tables, promote_options="default") if tables else
           pa.table({c: pa.array([], pa.string()) for c in cols})).to_pandas()
    rows = window_rows(rec, duration_s)
    parts = [fn(rows.slice(i, windows_per_call)) for i in range(0, rows.num_rows, windows_per_call)]
    res = pd.concat(parts, ignore_index=True) if parts else _empty_output()
    written = []
    for (day, hour), g in res.groupby(list(PARTITION_COLUMNS), sort=True):
        rel = Path(f"day={day}") / f"hour={hour}" / f"{bucket.name}.parquet"
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        tab = pa.Table.from_pandas(g[FILE_SCHEMA.names], schema=FILE_SCHEMA, preserve_index=False)
        pq.write_table(tab, staging / rel)
        written.append(rel)
    for rel in written:  # publish: whole files renamed into place, then the marker
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / rel, out / rel)
    failed = res.loc[res["error"].notna(), ["sample_id", "error"]].drop_duplicates("sample_id")
    reasons = failed["error"].astype(str).map(failure_reason).value_counts().sort_index()
    summary = {"bucket": bucket.name, "records": int(len(rec)), "windows": int(rows.num_rows), "rows": int(len(res)),
               "failed": int(len(failed)), "failures_by_reason": {str(k): int(v) for k, v in reasons.items()},
               "fallback": int(res.loc[res["method"] == "fallback_mar", "sample_id"].nunique()),
               "files": [str(r) for r in written], "seconds": round(time.perf_counter() - t, 3),
               "pid": os.getpid(), "peak_rss_mb": round(peak_rss_mb(), 1)}
    write_json_atomic(summary, out / "_done" / f"{bucket.name}.json")
    shutil.rmtree(staging, ignore_errors=True)
    return summary


class BucketWorker:
    """Ray Data actor: builds the map function once (roads, towers, model), then reconstructs whole buckets."""

    def __init__(self, method: str, ctor: dict[str, Any], out_dir: str, duration_s: float, windows_per_call: int,
                 columns: list[str]) -> None:
        self.fn = VideoWindows(**ctor) if method == "video" else HMMWindows(**ctor)
        self.out, self.duration_s, self.wpc, self.columns = Path(out_dir), float(duration_s), int(windows_per_call), columns

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        done = []
        for name, files, records in zip(batch["bucket"], batch["files"], batch["records"]):
            b = Bucket(str(name), tuple(json.loads(str(files))), int(records))
            try:
                s = run_bucket(self.fn, b, self.out, self.duration_s, self.wpc, self.columns)
            except Exception as exc:
                raise RuntimeError(f"bucket {b.name} ({b.records} records in {len(b.files)} file(s), e.g. {b.files[:1]}): "
                                   f"{type(exc).__name__}: {exc}") from exc
            done.append(json.dumps(s))
        return {"summary": np.array(done, dtype=object)}


# ---------------------------------------------------------------------------------------------- driver
@dataclass
class BatchResult:
    """What a batch run wrote (totals over every bucket of ``out_dir``) and what this call did (``seconds``:
    planning the buckets to the last marker; ``n_windows_run``: windows of the buckets done in this call)."""

    out_dir: Path
    method: str
    num_workers: int
    gpus_per_worker: float
    n_windows: int
    n_rows: int
    n_failed: int  # windows with an error (NaN positions)
    n_fallback: int  # video windows that could not be decoded (method fallback_mar)
    seconds: float
    n_buckets: int = 0
    n_buckets_run: int = 0  # buckets reconstructed in this call (the others had their marker: resumed)
    n_windows_run: int = 0
    n_records: int = 0
    failures_by_reason: dict[str, int] = field(default_factory=dict)
    buckets_from: str = ""  # "shards" (the day's own) or "hash" (DuckDB)
    peak_rss_mb_per_worker: float = float("nan")  # the largest peak RSS of the workers that ran buckets in this call
    ray_job_id: str | None = None
    dashboard_url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def windows_per_s(self) -> float:
        return self.n_windows_run / self.seconds if self.seconds > 0 else float("nan")


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


_DASHBOARD: dict[str, str] = {}


def connect_ray(ray_address: str | None, num_workers: int) -> bool:
    """Start or join Ray; True when this call started it (the caller then shuts it down).

    Local mode starts ``num_workers`` logical CPUs at least (one per actor)."""
    ray = _import_ray()
    if ray.is_initialized():
        return False
    if ray_address:
        _check_reachable(ray_address)
        try:
            ctx = ray.init(address=ray_address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConnectionError(f"ray address '{ray_address}': could not join the cluster ({exc})") from exc
    else:
        ctx = ray.init(num_cpus=max(num_workers, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False)
    url = getattr(ctx, "dashboard_url", None)
    _DASHBOARD.clear()
    if url:
        _DASHBOARD["url"] = url if "://" in url else f"http://{url}"
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
    """Logical CPUs per actor: 1, or the cluster's CPUs shared out when it has fewer than ``num_workers``."""
    import ray

    total = float(ray.cluster_resources().get("CPU", 0.0))
    if total <= 0:
        raise ValueError("the Ray cluster reports no CPU: batch reconstruction needs at least one")
    return min(1.0, total / num_workers)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _frame_sha(df: pd.DataFrame | None) -> str | None:
    return None if df is None else _sha(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes()
                                         + ",".join(map(str, df.columns)).encode())


def _files_sha(files: list[Path], root: Path) -> str:
    """Fingerprint of the input files: relative path, size and modification time of each."""
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(root) if f != root else f.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _video_identity(video: VideoSource) -> dict[str, Any]:
    if video.model_uri is not None:
        return {"model_uri": video.model_uri}
    ck = Path(str(video.checkpoint))
    st = ck.stat()
    return {"checkpoint": str(ck.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "serving_config": json.loads(json.dumps(video.serving_config or {}, default=str))}


class OutputMismatchError(ValueError):
    """The output folder holds a run with other inputs or settings (resuming it would mix two runs)."""


def _prepare_output(out: Path, identity: dict[str, Any], overwrite: bool) -> dict[str, Any] | None:
    """Create, resume or refuse ``out``; the manifest of the run it resumes (same identity), or None for a new run."""
    from ml.io import write_json_atomic

    man = out / "_manifest.json"
    if out.exists() and any(out.iterdir()):
        if overwrite:
            shutil.rmtree(out)
        elif man.is_file():
            old = json.loads(man.read_text()).get("identity", {})
            diff = [f"{k}: {json.dumps(old.get(k))} -> {json.dumps(identity[k])}" for k in identity if old.get(k) != identity[k]]
            if diff:
                raise OutputMismatchError(f"output {out}: holds a run with other inputs or settings ({'; '.join(diff)}); "
                                 "its buckets would be mixed with this run's. Pass overwrite (--overwrite) to start "
                                 "over, or choose another folder")
            return json.loads(man.read_text())
        else:
            raise FileExistsError(f"output {out}: folder is not empty and holds no {man.name} of a batch run "
                                  "(choose another or pass overwrite)")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic({"identity": identity, "complete": False}, man)
    return None


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
    config: BatchConfig | None = None,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> BatchResult:
    """Reconstruct every window of a (hive-)partitioned Parquet signaling table on Ray Data, bucket by bucket.

    ``method``: ``industrial_hmm`` or ``learned_hmm`` (needs ``inputs``, with its footprints for
    ``learned_hmm``, and ``duration_s``, the window length; ``eval_interval_s`` spaces its output points) or
    ``video`` (needs ``video``; the window length and output times come from the model's serving config, and
    ``duration_s``, if given, must match it). ``num_workers``: actors. ``ray_address``: a running cluster
    (``host:port``, ``ray://host:port`` or ``auto``); default a local Ray. ``batch_size``: windows per
    map-function call (overrides ``config.windows_per_call``). ``config``: bucket size and DuckDB limits.
    ``out_dir``: absent, empty, or a folder this function wrote with the same inputs and settings (then only
    its unfinished buckets are done: resume); ``overwrite`` starts it over. See the module docstring.
    """
    cfg = config or BatchConfig()
    say = progress or log.info
    if method not in METHODS:
        raise ValueError(f"method '{method}': choose one of {', '.join(METHODS)}")
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1 (got {num_workers})")
    src = Path(signaling)
    if not src.exists():
        raise FileNotFoundError(f"signaling {src}: no such file or folder")
    files = _input_files(src)
    columns = _check_columns(files)
    if method == "video":
        if video is None:
            raise ValueError("method 'video' needs a VideoSource (a models:/ URI or a checkpoint)")
        model_duration = video.duration_s()
        if duration_s is not None and abs(float(duration_s) - model_duration) > 1e-6:
            raise ValueError(f"duration_s {duration_s}: the model was trained on windows of {model_duration} s")
        duration_s = model_duration
        ctor: dict[str, Any] = {"source": video, "inputs": inputs}
        wpc = batch_size or cfg.windows_per_call or int((video.serving_config or {}).get("batch_size", 16))
    else:
        if inputs is None or duration_s is None:
            raise ValueError(f"method '{method}' needs the city's inputs (roads, towers) and duration_s")
        if method == "learned_hmm" and inputs.footprints is None:
            raise ValueError("method 'learned_hmm' needs the city's cell footprints (city_inputs(..., footprints=True))")
        ctor = {"inputs": inputs, "duration_s": float(duration_s), "eval_interval_s": float(eval_interval_s),
                "method": method}
        wpc = batch_size or cfg.windows_per_call or 1024
    identity = {
        "format": 1, "method": method, "duration_s": float(duration_s),
        "eval_interval_s": None if method == "video" else float(eval_interval_s),
        "signaling": {"path": str(src.resolve()), "files": len(files), "fingerprint": _files_sha(files, src)},
        "roads": _sha(inputs.roads_npz) if inputs is not None else None,
        "towers": _frame_sha(inputs.towers) if inputs is not None else None,
        "footprints": _frame_sha(inputs.footprints) if inputs is not None else None,
        "video": _video_identity(video) if video is not None else None,
        "records_per_bucket": cfg.records_per_bucket, "windows_per_call": wpc,
    }
    out = Path(out_dir)
    resumed = _prepare_output(out, identity, overwrite)  # refuses before Ray starts

    ray = _import_ray()
    started = connect_ray(ray_address, num_workers)
    summaries: list[dict[str, Any]] = []
    gpus = 0.0
    try:
        t_start = time.perf_counter()
        if resumed and resumed.get("complete"):  # every bucket has its marker: nothing to plan or run
            kind = str(resumed.get("buckets_from", ""))
            buckets = [Bucket(p.stem, (), 0) for p in sorted((out / "_done").glob("*.json"))]
        else:
            buckets, kind = plan_buckets(files, columns, out / "_work", cfg)
        done = {p.stem for p in (out / "_done").glob("*.json")}
        todo = [b for b in buckets if b.name not in done]
        shutil.rmtree(out / "_staging", ignore_errors=True)
        for b in todo:
            _clear_bucket(out, b.name)
        say(f"{method}: {len(buckets)} bucket(s) from {kind} ({sum(b.records for b in buckets)} records), "
            f"{len(buckets) - len(todo)} already done{' (resumed)' if resumed else ''}, {len(todo)} to run "
            f"on {num_workers} worker(s)")
        gpus = _gpus_per_actor(method, num_workers)
        if todo:
            items = [{"bucket": b.name, "files": json.dumps(list(b.files)), "records": b.records} for b in todo]
            ds = ray.data.from_items(items, override_num_blocks=len(items))
            n_actors = min(num_workers, len(todo))
            res = ds.map_batches(BucketWorker, fn_constructor_kwargs={
                "method": method, "ctor": ctor, "out_dir": str(out), "duration_s": float(duration_s),
                "windows_per_call": wpc, "columns": columns}, batch_size=1, batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=n_actors), num_cpus=_cpus_per_actor(n_actors), num_gpus=gpus)
            for row in res.iter_rows():
                s = json.loads(row["summary"])
                summaries.append(s)
                say(f"{method}: bucket {s['bucket']} done ({s['windows']} windows, {s['failed']} failed, "
                    f"{s['seconds']:.1f} s) [{len(summaries)}/{len(todo)}]")
        seconds = time.perf_counter() - t_start
        job_id = ray.get_runtime_context().get_job_id()
    finally:
        if started:
            ray.shutdown()
    markers = {p.stem: json.loads(p.read_text()) for p in (out / "_done").glob("*.json")}
    missing = [b.name for b in buckets if b.name not in markers]
    if missing:
        raise RuntimeError(f"output {out}: bucket(s) {missing[:5]} have no done marker after the run; run again to "
                           "complete them")
    from ml.io import write_json_atomic

    total = [markers[b.name] for b in buckets]
    reasons: dict[str, int] = {}
    for s in total:
        for k, v in s["failures_by_reason"].items():
            reasons[k] = reasons.get(k, 0) + int(v)
    write_json_atomic({"identity": identity, "complete": True, "buckets_from": kind, "buckets": len(buckets)},
                      out / "_manifest.json")
    shutil.rmtree(out / "_work", ignore_errors=True)
    shutil.rmtree(out / "_staging", ignore_errors=True)
    res_ = BatchResult(
        out_dir=out, method=method, num_workers=num_workers, gpus_per_worker=gpus,
        n_windows=sum(s["windows"] for s in total), n_rows=sum(s["rows"] for s in total),
        n_failed=sum(s["failed"] for s in total), n_fallback=sum(s["fallback"] for s in total), seconds=seconds,
        n_buckets=len(buckets), n_buckets_run=len(summaries), n_windows_run=sum(s["windows"] for s in summaries),
        n_records=sum(s["records"] for s in total), failures_by_reason=reasons, buckets_from=kind,
        peak_rss_mb_per_worker=max((s["peak_rss_mb"] for s in summaries), default=float("nan")),
        ray_job_id=job_id, dashboard_url=_DASHBOARD.get("url"))
    log.info("%s: %d windows (%d failed, %d fallback) in %d buckets (%d run now) in %.1f s with %d workers -> %s",
             method, res_.n_windows, res_.n_failed, res_.n_fallback, res_.n_buckets, res_.n_buckets_run, seconds,
             num_workers, out)
    return res_
