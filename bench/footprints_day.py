"""How much paired history a city needs, on an operator day: footprints from 50 / 200 / 1,000 taxis.

    python -m ml.scale generate --osm ../shared/cities/campo_grande.osm.gz \\
        --out data/operator/campo_grande_history --devices 15000 --taxis 1500 --workers 2
    python -m bench.footprints_day [--day data/operator/campo_grande_history] [--held-out 200] [--max-test 400]

Pairs and cuts the day out of core (``ml.scale``: the demo profile's pairing and window rules), then draws
``--held-out`` taxis at random: their windows are the test set (at most ``--max-test``, scored by
``industrial_hmm``, ``learned_hmm`` and ``oracle_records``). Footprints come from the windows of the first
50 / 200 / 1,000 of the other taxis (a random order, nested; every window of a history taxi counts as
train), with the median train records per cell beside each. Writes ``outputs/bench/footprints_day.json``
and ``footprints_day.png``.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.common import ROOT, write_result  # noqa: E402
from bench.footprints import records_per_cell, score, with_model  # noqa: E402

HISTORY_TAXIS = (50, 200, 1000)


def windows_of_day(day: Path) -> Path:
    """Pair and cut the day once (kept in ``day/windows``)."""
    from ml.config import stage_config
    from ml.pairing.pairing import projection_for
    from ml.scale import day_files
    from ml.scale.pairing import OutOfCoreConfig, cut_day, pair_day

    out = day / "windows"
    if (out / "samples").is_dir() and any((out / "samples").glob("*.parquet")):
        return out
    towers = pd.read_parquet(day / "towers.parquet")
    sig, gps = day_files(day, "signaling"), day_files(day, "gps")
    ooc = OutOfCoreConfig()
    pairs, _ = pair_day(sig, gps, towers, stage_config("pairing", "demo"), day / "pairing_work", ooc)
    cut_day(pairs, sig, gps, towers, projection_for(towers).crs, stage_config("samples", "demo"), seed=31005,
            out_dir=out, ooc=ooc)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--day", default=str(ROOT / "data" / "operator" / "campo_grande_history"))
    ap.add_argument("--held-out", type=int, default=200)
    ap.add_argument("--max-test", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from ml.baselines import industrial_hmm, learned_hmm, oracle_records
    from ml.cities.network import RoadNetwork
    from ml.observation import LearnedObservationModel, TowerTable, build_cell_footprints, build_sample_contexts
    from ml.scale import day_files

    day = Path(args.day)
    t0 = time.perf_counter()
    win = windows_of_day(day)
    pair_cut_s = time.perf_counter() - t0
    net = RoadNetwork.load_npz(day / "roads" / "roads.npz")
    towers = pd.read_parquet(day / "towers.parquet")
    samples = pd.concat([pd.read_parquet(f) for f in sorted((win / "samples").glob("*.parquet"))], ignore_index=True)
    truth = pd.concat([pd.read_parquet(f) for f in sorted((win / "sample_truth").glob("*.parquet"))], ignore_index=True)
    devices = set(samples["device_id"])
    sig = pd.concat([pd.read_parquet(f, filters=[("device_id", "in", list(devices))])
                     for f in day_files(day, "signaling")], ignore_index=True)
    ctxs = build_sample_contexts(samples, sig, towers, net, sample_truth=truth)
    taxis = sorted({c.device_id for c in ctxs})
    order = list(np.random.default_rng(args.seed).permutation(taxis))
    held = set(order[: args.held_out])
    pool = order[args.held_out:]
    test = [c for c in ctxs if c.device_id in held]
    test = [test[i] for i in np.sort(np.random.default_rng(args.seed).permutation(len(test))[: args.max_test])]
    table = TowerTable(towers, net.crs)
    base, base_ms = score(industrial_hmm, test)
    oracle, _ = score(oracle_records, test)
    rows = []
    for n in HISTORY_TAXIS:
        if n > len(pool):
            print(f"{n} history taxis: only {len(pool)} paired taxis outside the held-out set; skipped", flush=True)
            continue
        keep = set(pool[:n])
        train = [replace_split(c) for c in ctxs if c.device_id in keep]
        fp = build_cell_footprints(train, net)
        med, p10 = records_per_cell(fp)
        learned, ms = score(learned_hmm, with_model(test, LearnedObservationModel(fp, table)))
        rows.append({"history_taxis": n, "history_windows": len(train), "records_per_cell_median": med,
                     "records_per_cell_p10": p10, "cells_with_history": int(fp.loc[fp["kind"] == "cell", "cell_id"].nunique()),
                     "learned_hmm_m": learned, "ratio": learned / base, "learned_hmm_ms": ms})
        print(f"{n} taxis ({len(train)} windows, {med:.0f} records/cell): learned_hmm {learned:.1f} m "
              f"({learned / base:.3f} x industrial_hmm {base:.1f} m)", flush=True)
    plot_day(rows, ROOT / "outputs" / "bench" / "footprints_day.png")
    write_result("footprints_day", {
        "day": str(day), "paired_taxis": len(taxis), "windows": len(ctxs), "held_out_taxis": len(held),
        "test_windows": len(test), "cells": int(len(towers)), "pair_and_cut_s": pair_cut_s,
        "industrial_hmm_m": base, "industrial_hmm_ms": base_ms, "oracle_records_m": oracle, "rows": rows})


def plot_day(rows: list[dict], path: Path) -> None:
    """The history curve of the day, drawn like the demo cities' (``bench.footprints.plot_history``)."""
    from bench.footprints import plot_history

    plot_history([{"city": "campo_grande (operator day)", "taxis": r["history_taxis"], **r} for r in rows], path)


def replace_split(ctx):
    """A history taxi's window, whatever split the day's cutting drew for it, counts as train here."""
    from dataclasses import replace

    return replace(ctx, split="train")


if __name__ == "__main__":
    main()
