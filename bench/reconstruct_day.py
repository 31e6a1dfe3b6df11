"""Benchmark: a day of an operator's signaling reconstructed end to end (issue 29), at several sizes.

Sizes are the first ``k`` shards of one generated day (``python -m ml.scale generate``: a shard is 1,000 phones;
the first ``k`` shards are a smaller day of the same city). For each size and each worker count,
``ml.batch.reconstruct_dataset`` runs ``industrial_hmm`` on every window of the day on a fresh local Ray, end to
end (planning the buckets, reading, cutting, reconstructing, writing; Ray's own start is not counted):
windows per second, per core (per worker: one actor per core), peak memory per worker (each actor's peak RSS,
from the buckets' done markers). The growth exponent ``b`` of ``seconds = a * records^b`` is fitted per worker count
(1 = linear).

FMM (``ml.baselines.peers.fmm``, the ``fastmm`` engine ``bench/peers.py`` runs) and ``industrial_hmm`` then match the
same fixed sample of windows (those of the first ``--fmm-devices`` phones of shard 0) in this process, one after
the other, from the same ``SampleContext`` s: map matching only, each engine's setup (FMM's UBODT) timed apart;
``fmm_over_hmm`` is FMM's windows/s over the HMM's. Without ``fastmm`` (``pip install -e ".[peers]"``) the ratio
is reported as not measured.

    python -m bench.reconstruct_day --day /tmp/opday/cg10k --shards 1,3,10 --workers 1,2 --records-per-bucket 50000
    # -> outputs/bench/reconstruct_day.json
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def growth_exponent(x: list[float], y: list[float]) -> float:
    """``b`` of ``y = a * x^b`` (least squares in log-log)."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def day_subset(day: Path, k: int, dst: Path) -> Path:
    """A signaling folder holding the first ``k`` shards of ``day`` (symlinks, the day=/hour= layout kept)."""
    files = sorted(glob.glob(str(day / "signaling" / "day=*" / "hour=*" / "shard-*.parquet")))
    files = [f for f in files if int(Path(f).stem.split("-")[1]) < k]
    if not files:
        raise FileNotFoundError(f"{day}/signaling: no shard files (generate the day first: python -m ml.scale generate)")
    shards = {Path(f).stem for f in files}
    if len(shards) < k:
        raise ValueError(f"{day}: {len(shards)} shard(s), asked for {k}")
    for f in files:
        rel = Path(f).relative_to(day / "signaling")
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(f, dst / rel)
    return dst


