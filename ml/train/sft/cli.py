"""``python -m ml.train sft``: supervised fine-tuning from the command line (no dagster, mlflow optional)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ml.train.kit import add_override_args, apply_overrides, parse_overrides, parse_tags

HELP = "supervised fine-tuning of the video flow model on rendered arrays"


def add_args(p: argparse.ArgumentParser) -> None:
    """Arguments of the ``sft`` subcommand."""
    p.add_argument("--data", required=True, type=Path, help="rendered-arrays folder (index.parquet + shards)")
    p.add_argument("--out", required=True, type=Path, help="output folder (checkpoints, previews, model.pt)")
    p.add_argument("--profile", default="demo", choices=["ci", "demo", "gpu", "pretrained"])
    p.add_argument("--max-steps", type=int, default=None, help="total optimisation steps (resume continues to it)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--init", type=Path, default=None, help="initial weights: model.pt or a Lightning SFT checkpoint")
    p.add_argument("--from-scratch", action="store_true",
                   help="random initial weights (the profile's init_checkpoint is not loaded): how a base model is made")
    p.add_argument("--pretrained-path", type=Path, default=None, help="local Wan diffusers folder (profile pretrained)")
    p.add_argument("--signaling-tokens", action="store_true", help="ablation: cross-attend to signaling tokens")
    p.add_argument("--no-resume", action="store_true", help="ignore out/checkpoints/last.ckpt")
    p.add_argument("--roads", type=Path, default=None, help="RoadNetwork .npz for decoded-trajectory validation")
    p.add_argument("--devices", default=None, help="Lightning devices (e.g. 1, 4, auto)")
    p.add_argument("--strategy", default=None, help="Lightning strategy (auto, ddp, fsdp)")
    p.add_argument("--precision", default=None, help="Lightning precision (default: bf16-mixed on GPU, 32-true on CPU)")
    p.add_argument("--num-workers", type=int, default=None)
    add_override_args(p)


def run(args: argparse.Namespace) -> int:
    """Run the ``sft`` subcommand; prints the SFTResult as JSON."""
    from ml.train.sft.config import sft_profile
    from ml.train.sft import train_sft

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    over: dict = {}
    for key, val in (("max_steps", args.max_steps), ("batch_size", args.batch_size), ("lr", args.lr),
                     ("experiment_name", args.experiment), ("precision", args.precision),
                     ("strategy", args.strategy), ("num_workers", args.num_workers)):
        if val is not None:
            over[key] = val
    if args.devices is not None:
        over["devices"] = int(args.devices) if str(args.devices).isdigit() else args.devices
    if args.no_progress:
        over["progress_bar"] = False
    if args.from_scratch:
        if args.init is not None:
            raise SystemExit("--from-scratch and --init exclude each other")
        over["init_checkpoint"] = None
    cfg = sft_profile(args.profile, **over)
    model_over: dict = {}
    if args.pretrained_path is not None:
        model_over["pretrained_path"] = str(args.pretrained_path)
    if args.signaling_tokens:
        model_over["signaling_tokens"] = True
    sets = parse_overrides(args.set)
    sets["model"] = {**model_over, **sets.get("model", {})}
    cfg = apply_overrides(cfg, sets)
    tags = parse_tags(args.tag)
    net = None
    if args.roads is not None:
        from ml.cities.network import RoadNetwork

        net = RoadNetwork.load_npz(args.roads)
    res = train_sft(args.data, args.out, cfg, tracking_uri=args.tracking_uri, tags=tags or None,
                    resume=not args.no_resume, init_checkpoint=args.init, road_network=net)
    print(json.dumps(res.to_dict(), indent=2))
    return 0
