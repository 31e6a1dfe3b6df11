"""Peer map-matching engines against our baselines on the signaling track, one table per city.

    python -m bench peers [--cities gridville,ringtown,krems,bayreuth] [--max-windows N]

For each city (its ``data/<city>/`` tables, as materialised by the pipeline), every method gets
the same windows: ``mar``, ``industrial_hmm``, ``learned_hmm`` (footprints from the train windows;
its setup time is building them) and the peers of :mod:`ml.baselines.peers`
(``fmm``, ``valhalla_meili``, ``leuven``) that can run here; the others are listed with the
reason. Each peer's cell-noise settings (2-3, relative to the industrial HMM's sigma) are
tried on the city's ``val`` windows; the one with the lowest median error (mean error breaks
ties) is reported on the ``test`` windows. ``industrial_hmm`` and ``mar`` are not tuned.

Measured per method on test: windows, windows matched (the rest failed: no output, counted
and scored as missing, never dropped from the count), median / mean / p90 point error over the
evaluation points that have a prediction, mean route F1 (``ml.metrics``), median and p90 ms per
window (wall time of the method's call, one call per window; each method runs over all test
windows in turn, in the table's order, so ``industrial_hmm`` and ``fmm`` are measured back to
back; Valhalla's call runs in its worker process when it runs under another interpreter, and the
pipe's round trip is left out),
and setup time: what the engine needs once per city before its first window (the OD table for
``industrial_hmm``; the UBODT for ``fmm``; the R-tree map for ``leuven``; PBF, tiles and the
worker for ``valhalla_meili``), built cold into a fresh cache directory; for ``industrial_hmm``,
:func:`ml.baselines.hmm_setup.prepare_industrial_hmm`: the OD table and the candidates of every
observation position the city's towers can produce. Before the test pass its candidate memo is
reset to that setup state (positions first seen on val are dropped), and every window's records
are read once before any timing (pandas' lazy column accessors would otherwise charge whichever
method reads a window first).

Writes ``outputs/bench/peers.json`` (tables, chosen settings and their val figures, engine
versions, the machine) and prints one Markdown table per city.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict  # noqa: E402

import numpy as np  # noqa: E402

from bench.common import ROOT, write_result  # noqa: E402

CITIES = ("gridville", "ringtown", "krems", "bayreuth")
KEYS = ("n_windows", "n_matched", "n_failed", "median_error_m", "mean_error_m", "p90_error_m", "route_f1",
        "ms_per_window", "ms_p90", "setup_s")


def _settings():
    from ml.baselines.peers.fmm import FMMParams
    from ml.baselines.peers.leuven import LeuvenParams
    from ml.baselines.peers.valhalla_meili import MeiliParams

    return {
        "fmm": [FMMParams(gps_error_factor=f) for f in (0.5, 1.0, 2.0)],
        "valhalla_meili": [MeiliParams(sigma_z_factor=a, beta_factor=b) for a, b in ((0.5, 0.5), (1.0, 1.0), (1.0, 3.0))],
        "leuven": [LeuvenParams(obs_noise_factor=f) for f in (0.25, 0.5, 1.0)],
    }


def _contexts(city: str, max_windows: int | None):
    from ml.observation import LearnedObservationModel, TowerTable, build_cell_footprints, build_sample_contexts
    from ml.cities import load_city, load_road_network
    from ml.io import read_table
    from ml.paths import CityPaths

    cp = CityPaths(ROOT, city, "demo")
    if not (cp.roads_dir / "roads.npz").is_file() or not cp.table("samples").is_file():
        raise SystemExit(f"{city}: data/{city}/demo is not materialised (road network and samples needed)")
    net = load_road_network(load_city(city, ROOT), cache_dir=cp.roads_dir)
    tabs = {k: read_table(cp.table(k), k) for k in ("samples", "signaling", "towers")}
    truth = read_table(cp.sample_truth, "sample_truth")
    # learned_hmm reads the city's footprints, learned from the train windows (as the cell_footprints asset does)
    t0 = time.perf_counter()
    train = build_sample_contexts(tabs["samples"], tabs["signaling"], tabs["towers"], net, sample_truth=truth,
                                  split="train")
    model = LearnedObservationModel(build_cell_footprints(train, net), TowerTable(tabs["towers"], net.crs))
    out = {"footprints_s": time.perf_counter() - t0}
    for split in ("val", "test"):
        ctxs = build_sample_contexts(tabs["samples"], tabs["signaling"], tabs["towers"], net, sample_truth=truth,
                                     split=split, observation=model)
        out[split] = ctxs[:max_windows] if max_windows else ctxs
        if not out[split]:
            raise SystemExit(f"{city}: no '{split}' windows")
    return net, out


def _score(name: str, preds: dict, ms: dict, failures: dict, ctxs) -> dict:
    from ml.evaluation import MethodRun, score_run, summarise

    run = MethodRun(name, "signaling", preds, ms, failures)
    s = summarise(score_run(run, ctxs))
    lat = np.array([v for v in ms.values() if math.isfinite(v)])
    return {"n_windows": len(ctxs), "n_matched": len(ctxs) - len(failures), "n_failed": len(failures),
            "median_error_m": s["median_error_m"], "mean_error_m": s["mean_error_m"],
            "p90_error_m": s["p90_error_m"], "route_f1": s["route_f1"],
            "ms_per_window": float(np.median(lat)) if len(lat) else float("nan"),
            "ms_p90": float(np.percentile(lat, 90)) if len(lat) else float("nan"),
            "failure_examples": sorted(set(failures.values()))[:3]}


def _short(d: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.items())


def _call(fn, ctx, timer=None) -> tuple[np.ndarray, float, str | None]:
    """One timed call; ``timer`` (if given) returns the time to report instead of the wall time."""
    t0 = time.perf_counter()
    try:
        xy = np.asarray(fn(ctx), dtype=np.float64).reshape(ctx.n_eval, 2)
        err = None
    except Exception as exc:  # noqa: BLE001 - a failing window is counted, never hidden
        xy, err = np.full((ctx.n_eval, 2), np.nan), f"{type(exc).__name__}: {exc}"
    wall = (time.perf_counter() - t0) * 1e3
    return xy, (timer(wall) if timer and err is None else wall), err


def _run(methods: dict, ctxs, timers: dict) -> dict:
    """Each method over all windows in turn; per method (preds, ms, failures)."""
    out = {}
    for m, f in methods.items():
        preds, lat, fail = {}, {}, {}
        for ctx in ctxs:
            xy, ms, err = _call(f, ctx, timers.get(m))
            preds[ctx.sample_id], lat[ctx.sample_id] = xy, ms
            if err:
                fail[ctx.sample_id] = err
        out[m] = (preds, lat, fail)
    return out


def bench_city(city: str, max_windows: int | None, cache_root: str) -> dict:
    """Setup, val selection and the test table of one city."""
    from functools import partial

    from ml.baselines import industrial_hmm, learned_hmm, mar
    from ml.baselines.peers import fmm as F
    from ml.baselines.peers import leuven as L
    from ml.baselines.peers import peer_methods
    from ml.baselines.peers import valhalla_meili as V
    from ml.mapmatch.candidates import candidate_memo
    from ml.baselines.hmm_setup import prepare_industrial_hmm
    from ml.mapmatch.od import set_od_table

    net, ctxs = _contexts(city, max_windows)
    print(f"== {city}: {net.n_nodes} nodes, {net.n_edges} edges, {len(ctxs['val'])} val / {len(ctxs['test'])} test "
          "windows", flush=True)
    peers, skipped = peer_methods()
    settings = _settings()
    setup: dict[str, float] = {"mar": 0.0, "learned_hmm": ctxs.pop("footprints_s")}
    info: dict = {}

    # pandas builds some column accessors lazily on first use: touch every window's records once
    # so that no method pays for it in its timed calls
    for c in ctxs["val"] + ctxs["test"]:
        F.window_observations(c)
    towers = ctxs["test"][0].towers_xy

    # ---- setup, cold
    set_od_table(net, None)
    candidate_memo(net).clear()
    prep = prepare_industrial_hmm(net, towers)
    setup["industrial_hmm"] = prep["setup_s"]
    info["industrial_hmm"] = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in prep.items()}
    engines = {}
    for key, build in (("fmm", lambda: F.FMMEngine(net, F.DEFAULT_PARAMS.delta_m, cache_dir=cache_root)),
                       ("leuven", lambda: L.LeuvenEngine(net)),
                       ("valhalla_meili", lambda: V.ValhallaEngine(net, cache_dir=cache_root))):
        if key not in peers:
            continue
        t0 = time.perf_counter()
        try:
            engines[key] = build()
        except Exception as exc:  # noqa: BLE001 - an engine that cannot start is reported, not replaced
            skipped[key] = f"{key} failed to set up: {type(exc).__name__}: {exc}"
            peers.pop(key)
            continue
        setup[key] = time.perf_counter() - t0
    if "valhalla_meili" in engines:
        e = engines["valhalla_meili"]
        info["valhalla_meili"] = {"pbf_s": e.pbf_s, "tiles_s": e.build_s, "worker_python": e.worker.worker_python}

    funcs = {"fmm": F.fmm, "leuven": L.leuven, "valhalla_meili": V.valhalla_meili}
    caches = {"fmm": F.ENGINES, "leuven": L.ENGINES, "valhalla_meili": V.ENGINES}
    for key, eng in engines.items():  # the registry functions find the engines built above
        caches[key].clear()
        caches[key].get(net, lambda _n, e=eng: e)

    def fn(key: str, params):
        return partial(funcs[key], params=params)

    def valhalla_timer(wall_ms: float) -> float:
        e = engines["valhalla_meili"]
        return wall_ms - e.last_roundtrip_ms + e.last_ms  # the pipe's round trip left out

    # ---- val: every setting of every peer (and our baselines, for reference)
    val: dict = {}
    base = _run({"mar": mar, "industrial_hmm": industrial_hmm}, ctxs["val"], {})
    for m, (p, ms, fl) in base.items():
        val[m] = {k: v for k, v in _score(m, p, ms, fl, ctxs["val"]).items() if k in KEYS}
        print(f"   val {m}: median {val[m]['median_error_m']:.1f} m, {val[m]['ms_per_window']:.2f} ms", flush=True)
    chosen = {}
    for key in peers:
        rows = []
        for params in settings[key]:
            timers = {"x": valhalla_timer} if key == "valhalla_meili" else {}
            (p, ms, fl), = _run({"x": fn(key, params)}, ctxs["val"], timers).values()
            r = _score(key, p, ms, fl, ctxs["val"])
            rows.append({"params": asdict(params), **{k: r[k] for k in KEYS if k in r}})
            print(f"   val {key} {_short(asdict(params))}: median {r['median_error_m']:.1f} m, "
                  f"failed {r['n_failed']}, {r['ms_per_window']:.2f} ms", flush=True)
        ok = [i for i, r in enumerate(rows) if math.isfinite(r["median_error_m"])]
        best = min(ok, key=lambda i: (rows[i]["median_error_m"], rows[i]["mean_error_m"])) if ok else 0
        chosen[key] = settings[key][best]
        val[key] = {"settings": rows, "chosen": best}

    # ---- test: every method; industrial_hmm's memo back to its setup state (what val added dropped)
    candidate_memo(net).clear()
    prepare_industrial_hmm(net, towers)
    methods = {"mar": mar, "industrial_hmm": industrial_hmm, "learned_hmm": learned_hmm,
               **{k: fn(k, chosen[k]) for k in peers}}
    timers = {"valhalla_meili": valhalla_timer} if "valhalla_meili" in peers else {}
    res = _run(methods, ctxs["test"], timers)
    memo = candidate_memo(net)
    info.setdefault("industrial_hmm", {})["candidate_memo_hit_rate_test"] = round(
        memo.hits / max(memo.hits + memo.misses, 1), 3)
    table = {}
    for m, (p, ms, fl) in res.items():
        table[m] = {**_score(m, p, ms, fl, ctxs["test"]), "setup_s": setup.get(m)}
        if m in chosen:
            table[m]["params"] = asdict(chosen[m])
    for e in engines.values():
        if hasattr(e, "close"):
            e.close()
    set_od_table(net, None)
    return {"nodes": net.n_nodes, "edges": net.n_edges, "n_val": len(ctxs["val"]), "n_test": len(ctxs["test"]),
            "median_records_per_window": float(np.median([len(c.records) for c in ctxs["test"]])),
            "test": table, "val": val, "skipped": skipped, "engine_info": info}


def markdown(city: str, r: dict) -> str:
    """One city's test table."""
    head = ("| method | windows | matched | failed | median m | mean m | p90 m | route F1 | ms / window | "
            "setup s |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [f"**{city}** ({r['nodes']} nodes, {r['n_test']} test windows, median "
             f"{r['median_records_per_window']:.0f} records a window)", "", head]
    for m, t in r["test"].items():
        lines.append(f"| {m} | {t['n_windows']} | {t['n_matched']} | {t['n_failed']} | {t['median_error_m']:.1f} | "
                     f"{t['mean_error_m']:.1f} | {t['p90_error_m']:.1f} | {t['route_f1']:.3f} | "
                     f"{t['ms_per_window']:.2f} | {t['setup_s']:.2f} |")
    for k, why in r["skipped"].items():
        lines.append(f"| {k} | skipped: {why} |||||||||")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cities", default=",".join(CITIES))
    ap.add_argument("--max-windows", type=int, default=None, help="cap on val and test windows per city")
    ap.add_argument("--out", default="peers", help="result name under outputs/bench/")
    args = ap.parse_args(argv)
    from ml.baselines.peers import engine_versions

    t0 = time.perf_counter()
    cities = {}
    with tempfile.TemporaryDirectory(prefix="sig2gps-peers-bench-") as cache:
        for city in [c for c in args.cities.split(",") if c]:
            cities[city] = bench_city(city, args.max_windows, cache)
            print(markdown(city, cities[city]), flush=True)
    result = {
        "cities": cities,
        "versions": engine_versions(),
        "wall_s": time.perf_counter() - t0,
        "command": "python -m bench peers " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
