"""An operator-sized simulated day: 100,000 phones and 2,000 taxis on a real extract, written shard by shard.

The population is cut into shards of ``shard_devices`` phones (drivers and decoys in the fleet's
proportion); each shard is simulated by ``ml.simulate`` (taxi GPS, phones' timelines, radio and
events) in the city's one radio world (one ``RadioModel``: the same towers and shadowing for every
shard) and written at once as hive-partitioned Parquet, so memory holds one shard per worker, never
the day::

    <out>/towers.parquet                                          (the operator's table; antennas.parquet: the truth)
    <out>/signaling/day=2024-03-04/hour=07/shard-00012.parquet   (device_id, ts, cell_id, event)
    <out>/gps/day=2024-03-04/hour=07/shard-00012.parquet         (vehicle_id, ts, lon, lat, speed_mps)
    <out>/truth_links/shard-00012.parquet                         (the hidden truth, for scoring the pairing)
    <out>/shards/shard-00012.json                                 (rows and seconds; written last: the shard is done)
    <out>/manifest.json                                           (config, totals, size on disk, time)

Shards are independent (seeded by ``(seed, shard)``), so the same config gives the same files whatever
the number of workers, and a run that stops resumes at the first shard without its ``shards/*.json``.
The first ``k`` shards form a smaller day of the same city (``k * shard_devices`` phones): the growth
benchmark (``bench/operator_scale.py``) reads 10k, 30k and 100k-phone days from one generated folder.
Passengers ride taxis of their own shard (a shard has ``n_taxis / n_shards`` of them).
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ml.cities import CityConfig, RoadNetwork, load_road_network
from ml.simulate import SimulationConfig, simulate_taxi_gps, simulate_towers
from ml.simulate.phones import device_population, signaling_of_population
from ml.simulate.radio import RadioModel
from ml.simulate.tables import SCHEMAS, make_table

TABLES = ("signaling", "gps")


class OperatorDayConfig(BaseModel):
    """Size and seeds of an operator-sized day (defaults: the issue's 100,000 phones and 2,000 taxis)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_devices: int = Field(100_000, ge=1, description="phones in the population (drivers + decoys)")
    n_taxis: int = Field(2_000, ge=1, description="taxis, one driver phone each (part of n_devices)")
    shard_devices: int = Field(1_000, ge=10, description="phones simulated and written together (memory per worker)")
    seed: int = Field(31, description="the city's seed: towers and radio world; shard s uses (seed, s)")
    simulation: SimulationConfig = Field(default_factory=SimulationConfig,
                                         description="physics and behaviour; its n_taxis / n_decoys are set per shard")

    @model_validator(mode="after")
    def _check(self) -> "OperatorDayConfig":
        if self.n_taxis > self.n_devices:
            raise ValueError("operator_day.n_taxis must not exceed n_devices (every taxi's driver is one of the phones)")
        if self.n_devices % self.shard_devices:
            raise ValueError(f"operator_day.n_devices ({self.n_devices}) must be a multiple of shard_devices "
                             f"({self.shard_devices}): the first k shards form the smaller days of the benchmark")
        return self

    @property
    def n_shards(self) -> int:
        return self.n_devices // self.shard_devices

    def taxis_in_shard(self, shard: int) -> int:
        """Taxis of ``shard``: the fleet spread evenly (largest-remainder), so every prefix of shards keeps the mix."""
        edges = np.floor(np.arange(self.n_shards + 1) * self.n_taxis / self.n_shards + 1e-9).astype(int)
        return int(edges[shard + 1] - edges[shard])


def shard_name(shard: int) -> str:
    return f"shard-{shard:05d}"


def _write_partitioned(df: pd.DataFrame, root: Path, name: str) -> int:
    """Write ``df`` under ``root/day=.../hour=.../<name>.parquet`` (tmp file then rename); returns rows written."""
    ts = pd.to_datetime(df["ts"], utc=True)
    keys = pd.DataFrame({"day": ts.dt.strftime("%Y-%m-%d"), "hour": ts.dt.strftime("%H")})
    n = 0
    for (day, hour), idx in keys.groupby(["day", "hour"], sort=True).groups.items():
        part = root / f"day={day}" / f"hour={hour}"
        part.mkdir(parents=True, exist_ok=True)
        tmp = part / f".{name}.parquet.tmp"
        df.loc[idx].to_parquet(tmp, index=False)
        os.replace(tmp, part / f"{name}.parquet")
        n += len(idx)
    return n


# one road network and radio world per worker process (loaded by the pool's initializer)
_WORKER: dict = {}


def _init_worker(net_npz: str, antennas_path: str, cfg_json: str) -> None:
    cfg = OperatorDayConfig.model_validate_json(cfg_json)
    net = RoadNetwork.load_npz(net_npz)
    antennas = pd.read_parquet(antennas_path)
    _WORKER.update(cfg=cfg, net=net, radio=RadioModel(antennas, net.crs, cfg.simulation, cfg.seed))


def simulate_shard(shard: int, out_dir: str) -> dict:
    """Simulate and write one shard (in a worker initialised by :func:`_init_worker`); returns its summary."""
    cfg: OperatorDayConfig = _WORKER["cfg"]
    net: RoadNetwork = _WORKER["net"]
    out, name = Path(out_dir), shard_name(shard)
    t = time.perf_counter()
    n_taxis = cfg.taxis_in_shard(shard)
    # (n_taxis must be >= 1 in SimulationConfig; a shard without taxis simulates none)
    sim = cfg.simulation.model_copy(update={"n_taxis": max(n_taxis, 1), "n_decoys": cfg.shard_devices - n_taxis})
    # an independent stream per shard and day (days after the simulation's default first day shift it)
    day_offset = (sim.start_date - SimulationConfig.model_fields["start_date"].default).days
    seed = cfg.seed * 100_003 + shard + 1_000_003 * day_offset
    gps = simulate_taxi_gps(net, sim, seed) if n_taxis else make_table("gps", {c: [] for c in SCHEMAS["gps"]})
    vehicles = sorted(gps["vehicle_id"].astype(str).unique()) if len(gps) else []
    truth = device_population(vehicles, sim, seed)
    signaling = signaling_of_population(net, _WORKER["radio"], gps, truth, sim, seed)
    rows = {"signaling": _write_partitioned(signaling, out / "signaling", name),
            "gps": _write_partitioned(gps, out / "gps", name)}
    (out / "truth_links").mkdir(parents=True, exist_ok=True)
    truth.to_parquet(out / "truth_links" / f"{name}.parquet", index=False)
    summary = {"shard": shard, "devices": int(len(truth)), "taxis": len(vehicles), "rows": rows,
               "seconds": round(time.perf_counter() - t, 2)}
    (out / "shards").mkdir(parents=True, exist_ok=True)
    tmp = out / "shards" / f".{name}.json.tmp"
    tmp.write_text(json.dumps(summary))
    os.replace(tmp, out / "shards" / f"{name}.json")  # last: the shard is complete
    return summary


def dir_size_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*.parquet"))


def generate_operator_day(city: CityConfig, out_dir: str | Path, cfg: OperatorDayConfig = OperatorDayConfig(),
                          workers: int = 1, cache_dir: str | Path | None = None,
                          progress=print) -> dict:
    """Simulate an operator-sized day of ``city`` into ``out_dir`` (layout in the module docstring).

    ``workers`` processes simulate shards in parallel (each holds one shard in memory). Shards already
    complete in ``out_dir`` (from the same config) are kept. Returns the manifest (also written to
    ``out_dir/manifest.json``): totals of rows, size on disk, seconds of this call and the shards' own
    seconds.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.json"
    if cfg_path.is_file() and json.loads(cfg_path.read_text()) != json.loads(cfg.model_dump_json()):
        raise ValueError(f"{cfg_path}: {out} holds a day made with another config; use an empty folder")
    cfg_path.write_text(cfg.model_dump_json(indent=1))
    t0 = time.perf_counter()
    cache = Path(cache_dir) if cache_dir else out / "roads"
    net = load_road_network(city, cache_dir=cache)
    towers_path, antennas_path = out / "towers.parquet", out / "antennas.parquet"
    if not (towers_path.is_file() and antennas_path.is_file()):
        towers, antennas = simulate_towers(net, cfg.simulation, seed=cfg.seed)
        antennas.to_parquet(antennas_path, index=False)
        towers.to_parquet(towers_path, index=False)
    net_npz = cache / "roads.npz"
    todo = [s for s in range(cfg.n_shards) if not (out / "shards" / f"{shard_name(s)}.json").is_file()]
    progress(f"[operator_day] {city.name}: {net.n_nodes} nodes, {cfg.n_shards} shards of {cfg.shard_devices} phones, "
             f"{len(todo)} to simulate with {workers} worker(s)")
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker,
                             initargs=(str(net_npz), str(antennas_path), cfg.model_dump_json())) as pool:
        for i, s in enumerate(pool.map(simulate_shard, todo, [str(out)] * len(todo))):
            if (i + 1) % max(1, len(todo) // 20) == 0 or i + 1 == len(todo):
                progress(f"[operator_day] {i + 1}/{len(todo)} shards ({time.perf_counter() - t0:.0f} s)")
    shards = [json.loads((out / "shards" / f"{shard_name(s)}.json").read_text()) for s in range(cfg.n_shards)]
    manifest = {
        "city": city.name, "nodes": net.n_nodes, "config": json.loads(cfg.model_dump_json()),
        "devices": sum(s["devices"] for s in shards), "taxis": sum(s["taxis"] for s in shards),
        "rows": {t: sum(s["rows"][t] for s in shards) for t in TABLES},
        "bytes": {t: dir_size_bytes(out / t) for t in (*TABLES, "truth_links")},
        "seconds_this_call": round(time.perf_counter() - t0, 1),
        "shard_seconds_total": round(sum(s["seconds"] for s in shards), 1), "workers": workers,
    }
    manifest["records_per_device"] = round(manifest["rows"]["signaling"] / max(manifest["devices"], 1), 1)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def day_files(out_dir: str | Path, table: str, n_shards: int | None = None) -> list[str]:
    """Parquet files of ``table`` in a generated day, of its first ``n_shards`` shards (all when None)."""
    files = sorted(Path(out_dir, table).glob("day=*/hour=*/shard-*.parquet"))
    if n_shards is not None:
        files = [f for f in files if int(f.stem.split("-")[1]) < n_shards]
    if not files:
        raise FileNotFoundError(f"{Path(out_dir, table)}: no shard files (generate the day first: python -m ml.scale generate)")
    return [str(f) for f in files]
