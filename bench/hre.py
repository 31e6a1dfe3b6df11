"""HRE / HREA speed (vectorised vs a pure-Python reference), the MR ordering study and robustness.

    python -m bench.hre [--n 12] [--ref-n 2] [--duration 600] [--size-km 2] [--drop-n 6]

Inputs: the synthetic grid city of the ``grid_net`` test fixture (``--size-km``) and synthetic
MR windows from :mod:`ml.baselines.mr.synthetic` (3-sector sites on a jittered grid, ISD 450 m,
log-distance RSRP with exponent 3.5, sector pattern, 6 dB shadowing correlated over 50 m, MR
every 5 s with serving + 6 neighbours, 10 % of reports and 5 % of neighbours dropped).
Evaluation times every 5 s, so "positions" are both the decoded slots and the output points.

* Speed: CPU seconds (``time.process_time``, one thread: BLAS/OpenMP pinned to 1 before numpy
  is imported) per 1000 positions for HRE and HREA over ``--n`` windows; the reference
  (:func:`hre_reference`, plain Python loops for the path-loss fit, the emissions, the
  transitions and Viterbi; the road-state graph and the MSR initialisation are shared with the
  vectorised code) runs on the first ``--ref-n`` windows; ``ratio`` = reference / vectorised on
  the same windows, and the largest position difference between them is reported.
* Ordering study: RMSE (and mean error, TME from ``ml.metrics``) of every MR method on the
  ``--n`` windows.
* Robustness: :func:`ml.baselines.mr.robustness.robustness_study` on ``--drop-n`` windows,
  drop fractions 0 .. 0.7; the rows go to ``outputs/bench/hre_robustness.csv``.

Writes ``outputs/bench/hre.json``.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from bench.common import ROOT, write_result  # noqa: E402
from ml.baselines.mr import MR_METHODS, HREConfig  # noqa: E402
from ml.baselines.mr._data import interp_xy  # noqa: E402
from ml.baselines.mr.hre import (  # noqa: E402
    HREResult, PathLossModel, _adaptive_speed, _bbox, _graph, _Graph, _hre_speed, _inputs, _SpeedModel,
)
from ml.baselines.mr.robustness import robustness_study, summarise_robustness  # noqa: E402
from ml.baselines.mr.synthetic import SyntheticMRConfig, synthetic_mr_window  # noqa: E402
from ml.cities import CityConfig, RoadSource, load_road_network  # noqa: E402


# ------------------------------------------------------------------------------ pure-Python reference
def _fit_ref(pos, rsrp, tower_xy, az, cfg: HREConfig) -> PathLossModel:
    T, C = len(rsrp), len(tower_xy)
    obs = []  # (cell, L, r)
    for t in range(T):
        for c in range(C):
            r = float(rsrp[t][c])
            if r != r:
                continue
            dx, dy = pos[t][0] - tower_xy[c][0], pos[t][1] - tower_xy[c][1]
            d = max(math.hypot(dx, dy), 10.0)
            if cfg.sector_gain and az is not None and az[c] == az[c]:
                off = (math.degrees(math.atan2(dx, dy)) - az[c] + 180.0) % 360.0 - 180.0
                r -= -min(12.0 * (off / cfg.beamwidth_deg) ** 2, cfg.front_to_back_db)
            obs.append((c, 10.0 * math.log10(d), r))
    n_obs = len(obs)
    lo, hi = cfg.n_bounds
    sl = sum(o[1] for o in obs)
    sll = sum(o[1] ** 2 for o in obs)
    sr = sum(o[2] for o in obs)
    srl = sum(o[1] * o[2] for o in obs)
    # pooled least squares r = a - n L
    den = n_obs * sll - sl * sl
    ok = n_obs >= 3 and abs(den) > 1e-9
    a_g = (sll * sr - sl * srl) / den if ok else float("nan")
    n_g = -(n_obs * srl - sl * sr) / den if ok else float("nan")
    if not (n_g == n_g) or not (lo <= n_g <= hi):
        n_g = min(max(n_g, lo), hi) if n_g == n_g else 3.5
        a_g = sum(o[2] + n_g * o[1] for o in obs) / n_obs if n_obs else -30.0
    p0, nn = [0.0] * C, [0.0] * C
    for c in range(C):
        mine = [o for o in obs if o[0] == c]
        s1 = len(mine) + cfg.ridge_p0
        s_l = sum(o[1] for o in mine)
        s_ll = sum(o[1] ** 2 for o in mine) + cfg.ridge_n * 100.0
        s_r = sum(o[2] for o in mine) + cfg.ridge_p0 * a_g
        s_rl = -sum(o[1] * o[2] for o in mine) + cfg.ridge_n * 100.0 * n_g
        det = s1 * s_ll - s_l * s_l
        p0[c] = (s_ll * s_r + s_l * s_rl) / det
        nn[c] = min(max((s1 * s_rl + s_l * s_r) / det, lo), hi)
    ss = sum((o[2] - (p0[o[0]] - nn[o[0]] * o[1])) ** 2 for o in obs)
    sigma = math.sqrt(ss / max(n_obs - 2, 1)) if n_obs else 8.0
    return PathLossModel(np.array(p0), np.array(nn), max(sigma, cfg.min_sigma_db))


def _emission_ref(states_xy, rsrp, tower_xy, az, model: PathLossModel, cfg: HREConfig):
    T, C, S = len(rsrp), len(tower_xy), len(states_xy)
    out = [[0.0] * S for _ in range(T)]
    for s in range(S):
        mu = []
        for c in range(C):
            dx, dy = states_xy[s][0] - tower_xy[c][0], states_xy[s][1] - tower_xy[c][1]
            m = model.p0[c] - model.n[c] * 10.0 * math.log10(max(math.hypot(dx, dy), 10.0))
            if cfg.sector_gain and az is not None and az[c] == az[c]:
                off = (math.degrees(math.atan2(dx, dy)) - az[c] + 180.0) % 360.0 - 180.0
                m += -min(12.0 * (off / cfg.beamwidth_deg) ** 2, cfg.front_to_back_db)
            mu.append(m)
        for t in range(T):
            acc = 0.0
            for c in range(C):
                r = rsrp[t][c]
                if r == r:
                    acc += (r - mu[c]) ** 2
            out[t][s] = -0.5 * acc / model.sigma_db**2
    return out


def _viterbi_ref(emis, nbr, dist, dt, sm: _SpeedModel, gamma, v_max):
    T, S = len(emis), len(nbr)
    G = len(sm.mean)
    logA = [[[0.0] * len(nbr[s]) for s in range(S)] for _ in range(G)]
    for g in range(G):
        lim = min(sm.vmax[g], v_max) + gamma / dt
        for s in range(S):
            for k in range(len(nbr[s])):
                v = dist[s][k] / dt
                logA[g][s][k] = -0.5 * ((v - sm.mean[g]) / sm.sigma[g]) ** 2 if (v == v and v <= lim + 1e-9) else -math.inf
    mx = max(emis[0])
    delta = [e - mx for e in emis[0]]
    back = []
    for t in range(1, T):
        g = int(sm.group[t - 1])
        new, bp = [0.0] * S, [0] * S
        for s in range(S):
            best, arg = -math.inf, nbr[s][0]
            for k in range(len(nbr[s])):
                v = delta[nbr[s][k]] + logA[g][s][k]
                if v > best:
                    best, arg = v, nbr[s][k]
            new[s], bp[s] = best + emis[t][s], arg
        m = max(new)
        if m == -math.inf:
            m0 = max(emis[t])
            new, bp = [e - m0 for e in emis[t]], list(range(S))
        else:
            new = [v - m for v in new]
        delta = new
        back.append(bp)
    path = [max(range(S), key=lambda s: delta[s])]
    for bp in reversed(back):
        path.append(bp[path[-1]])
    return path[::-1]


def hre_reference(ctx, cfg: HREConfig | None = None, adaptive: bool = False) -> HREResult:
    """HRE/HREA with plain Python loops for fitting, emissions, transitions and Viterbi."""
    cfg = cfg or HREConfig()
    m, g, x0 = _inputs(ctx, cfg)

    def run(xinit, adapt):
        reach = cfg.v_max_mps * g.dt
        region = _bbox(xinit, cfg.region_margin_m)
        coarse = _graph(ctx.net, cfg.gamma_coarse_m, region, reach + cfg.gamma_coarse_m)
        fine_all = _graph(ctx.net, cfg.gamma_fine_m, region, reach + cfg.gamma_fine_m)
        tw = m.tower_xy.tolist()
        az = None if m.azimuth_deg is None else m.azimuth_deg.tolist()
        obs = [bool(o) for o in g.observed]
        rs = g.rsrp.tolist()
        X = xinit.tolist()
        sm = _hre_speed(len(X), cfg)
        hist, it, model = [], 0, None

        def lists(gr: _Graph):
            nb, ds = gr.nbr.tolist(), gr.dist.tolist()
            return gr.states.xy.tolist(), nb, ds

        cxy, cnb, cds = lists(coarse)
        for it in range(1, cfg.max_iter + 1):
            model = _fit_ref([X[k] for k in range(len(X)) if obs[k]], [rs[k] for k in range(len(X)) if obs[k]], tw, az, cfg)
            if adapt:
                sm = _adaptive_speed(np.array(X), g, cfg)
            pc = _viterbi_ref(_emission_ref(cxy, rs, tw, az, model, cfg), cnb, cds, g.dt, sm, cfg.gamma_coarse_m, cfg.v_max_mps)
            xc = [cxy[s] for s in pc]
            keep = []
            for p in fine_all.states.xy.tolist():
                keep.append(min(math.hypot(p[0] - q[0], p[1] - q[1]) for q in xc) <= cfg.corridor_m)
            fine = fine_all.subset(np.array(keep))
            fxy, fnb, fds = lists(fine)
            pf = _viterbi_ref(_emission_ref(fxy, rs, tw, az, model, cfg), fnb, fds, g.dt, sm, cfg.gamma_fine_m, cfg.v_max_mps)
            Xn = [fxy[s] for s in pf]
            change = sum(math.hypot(a[0] - b[0], a[1] - b[1]) for a, b in zip(Xn, X)) / len(X)
            hist.append(change)
            X = Xn
            if change < cfg.tol_m:
                break
        return HREResult(g.t, np.array(X), it, model, hist)

    first = run(x0, False)
    return run(first.xy, True) if adaptive else first


# ------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--ref-n", type=int, default=2)
    ap.add_argument("--duration", type=float, default=600.0)
    ap.add_argument("--size-km", type=float, default=2.0)
    ap.add_argument("--drop-n", type=int, default=6)
    a = ap.parse_args(argv)
    net = load_road_network(CityConfig(name="test_grid", seed=5, roads=RoadSource(source="synthetic", kind="grid", size_km=a.size_km)))
    wcfg = SyntheticMRConfig(duration_s=a.duration, eval_step_s=5.0)
    ctxs = [synthetic_mr_window(net, 1000 + s, wcfg) for s in range(a.n)]
    n_pos = sum(len(c.eval_t) for c in ctxs)
    cfg = HREConfig()

    # speed: vectorised on all windows
    from ml.baselines.mr.hre import hre_track

    hre_track(ctxs[0], cfg)  # warm-up (imports, caches)
    timing = {}
    outs = {}
    for name, adaptive in (("hre", False), ("hrea", True)):
        t = time.process_time()
        w = time.perf_counter()
        outs[name] = [hre_track(c, cfg, adaptive=adaptive) for c in ctxs]
        cpu, wall = time.process_time() - t, time.perf_counter() - w
        timing[name] = {"seconds_per_1000_positions": 1000.0 * cpu / n_pos, "wall_seconds_per_1000_positions": 1000.0 * wall / n_pos,
                        "iterations_mean": float(np.mean([r.iterations for r in outs[name]])), "n_windows": a.n, "n_positions": n_pos}
        print(name, timing[name])

    # reference on the first ref_n windows (HRE), same inputs
    ref_ctx = ctxs[: a.ref_n]
    ref_pos = sum(len(c.eval_t) for c in ref_ctx)
    t = time.process_time()
    ref_out = [hre_reference(c, cfg) for c in ref_ctx]
    ref_cpu = time.process_time() - t
    t = time.process_time()
    vec_out = [hre_track(c, cfg) for c in ref_ctx]
    vec_cpu = time.process_time() - t
    max_diff = float(max(np.max(np.hypot(*(r.xy - v.xy).T)) for r, v in zip(ref_out, vec_out)))
    reference = {"seconds_per_1000_positions": 1000.0 * ref_cpu / ref_pos, "n_windows": a.ref_n, "n_positions": ref_pos,
                 "vectorised_seconds_per_1000_positions_same_windows": 1000.0 * vec_cpu / ref_pos,
                 "max_position_diff_m": max_diff}
    ratio = ref_cpu / max(vec_cpu, 1e-9)
    print("reference", reference, "ratio", ratio)

    # ordering study
    from ml.metrics import evaluate_sample

    order = {}
    for k, fn in MR_METHODS.items():
        rows = []
        for c in ctxs:
            p = fn(c)
            rows.append(evaluate_sample(p, c.truth_xy, c.net, c.crs))
        order[k] = {m: float(np.mean([r[m] for r in rows])) for m in ("rmse_m", "mean_error_m", "median_error_m", "tme_pct", "route_f1")}
        print(k, {m: round(v, 1) for m, v in order[k].items()})
    # paper-faithful variant: omnidirectional per-cell model (no sector pattern)
    omni = HREConfig(sector_gain=False)
    for name, adaptive in (("hre_omni", False), ("hrea_omni", True)):
        rows = [evaluate_sample(interp_xy(*(lambda r: (r.t, r.xy))(hre_track(c, omni, adaptive)), c.eval_t), c.truth_xy, c.net, c.crs)
                for c in ctxs]
        order[name] = {m: float(np.mean([r[m] for r in rows])) for m in ("rmse_m", "mean_error_m", "median_error_m", "tme_pct", "route_f1")}
        print(name, {m: round(v, 1) for m, v in order[name].items()})

    # robustness
    rob = robustness_study(ctxs[: a.drop_n], MR_METHODS, seeds=(0,))
    out_csv = ROOT / "outputs" / "bench" / "hre_robustness.csv"
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    rob.to_csv(out_csv, index=False)
    summ = summarise_robustness(rob)
    print(summ.round(1).to_string())
    robust = {f"{frac:.1f}": {m: {"rmse_m": float(summ.loc[frac, ("rmse_m", m)]), "tme_pct": float(summ.loc[frac, ("tme_pct", m)])}
                              for m in MR_METHODS} for frac in summ.index}
    result = {"hre": timing["hre"], "hrea": timing["hrea"], "reference": reference, "ratio": ratio,
              "ordering": order, "robustness": robust,
              "setup": {"windows": a.n, "duration_s": a.duration, "size_km": a.size_km, "eval_step_s": 5.0,
                        "report_s": wcfg.report_s, "isd_m": wcfg.isd_m, "drop_report": wcfg.drop_report}}
    write_result("hre", result)
    return result


if __name__ == "__main__":
    main()
