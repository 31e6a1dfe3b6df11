"""MR-track baselines (MaR, WCL, HMM on WCL, MSR, HRE, HREA) on a small synthetic world."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ml.baselines.mr import MR_METHODS, HREConfig, hre_track, msr_smooth, speed_sigma_for_density
from ml.baselines.mr.hre import fit_pathloss
from ml.baselines.mr.robustness import robustness_study
from ml.baselines.mr.roadstates import neighbour_table, road_states
from ml.baselines.mr.synthetic import SyntheticMRConfig, drop_reports, synthetic_mr_window
from ml.mapmatch import viterbi

SEEDS = (0, 1, 2, 3)


@pytest.fixture(scope="module")
def windows(grid_net):
    """Four 5-minute windows: route by shortest path, 3-sector towers, log-distance RSRP, drops."""
    cfg = SyntheticMRConfig(duration_s=300.0, min_route_m=1200.0)
    return [synthetic_mr_window(grid_net, s, cfg) for s in SEEDS]


@pytest.fixture(scope="module")
def predictions(windows):
    return {k: [fn(c) for c in windows] for k, fn in MR_METHODS.items()}


def _rmse(pred, ctx):
    return float(np.sqrt(np.mean(np.sum((pred - ctx.truth_xy) ** 2, axis=1))))


def test_methods_registered():
    assert list(MR_METHODS) == ["mar", "wcl", "hmm_wcl", "msr", "hre", "hrea"]


def test_shapes_and_finite(windows, predictions):
    for k, preds in predictions.items():
        for p, c in zip(preds, windows):
            assert p.shape == (len(c.eval_t), 2), k
            assert np.isfinite(p).all(), k


def test_hre_beats_mar_and_wcl(windows, predictions):
    rm = {k: np.mean([_rmse(p, c) for p, c in zip(v, windows)]) for k, v in predictions.items()}
    assert rm["hre"] < 0.75 * rm["mar"], rm
    assert rm["hre"] < 0.85 * rm["wcl"], rm
    assert rm["hrea"] < 0.85 * rm["wcl"], rm
    assert rm["msr"] <= rm["wcl"] + 1e-6, rm  # smoothing cannot hurt much on average


def test_hre_positions_on_roads(windows, predictions, grid_net):
    c = grid_net.edge_candidates(predictions["hre"][0], radius_m=3.0, max_per_point=1)
    assert len(np.unique(c.point)) == len(windows[0].eval_t)


def test_missing_rss_slots(windows):
    """Whole reports dropped (40 %, and a 60 s blackout) -> transitions only, still on track."""
    c = drop_reports(windows[0], 0.4, seed=3)
    mr = c.mr
    c = dataclasses.replace(c, mr=mr[(mr["t"] < 100) | (mr["t"] > 160)].reset_index(drop=True))
    r = hre_track(c)
    assert len(r.t) >= len(np.unique(c.mr["t"]))  # slots include the missing ones
    for k in ("hre", "hrea", "msr", "mar", "wcl", "hmm_wcl"):
        p = MR_METHODS[k](c)
        assert p.shape == (len(c.eval_t), 2) and np.isfinite(p).all(), k
    assert _rmse(MR_METHODS["hre"](c), c) < 250.0


def test_deterministic(windows):
    a = MR_METHODS["hrea"](windows[1])
    b = MR_METHODS["hrea"](windows[1])
    np.testing.assert_array_equal(a, b)
    w = synthetic_mr_window(windows[1].net, 1, SyntheticMRConfig(duration_s=300.0, min_route_m=1200.0))
    np.testing.assert_array_equal(w.mr.to_numpy(), windows[1].mr.to_numpy())


def test_msr_admm_matches_clarabel_and_is_feasible():
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.choice([5.0, 10.0], 80))
    z = np.cumsum(rng.normal(0, 60, (80, 2)), axis=0)
    x = msr_smooth(t, z, v_max=10.0)
    x_ref = msr_smooth(t, z, v_max=10.0, solver="clarabel")
    step = np.hypot(*np.diff(x, axis=0).T)
    assert np.all(step <= 10.0 * np.diff(t) + 0.1)
    assert np.max(np.hypot(*(x - x_ref).T)) < 1.0
    obj, obj_ref = np.sum((x - z) ** 2), np.sum((x_ref - z) ** 2)
    assert obj <= obj_ref * 1.001 + 1.0


def test_lambert_w_sigma():
    for vmax, rho, mu in [(20.0, 2e-3, 0.0), (15.0, 1e-3, 5.0)]:
        s = speed_sigma_for_density(vmax, rho, mu)
        dens = np.exp(-0.5 * ((vmax - mu) / s) ** 2) / (np.sqrt(2 * np.pi) * s)
        assert dens == pytest.approx(rho, rel=1e-6)
        assert s < vmax - mu  # the tail branch (W_-1)


def test_road_states_spacing_and_neighbours(grid_net):
    st = road_states(grid_net, 25.0)
    w = st.graph.data
    assert w.max() <= 25.0 + 1e-6 and w.min() > 0
    idx, dist = neighbour_table(st, 60.0)
    assert np.all(dist[:, 0] == 0) and np.all(idx[:, 0] == np.arange(st.n))  # itself first
    assert np.all(dist[np.isfinite(dist)] <= 60.0 + 1e-9)


def test_viterbi_sparse_simple_chain():
    # 5 states on a line, neighbours +-1 (HRE's layout: the shared ml.mapmatch.viterbi with pred);
    # emissions point at 0,1,2,3,4 with one missing slot, which the transitions bridge
    S = 5
    idx = np.array([[s, max(s - 1, 0), min(s + 1, S - 1)] for s in range(S)])
    logA = np.zeros((1, S, 3))
    emis = -((np.arange(5)[:, None] - np.arange(S)[None, :]) ** 2).astype(float)
    emis[2] = 0.0
    vp = viterbi(emis, logA, pred=idx, step_trans=np.zeros(4, dtype=np.int64))
    assert vp.states.tolist() == [0, 1, 2, 3, 4]
    assert vp.n_breaks == 0 and vp.linked.tolist() == [False, True, True, True, True]


def test_pathloss_fit_recovers_parameters():
    rng = np.random.default_rng(1)
    towers = rng.uniform(0, 2000, (6, 2))
    pos = rng.uniform(0, 2000, (300, 2))
    d = np.maximum(np.hypot(*(pos[:, None] - towers[None]).transpose(2, 0, 1)), 10)
    r = -5.0 - 35.0 * np.log10(d) + rng.normal(0, 1.0, d.shape)
    m = fit_pathloss(pos, r, towers, HREConfig(sector_gain=False))
    assert np.allclose(m.n, 3.5, atol=0.15) and np.allclose(m.p0, -5.0, atol=3.0)


def test_robustness_study_frame(windows):
    df = robustness_study(windows[:1], {k: MR_METHODS[k] for k in ("mar", "msr")}, drop_fracs=(0.0, 0.5), seeds=(0,))
    assert len(df) == 4 and set(df["method"]) == {"mar", "msr"}
    assert df["rmse_m"].notna().all() and (df["error"] == "").all()


def test_smooth_in_time_averages_noise_and_keeps_constants():
    from ml.baselines.mr.simple import smooth_in_time

    t = np.arange(0.0, 300.0, 5.0)
    const = np.tile([[3.0, -2.0]], (len(t), 1))
    np.testing.assert_allclose(smooth_in_time(t, const, 7.5), const)
    np.testing.assert_array_equal(smooth_in_time(t, const, 0.0), const)
    rng = np.random.default_rng(0)
    noisy = rng.normal(0.0, 100.0, (len(t), 2))
    assert np.sqrt((smooth_in_time(t, noisy, 7.5) ** 2).mean()) < 0.7 * np.sqrt((noisy**2).mean())


def test_hrea_group_guards_keep_sigma_above_resolution():
    """A group driving at v_max must not get a zero-width speed Gaussian (Lambert W with delta -> 0)."""
    from ml.baselines.mr._data import SlotGrid
    from ml.baselines.mr.hre import HREConfig, _adaptive_speed

    cfg = HREConfig()
    T = 40
    rng = np.random.default_rng(0)
    rsrp = -80.0 + rng.normal(0.0, 3.0, (T, 4)).cumsum(axis=0)
    t = np.arange(T) * 5.0
    X = np.column_stack([t * cfg.v_max_mps, np.zeros(T)])  # exactly v_max throughout
    g = SlotGrid(t=t, dt=5.0, rsrp=rsrp, observed=np.ones(T, bool), slot_of_report=np.arange(T))
    sm = _adaptive_speed(X, g, cfg)
    used = np.unique(sm.group)
    floor = cfg.gamma_fine_m / g.dt
    assert np.all(sm.sigma[used] >= floor - 1e-9), sm
    assert np.all(sm.mean[used] <= cfg.v_max_mps - floor + 1e-9), sm
    assert np.all(sm.vmax[used] > sm.mean[used]), sm
