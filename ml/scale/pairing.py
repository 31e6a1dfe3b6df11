"""Out-of-core pairing and window cutting of a partitioned day on DuckDB, memory bounded by a setting.

:func:`ml.pairing.pair_devices` compares every record with every taxi of the day in one dense
(records x taxis) matrix: exact, and fine for a city's 100 devices, but 100,000 phones and 2,000
taxis would need ~30 billion cells. Here the same rules are evaluated in two passes over Parquet,
in device buckets whose size is a setting, so memory does not grow with the day:

1. **Candidates** (a spatio-temporal equi-join): each device-minute's serving tower against each
   taxi's mean position in that minute, joined on (minute, square grid cell of ``candidate_cell_m``):
   per device-day the ``max_candidates`` taxis that shared the most minutes' cells with it are kept
   (at least ``min_close_minutes``). A phone in a taxi shares about half its minutes' cells with it
   (its serving tower is mostly within a kilometre); a passing taxi a few. An exact cell match, not
   the 3 x 3 neighbourhood, keeps the join nine times smaller; its size still grows with the
   records times the taxis per cell, so with the fleet's density.
2. **Scores** (ASOF joins): every record of a device against its candidates' GPS, interpolated
   between the fixes before and after the record exactly as ``TaxiDay.positions_at`` does, then
   the mismatch, outliers, overlap, moving time and spreads of ``pair_devices``, and its decision
   (best, runner-up among the candidates, margin) in :func:`decide_pairs`.

The only difference from the dense pairing is the candidate cut: a taxi that is not among a device's
``max_candidates`` closest cannot be its runner-up. On the tested days the accepted pairs are
identical (tests/test_scale.py, docs/results.md "Operator scale").

Window cutting (:func:`cut_day`) runs :func:`ml.pairing.cut_samples` per bucket of accepted pairs,
reading only those devices' records and those taxis' fixes, with splits drawn over all pairs.
"""

from __future__ import annotations

import os
import resource
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from ml.pairing import PairingConfig, SampleConfig
from ml.pairing.pairing import one_device_per_taxi, projection_for
from ml.pairing.samples import assign_splits, cut_samples
from ml.simulate.tables import make_table

DAY_S = 86400.0


class OutOfCoreConfig(BaseModel):
    """Memory and parallelism of the out-of-core pairing (sizes only: the rules are ``PairingConfig``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    memory_limit_mb: int = Field(3000, ge=256, description="DuckDB's memory_limit; it spills to work_dir beyond it")
    threads: int = Field(2, ge=1, description="DuckDB threads")
    records_per_bucket: int = Field(2_000_000, ge=100, description="signaling records per device bucket (memory per pass)")
    candidate_cell_m: float = Field(2000.0, gt=0, description="grid cell of the candidate join (device and taxi share it)")
    max_candidates: int = Field(4, ge=2, description="taxis scored per device-day (the best and its runners-up)")
    min_close_minutes: int = Field(10, ge=1, description="a candidate shares at least this many minutes with the device")
    pairs_per_cut_bucket: int = Field(400, ge=1, description="accepted pairs cut into windows together")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MiB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _connect(work_dir: Path, ooc: OutOfCoreConfig):
    import duckdb

    work_dir.mkdir(parents=True, exist_ok=True)
    db = work_dir / "pairing.duckdb"
    for p in (db, work_dir / "pairing.duckdb.wal"):
        p.unlink(missing_ok=True)
    con = duckdb.connect(str(db))
    con.execute(f"SET memory_limit = '{ooc.memory_limit_mb}MB'")
    con.execute(f"SET threads = {ooc.threads}")
    con.execute(f"SET temp_directory = '{work_dir / 'spill'}'")
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = false")
    return con


def _project_gps(gps_files: list[str], proj, out_dir: Path) -> list[str]:
    """GPS files -> (vehicle_id, t, x, y, speed) Parquet in the city's projection, one file at a time."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for i, f in enumerate(gps_files):
        tab = pq.read_table(f, columns=["vehicle_id", "ts", "lon", "lat", "speed_mps"])
        ts = tab["ts"].to_numpy()
        t = (ts.astype("datetime64[ns]").astype(np.int64)) / 1e9
        xy = proj.to_xy(tab["lon"].to_numpy(), tab["lat"].to_numpy())
        dst = out_dir / f"part-{i:06d}.parquet"
        pq.write_table(pa.table({"vehicle_id": tab["vehicle_id"].cast(pa.string()), "t": t, "x": xy[:, 0],
                                 "y": xy[:, 1], "speed": tab["speed_mps"]}), dst)
        out.append(str(dst))
    return out


def _sql_list(files: list[str]) -> str:
    return "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"


