"""Cell footprints and ``learned_hmm``: settings chosen on val, scored once on test, and the history curve.

    python -m bench.footprints [--cities gridville,ringtown,krems,bayreuth] [--profile demo]
                               [--val-max 100] [--test-max 100] [--history]

Needs each city's windows (``sig2gps run <city> --select "*samples"``). Per city: footprints from
the train windows (seconds to build), ``learned_hmm`` over a grid of kernel bandwidths and prior
strengths, handover priors and HMM settings on the first ``--val-max`` val windows; the setting
with the lowest mean of the cities' val ratios to ``industrial_hmm`` is the default
(``FootprintConfig``, ``LEARNED_HMM_CONFIG``; the result says whether the code's defaults are it);
then on the first ``--test-max`` test windows, once, with the chosen setting: ``industrial_hmm``, ``learned_hmm`` with the chosen setting, the ``oracle_records``
bound, with ms per window side by side. ``--history``: ``learned_hmm`` on test with footprints from
growing shares of the train taxis (records per cell on a second axis), table and PNG. Writes
``outputs/bench/footprints.json`` (and ``footprints_history.png``).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import itertools  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402

from bench.common import ROOT, write_result  # noqa: E402

BANDWIDTHS_M = (60.0, 100.0, 150.0)
PRIOR_STRENGTHS = (1.0, 3.0, 10.0)
HANDOVER_PRIORS = ("handmade", "cells")
# the HMM settings learned_hmm may run with: the industrial pipeline's, or more candidates, a looser
# transition and no ping-pong removal (LEARNED_HMM_CONFIG)
HMM_SETTINGS = ("industrial", "learned")
HISTORY_SHARES = (0.1, 0.25, 0.5, 1.0)


@dataclass
class CityWindows:
    name: str
    net: object
    towers: object
    train: list
    val: list
    test: list


def load_windows(city: str, profile: str) -> CityWindows:
    from ml.cities import load_city, load_road_network
    from ml.io import read_table
    from ml.observation import TowerTable, build_sample_contexts
    from ml.paths import CityPaths

    cp = CityPaths(ROOT, city, profile)
    net = load_road_network(load_city(city, ROOT), cache_dir=cp.roads_dir)
    towers = read_table(cp.table("towers"), "towers")
    ctxs = build_sample_contexts(read_table(cp.table("samples"), "samples"),
                                 read_table(cp.table("signaling"), "signaling"), towers, net,
                                 sample_truth=read_table(cp.sample_truth, "sample_truth"))
    by = {s: [c for c in ctxs if c.split == s] for s in ("train", "val", "test")}
    return CityWindows(city, net, TowerTable(towers, net.crs), by["train"], by["val"], by["test"])


def with_model(ctxs: list, model) -> list:
    from dataclasses import replace

    return [replace(c, observation=model) for c in ctxs]


def score(fn, ctxs: list) -> tuple[float, float]:
    """Pooled median point error (m) and median ms per window."""
    from ml.metrics import point_errors_m

    errs, ms = [], []
    for c in ctxs:
        t0 = time.perf_counter()
        xy = fn(c)
        ms.append((time.perf_counter() - t0) * 1e3)
        errs.append(point_errors_m(xy, c.truth_xy, c.crs))
    return float(np.nanmedian(np.concatenate(errs))), float(np.median(ms))


def records_per_cell(fp) -> tuple[float, float]:
    from ml.observation import footprint_summary

    s = footprint_summary(fp)
    n = s.loc[s["kind"] == "cell", "n_records"].to_numpy()
    return (float(np.median(n)), float(np.percentile(n, 10))) if len(n) else (0.0, 0.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cities", default="gridville,ringtown,krems,bayreuth")
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--val-max", type=int, default=100)
    ap.add_argument("--test-max", type=int, default=100)
    ap.add_argument("--history", action="store_true")
    args = ap.parse_args()
    from ml.baselines import IndustrialHMMConfig, industrial_hmm, learned_hmm, oracle_records
    from ml.baselines.signaling import LEARNED_HMM_CONFIG
    from ml.observation import FootprintConfig, LearnedObservationModel, build_cell_footprints

    cities = [load_windows(c, args.profile) for c in args.cities.split(",")]
    result: dict = {"profile": args.profile, "cities": {}, "grid": [], "val_max": args.val_max,
                    "test_max": args.test_max}
    footprints = {}
    for cw in cities:
        t0 = time.perf_counter()
        fp = build_cell_footprints(cw.train + cw.val + cw.test, cw.net)  # only the train windows are read
        build_s = time.perf_counter() - t0
        footprints[cw.name] = fp
        med, p10 = records_per_cell(fp)
        result["cities"][cw.name] = {"windows": {"train": len(cw.train), "val": len(cw.val), "test": len(cw.test)},
                                     "build_s": build_s, "footprint_rows": len(fp),
                                     "records_per_cell_median": med, "records_per_cell_p10": p10}
        print(f"{cw.name}: footprints of {len(cw.train)} train windows in {build_s:.2f} s ({len(fp)} rows)", flush=True)

    # ---- choose on val
    val_base = {cw.name: score(industrial_hmm, cw.val[: args.val_max])[0] for cw in cities}
    best = None
    for h, a, ho, hmm in itertools.product(BANDWIDTHS_M, PRIOR_STRENGTHS, HANDOVER_PRIORS, HMM_SETTINGS):
        cfg = FootprintConfig(bandwidth_m=h, prior_strength=a, handover_prior=ho)
        hcfg = LEARNED_HMM_CONFIG if hmm == "learned" else IndustrialHMMConfig()
        meds = {}
        for cw in cities:
            model = LearnedObservationModel(footprints[cw.name], cw.towers, cfg)
            meds[cw.name] = score(lambda c: learned_hmm(c, hcfg), with_model(cw.val[: args.val_max], model))[0]
        ratio = float(np.mean([meds[c] / val_base[c] for c in meds]))
        result["grid"].append({"bandwidth_m": h, "prior_strength": a, "handover_prior": ho, "hmm": hmm,
                               "val_median_m": meds, "mean_ratio": ratio})
        print(f"val h={h:.0f} alpha={a:.0f} {ho} {hmm}: " + ", ".join(f"{c} {m:.1f}" for c, m in meds.items())
              + f"  mean ratio {ratio:.3f}", flush=True)
        if best is None or ratio < best[0]:
            best = (ratio, cfg, hmm)
    chosen, chosen_hmm = best[1], best[2]
    result["val_industrial_hmm_m"] = val_base
    result["chosen"] = {"bandwidth_m": chosen.bandwidth_m, "prior_strength": chosen.prior_strength,
                        "handover_prior": chosen.handover_prior, "hmm": chosen_hmm}
    result["defaults_are_chosen"] = (chosen == FootprintConfig() and chosen_hmm == "learned")
    print(f"chosen on val: {result['chosen']} (the code's defaults: {result['defaults_are_chosen']})", flush=True)

    # ---- test, once, with the setting chosen on val (the code's defaults when defaults_are_chosen)
    chosen_hcfg = LEARNED_HMM_CONFIG if chosen_hmm == "learned" else IndustrialHMMConfig()
    for cw in cities:
        test = cw.test[: args.test_max]
        model = LearnedObservationModel(footprints[cw.name], cw.towers, chosen)
        base, base_ms = score(industrial_hmm, test)
        learned, learned_ms = score(lambda c: learned_hmm(c, chosen_hcfg), with_model(test, model))
        oracle, _ = score(oracle_records, test)
        result["cities"][cw.name].update({
            "test_windows": len(test), "industrial_hmm_m": base, "learned_hmm_m": learned, "oracle_records_m": oracle,
            "ratio": learned / base, "industrial_hmm_ms": base_ms, "learned_hmm_ms": learned_ms,
            "ms_ratio": learned_ms / base_ms})
        print(f"test {cw.name}: industrial_hmm {base:.1f} m ({base_ms:.1f} ms), learned_hmm {learned:.1f} m "
              f"({learned_ms:.1f} ms), ratio {learned / base:.3f}; oracle_records {oracle:.1f} m", flush=True)

    if args.history:
        result["history"] = history_curve(cities, args.test_max, chosen, chosen_hcfg)
    write_result("footprints", result)


def history_curve(cities: list, test_max: int, cfg, hcfg, seed: int = 0) -> list[dict]:
    """``learned_hmm`` on test with footprints from a share of the train taxis (drawn at random, nested)."""
    from ml.baselines import industrial_hmm, learned_hmm
    from ml.observation import LearnedObservationModel, build_cell_footprints

    rows = []
    for cw in cities:
        test = cw.test[:test_max]
        base, _ = score(industrial_hmm, test)
        taxis = sorted({c.device_id for c in cw.train})  # one paired driver's phone per taxi
        order = list(np.random.default_rng(seed).permutation(taxis))
        for share in HISTORY_SHARES:
            keep = set(order[: max(1, int(round(share * len(order))))])
            train = [c for c in cw.train if c.device_id in keep]
            fp = build_cell_footprints(train, cw.net)
            med, p10 = records_per_cell(fp)
            learned, _ = score(lambda c: learned_hmm(c, hcfg), with_model(test, LearnedObservationModel(fp, cw.towers, cfg)))
            rows.append({"city": cw.name, "share": share, "taxis": len(keep), "train_windows": len(train),
                         "records_per_cell_median": med, "records_per_cell_p10": p10, "learned_hmm_m": learned,
                         "industrial_hmm_m": base, "ratio": learned / base})
            print(f"history {cw.name} {share:.2f}: {len(keep)} taxis, {len(train)} windows, "
                  f"records/cell {med:.0f}: {learned:.1f} m ({learned / base:.3f})", flush=True)
    plot_history(rows, ROOT / "outputs" / "bench" / "footprints_history.png")
    return rows


def plot_history(rows: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for city in sorted({r["city"] for r in rows}):
        rr = [r for r in rows if r["city"] == city]
        ax.plot([r["records_per_cell_median"] for r in rr], [r["ratio"] for r in rr], "o-", label=city)
        for r in rr:
            ax.annotate(f"{r['taxis']}", (r["records_per_cell_median"], r["ratio"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.axhline(0.85, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    ax.xaxis.set_major_locator(FixedLocator([1, 2, 5, 10, 20, 50, 100, 200]))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("train records per cell (median; labels: taxis)")
    ax.set_ylabel("learned_hmm / industrial_hmm\n(test median error)")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
