"""``code_version`` of each asset: a hash of the library code it runs, so that Dagster's staleness
("code version changed") follows real changes without anyone bumping a number by hand."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

ML = Path(__file__).resolve().parents[1] / "ml"

#: the parts of ``ml/`` (packages or modules, relative to it) each asset runs; ``config.py`` holds the profiles
ASSET_CODE: dict[str, tuple[str, ...]] = {
    "road_network": ("cities", "geo"),
    "raw": ("simulate", "ingest", "validation", "cities", "geo", "io.py", "config.py"),
    "pairing": ("pairing", "validation", "geo", "io.py", "config.py"),
    "dataset_version": ("versioning.py", "tracking.py"),
    "footprints": ("observation", "validation", "cities", "geo", "io.py", "config.py"),
    "rendered_videos": ("render", "observation", "evaluation/preview.py", "geo", "io.py", "config.py"),
    "training": ("models", "inference", "observation", "train", "rewards", "decode", "serving", "tracking.py",
                 "config.py"),
    "seq2seq": ("seq2seq", "train/seq2seq", "baselines", "observation", "serving/registry.py", "tracking.py", "config.py"),
    # the next-GPS seq2seq reads its prefix length from the next_gps stage
    "seq2seq_prefix": ("seq2seq", "train/seq2seq", "baselines", "observation", "nextgps/config.py", "tracking.py", "config.py"),
    "predictions": ("baselines", "observation", "mapmatch", "decode", "inference", "evaluation", "models", "seq2seq",
                    "metrics", "rewards", "config.py"),
    "operator": ("scale", "simulate", "pairing", "cities", "geo", "io.py", "config.py"),
    # operator_trajectories: the batch path and the methods it runs
    "batch": ("batch", "baselines", "observation", "mapmatch", "evaluation/methods.py", "serving", "inference",
              "decode", "models", "render", "cities", "geo", "io.py", "config.py"),
    "evaluation_report": ("evaluation", "metrics", "report", "baselines", "observation", "tracking.py", "config.py"),
}


@cache
def code_version(name: str) -> str:
    """sha256 (first 12 hex digits) over the paths and contents of the ``.py`` files in ``ASSET_CODE[name]``."""
    h = hashlib.sha256()
    for part in ASSET_CODE[name]:
        target = ML / part
        if not target.exists():
            raise FileNotFoundError(f"dagster_project/code_versions.py: ASSET_CODE['{name}'] names ml/{part}, "
                                    "which does not exist")
        files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
        for f in files:
            h.update(str(f.relative_to(ML)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:12]
