"""``industrial_hmm`` on a city's real windows: ms per window, and its outputs, to compare revisions.

    python -m bench.hmm_windows [--cities gridville,...] [--split test] [--save out.npz] [--compare ref.npz]

Runs ``industrial_hmm`` on every window of the split (each window's records read once before
timing; the first window's call, which builds the per-city caches, is not timed) and reports the
median ms per window and the median error. ``--save`` keeps every window's positions;
``--compare`` reports how many windows differ from a saved file and by how much (metres). To
compare two revisions, save with one checkout and compare with the other, e.g. an old commit in a
``git worktree``: this file uses nothing newer than ``industrial_hmm`` and the contexts.
Prints one line per city and split; writes nothing under ``outputs/``.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def run(city: str, split: str) -> tuple[dict[str, np.ndarray], dict]:
    """Positions of every window of ``city``/``split`` and the timing summary."""
    from ml.baselines import build_sample_contexts, industrial_hmm
    from ml.cities import load_city, load_road_network
    from ml.io import read_table
    from ml.metrics import point_errors_m
    from ml.paths import CityPaths

    cp = CityPaths(ROOT, city, "demo")
    net = load_road_network(load_city(city, ROOT), cache_dir=cp.roads_dir)
    ctxs = build_sample_contexts(read_table(cp.table("samples"), "samples"), read_table(cp.table("signaling"), "signaling"),
                                 read_table(cp.table("towers"), "towers"), net,
                                 sample_truth=read_table(cp.sample_truth, "sample_truth"), split=split)
    for c in ctxs:  # pandas builds column accessors lazily: not part of the method's time
        rec = c.records
        for col in ("t", "cell_id", "site_id", "event"):
            rec[col].to_numpy()
    industrial_hmm(ctxs[0])
    out, ms = {}, []
    for c in ctxs:
        t0 = time.perf_counter()
        out[c.sample_id] = industrial_hmm(c)
        ms.append((time.perf_counter() - t0) * 1e3)
    err = np.concatenate([point_errors_m(out[c.sample_id], c.truth_xy, c.crs) for c in ctxs])
    return out, {"windows": len(ctxs), "ms_per_window": float(np.median(ms)),
                 "median_error_m": float(np.nanmedian(err))}


def _diff_m(p: np.ndarray, q: np.ndarray) -> float:
    """Largest distance between two windows' positions (inf where only one of them is missing)."""
    if p.shape != q.shape or not np.array_equal(np.isnan(p), np.isnan(q)):
        return float("inf")
    d = np.hypot(*(p - q).T)
    return float(np.nanmax(d, initial=0.0))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cities", default="gridville,ringtown,krems,bayreuth")
    ap.add_argument("--split", default="test")
    ap.add_argument("--save", default=None)
    ap.add_argument("--compare", default=None)
    a = ap.parse_args(argv)
    ref = dict(np.load(a.compare)) if a.compare else None
    saved = {}
    for city in a.cities.split(","):
        pred, s = run(city, a.split)
        line = f"{city} {a.split}: {s['windows']} windows, {s['ms_per_window']:.3f} ms per window, " \
               f"median error {s['median_error_m']:.1f} m"
        if ref is not None:
            d = np.array([_diff_m(p, ref[f"{city}/{sid}"]) for sid, p in pred.items()])
            line += f"; vs {a.compare}: {int((d > 0).sum())} windows differ, max {float(d.max()):.3g} m"
        print(line, flush=True)
        saved.update({f"{city}/{sid}": p for sid, p in pred.items()})
    if a.save:
        np.savez_compressed(a.save, **saved)


if __name__ == "__main__":
    main()
