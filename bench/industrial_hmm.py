"""Industrial HMM pipeline latency per trajectory, vectorised vs a pure-Python reference.

    python -m bench.industrial_hmm [--n 30] [--size-km 2] [--city krems] [--ref-n 30]

Inputs: a synthetic grid city (the ``grid_net`` test fixture's generator, or a real extract from
``../shared/cities`` with ``--city``) and synthetic signaling windows
(``ml.observation.context.synthetic_signaling_tables``: random route on the graph, 3-sector sites on
a jittered grid, serving = nearest site after shadowing, Poisson events plus handovers).
Both pipelines run on the same contexts; the reference (plain Python loops, networkx Dijkstra,
``ml.mapmatch.reference``) implements the same algorithm, and the largest position difference
between the two outputs is reported as a correctness check. Writes
``outputs/bench/industrial_hmm.json``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import networkx as nx
import numpy as np

from bench.common import SHARED_CITIES, write_result
from ml.baselines import build_sample_contexts, industrial_hmm
from ml.observation.context import SampleContext, synthetic_signaling_tables
from ml.baselines.signaling import IndustrialHMMConfig, cell_observations
from ml.cities import CityConfig, RoadSource, load_road_network
from ml.mapmatch.reference import match_trajectory_reference


def industrial_hmm_reference(ctx: SampleContext, G: nx.DiGraph, cfg: IndustrialHMMConfig | None = None) -> np.ndarray:
    """The industrial pipeline written with plain Python loops (same steps and parameters)."""
    cfg = cfg or IndustrialHMMConfig()
    rec = ctx.records
    # Observations (ping-pong mitigation, sector coverage centres, handover boundaries) come from
    # the library's own step: it is cheap, and sharing it keeps both sides one algorithm. The
    # reference re-implements the hot path, HMM matching and route interpolation, in plain Python.
    obs_t_arr, obs_xy_arr = cell_observations(
        rec["t"].to_numpy(dtype=np.float64), rec["cell_id"].to_numpy(dtype=np.int64),
        rec["site_id"].to_numpy(dtype=np.int64),
        rec["event"].to_numpy() if "event" in rec.columns else np.full(len(rec), ""), ctx.towers_xy, cfg)
    obs_t = [float(v) for v in obs_t_arr]
    obs_xy = [tuple(map(float, p)) for p in obs_xy_arr]
    sigma = cfg.sigma_m
    if sigma is None:
        spacing = ctx.towers_xy.median_site_spacing_m
        sigma = cfg.sigma_factor * spacing if math.isfinite(spacing) else 300.0
    sigma = min(max(sigma, cfg.sigma_min_m), cfg.sigma_max_m)
    r = match_trajectory_reference(ctx.net, np.array(obs_xy), np.array(obs_t), sigma_m=sigma,
                                   beta_m=cfg.beta_factor * sigma, max_speed_mps=cfg.max_speed_mps,
                                   radius_m=cfg.radius_factor * sigma, max_candidates=cfg.max_candidates, G=G)
    # time interpolation along the route (plain loops)
    anchors = sorted((tt, m) for tt, m in zip(obs_t, r.point_route_m) if math.isfinite(m))
    mono, best = [], -math.inf
    for tt, m in anchors:
        best = max(best, m)
        if mono and mono[-1][0] == tt:
            mono[-1] = (tt, best)
        else:
            mono.append((tt, best))
    route, cum = [tuple(p) for p in r.route_xy], list(r.route_cum_m)
    out = []
    for q in ctx.eval_t:
        if q <= mono[0][0]:
            s = mono[0][1]
        elif q >= mono[-1][0]:
            s = mono[-1][1]
        else:
            k = next(k for k in range(1, len(mono)) if mono[k][0] >= q)
            (ta, ma), (tb, mb) = mono[k - 1], mono[k]
            s = ma + (mb - ma) * (q - ta) / (tb - ta)
        k = 0
        while k < len(cum) - 2 and cum[k + 1] <= s:
            k += 1
        if len(cum) == 1:
            out.append(route[0])
            continue
        seg = cum[k + 1] - cum[k]
        f = (s - cum[k]) / seg if seg > 0 else 0.0
        f = min(max(f, 0.0), 1.0)
        out.append((route[k][0] + f * (route[k + 1][0] - route[k][0]), route[k][1] + f * (route[k + 1][1] - route[k][1])))
    return np.array(out)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=30, help="trajectories")
    ap.add_argument("--ref-n", type=int, default=None, help="trajectories for the reference (default: all)")
    ap.add_argument("--size-km", type=float, default=2.0, help="synthetic grid size")
    ap.add_argument("--city", default=None, help="real extract name in ../shared/cities (e.g. krems)")
    ap.add_argument("--duration-s", type=float, default=900.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    if args.city:
        path = next(p for p in SHARED_CITIES.glob(f"{args.city}.osm*"))
        net = load_road_network(CityConfig(name=args.city, roads=RoadSource(source="osm", path=str(path))))
        city = f"{args.city} (OSM extract)"
    else:
        net = load_road_network(CityConfig(name="bench_grid", seed=5,
                                           roads=RoadSource(source="synthetic", kind="grid", size_km=args.size_km)))
        city = f"synthetic grid {args.size_km} km"
    tabs = synthetic_signaling_tables(net, args.n, seed=args.seed, duration_s=args.duration_s)
    ctxs = build_sample_contexts(tabs["samples"], tabs["signaling"], tabs["towers"], net, tabs["sample_truth"])
    G = nx.DiGraph()
    for u, v, L in zip(net.edge_u.tolist(), net.edge_v.tolist(), net.edge_length_m.tolist()):
        if not G.has_edge(u, v) or G[u][v]["length"] > L:
            G.add_edge(u, v, length=L)
    # warm-up (cached k-d trees, adjacency, edge lookup)
    industrial_hmm(ctxs[0])
    industrial_hmm_reference(ctxs[0], G)

    fast_ms, ref_ms, diffs = [], [], []
    ref_n = args.ref_n if args.ref_n is not None else len(ctxs)
    for i, c in enumerate(ctxs):
        t0 = time.perf_counter()
        p = industrial_hmm(c)
        fast_ms.append((time.perf_counter() - t0) * 1e3)
        if i < ref_n:
            t0 = time.perf_counter()
            q = industrial_hmm_reference(c, G)
            ref_ms.append((time.perf_counter() - t0) * 1e3)
            diffs.append(float(np.nanmax(np.hypot(*(p - q).T))))
        print(f"{i}: records {len(c.records)} fast {fast_ms[-1]:.2f} ms"
              + (f" ref {ref_ms[-1]:.1f} ms diff {diffs[-1]:.3g} m" if i < ref_n else ""), flush=True)
    fast_med = statistics.median(fast_ms)
    ref_med = statistics.median(ref_ms)
    # ratio on the same trajectories
    fast_same = statistics.median(fast_ms[:ref_n])
    result = {
        "city": city,
        "nodes": net.n_nodes,
        "edges": net.n_edges,
        "n_trajectories": len(ctxs),
        "n_reference": len(ref_ms),
        "duration_s": args.duration_s,
        "records_per_trajectory_median": float(np.median([len(c.records) for c in ctxs])),
        "eval_points_per_trajectory": int(len(ctxs[0].eval_t)),
        "ms_per_trajectory_median": round(fast_med, 3),
        "ms_per_trajectory_p90": round(float(np.percentile(fast_ms, 90)), 3),
        "reference_ms_per_trajectory_median": round(ref_med, 3),
        "speedup_ratio": round(ref_med / fast_same, 2),
        "max_position_diff_m": max(diffs) if diffs else None,
        "command": "python -m bench.industrial_hmm " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    print(result)
    write_result("industrial_hmm" if not args.city else f"industrial_hmm_{args.city}", result)
    return result


if __name__ == "__main__":
    main()
