"""Check on the rendered arrays: shard shapes agree with the index and the render settings, and the index
lists the samples (each rendered window is a sample, with its split, and every sample is rendered)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ml.checks.outcome import CheckOutcome, first


def check_rendered_arrays(rendered_dir: str | Path, samples: pd.DataFrame, resolution: int,
                          frames: int) -> CheckOutcome:
    """The folder ``rendered_dir`` (``ml.render.dataset.render_samples``' format) against the ``samples`` table
    and the configured ``resolution`` and ``frames``.

    Rules: ``index.parquet`` lists each sample id once, each one a row of ``samples`` with the same split,
    and every sample; its ``resolution``/``frames`` columns equal the settings; for every shard,
    ``cond_XXXX.npy`` is ``(n, H, H, 3)`` and ``video_XXXX.npy`` ``(n, K, H, H, 3)`` uint8 with the same ``n``,
    at least the rows the index reads (``tokens_XXXX.npy``, when present, ``(n, R, 4)``). Shards are opened
    memory-mapped (headers only).
    """
    d = Path(rendered_dir)
    ip = d / "index.parquet"
    if not ip.is_file():
        return CheckOutcome.failed(f"{ip}: no index; rule: the rendered arrays have an index.parquet", path=str(d))
    index = pd.read_parquet(ip)
    problems: list[str] = []
    missing_cols = {"sample_id", "split", "shard", "row", "resolution", "frames"} - set(index.columns)
    if missing_cols:
        return CheckOutcome.failed(f"{ip}: missing column(s) {sorted(missing_cols)}", path=str(d))

    ids = index["sample_id"].astype(str)
    sample_split = dict(zip(samples["sample_id"].astype(str), samples["split"].astype(str)))
    dup = sorted(set(ids[ids.duplicated()]))
    extra = sorted(set(ids) - set(sample_split))
    unrendered = sorted(set(sample_split) - set(ids))
    wrong_split = sorted(sid for sid, sp in zip(ids, index["split"].astype(str))
                         if sid in sample_split and sample_split[sid] != sp)
    if dup:
        problems.append(f"{len(dup)} sample id(s) listed more than once in {ip.name} ({first(dup)})")
    if extra:
        problems.append(f"{len(extra)} rendered id(s) are not in the samples table ({first(extra)})")
    if unrendered:
        problems.append(f"{len(unrendered)} sample(s) not rendered ({first(unrendered)})")
    if wrong_split:
        problems.append(f"{len(wrong_split)} rendered id(s) with another split than in the samples table "
                        f"({first(wrong_split)})")
    for col, want in (("resolution", resolution), ("frames", frames)):
        got = sorted(set(index[col].astype(int)))
        if got and got != [want]:
            problems.append(f"{ip.name} column '{col}' holds {got}, the render config says {want}")

    rows_needed = (index.groupby("shard")["row"].max() + 1).to_dict() if len(index) else {}
    shapes: dict[str, str] = {}
    for shard, need in sorted(rows_needed.items()):
        arrays = {}
        for kind in ("cond", "video", "tokens"):
            p = d / f"{kind}_{int(shard):04d}.npy"
            if not p.is_file():
                if kind != "tokens":
                    problems.append(f"{p.name}: missing (shard {shard} is listed in {ip.name})")
                continue
            try:
                arrays[kind] = np.load(p, mmap_mode="r")
            except (ValueError, OSError, EOFError) as exc:
                problems.append(f"{p.name}: unreadable ({exc})")
        want = {"cond": (resolution, resolution, 3), "video": (frames, resolution, resolution, 3)}
        for kind, a in arrays.items():
            shapes.setdefault(kind, str(tuple(a.shape[1:])))
            if kind in want and (tuple(a.shape[1:]) != want[kind] or a.dtype != np.uint8):
                problems.append(f"{kind}_{int(shard):04d}.npy: {a.dtype} {tuple(a.shape)}, expected uint8 "
                                f"(n, {', '.join(map(str, want[kind]))})")
            if kind == "tokens" and (a.ndim != 3 or a.shape[-1] != 4):
                problems.append(f"tokens_{int(shard):04d}.npy: shape {tuple(a.shape)}, expected (n, R, 4)")
            if a.shape[0] < need:
                problems.append(f"{kind}_{int(shard):04d}.npy: {a.shape[0]} rows, {ip.name} reads {need}")
        lengths = {kind: a.shape[0] for kind, a in arrays.items()}
        if len(set(lengths.values())) > 1:
            problems.append(f"shard {shard}: the arrays differ in length {lengths}")

    counts = index["split"].value_counts().to_dict()
    meta = {"path": str(d), "rendered": len(index), "samples": len(sample_split), "not_rendered": len(unrendered),
            "not_in_samples": len(extra), "duplicates": len(dup), "shards": len(rows_needed),
            "resolution": resolution, "frames": frames,
            **{f"n_{k}": int(v) for k, v in counts.items()}, **{f"shape_{k}": v for k, v in shapes.items()}}
    if problems:
        return CheckOutcome.failed(f"{d}: " + "; ".join(problems), **meta)
    return CheckOutcome(True, f"{d}: {len(index)} windows in {len(rows_needed)} shard(s), one per sample of the "
                              f"samples table, arrays of {resolution} px and {frames} frames", meta)
