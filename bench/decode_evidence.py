"""The decoder reads the records beside the drawing: decoded error against the records' evidence weight, on val.

    .venv/bin/python -m bench.decode_evidence [--cities gridville ringtown] [--weights 0 0.25 0.5 1 2]
        [--checkpoints base=models/sig2gps-base-64px-k17.pt sft=outputs/{city}/demo/checkpoints/sft/model.pt]
        [--untrained] [--sigmas-px 3] [--threads 2]

For each city (its materialised demo data: rendered arrays, ``cell_footprints``) every val window is sampled
once per checkpoint with the evaluation's sampler (one Euler step from zero initial noise) and decoded with
each weight of the records' evidence (``ml.observation.RecordEvidence``: each record's log-likelihood under
the city's footprints, added to the snapping HMM's emission at the route point nearest its time; weight 0 is
the drawing alone). ``--untrained`` adds the untrained residual model (it draws the signaling prior): the
gap between it and a trained checkpoint is what training adds. ``learned_hmm`` and ``industrial_hmm`` on the
same windows are the references. The default weight of the evaluation is chosen from this, never on test.
Writes ``outputs/bench/decode_evidence.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine, write_result  # noqa: E402


def city_val(city: str):
    """Val contexts of a city's demo data, read through its materialised footprints, and its paths."""
    import pandas as pd

    from ml.cities import load_city, load_road_network
    from ml.config import stage_config
    from ml.io import read_table
    from ml.observation import LearnedObservationModel, TowerTable, build_sample_contexts
    from ml.paths import CityPaths

    cp = CityPaths(ROOT, city, "demo")
    net = load_road_network(load_city(city, ROOT), cache_dir=cp.roads_dir)
    towers = read_table(cp.table("towers"), "towers")
    model = LearnedObservationModel(pd.read_parquet(cp.footprints), TowerTable(towers, net.crs),
                                    stage_config("footprints", "demo"))
    ctxs = build_sample_contexts(read_table(cp.table("samples"), "samples"), read_table(cp.table("signaling"), "signaling"),
                                 towers, net, sample_truth=read_table(cp.sample_truth, "sample_truth"), split="val",
                                 observation=model)
    return ctxs, cp


def sample_all(model, mcfg, arrays, rows: "np.ndarray"):  # noqa: F821
    """One Euler step from zero noise for every row, through the evaluation's loop (generation only)."""
    import numpy as np

    from ml.inference import SamplingSettings, predict_windows, rendered_window

    windows = [rendered_window(arrays, int(r), str(r), np.zeros(0), None, mcfg.max_records if mcfg.uses_records
                               else None) for r in rows]
    out = list(predict_windows(model, windows, SamplingSettings(1, 0.0, batch_size=8), decode=False,
                               frames=arrays.frames))
    layers = [b.layer for b in out]
    return np.concatenate([b.video for b in out]), None if layers[0] is None else np.concatenate(layers)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cities", nargs="+", default=["gridville", "ringtown"])
    ap.add_argument("--checkpoints", nargs="+", default=["base=models/sig2gps-base-64px-k17.pt",
                                                         "sft=outputs/{city}/demo/checkpoints/sft/model.pt"])
    ap.add_argument("--untrained", action="store_true")
    ap.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.25, 0.5, 1.0, 2.0])
    ap.add_argument("--sigmas-px", type=float, nargs="+", default=[3.0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="decode_evidence")
    args = ap.parse_args(argv)
    import numpy as np
    import torch

    from ml.baselines import FOOTPRINT_METHODS, SIGNALING_METHODS
    from ml.decode import decode_video_to_trajectory
    from ml.evaluation import run_method, score_run, summarise
    from ml.evaluation.methods import MethodRun
    from ml.models import load_video_model
    from ml.models.backbone import build_video_model
    from ml.observation.evidence import record_evidence
    from ml.render.arrays import RenderedArrays

    torch.set_num_threads(args.threads)
    result = {"name": args.out, "machine": machine(), "weights": args.weights, "sigmas_px": args.sigmas_px, "cities": {}}
    for city in args.cities:
        contexts, cp = city_val(city)
        arrays = RenderedArrays(cp.render_dir(64, 17))
        row_of = {sid: i for i, sid in enumerate(arrays.index["sample_id"].astype(str))}
        rows = np.array([row_of[c.sample_id] for c in contexts])
        refs = {}
        for name in ("industrial_hmm", "learned_hmm"):
            s = summarise(score_run(run_method(name, "signaling", {**SIGNALING_METHODS, **FOOTPRINT_METHODS}[name], contexts), contexts))
            refs[name] = s["median_error_m"]
        out = {"val_windows": len(contexts), "references": refs, "models": {}}
        print(f"{city}: {len(contexts)} val windows; " + ", ".join(f"{k} {v:.1f} m" for k, v in refs.items()), flush=True)
        models = [(label, path.format(city=city)) for label, path in (c.split("=", 1) for c in args.checkpoints)]
        if args.untrained:
            models.insert(0, ("untrained", models[0][1]))
        for label, path in models:
            if not Path(path).is_file():
                print(f"  {label}: {path} missing, skipped", flush=True)
                continue
            model, mcfg = load_video_model(Path(path))
            if label == "untrained":
                torch.manual_seed(0)
                model = build_video_model(mcfg).eval()
            t0 = time.perf_counter()
            frames, layers = sample_all(model, mcfg, arrays, rows)
            sample_s = (time.perf_counter() - t0) / len(rows)
            scores = {}
            for sp in args.sigmas_px:
                for w in args.weights:
                    run = MethodRun(f"video_w{w}", "signaling", {}, {})
                    t1 = time.perf_counter()
                    for j, (ctx, r) in enumerate(zip(contexts, rows)):
                        tile = arrays.tile(r)
                        ev = record_evidence(ctx.record_t, ctx.records["cell_id"].to_numpy(),
                                             ctx.records["event"].to_numpy(), ctx.observation, w)
                        dec = decode_video_to_trajectory(frames[j], tile, arrays.resolution, arrays.duration_s(r), ctx.net,
                                                         ctx.eval_t, sigma_m=max(sp * tile.metres_per_pixel(arrays.resolution), 5.0),
                                                         layer=None if layers is None else layers[j], evidence=ev)
                        run.predictions[ctx.sample_id] = np.asarray(dec.xy, dtype=np.float64).reshape(ctx.n_eval, 2)
                        run.latency_ms[ctx.sample_id] = 0.0
                    s = summarise(score_run(run, contexts))
                    key = f"sigma{sp}_w{w}"
                    scores[key] = {"median_error_m": s["median_error_m"], "mean_error_m": s["mean_error_m"],
                                   "n_failed": s["n_failed"], "decode_s_per_window": (time.perf_counter() - t1) / len(rows)}
                    print(f"  {label} sigma {sp} px, weight {w}: median {s['median_error_m']:.1f} m "
                          f"(x{s['median_error_m'] / refs['learned_hmm']:.3f} learned_hmm)", flush=True)
            out["models"][label] = {"checkpoint": path, "sample_s_per_window": sample_s, "scores": scores}
        result["cities"][city] = out
        write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
