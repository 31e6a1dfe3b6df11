"""Can the video model move its head off the prior at all? Fit a handful of train windows, score them and val.

    .venv/bin/python -m bench.video_capacity [--city gridville] [--windows 16] [--minutes 6] [--lr 3e-4]
                                             [--one-step-fraction 0.5] [--threads 1]

The shipped base is fine-tuned (the ``demo`` SFT settings, ``--lr``) on only ``--windows`` train windows of the
city's rendered demo arrays for ``--minutes``, then those same windows and the city's val windows are sampled
with the evaluation's sampler and decoded (the drawing alone): head error (px) and decoded median error (m),
beside the untrained prior on the same windows. If the fitted windows' head error falls well below the
prior's, the network has the capacity to place the head and the gap on val is one of generalisation (data);
if it does not, capacity or the objective is what stops it. Writes ``outputs/bench/video_capacity.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine, write_result  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--city", default="gridville")
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--one-step-fraction", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    import dataclasses

    import numpy as np
    import torch

    from bench.decode_evidence import city_val
    from bench.video_design import fine_tune, score
    from ml.models.backbone import build_video_model
    from ml.io import read_table
    from ml.observation import build_sample_contexts

    torch.set_num_threads(args.threads)
    val, cp = city_val(args.city)
    rendered = cp.render_dir(64, 17)
    module, steps, _, losses, fit_ids = fine_tune(
        rendered, dict(lr=args.lr, warmup_steps=10, one_step_fraction=args.one_step_fraction), args.minutes * 60.0,
        args.seed, train_windows=args.windows)
    fit_ids = set(fit_ids)
    train = [dataclasses.replace(c, observation=val[0].observation)
             for c in build_sample_contexts(read_table(cp.table("samples"), "samples"),
                                            read_table(cp.table("signaling"), "signaling"),
                                            read_table(cp.table("towers"), "towers"), val[0].net,
                                            sample_truth=read_table(cp.sample_truth, "sample_truth"), split="train")
             if c.sample_id in fit_ids]
    untrained = build_video_model(module.cfg.model).eval()
    mcfg = module.cfg.model
    before = {"fitted": score(untrained, mcfg, rendered, train, 0.0), "val": score(untrained, mcfg, rendered, val, 0.0)}
    with module.eval_weights():
        after = {"fitted": score(module.model, mcfg, rendered, train, 0.0), "val": score(module.model, mcfg, rendered, val, 0.0)}
    result = {"name": "video_capacity", "machine": machine(), "city": args.city, "windows": len(train),
              "minutes": args.minutes, "lr": args.lr, "one_step_fraction": args.one_step_fraction, "steps": steps,
              "loss_first_last_10": [float(np.mean(losses[:10])), float(np.mean(losses[-10:]))],
              "prior": before, "fitted_model": after}
    for k in ("fitted", "val"):
        print(f"{k}: head {before[k]['head_error_px']:.2f} -> {after[k]['head_error_px']:.2f} px, median "
              f"{before[k]['median_error_m']:.1f} -> {after[k]['median_error_m']:.1f} m", flush=True)
    write_result("video_capacity", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