def decide_pairs(scores: pd.DataFrame, cfg: PairingConfig) -> pd.DataFrame:
    """``pair_devices``' decision on per-(device, day, taxi) scores; returns the contract table ``pairs``.

    ``scores`` columns: device_id, day (int days since 1970), vehicle_id, n_valid, clipped_sum,
    outliers, first_t, last_t, moving_s, rg_taxi, rg_towers.
    """
    cols = ("device_id", "vehicle_id", "day", "overlap_h", "moving_h", "mismatch_m", "margin")
    if len(scores) == 0:
        return make_table("pairs", {c: [] for c in cols})
    s = scores.copy()
    s["comparable"] = s["n_valid"] >= cfg.min_records
    s["score"] = np.where(s["comparable"], s["clipped_sum"] / s["n_valid"].clip(lower=1), np.inf)
    s = s.sort_values(["device_id", "day", "score", "vehicle_id"], kind="stable")
    g = s.groupby(["device_id", "day"], sort=False)
    b = g.head(1).set_index(["device_id", "day"])  # the best candidate of each device-day
    second = g.nth(1).set_index(["device_id", "day"])["score"].reindex(b.index).fillna(np.inf)
    margin = np.minimum(np.where(np.isfinite(second), second / np.maximum(b["score"], 1.0) - 1.0, 99.0), 99.0)
    overlap = np.where(b["n_valid"] > 0, np.maximum(b["last_t"] - b["first_t"], 0.0), 0.0)
    spread_ratio = b["rg_towers"] / np.maximum(b["rg_taxi"], 1.0)
    ok = (np.isfinite(b["score"])
          & (overlap >= 3600.0 * cfg.min_overlap_h)
          & (b["moving_s"] >= 3600.0 * cfg.min_moving_h)
          & (b["score"] <= cfg.max_mismatch_m)
          & (b["outliers"] <= cfg.max_outlier_share * b["n_valid"])
          & (spread_ratio >= cfg.min_spread_ratio)
          & (margin >= cfg.min_margin))
    acc = b[ok.to_numpy()].reset_index()
    days = [str(np.datetime64(int(d), "D")) for d in acc["day"]]
    out = make_table("pairs", {"device_id": acc["device_id"].to_numpy(), "vehicle_id": acc["vehicle_id"].to_numpy(),
                               "day": days, "overlap_h": overlap[ok.to_numpy()] / 3600.0,
                               "moving_h": acc["moving_s"].to_numpy() / 3600.0, "mismatch_m": acc["score"].to_numpy(),
                               "margin": margin[ok.to_numpy()]})
    return one_device_per_taxi(out)


