"""How much of the MR track's loss on the layered network comes from the operator's tower table?

    .venv/bin/python -m bench.hre_tower_table [--city gridville] [--windows 30] [--methods hmm_wcl hre]

The city's materialised val windows (``sig2gps demo --city <c>`` first) are built twice, once with the
operator's tower table (what the pipeline reads, with its position and azimuth errors) and once with the true
antennas the simulator used (``antennas.parquet``, hidden truth), everything else equal; the MR methods run on
both. The difference is what the table errors cost; what is left against the regular network is the layered
radio itself. Writes ``outputs/bench/hre_tower_table.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine, write_result  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--city", default="gridville")
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--windows", type=int, default=30)
    ap.add_argument("--methods", nargs="+", default=["hmm_wcl", "hre"])
    args = ap.parse_args(argv)
    import pandas as pd

    from ml.baselines.mr import MR_METHODS
    from ml.cities import load_city, load_road_network
    from ml.evaluation import score_run, summarise
    from ml.evaluation.methods import run_method
    from ml.io import read_table
    from ml.observation import build_sample_contexts
    from ml.paths import CityPaths

    cp = CityPaths(ROOT, args.city, args.profile)
    if not cp.antennas.is_file():
        raise SystemExit(f"{cp.antennas}: no simulated antennas (materialise cell_towers of a simulated city first)")
    net = load_road_network(load_city(args.city, ROOT), cache_dir=cp.roads_dir)
    tabs = {k: read_table(cp.table(k), k) for k in ("samples", "signaling", "towers", "mr")}
    truth = read_table(cp.sample_truth, "sample_truth")
    antennas = pd.read_parquet(cp.antennas)[list(tabs["towers"].columns)]
    rows = {}
    for table, towers in (("operator_table", tabs["towers"]), ("true_antennas", antennas)):
        ctxs = build_sample_contexts(tabs["samples"], tabs["signaling"], towers, net, sample_truth=truth,
                                     mr=tabs["mr"], split="val")[: args.windows]
        for m in args.methods:
            run = run_method(m, "mr", MR_METHODS[m], ctxs)
            rows.setdefault(m, {})[table] = summarise(score_run(run, ctxs))["median_error_m"]
            print(f"{args.city} {table} {m}: {rows[m][table]:.1f} m", flush=True)
    write_result("hre_tower_table", {"name": "hre_tower_table", "machine": machine(), "city": args.city,
                                     "split": "val", "windows": args.windows, "median_error_m": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
