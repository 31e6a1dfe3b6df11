"""``python -m ml.train gdpo``: Traj-GDPO fine-tuning of an SFT checkpoint (no dagster, mlflow optional).

Example::

    python -m ml.train gdpo --data outputs/gridville/demo/render/r64_k17 \\
        --sft outputs/gridville/checkpoints/sft/model.pt --out outputs/gridville/checkpoints/gdpo \\
        --profile demo --tracking-uri sqlite:///$PWD/mlflow/mlflow.db

Writes ``<out>/gdpo.pt`` (the fine-tuned model, ``ml.models.checkpoint`` format),
``<out>/gdpo_metrics.json`` (metrics and per-iteration history) and ``<out>/gdpo_result.json``
(the :class:`ml.train.gdpo.GDPOResult` as JSON, also printed).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from ml.train.kit import add_override_args, apply_overrides, parse_overrides, parse_tags

HELP = "Traj-GDPO reinforcement fine-tuning of an SFT video model with verifiable rewards"


def add_args(p: argparse.ArgumentParser) -> None:
    """Arguments of the ``gdpo`` subcommand (unset options keep the profile's value)."""
    p.add_argument("--data", required=True, type=Path, help="rendered-arrays folder (index.parquet + shards)")
    p.add_argument("--sft", required=True, type=Path, help="SFT model file (ml.models.checkpoint format)")
    p.add_argument("--out", required=True, type=Path, help="output folder (gdpo.pt, gdpo_metrics.json)")
    p.add_argument("--profile", default="demo", choices=["ci", "demo", "gpu"])
    p.add_argument("--steps", type=int, default=None, help="GDPO iterations (rollouts + update)")
    p.add_argument("--group-size", type=int, default=None, help="G rollouts per condition")
    p.add_argument("--conditions-per-step", type=int, default=None)
    p.add_argument("--n-steps", type=int, default=None, help="SDE sampling steps per rollout")
    p.add_argument("--noise-scale", type=float, default=None, help="a in sigma_t = a sqrt(s / (1 - s))")
    p.add_argument("--clip-range", type=float, default=None)
    p.add_argument("--beta", type=float, default=None, help="KL weight to the SFT model (0: ablation)")
    p.add_argument("--advantage", choices=["gdpo", "grpo"], default=None, help="grpo: the ablation")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--inner-epochs", type=int, default=None)
    p.add_argument("--exploration-radius-px", type=int, default=None,
                   help="exploration noise only within this many pixels of the drawing (-1: every pixel)")
    p.add_argument("--train-timesteps", default=None,
                   help="comma-separated indices of the denoising steps trained on (default: all)")
    p.add_argument("--n-eval", type=int, default=None, help="val windows of the selection")
    p.add_argument("--select", choices=["last", "best_val"], default=None, help="exported weights (default best_val)")
    p.add_argument("--select-min-gain", type=float, default=None, help="val reward-total gain best_val requires")
    p.add_argument("--val-every", type=int, default=None, help="iterations between validations")
    p.add_argument("--init-noise-scale", type=float, default=None,
                   help="initial-noise scale of the rollouts and validations (as the evaluation's; default 0)")
    p.add_argument("--micro-batch-size", type=int, default=None, help="rows per forward/backward in the update")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--accelerator", default=None, help="Lightning accelerator (auto, cpu, gpu)")
    p.add_argument("--devices", type=int, default=None, help="devices; > 1: Lightning DDP, one process per device")
    p.add_argument("--num-nodes", type=int, default=None, help="machines, under torchrun or SLURM (Lightning DDP)")
    p.add_argument("--precision", default=None, help="Lightning precision (default: bf16-mixed on GPU, 32-true on CPU)")
    add_override_args(p)


def _overrides(args: argparse.Namespace) -> dict:
    over: dict = {}
    for key in ("steps", "group_size", "conditions_per_step", "n_steps", "noise_scale", "clip_range", "beta",
                "advantage", "lr", "inner_epochs", "n_eval", "seed", "accelerator", "devices", "num_nodes", "precision",
                "select_min_gain", "init_noise_scale", "micro_batch_size"):
        val = getattr(args, key)
        if val is not None:
            over[key] = val
    if args.exploration_radius_px is not None:
        over["exploration_radius_px"] = None if args.exploration_radius_px < 0 else args.exploration_radius_px
    if args.val_every is not None:
        over["val_every_n_steps"] = args.val_every
    if args.select is not None:
        over["select_checkpoint"] = args.select
    if args.experiment is not None:
        over["experiment_name"] = args.experiment
    if args.train_timesteps:
        over["train_timesteps"] = [int(t) for t in str(args.train_timesteps).split(",") if t.strip()]
    if args.no_progress:
        over["progress_bar"] = False
    return over


def run(args: argparse.Namespace) -> int:
    """Run the ``gdpo`` subcommand; prints the GDPOResult as JSON and returns 0."""
    from ml.train.gdpo.config import gdpo_profile
    from ml.train.gdpo import train_gdpo

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = apply_overrides(gdpo_profile(args.profile, **_overrides(args)), parse_overrides(args.set))
    tags = parse_tags(args.tag)
    res = train_gdpo(args.data, args.sft, args.out, cfg, tracking_uri=args.tracking_uri, tags=tags or None)
    print(json.dumps(res.to_dict(), indent=2))
    return 0
