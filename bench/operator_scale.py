"""Benchmark: out-of-core pairing and window cutting of an operator-sized day at 10k, 30k and 100k phones.

    python -m ml.scale generate --osm ../shared/cities/campo_grande.osm.gz --out data/operator/campo_grande --workers 2
    python -m bench.operator_scale [--day data/operator/campo_grande] [--devices 10000 30000 100000]

The 10k and 30k-phone days are the first 10 and 30 shards of the generated 100k-phone day (every shard holds
drivers and decoys in the fleet's proportion). Each size runs in a fresh process, so its peak RSS is its own;
DuckDB's memory_limit is the ``OutOfCoreConfig`` default. Writes ``outputs/bench/operator_scale.json`` with
rows/s, seconds per pass, peak RSS, pairing precision / recall against the hidden truth, and the fitted growth
(the exponent b of seconds = a * records^b: 1 is linear).
"""

from __future__ import annotations

import argparse
import glob
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.common import ROOT, write_result


def run_size(day: Path, n_shards: int) -> dict:
    """Pair and cut the first ``n_shards`` shards of ``day`` (in this process; called by ``--one``)."""
    import pandas as pd

    from ml.config import stage_config
    from ml.pairing import pairing_quality
    from ml.pairing.pairing import projection_for
    from ml.scale import day_files
    from ml.scale.pairing import OutOfCoreConfig, cut_day, pair_day

    towers = pd.read_parquet(day / "towers.parquet")
    sig, gps = day_files(day, "signaling", n_shards), day_files(day, "gps", n_shards)
    ooc = OutOfCoreConfig()
    (ROOT / "outputs").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / "outputs") as work:
        pairs, stats = pair_day(sig, gps, towers, stage_config("pairing", "demo"), Path(work) / "pairing", ooc)
        cut = cut_day(pairs, sig, gps, towers, projection_for(towers).crs, stage_config("samples", "demo"), seed=31005,
                      out_dir=Path(work) / "windows", ooc=ooc)
    truth = pd.concat([pd.read_parquet(day / "truth_links" / f"shard-{s:05d}.parquet") for s in range(n_shards)])
    q = pairing_quality(pairs, truth)
    return {"shards": n_shards, "devices": int(len(truth)), "taxis": int((truth["kind"] == "driver").sum()),
            "pairing": stats, "cutting": cut, "precision": q["precision"], "recall_of_drivers": q["recall"],
            "memory_limit_mb": ooc.memory_limit_mb}


def growth_exponent(x: list[float], y: list[float]) -> float:
    """Least-squares slope of log y on log x."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--day", type=Path, default=ROOT / "data" / "operator" / "campo_grande")
    ap.add_argument("--devices", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # internal: one size, JSON on stdout
    args = ap.parse_args(argv)
    manifest_path = args.day / "manifest.json"
    if not manifest_path.is_file():
        print(f"{manifest_path}: no generated day (see this module's docstring for the command)", file=sys.stderr)
        return 2
    manifest = json.loads(manifest_path.read_text())
    shard_devices = manifest["config"]["shard_devices"]
    if args.one is not None:
        print("RESULT " + json.dumps(run_size(args.day, args.one)))
        return 0
    rows = []
    for n in args.devices:
        n_shards = n // shard_devices
        if n_shards * shard_devices != n or n_shards > manifest["config"]["n_devices"] // shard_devices:
            print(f"--devices {n}: not a multiple of {shard_devices} within the day's {manifest['devices']} phones",
                  file=sys.stderr)
            return 2
        out = subprocess.run([sys.executable, "-m", "bench.operator_scale", "--day", str(args.day), "--one",
                              str(n_shards)], cwd=ROOT, capture_output=True, text=True)
        if out.returncode:
            print(out.stdout[-2000:], out.stderr[-4000:], file=sys.stderr)
            return out.returncode
        r = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[7:])
        rows.append(r)
        p, c = r["pairing"], r["cutting"]
        print(f"{r['devices']:>7} phones: {p['records']:,} records, pairing {p['seconds']:.0f} s "
              f"({p['records_per_s']:,.0f} rows/s), cutting {c['seconds']:.0f} s, peak RSS {max(p['peak_rss_mb'], c['peak_rss_mb']):.0f} MiB, "
              f"precision {r['precision']:.3f} recall {r['recall_of_drivers']:.3f}", flush=True)
    records = [r["pairing"]["records"] for r in rows]
    result = {"day": str(args.day), "generation": {k: manifest[k] for k in ("city", "nodes", "devices", "taxis", "rows",
                                                                          "bytes", "seconds_this_call",
                                                                          "shard_seconds_total", "workers",
                                                                          "records_per_device")},
              "sizes": rows}
    if len(rows) >= 2:
        result["growth_exponent"] = {
            "pairing_seconds": growth_exponent(records, [r["pairing"]["seconds"] for r in rows]),
            "cutting_seconds": growth_exponent(records, [r["cutting"]["seconds"] for r in rows]),
            "peak_rss": growth_exponent(records, [max(r["pairing"]["peak_rss_mb"], r["cutting"]["peak_rss_mb"])
                                                  for r in rows])}
        print(f"growth exponents (1 = linear): {result['growth_exponent']}")
    write_result("operator_scale", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