def pair_day(signaling_files: list[str], gps_files: list[str], towers: pd.DataFrame, cfg: PairingConfig,
             work_dir: str | Path, ooc: OutOfCoreConfig = OutOfCoreConfig(), crs: str | None = None,
             progress=print) -> tuple[pd.DataFrame, dict]:
    """Accepted (device, taxi, day) pairs of a partitioned day (Parquet files), out of core (module docstring).

    ``work_dir`` holds DuckDB's database, its spill files and the projected GPS (removed at the end).
    Returns ``(pairs, stats)``: stats has rows, buckets, candidates, seconds per pass and peak RSS.
    """
    t_start = time.perf_counter()
    work = Path(work_dir)
    proj = projection_for(towers, crs)
    con = _connect(work, ooc)
    stats: dict = {"memory_limit_mb": ooc.memory_limit_mb, "threads": ooc.threads}
    try:
        cell_xy = proj.to_xy(towers["lon"].to_numpy(), towers["lat"].to_numpy())
        con.register("cells_df", pd.DataFrame({"cell_id": towers["cell_id"].to_numpy(np.int64),
                                               "cx": cell_xy[:, 0], "cy": cell_xy[:, 1]}))
        con.execute("CREATE TABLE cells AS SELECT * FROM cells_df")
        t = time.perf_counter()
        gxy = _project_gps(gps_files, proj, work / "gps_xy")
        ms = float(cfg.moving_speed_mps)
        # the taxi-day tracks with the cumulative moving time of TaxiDay (an interval counts when both ends move)
        con.execute(f"""
            CREATE TABLE gps AS
            SELECT vehicle_id, day, t, x, y,
                   sum(CASE WHEN prev_speed > {ms} AND speed > {ms} THEN t - prev_t ELSE 0 END)
                       OVER (PARTITION BY vehicle_id, day ORDER BY t ROWS UNBOUNDED PRECEDING) AS cm
            FROM (SELECT *, floor(t / {DAY_S})::BIGINT AS day,
                         lag(speed) OVER w AS prev_speed, lag(t) OVER w AS prev_t
                  FROM read_parquet({_sql_list(gxy)})
                  WINDOW w AS (PARTITION BY vehicle_id, floor(t / {DAY_S}) ORDER BY t))""")
        # the per-day first and last fix of each taxi bound where it can be compared
        G = float(ooc.candidate_cell_m)
        con.execute(f"""
            CREATE TABLE taxi_minutes AS
            SELECT vehicle_id, day, m, floor(x / {G})::BIGINT AS gx, floor(y / {G})::BIGINT AS gy
            FROM (SELECT vehicle_id, day, floor(t / 60)::BIGINT AS m, avg(x) AS x, avg(y) AS y FROM gps GROUP BY ALL)""")
        stats["gps_rows"] = con.execute("SELECT count(*) FROM gps").fetchone()[0]
        stats["seconds_gps"] = round(time.perf_counter() - t, 2)
        con.execute(f"""
            CREATE VIEW records AS
            SELECT s.device_id::VARCHAR AS device_id, epoch_ns(s.ts) / 1e9 AS t, c.cx AS x, c.cy AS y
            FROM read_parquet({_sql_list(signaling_files)}) s JOIN cells c USING (cell_id)""")
        n_records, n_unknown = con.execute(f"""
            SELECT count(*), count(*) FILTER (WHERE cell_id NOT IN (SELECT cell_id FROM cells))
            FROM read_parquet({_sql_list(signaling_files)})""").fetchone()
        if n_unknown:
            raise ValueError(f"signaling files, column 'cell_id': {n_unknown} records name cells not in table 'towers' "
                             "(foreign key)")
        n_buckets = max(1, int(np.ceil(n_records / ooc.records_per_bucket)))
        stats.update(records=int(n_records), buckets=n_buckets)
        progress(f"[pair_day] {n_records:,} records, {stats['gps_rows']:,} fixes, {n_buckets} device bucket(s)")
        scores, n_cand, t_cand, t_score = [], 0, 0.0, 0.0
        for b in range(n_buckets):
            t = time.perf_counter()
            con.execute(f"""
                CREATE OR REPLACE TEMP TABLE rec AS
                SELECT device_id, floor(t / {DAY_S})::BIGINT AS day, t, x, y FROM records
                WHERE hash(device_id) % {n_buckets} = {b}""")
            # pass 1: candidates from device-minutes near taxi-minutes
            con.execute(f"""
                CREATE OR REPLACE TEMP TABLE cand AS
                SELECT device_id, day, vehicle_id FROM (
                    SELECT device_id, day, vehicle_id, close,
                           row_number() OVER (PARTITION BY device_id, day ORDER BY close DESC, vehicle_id) AS rk
                    FROM (SELECT r.device_id, r.day, tm.vehicle_id, count(DISTINCT r.m) AS close
                          FROM (SELECT DISTINCT device_id, day, floor(t / 60)::BIGINT AS m,
                                       floor(x / {G})::BIGINT AS gx, floor(y / {G})::BIGINT AS gy FROM rec) r
                          JOIN taxi_minutes tm ON r.day = tm.day AND r.m = tm.m AND r.gx = tm.gx AND r.gy = tm.gy
                          GROUP BY ALL)
                    WHERE close >= {ooc.min_close_minutes})
                WHERE rk <= {ooc.max_candidates}""")
            n_cand += con.execute("SELECT count(*) FROM cand").fetchone()[0]
            t_cand += time.perf_counter() - t
            t = time.perf_counter()
            gap = float(cfg.max_gps_gap_s)
            cap, far = float(cfg.distance_cap_m), float(cfg.outlier_distance_m)
            # pass 2: each record against its candidates, between the fixes before (lo) and after (hi) it
            scores.append(con.execute(f"""
                WITH rc AS (SELECT r.device_id, r.day, c.vehicle_id, r.t, r.x, r.y
                            FROM rec r JOIN cand c USING (device_id, day)),
                lo AS (SELECT rc.*, g.t AS lo_t, g.x AS lo_x, g.y AS lo_y, g.cm AS lo_cm
                       FROM rc ASOF LEFT JOIN gps g ON rc.vehicle_id = g.vehicle_id AND rc.day = g.day AND rc.t >= g.t),
                lohi AS (SELECT lo.*, g.t AS hi_t, g.x AS hi_x, g.y AS hi_y, g.cm AS hi_cm
                         FROM lo ASOF LEFT JOIN gps g ON lo.vehicle_id = g.vehicle_id AND lo.day = g.day AND lo.t <= g.t),
                v AS (SELECT *, CASE WHEN hi_t > lo_t THEN (t - lo_t) / (hi_t - lo_t) ELSE 0 END AS f
                      FROM lohi
                      WHERE lo_t IS NOT NULL AND hi_t IS NOT NULL AND least(t - lo_t, hi_t - t) <= {gap}
                            AND hi_t - lo_t <= {2 * gap}),
                d AS (SELECT device_id, day, vehicle_id, t, x, y, lo_x + f * (hi_x - lo_x) AS px,
                             lo_y + f * (hi_y - lo_y) AS py, lo_cm + f * (hi_cm - lo_cm) AS cm FROM v)
                SELECT device_id, day, vehicle_id, count(*) AS n_valid,
                       sum(least(sqrt((px - x) * (px - x) + (py - y) * (py - y)), {cap})) AS clipped_sum,
                       count(*) FILTER (WHERE sqrt((px - x) * (px - x) + (py - y) * (py - y)) > {far}) AS outliers,
                       min(t) AS first_t, max(t) AS last_t, max(cm) - min(cm) AS moving_s,
                       sqrt(greatest(var_pop(px) + var_pop(py), 0)) AS rg_taxi,
                       sqrt(greatest(var_pop(x) + var_pop(y), 0)) AS rg_towers
                FROM d GROUP BY ALL""").df())
            t_score += time.perf_counter() - t
        score_df = pd.concat(scores, ignore_index=True)
        pairs = decide_pairs(score_df, cfg)
        stats.update(candidates=int(n_cand), seconds_candidates=round(t_cand, 2), seconds_scores=round(t_score, 2),
                     pairs=int(len(pairs)), seconds=round(time.perf_counter() - t_start, 2),
                     records_per_s=round(n_records / max(time.perf_counter() - t_start, 1e-9), 1),
                     peak_rss_mb=round(peak_rss_mb(), 1))
        return pairs, stats
    finally:
        con.close()
        shutil.rmtree(work, ignore_errors=True)


