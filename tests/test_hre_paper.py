"""The HRE paper's regime (issue 17): the ``hre_paper`` simulation scenario, per-BS best-beam MR,
MSR with the paper's unsquared loss, HRE's speed mean. Fast unit tests (a few seconds)."""

from __future__ import annotations

import numpy as np
import pytest

from ml.baselines.mr import HREConfig, msr_smooth, speed_sigma_for_density
from ml.baselines.mr.hre import _adaptive_speed, _hre_speed
from ml.simulate import SCENARIOS, SimulationConfig, simulate_measurement_reports, simulate_signaling, simulate_taxi_gps, simulate_towers
from ml.simulate.mr import per_site_best_beam


def test_scenario_fields_and_defaults():
    cfg = SimulationConfig.for_scenario("hre_paper")
    assert cfg.mr_interval_s == pytest.approx(0.2) and cfg.mr_per_site and cfg.mr_neighbours == 6
    assert cfg.isd_dense_m == 250.0 and cfg.mr_per_site and cfg.n_candidate_sites > cfg.mr_neighbours
    # the scenario only overrides fields; the defaults (demo profile) are untouched
    assert SimulationConfig().mr_per_site is False and SimulationConfig().mr_interval_s == 5.0
    assert SimulationConfig.for_scenario("hre_paper", mr_interval_s=1.0).mr_interval_s == 1.0
    assert set(SCENARIOS["hre_paper"]) <= set(SimulationConfig.model_fields)
    with pytest.raises(ValueError, match="unknown"):
        SimulationConfig.for_scenario("nope")


def test_per_site_best_beam_collapses_sectors():
    # 2 reports, 2 sites x 3 sectors (site-major columns), cells 0..5; site 1 has a missing sector
    cells = np.array([[0, 1, 2, 3, 4, -1], [0, 1, 2, 3, 4, -1]])
    rsrp = np.array([[-90.0, -80.0, -95.0, -70.0, -99.0, -np.inf],
                     [-90.0, -80.0, -95.0, -100.0, -60.0, -np.inf]])
    serving = np.array([0, 4])
    c, r = per_site_best_beam(cells, rsrp, serving, 3)
    assert c.shape == (2, 2)
    # site 0 serves in report 0: it keeps the serving cell id 0 with its strongest beam (-80)
    np.testing.assert_array_equal(c, [[0, 3], [1, 4]])
    np.testing.assert_allclose(r, [[-80.0, -70.0], [-80.0, -60.0]])


def test_scenario_simulates_per_site_reports(grid_net):
    cfg = SimulationConfig.for_scenario("hre_paper", n_taxis=1, n_decoys=0, shift_hours=(0.05, 0.05), mr_interval_s=1.0)
    towers, antennas = simulate_towers(grid_net, cfg, 3)
    gps = simulate_taxi_gps(grid_net, cfg, 3)
    sig, truth = simulate_signaling(grid_net, antennas, gps, cfg, 3)
    mr = simulate_measurement_reports(grid_net, antennas, gps, sig, truth, cfg, 3)
    assert len(mr) > 0
    site = dict(zip(towers["cell_id"], towers["site_id"]))
    mr = mr.assign(site=mr["cell_id"].map(site))
    per = mr.groupby("ts")
    assert per.size().max() <= 1 + cfg.mr_neighbours
    assert (per["site"].nunique() == per.size()).all()  # one RSS per base station
    gaps = np.diff(np.unique(mr["ts"].astype("int64").to_numpy())) / 1e9
    assert np.median(gaps) == pytest.approx(1.0)


def test_msr_norm_loss_matches_clarabel_and_resists_jumps():
    rng = np.random.default_rng(0)
    T = 120
    t = np.arange(T, dtype=float)
    truth = np.column_stack([10.0 * t, np.zeros(T)])
    z = truth + rng.normal(0, 40, (T, 2))
    z[::15] += 600.0  # the strongest-BS input jumps to far towers now and then
    a = msr_smooth(t, z, 20.0, loss="norm")
    b = msr_smooth(t, z, 20.0, solver="clarabel", loss="norm")
    obj = lambda x: np.hypot(*(x - z).T).sum()  # noqa: E731
    assert obj(a) <= obj(b) * 1.001
    assert np.hypot(*np.diff(a, axis=0).T).max() <= 20.0 + 0.1
    rm = lambda x: np.sqrt(np.mean(np.sum((x - truth) ** 2, axis=1)))  # noqa: E731
    assert rm(a) < 0.8 * rm(msr_smooth(t, z, 20.0, loss="sq"))
    with pytest.raises(ValueError, match="loss"):
        msr_smooth(t, z, 20.0, loss="l1")


def test_hre_speed_mean():
    cfg = HREConfig(v_mean_mps=10.5, v_max_mps=22.2)
    sm = _hre_speed(5, cfg)
    assert sm.mean[0] == 10.5
    s = sm.sigma[0]
    dens = np.exp(-0.5 * ((22.2 - 10.5) / s) ** 2) / (np.sqrt(2 * np.pi) * s)
    assert dens == pytest.approx(cfg.rho, rel=1e-6) or s == pytest.approx(22.2 - 10.5)
    assert speed_sigma_for_density(22.2, 2e-3) == pytest.approx(_hre_speed(5, HREConfig(v_max_mps=22.2)).sigma[0])
    assert _hre_speed(5, HREConfig()).mean[0] == 0.0  # default unchanged


def test_hrea_group0_keeps_hre_mean():
    from ml.baselines.mr._data import SlotGrid

    T = 30
    g = SlotGrid(np.arange(T, dtype=float), 1.0, np.full((T, 2), -80.0), np.ones(T, bool), np.arange(T))
    X = np.column_stack([np.arange(T) * 8.0, np.zeros(T)])
    sm = _adaptive_speed(X, g, HREConfig(v_mean_mps=7.0))
    assert sm.mean[0] == 7.0


def test_hre_prune_bound_above_true_speed(grid_net):
    """Bug found in the paper's regime: with the transitions pruned at v_max below the true speed (a
    motorway above the 22.2 m/s limit) no path exists and Viterbi puts the window where the bound allows
    (1.9 km RMSE on a Bayreuth motorway window). ``v_prune_mps`` separates the hard bound from v_max."""
    from ml.baselines.mr import hre
    from ml.baselines.mr.synthetic import SyntheticMRConfig, synthetic_mr_window

    # 24-25 m/s, above v_max = 20 m/s plus the state-spacing slack (20 m / 5 s)
    wcfg = SyntheticMRConfig(duration_s=110.0, eval_step_s=5.0, min_route_m=2800.0, cruise_mps=(24.0, 25.0), stop_prob=0.0,
                             drop_report=0.0)
    ctx = synthetic_mr_window(grid_net, 12, wcfg)
    rm = lambda p: float(np.sqrt(np.mean(np.sum((p - ctx.truth_xy) ** 2, axis=1))))  # noqa: E731
    capped = rm(hre(ctx, HREConfig()))
    bounded = rm(hre(ctx, HREConfig(v_prune_mps=30.0)))
    assert bounded < 0.75 * capped, (capped, bounded)
    # v_prune_mps = v_max_mps is the default behaviour
    assert rm(hre(ctx, HREConfig(v_prune_mps=HREConfig().v_max_mps))) == pytest.approx(capped)
