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
    from bench.video_design import BASE, score
    from ml.models.backbone import build_video_model
    from ml.models.config import sft_profile
    from ml.models.data import RenderedVideoDataModule
    from ml.models.lightning_sft import SFTModule, model_config_for_data
    from ml.observation import build_sample_contexts
    from ml.io import read_table
    from ml.train.sft import _load_init

    torch.set_num_threads(args.threads)
    val, cp = city_val(args.city)
    rendered = cp.render_dir(64, 17)
    cfg = sft_profile("demo", max_steps=100_000, lr=args.lr, warmup_steps=10, seed=args.seed,
                      one_step_fraction=args.one_step_fraction)
    dm = RenderedVideoDataModule(rendered, batch_size=cfg.batch_size, seed=args.seed, with_tokens=True,
                                 max_records=cfg.model.max_records)
    dm.setup("fit")
    dm.rows["train"] = dm.rows["train"][: args.windows]
    fit_ids = set(dm.index["sample_id"].astype(str).to_numpy()[dm.rows["train"]])
    towers = read_table(cp.table("towers"), "towers")
    train = [c for c in build_sample_contexts(read_table(cp.table("samples"), "samples"),
                                              read_table(cp.table("signaling"), "signaling"), towers, val[0].net,
                                              sample_truth=read_table(cp.sample_truth, "sample_truth"), split="train")
             if c.sample_id in fit_ids]
    train = [dataclasses.replace(c, observation=val[0].observation) for c in train]
    cfg = cfg.model_copy(update={"model": model_config_for_data(cfg.model, dm.resolution, dm.frames)})
    torch.manual_seed(args.seed)
    module = SFTModule(cfg)
    _load_init(module, BASE)
    untrained = build_video_model(cfg.model).eval()
    before = {"fitted": score(untrained, cfg.model, rendered, train, 0.0), "val": score(untrained, cfg.model, rendered, val, 0.0)}
    opts = module.configure_optimizers()
    opt, sched = opts["optimizer"], opts["lr_scheduler"]["scheduler"]
    steps, t0, losses = 0, time.perf_counter(), []
    module.train()
    while time.perf_counter() - t0 < args.minutes * 60:
        for batch in dm.train_dataloader():
            loss = module.flow_loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip or 1e9)
            opt.step()
            sched.step()
            if module.ema is not None:
                module.ema.update(module.model)
            steps += 1
            losses.append(loss.item())
    module.eval()
    with module.eval_weights():
        after = {"fitted": score(module.model, cfg.model, rendered, train, 0.0),
                 "val": score(module.model, cfg.model, rendered, val, 0.0)}
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