def cut_day(pairs: pd.DataFrame, signaling_files: list[str], gps_files: list[str], towers: pd.DataFrame,
            crs: str, cfg: SampleConfig, seed: int, out_dir: str | Path, ooc: OutOfCoreConfig = OutOfCoreConfig(),
            **tile_kw) -> dict:
    """Cut the accepted ``pairs`` of a partitioned day into windows, bucket by bucket of pairs.

    Each bucket reads only its devices' records and its taxis' fixes (DuckDB filters on the Parquet
    files) and runs :func:`ml.pairing.cut_samples`; splits are drawn over all pairs first, so they are
    those of one call over the whole day. Writes ``out_dir/samples/part-*.parquet`` and
    ``out_dir/sample_truth/part-*.parquet``; returns counts, seconds and peak RSS.
    """
    import duckdb

    t0 = time.perf_counter()
    out = Path(out_dir)
    for sub in ("samples", "sample_truth"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True, exist_ok=True)
    split_of = assign_splits(list(zip(pairs["day"], pairs["vehicle_id"])), cfg.split_fractions, seed)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SET memory_limit = '{ooc.memory_limit_mb}MB'")
    con.execute(f"SET threads = {ooc.threads}")
    n_samples = n_truth = 0
    try:
        for i, a in enumerate(range(0, len(pairs), ooc.pairs_per_cut_bucket)):
            bucket = pairs.iloc[a:a + ooc.pairs_per_cut_bucket]
            con.register("devs", pd.DataFrame({"device_id": bucket["device_id"].astype(str).unique()}))
            con.register("vehs", pd.DataFrame({"vehicle_id": bucket["vehicle_id"].astype(str).unique()}))
            sig = con.execute(f"SELECT device_id, ts, cell_id, event FROM read_parquet({_sql_list(signaling_files)}) "
                              "WHERE device_id IN (SELECT device_id FROM devs)").df()
            gps = con.execute(f"SELECT vehicle_id, ts, lon, lat, speed_mps FROM read_parquet({_sql_list(gps_files)}) "
                              "WHERE vehicle_id IN (SELECT vehicle_id FROM vehs)").df()
            samples, truth = cut_samples(bucket, make_table("signaling", sig), towers, make_table("gps", gps), crs, cfg,
                                         seed, split_of=split_of, **tile_kw)
            for name, df in (("samples", samples), ("sample_truth", truth)):
                tmp = out / name / f".part-{i:05d}.parquet.tmp"
                df.to_parquet(tmp, index=False)
                os.replace(tmp, out / name / f"part-{i:05d}.parquet")
            n_samples += len(samples)
            n_truth += len(truth)
    finally:
        con.close()
    return {"pairs": int(len(pairs)), "samples": n_samples, "truth_rows": n_truth,
            "seconds": round(time.perf_counter() - t0, 2), "peak_rss_mb": round(peak_rss_mb(), 1)}
