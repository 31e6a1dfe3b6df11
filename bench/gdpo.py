"""Traj-GDPO on the city data: the default against its ablations, two seeds each, and the learning curves.

For each city (its rendered arrays and its SFT model, as ``make demo`` leaves them) and each seed, the
SFT model is fine-tuned by :func:`ml.train.gdpo.train_gdpo` with the ``demo`` profile and one change per
variant. Every run exports its *last* weights (``select_checkpoint = 'last'``), so the table shows what
each variant did, and is scored on the same val windows with the evaluation's deterministic sampler before
(the SFT model) and after. Writes ``outputs/bench/gdpo.json`` (or ``--out``) and, with ``--figure``, the
learning curves of the default variant (per-reward means of the rollouts, KL, clip fraction, share of
zero-variance groups, against the iteration).

    .venv/bin/python -m bench.gdpo --cities gridville ringtown --seeds 0 1 --figure docs/results/gdpo_curves.png
    # or one process per city side by side, then: --merge outputs/bench/gdpo_*.json --figure ...
    .venv/bin/python -m bench.gdpo --cities gridville --variants default old_settings --seeds 0 --steps 5   # time split
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]

REWARDS = ("distance", "direction", "connectivity")

#: one change each against the demo profile (the default: GDPO, beta 0.04, group size 8)
VARIANTS: dict[str, dict] = {
    "default": {},
    "grpo": {"advantage": "grpo"},
    "beta0": {"beta": 0.0},
    "group4": {"group_size": 4},
    # denser partial credit (named, off by default): the head distance at every frame, not five
    "dense_distance": {"reward": {"n_distance_frames": 17}},
    # the first GDPO's demo settings (before this bench): 10 SDE steps from noise, noise on every pixel,
    # 2 conditions x 4 rollouts, one inner epoch, lr 1e-4: for the time split
    "old_settings": {"n_steps": 10, "init_noise_scale": 1.0, "noise_scale": 0.7, "exploration_radius_px": None,
                     "conditions_per_step": 2, "group_size": 4, "inner_epochs": 1, "lr": 1e-4},
    # exploration that can move the head further: noise within 12 px of the drawing, or on every pixel (the
    # default explores within 5 px, so a rollout can only jitter the head near where the prior put it)
    "explore_12px": {"exploration_radius_px": 12},
    "explore_everywhere": {"exploration_radius_px": None},
}


def _city_inputs(city: str) -> tuple[Path, Path]:
    from ml.cities.config import load_city, project_root
    from ml.config import stage_config
    from ml.paths import CityPaths

    cfg = stage_config("render", "demo", load_city(city))
    paths = CityPaths(project_root(), city, "demo")
    data, sft = paths.render_dir(cfg.resolution, cfg.frames), paths.sft_model
    for p in (data / "index.parquet", sft):
        if not p.is_file():
            raise SystemExit(f"{p}: missing; run `make demo CITY={city}` (or materialise rendered_videos and "
                             "sft_checkpoint) first")
    return data, sft


def run(cities: list[str], seeds: list[int], variants: list[str], steps: int | None, out_root: Path) -> dict:
    from ml.train.gdpo.config import gdpo_profile
    from ml.train.gdpo import train_gdpo

    rows = []
    for city in cities:
        data, sft = _city_inputs(city)
        for seed in seeds:
            for name in variants:
                over = dict(VARIANTS[name], seed=seed, select_checkpoint="last", progress_bar=False)
                if steps is not None:
                    over["steps"] = steps
                cfg = gdpo_profile("demo", **over)
                t0 = time.perf_counter()
                res = train_gdpo(data, sft, out_root / city / f"{name}_seed{seed}", cfg, resume=False)  # a fresh timed run
                m = res.metrics
                row = {"city": city, "seed": seed, "variant": name, "seconds": round(time.perf_counter() - t0, 1),
                       "iterations": cfg.steps, "n_val": m["start/n"],
                       "sft": {r: round(m[f"start/{r}"], 4) for r in (*REWARDS, "total")},
                       "gdpo": {r: round(m[f"selected/{r}"], 4) for r in (*REWARDS, "total")},
                       "final_kl": round(m["final/kl"], 6), "final_clip_frac": round(m["final/clip_frac"], 4),
                       "zero_variance_group_frac": round(m["final/zero_variance_group_frac"], 3),
                       "time_split_s": {p: round(m[f"time/{p}_s"], 1) for p in ("rollout", "reward", "reference", "update",
                                                                                 "iteration")},
                       "metrics_file": str(out_root / city / f"{name}_seed{seed}" / "gdpo_metrics.json")}
                rows.append(row)
                print(json.dumps(row), flush=True)
    return {"profile": "demo", "variants": {v: VARIANTS[v] for v in variants}, "rows": rows}


def figure(rows: list[dict], path: Path) -> None:
    """Learning curves of the default variant (every city and seed): rewards, KL, clip fraction, zero-variance share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("reward/distance", "distance reward"), ("reward/direction", "direction reward"),
              ("reward/connectivity", "connectivity reward"), ("kl", "KL to the SFT model"),
              ("clip_frac", "clip fraction"), ("zero_variance_group_frac", "zero-variance groups")]
    fig, axes = plt.subplots(2, 4, figsize=(16, 7))
    for row in rows:
        if row["variant"] != "default":
            continue
        saved = json.loads(Path(row["metrics_file"]).read_text())
        hist, vals = saved["history"], saved["validations"]
        it = range(1, len(hist) + 1)
        label = f"{row['city']} seed {row['seed']}"
        for ax, (key, title) in zip(axes.flat, panels):
            ax.plot(it, [h[key] for h in hist], lw=1, label=label)
            ax.set_title(title)
        ax = axes.flat[6]
        ax.plot([v["iteration"] for v in vals], [v["total"] for v in vals], marker="o", label=label)
        ax.set_title("val reward total (deterministic sampler)")
        ax = axes.flat[7]
        ax.plot(it, [h["reward/total"] for h in hist], lw=1, label=label)
        ax.set_title("rollout reward total")
    for ax in axes.flat:
        ax.set_xlabel("iteration")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    import torch

    sys.path.insert(0, str(REPO))
    from bench.common import machine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cities", nargs="+", default=["gridville", "ringtown"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--variants", nargs="+", default=["default", "grpo", "beta0", "group4"], choices=list(VARIANTS))
    ap.add_argument("--steps", type=int, default=None, help="GDPO iterations (default: the demo profile's)")
    ap.add_argument("--figure", type=Path, default=None, help="PNG of the default variant's learning curves")
    ap.add_argument("--out", type=Path, default=REPO / "outputs" / "bench" / "gdpo.json")
    ap.add_argument("--merge", nargs="+", type=Path, default=None,
                    help="combine earlier result files (e.g. one per city, run side by side) into --out; no training")
    args = ap.parse_args(argv)
    if args.merge:
        parts = [json.loads(p.read_text()) for p in args.merge]
        result = {"profile": "demo", "variants": {k: v for p in parts for k, v in p["variants"].items()},
                  "rows": [r for p in parts for r in p["rows"]], "parts": [
                      {"command": p["command"], "total_s": p["total_s"], "machine": p["machine"]} for p in parts]}
        args.out.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}")
        if args.figure is not None:
            figure(result["rows"], args.figure)
        return 0
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    t0 = time.perf_counter()
    result = run(args.cities, args.seeds, args.variants, args.steps, REPO / "outputs" / "bench" / "gdpo_runs")
    result["total_s"] = round(time.perf_counter() - t0, 1)
    result["machine"] = machine()
    result["command"] = " ".join([".venv/bin/python -m bench.gdpo", *(argv if argv is not None else sys.argv[1:])])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out} in {result['total_s']} s")
    if args.figure is not None:
        figure(result["rows"], args.figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