def fmm_ratio(day: Path, n_devices: int, work: Path, duration_s: float, eval_s: float) -> dict:
    """``industrial_hmm`` and FMM on the same windows (the first ``n_devices`` phones of shard 0), in this process."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ml.baselines import industrial_hmm
    from ml.baselines.peers import fmm as F
    from ml.batch import operator_day_inputs, window_rows
    from ml.batch.reconstruct import window_records
    from ml.observation import build_sample_contexts

    reason = F.available()
    inputs, _ = operator_day_inputs(day)
    net = inputs.network()
    files = sorted(glob.glob(str(day / "signaling" / "day=*" / "hour=*" / "shard-00000.parquet")))
    rec = pa.concat_tables([pq.read_table(f, columns=["device_id", "ts", "cell_id", "event"]) for f in files]).to_pandas()
    keep = sorted(rec["device_id"].astype(str).unique())[:n_devices]
    rec = rec[rec["device_id"].astype(str).isin(keep)]
    rows = window_rows(rec, duration_s)
    r = window_records(rows)
    t0 = pd.to_datetime(rows["t0"].to_pandas(), utc=True)
    sid = rows["sample_id"].to_numpy(zero_copy_only=False).astype(str)
    samples = pd.DataFrame({"sample_id": sid, "device_id": sid, "t0": t0.to_numpy(),
                            "t1": (t0 + pd.Timedelta(seconds=duration_s)).to_numpy()})
    sig = pd.DataFrame({"device_id": r["sample_id"], "ts": r["ts"], "cell_id": r["cell_id"], "event": r["event"]})
    ctxs = build_sample_contexts(samples, sig, inputs.towers, net, eval_interval_s=eval_s)

    def run(fn) -> tuple[float, int]:
        failed = 0
        t = time.perf_counter()
        for c in ctxs:
            try:
                xy = fn(c)
                failed += int(not np.isfinite(np.asarray(xy, float)).all())
            except Exception:  # noqa: BLE001 - counted, as the evaluation does
                failed += 1
        return time.perf_counter() - t, failed

    out: dict = {"windows": len(ctxs), "devices": len(keep), "records": int(len(rec))}
    hmm_s, hmm_failed = run(industrial_hmm)
    out["industrial_hmm"] = {"seconds": round(hmm_s, 2), "windows_per_s": round(len(ctxs) / hmm_s, 1),
                             "failed": hmm_failed}
    if reason:
        out["fmm"] = {"not_measured": reason}
        return out
    t = time.perf_counter()
    eng = F.FMMEngine(net, F.DEFAULT_PARAMS.delta_m, cache_dir=str(work / "fmm_cache"))
    setup_s = time.perf_counter() - t
    F.ENGINES.clear()
    F.ENGINES.get(net, lambda _n: eng)
    fmm_s, fmm_failed = run(F.fmm)
    out["fmm"] = {"setup_s": round(setup_s, 1), "seconds": round(fmm_s, 2),
                  "windows_per_s": round(len(ctxs) / fmm_s, 1), "failed": fmm_failed,
                  "version": F.version(), "params": "fmm.DEFAULT_PARAMS (bench/peers.py's choice)"}
    out["fmm_over_hmm"] = round(out["fmm"]["windows_per_s"] / out["industrial_hmm"]["windows_per_s"], 3)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.reconstruct_day", description=__doc__.splitlines()[0])
    p.add_argument("--day", type=Path, required=True, help="a day written by python -m ml.scale generate")
    p.add_argument("--shards", default="1,3,10", help="sizes: comma-separated numbers of shards (1,000 phones each)")
    p.add_argument("--workers", default="1,2", help="comma-separated Ray worker counts")
    p.add_argument("--profile", default="demo", choices=["ci", "demo", "gpu"], help="window length and spacing")
    p.add_argument("--records-per-bucket", type=int, default=None,
                   help="the unit of work (default: the profile's batch setting; smaller than a shard's records "
                   "buckets the day by device hash on DuckDB, so that 2 workers share even a 1-shard day)")
    p.add_argument("--fmm-devices", type=int, default=100, help="phones of shard 0 whose windows FMM and the HMM match")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--out-name", default="reconstruct_day")
    args = p.parse_args(argv)

    from bench.common import write_result
    from ml.batch import operator_day_inputs, reconstruct_dataset
    from ml.config import stage_config

    manifest = json.loads((args.day / "manifest.json").read_text())
    samples = stage_config("samples", args.profile)
    batch = stage_config("batch", args.profile)
    if args.records_per_bucket is not None:
        batch = type(batch).model_validate({**batch.model_dump(), "records_per_bucket": args.records_per_bucket})
    sizes = [int(k) for k in args.shards.split(",")]
    workers = [int(n) for n in args.workers.split(",")]
    shard_devices = int(manifest["config"]["shard_devices"])
    work = Path(args.work or tempfile.mkdtemp(prefix="reconstruct_day_"))
    work.mkdir(parents=True, exist_ok=True)
    inputs, _ = operator_day_inputs(args.day)
    rows = []
    for k in sizes:
        sig = day_subset(args.day, k, work / f"sig_{k}")
        for n in workers:
            out = work / f"out_{k}_{n}"
            shutil.rmtree(out, ignore_errors=True)
            load = os.getloadavg()[0]
            res = reconstruct_dataset(sig, out, "industrial_hmm", inputs, duration_s=samples.window_s,
                                      eval_interval_s=samples.eval_interval_s, num_workers=n, config=batch,
                                      progress=lambda _m: None)
            row = {"shards": k, "phones": k * shard_devices, "records": res.n_records, "workers": n,
                   "windows": res.n_windows, "rows": res.n_rows, "failed": res.n_failed,
                   "failures_by_reason": res.failures_by_reason, "buckets": res.n_buckets,
                   "buckets_from": res.buckets_from, "seconds": round(res.seconds, 1),
                   "windows_per_s": round(res.windows_per_s, 1),
                   "windows_per_s_per_core": round(res.windows_per_s / n, 1),
                   "peak_rss_mb_per_worker": round(res.peak_rss_mb_per_worker, 0),
                   "load_avg_1m_before": round(load, 2)}
            rows.append(row)
            print(json.dumps(row), flush=True)
            shutil.rmtree(out, ignore_errors=True)
            # what is measured so far survives an interrupted run
            write_result(args.out_name, {"day": str(args.day), "complete": False, "sizes": rows})
    growth = {}
    for n in workers:
        r = [x for x in rows if x["workers"] == n]
        if len(r) >= 2:
            growth[f"seconds_{n}_workers"] = round(growth_exponent([x["records"] for x in r], [x["seconds"] for x in r]), 3)
            growth[f"peak_rss_{n}_workers"] = round(growth_exponent([x["records"] for x in r],
                                                                    [x["peak_rss_mb_per_worker"] for x in r]), 3)
    fmm = fmm_ratio(args.day, args.fmm_devices, work, samples.window_s, samples.eval_interval_s)
    print(json.dumps(fmm), flush=True)
    measured = {x["phones"] for x in rows}
    result = {
        "day": str(args.day), "complete": True, "city": manifest["city"], "phones_in_day": manifest["devices"],
        "records_per_phone": manifest["records_per_device"], "method": "industrial_hmm", "profile": args.profile,
        "window_s": samples.window_s, "eval_interval_s": samples.eval_interval_s,
        "records_per_bucket": batch.records_per_bucket, "sizes": rows, "growth_exponent_in_records": growth,
        "fmm_same_windows": fmm,
        "not_measured": [f"{p:,} phones" for p in (10_000, 30_000, 100_000) if p not in measured],
        "note": "seconds: end to end (buckets planned, read, cut, reconstructed, written), Ray's start excluded; "
                "per core = per worker (one actor per core); one machine, other jobs may share its cores "
                "(load_avg_1m_before)",
    }
    write_result(args.out_name, result)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
