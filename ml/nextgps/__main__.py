"""``python -m ml.nextgps --city gridville --profile demo``: the next-GPS report without Dagster.

It runs what the ``next_gps_report`` asset runs (without MLflow) on the tables and checkpoints under the
city's profile folders; ``--video-checkpoint`` picks another video model (e.g. the shipped base
checkpoint). Writes ``next_gps.json``, ``next_gps.md`` and ``per_sample.parquet`` to ``--out``
(default ``outputs/<city>/<profile>/next_gps/``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run :func:`ml.nextgps.next_gps_report`, write it; 0 on success, 2 on missing inputs."""
    import pandas as pd

    from ml.baselines import build_sample_contexts
    from ml.cities import load_city, load_road_network
    from ml.config import stage_config
    from ml.nextgps import next_gps_report, write_next_gps
    from ml.paths import CityPaths

    ap = argparse.ArgumentParser(prog="python -m ml.nextgps", description=__doc__.splitlines()[0])
    ap.add_argument("--city", required=True)
    ap.add_argument("--profile", default="demo", choices=["ci", "demo", "gpu"])
    ap.add_argument("--root", type=Path, default=Path("."), help="repository root (data/, outputs/, cities/)")
    ap.add_argument("--video-checkpoint", type=Path, default=None,
                    help="video model (default: the profile's checkpoints/sft/model.pt, or gdpo per the config)")
    ap.add_argument("--seq2seq-checkpoint", type=Path, default=None,
                    help="seq2seq model (default: the profile's checkpoints/seq2seq/model.pt when present)")
    ap.add_argument("--seq2seq-prefix-checkpoint", type=Path, default=None,
                    help="next-GPS seq2seq model (default: the profile's checkpoints/seq2seq_prefix/model.pt when present)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    city = load_city(args.city, root=args.root)
    cp = CityPaths(args.root, args.city, args.profile)
    cfg = stage_config("next_gps", args.profile, city)
    rcfg = stage_config("render", args.profile, city)
    rendered = cp.render_dir(rcfg.resolution, rcfg.frames)
    video = args.video_checkpoint or {"sft": cp.sft_model, "gdpo": cp.gdpo_model}[cfg.video_checkpoint]
    seq2seq = args.seq2seq_checkpoint or cp.seq2seq_model
    seq2seq_prefix = args.seq2seq_prefix_checkpoint or cp.seq2seq_prefix_model
    for name, p in (("samples", cp.table("samples")), ("sample_truth", cp.sample_truth), ("video model", video),
                    ("rendered arrays", rendered / "index.parquet")):
        if not Path(p).is_file():
            print(f"python -m ml.nextgps: no {name} at {p}", file=sys.stderr)
            return 2
    net = load_road_network(city, cache_dir=cp.roads_dir)
    tables = {n: pd.read_parquet(cp.table(n)) for n in ("samples", "signaling", "towers")}
    truth = pd.read_parquet(cp.sample_truth)

    def contexts(split: str):
        return build_sample_contexts(tables["samples"], tables["signaling"], tables["towers"], net,
                                     sample_truth=truth, split=split)

    started = time.perf_counter()
    report, scored = next_gps_report(args.city, contexts(cfg.val_split), contexts(cfg.split), cfg,
                                     video_checkpoint=video, rendered_dir=rendered,
                                     seq2seq_checkpoint=seq2seq if seq2seq.is_file() else None, device=args.device,
                                     progress=lambda m: print(m, flush=True),
                                     seq2seq_prefix_checkpoint=seq2seq_prefix if seq2seq_prefix.is_file() else None)
    report["video_checkpoint"] = str(args.video_checkpoint) if args.video_checkpoint else report["video_checkpoint"]
    report["wall_s"] = round(time.perf_counter() - started, 1)
    paths = write_next_gps(report, scored, args.out or cp.outputs / "next_gps")
    print(paths["md"].read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
