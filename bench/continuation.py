"""Next-GPS by the video model on a city's val windows (never test): continuation training against none.

    python -m bench.continuation [--root DIR] [--city gridville] [--steps 100] [--n-val 32]

Needs the city's demo ``sft_checkpoint`` and ``rendered_videos``. It fine-tunes the SFT model for
``--steps`` with ``SFTConfig.known_frames`` (the frames up to ``next_gps.known_s`` given clean and out of the
loss), then scores ``video_at_targets`` at the next-GPS horizons on the first ``--n-val`` val windows, for
each Euler step count of the profile, four ways: the SFT model with the known frames noised to each
step's level (the report's method before continuation training) or held clean, and the continuation
model the same two ways. Writes ``outputs/bench/continuation.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.common import ROOT, write_result


def main() -> None:
    from ml.config import stage_config
    from ml.evaluation.transfer import city_windows
    from ml.nextgps import known_frame_count, score_next_gps, summarise_next_gps, video_at_targets
    from ml.paths import CityPaths
    from ml.render.arrays import RenderedArrays
    from ml.train.sft import train_sft

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=ROOT)
    ap.add_argument("--city", default="gridville")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--n-val", type=int, default=32)
    args = ap.parse_args()
    cp = CityPaths(args.root, args.city, "demo")
    ncfg = stage_config("next_gps", "demo")
    rcfg = stage_config("render", "demo")
    rendered = cp.render_dir(rcfg.resolution, rcfg.frames)
    sft = cp.sft_model
    for p in (sft, rendered / "index.parquet"):
        if not p.is_file():
            raise SystemExit(f"bench.continuation: no {p}; materialise sft_checkpoint for {args.city} (demo) first")
    arrays = RenderedArrays(rendered)
    n_known = known_frame_count(arrays.frames, arrays.duration_s(0), ncfg.known_s)
    cfg = stage_config("sft", "demo", known_frames=n_known, known_frames_prob=1.0, max_steps=args.steps,
                       warmup_steps=0, select_checkpoint="last", val_every_n_steps=args.steps, progress_bar=False,
                       run_name=f"{args.city}-continuation-bench")
    t0 = time.perf_counter()
    res = train_sft(rendered, args.root / "outputs" / "bench" / "continuation" / args.city, cfg, resume=False,
                    init_checkpoint=sft)
    train_s = time.perf_counter() - t0
    val = city_windows(args.root, args.city, "demo").splits["val"][: args.n_val]
    out: dict[str, dict] = {}
    for steps in ncfg.video_steps_choices:
        for model, ckpt in (("sft", sft), ("continuation", Path(res.checkpoint_path))):
            for clean in (False, True):
                t1 = time.perf_counter()
                pred = video_at_targets(ckpt, rendered, val, ncfg, steps, with_prefix=True, clean_prefix=clean)
                summ = summarise_next_gps(score_next_gps({"v": pred}, val, ncfg))["v"]
                name = f"{model}, prefix {'clean' if clean else 'noised'}, {steps} steps"
                med = {h: round(r["median_error_m"], 1) for h, r in summ.items()}
                out[name] = {"median_m": med, "mean_median_m": round(sum(med.values()) / len(med), 1),
                             "p90_m": {h: round(r["p90_error_m"], 1) for h, r in summ.items()},
                             "seconds": round(time.perf_counter() - t1, 1)}
                print(name, out[name], flush=True)
    write_result("continuation", {"city": args.city, "n_val": len(val), "known_frames": n_known,
                                  "train_steps": args.steps, "train_seconds": round(train_s, 1), "variants": out})


if __name__ == "__main__":
    main()
