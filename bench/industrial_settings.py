"""The industrial HMM's hand-tuned settings, re-chosen on val windows of the cities' current radio network.

    .venv/bin/python -m bench.industrial_settings [--cities gridville ringtown krems bayreuth] [--profile demo]

Every setting of a small grid (the hand-made observation model's sector shift and emission sigma, ping-pong
removal, the jump filter for records out of place) runs ``industrial_hmm`` on every val window of each city's
materialised data (``sig2gps demo --city <c>`` first; the windows read through the operator's tower table, as
the pipeline does). The chosen setting minimises the mean over cities of the val median error relative to the
current defaults' (so no city dominates by its size). Reported per setting and city: median error (m), windows
that failed, records dropped by the jump filter. Test windows are not read. Writes
``outputs/bench/industrial_settings.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine, write_result  # noqa: E402

GRID = {
    "sector_shift_factor": (0.25, 0.5, 0.75),
    "sigma_factor": (0.5, 0.75, 1.0, 1.5),
    "pingpong_window_s": (0.0, 30.0),
    "outlier_speed_mps": (None, 30.0, 60.0),
}


def city_val(city: str, profile: str):
    from ml.cities import load_city, load_road_network
    from ml.io import read_table
    from ml.observation import build_sample_contexts
    from ml.paths import CityPaths

    cp = CityPaths(ROOT, city, profile)
    net = load_road_network(load_city(city, ROOT), cache_dir=cp.roads_dir)
    tabs = {k: read_table(cp.table(k), k) for k in ("samples", "signaling", "towers")}
    return build_sample_contexts(tabs["samples"], tabs["signaling"], tabs["towers"], net,
                                 sample_truth=read_table(cp.sample_truth, "sample_truth"), split="val")


def score(contexts, cfg) -> dict:
    from ml.baselines.signaling import industrial_hmm, outlier_record_count
    from ml.evaluation import score_run, summarise
    from ml.evaluation.methods import run_method

    run = run_method("industrial_hmm", "signaling", lambda ctx: industrial_hmm(ctx, cfg), contexts)
    s = summarise(score_run(run, contexts))
    outliers, records = outlier_record_count(contexts, cfg)
    return {"median_error_m": s["median_error_m"], "n": s["n"], "n_failed": s["n_failed"],
            "outlier_records": outliers, "records": records}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cities", nargs="+", default=["gridville", "ringtown", "krems", "bayreuth"])
    ap.add_argument("--profile", default="demo")
    args = ap.parse_args(argv)
    from ml.baselines.signaling import IndustrialHMMConfig

    default = IndustrialHMMConfig()
    contexts = {c: city_val(c, args.profile) for c in args.cities}
    names = list(GRID)
    rows = []
    t0 = time.perf_counter()
    for values in itertools.product(*GRID.values()):
        setting = dict(zip(names, values))
        cfg = dataclasses.replace(default, **setting)
        per_city = {c: score(ctx, cfg) for c, ctx in contexts.items()}
        rows.append({"setting": setting, "cities": per_city})
        print(setting, {c: round(v["median_error_m"], 1) for c, v in per_city.items()}, flush=True)
    base = {c: score(ctx, default)["median_error_m"] for c, ctx in contexts.items()}
    for r in rows:
        r["relative_to_default"] = sum(r["cities"][c]["median_error_m"] / base[c] for c in base) / len(base)
    best = min(rows, key=lambda r: r["relative_to_default"])
    result = {"name": "industrial_settings", "machine": machine(), "profile": args.profile, "split": "val",
              "cities": args.cities, "default": {k: getattr(default, k) for k in names}, "default_medians": base,
              "chosen": best, "rows": rows, "seconds": round(time.perf_counter() - t0, 1)}
    print("chosen:", best["setting"], f"({best['relative_to_default']:.3f} of the defaults' medians)")
    write_result("industrial_settings", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
