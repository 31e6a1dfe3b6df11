"""Quality and cost of the video model against the number of Euler steps, on val windows.

    .venv/bin/python -m bench.sampling_steps [--model models/sig2gps-base-64px-k17.pt] [--city gridville]
                                             [--val 48] [--steps 1 2 4 8 16 32] [--threads 2]

One video per val window (the same noise for every step count) is sampled and decoded, as the
evaluation does, for each scale of the initial noise (1: a sample; 0: deterministic); reported per
step count: decoded median error (m), head-detect rate, head error
(px) and the sampling-plus-decoding time per trajectory on this CPU. The evaluation's default
(``EvaluationConfig.video_sampling_steps`` and ``video_noise_scale``) is chosen from this curve. Writes
``outputs/bench/sampling_steps.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import write_result  # noqa: E402
from bench.sft_objective import baselines, val_contexts  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "sig2gps-base-64px-k17.pt")
    ap.add_argument("--city", default="gridville")
    ap.add_argument("--val", type=int, default=48)
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    ap.add_argument("--noise-scales", type=float, nargs="+", default=[1.0, 0.0])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    import time

    import torch

    from ml.evaluation import score_run, summarise
    from ml.evaluation.config import EvaluationConfig
    from ml.evaluation.video import predict_video_method

    torch.set_num_threads(args.threads)
    ctxs, cp = val_contexts(args.city, args.val)
    result = {"name": "sampling_steps", "model": str(args.model), "city": args.city, "val_windows": len(ctxs),
              "threads": args.threads, "baselines": baselines(ctxs), "rows": []}
    for n, scale in [(n, c) for c in args.noise_scales for n in args.steps]:
        t0 = time.perf_counter()
        run = predict_video_method("video", args.model, cp.render_dir(64, 17), ctxs,
                                   EvaluationConfig(split="val", video_sampling_steps=n, video_noise_scale=scale))
        wall = time.perf_counter() - t0
        s = summarise(score_run(run, ctxs).merge(run.extra["rewards"], on="sample_id", how="left"))
        row = {"euler_steps": n, "noise_scale": scale, "s_per_trajectory": wall / len(ctxs),
               **{k: s.get(k) for k in ("median_error_m", "mean_error_m", "p90_error_m", "route_f1", "n", "n_failed",
                                        "head_detect_rate", "head_error_px", "path_iou")}}
        result["rows"].append(row)
        print(row, flush=True)
        write_result("sampling_steps", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
