"""The video model's signal prior: records placed by the hand-made model or by the city's footprints.

    python -m bench.video_prior [--cities gridville,ringtown] [--checkpoint models/sig2gps-base-64px-k17.pt]

For each city (its demo data: ``sig2gps run <city> --select "*samples"``): footprints from the train
windows, the val windows rendered twice (record tokens through the hand-made model, then through the
learned one; everything else equal) and the same checkpoint sampled on both (the evaluation's settings:
one Euler step from zero noise), decoded and scored. Writes ``outputs/bench/video_prior.json``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, write_result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cities", default="gridville,ringtown")
    ap.add_argument("--checkpoint", default=str(ROOT / "models" / "sig2gps-base-64px-k17.pt"))
    args = ap.parse_args()
    from ml.cities import load_city, load_road_network
    from ml.config import stage_config
    from ml.evaluation import predict_video_method, score_run, summarise
    from ml.io import read_table
    from ml.observation import LearnedObservationModel, TowerTable, build_cell_footprints, build_sample_contexts
    from ml.paths import CityPaths
    from ml.render.dataset import render_samples

    result: dict = {"checkpoint": args.checkpoint, "cities": {}}
    for city in args.cities.split(","):
        cfg_city = load_city(city, ROOT)
        cp = CityPaths(ROOT, city, "demo")
        net = load_road_network(cfg_city, cache_dir=cp.roads_dir)
        tabs = {k: read_table(cp.table(k), k) for k in ("samples", "signaling", "towers")}
        truth = read_table(cp.sample_truth, "sample_truth")
        train = build_sample_contexts(tabs["samples"], tabs["signaling"], tabs["towers"], net, sample_truth=truth,
                                      split="train")
        model = LearnedObservationModel(build_cell_footprints(train, net), TowerTable(tabs["towers"], net.crs))
        val = build_sample_contexts(tabs["samples"], tabs["signaling"], tabs["towers"], net, sample_truth=truth,
                                    split="val")
        val_samples = tabs["samples"][tabs["samples"]["split"] == "val"]
        rcfg, ecfg = stage_config("render", "demo", cfg_city), stage_config("evaluation", "demo")
        rows = {}
        for label, obs in (("handmade", None), ("learned", model)):
            with tempfile.TemporaryDirectory(dir=ROOT / "outputs") as tmp:
                out = Path(tmp) / "r"
                render_samples(net, val_samples, tabs["signaling"], tabs["towers"], truth, rcfg, out, workers=1,
                               observation=obs)
                t0 = time.perf_counter()
                s = summarise(score_run(predict_video_method("video", Path(args.checkpoint), out, val, ecfg), val))
            rows[label] = {"median_error_m": s["median_error_m"], "n_failed": s["n_failed"],
                           "seconds": time.perf_counter() - t0}
            print(f"{city} {label}: median {s['median_error_m']:.1f} m ({s['n_failed']} failed)", flush=True)
        result["cities"][city] = {"val_windows": len(val), **rows}
    write_result("video_prior", result)


if __name__ == "__main__":
    main()
