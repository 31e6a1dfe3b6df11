"""How tightly the decoder's map matching should trust the drawn head: decoded error against the HMM emission
sigma, on val windows (the decoder's default is chosen from this, never on test).

    .venv/bin/python -m bench.decode_sigma [--checkpoint models/sig2gps-base-64px-k17.pt] [--city gridville]
                                           [--val 48] [--sigmas-px 0.6 1.5 3 5 8] [--sample-steps 20] [--threads 2]

One video per val window is sampled once (``ml.models.sampling.generate``, the evaluation's settings: Euler
ODE from zero initial noise) and decoded with each emission sigma, given in pixels of the tile (the head's
error scales with the tile's metres per pixel): ``sigma_m = sigma_px x metres per pixel``. ``--untrained``
scores the untrained residual model of the checkpoint's config instead (it draws the signaling prior).
Writes ``outputs/bench/decode_sigma.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine, write_result  # noqa: E402
from bench.sft_objective import baselines, val_contexts  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", type=Path, default=ROOT / "models" / "sig2gps-base-64px-k17.pt")
    ap.add_argument("--untrained", action="store_true", help="the checkpoint's config with untrained weights")
    ap.add_argument("--city", default="gridville")
    ap.add_argument("--val", type=int, default=48)
    ap.add_argument("--sigmas-px", type=float, nargs="+", default=[0.6, 1.5, 3.0, 5.0, 8.0])
    ap.add_argument("--sample-steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="decode_sigma")
    args = ap.parse_args(argv)
    import numpy as np
    import torch

    from ml.decode import decode_video_to_trajectory
    from ml.evaluation import score_run, summarise
    from ml.evaluation.methods import MethodRun
    from ml.models import load_video_model
    from ml.models.backbone import build_video_model
    from ml.inference import SamplingSettings, predict_windows, rendered_window
    from ml.render.arrays import RenderedArrays

    torch.set_num_threads(args.threads)
    contexts, cp = val_contexts(args.city, args.val)
    arrays = RenderedArrays(cp.render_dir(64, 17))
    model, mcfg = load_video_model(args.checkpoint)
    if args.untrained:
        torch.manual_seed(0)
        model = build_video_model(mcfg).eval()
    row_of = {sid: i for i, sid in enumerate(arrays.index["sample_id"].astype(str))}
    rows = np.array([row_of[c.sample_id] for c in contexts])
    t0 = time.perf_counter()
    windows = [rendered_window(arrays, int(r), str(r), np.zeros(0), None, mcfg.max_records if mcfg.uses_records
                               else None) for r in rows]
    out = list(predict_windows(model, windows, SamplingSettings(args.sample_steps, 0.0, batch_size=8), decode=False,
                               frames=arrays.frames))
    sample_s = (time.perf_counter() - t0) / len(rows)
    frames = np.concatenate([b.video for b in out])
    layers = None if out[0].layer is None else np.concatenate([b.layer for b in out])
    result = {"name": args.out, "checkpoint": str(args.checkpoint), "untrained": args.untrained, "city": args.city,
              "val_windows": len(contexts), "sample_steps": args.sample_steps, "sample_s_per_window": sample_s,
              "machine": machine(), "baselines": baselines(contexts), "sigmas": {}}
    for sp in args.sigmas_px:
        run = MethodRun(f"video_sigma{sp}", "signaling", {}, {})
        t1 = time.perf_counter()
        for j, (ctx, r) in enumerate(zip(contexts, rows)):
            tile = arrays.tile(r)
            mpp = tile.metres_per_pixel(arrays.resolution)
            dec = decode_video_to_trajectory(frames[j], tile, arrays.resolution, arrays.duration_s(r), ctx.net,
                                             ctx.eval_t, layer=None if layers is None else layers[j],
                                             sigma_m=max(sp * mpp, 5.0))
            run.predictions[ctx.sample_id] = np.asarray(dec.xy, dtype=np.float64).reshape(ctx.n_eval, 2)
            run.latency_ms[ctx.sample_id] = 0.0
            if not np.isfinite(dec.xy).any():
                run.failures[ctx.sample_id] = "; ".join(dec.issues) or "nothing decoded"
        s = summarise(score_run(run, contexts))
        result["sigmas"][str(sp)] = {**{k: s.get(k) for k in ("median_error_m", "mean_error_m", "p90_error_m",
                                                              "route_f1", "n", "n_failed")},
                                     "decode_s_per_window": (time.perf_counter() - t1) / len(rows)}
        print(f"sigma {sp} px: {result['sigmas'][str(sp)]}", flush=True)
    print(result["baselines"])
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
