"""Tests of the HMM map-matching engine (ml.mapmatch)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.mapmatch import (
    edge_subline,
    interpolate_along_route,
    match_trajectory,
    point_at_distance,
    polyline_cum_m,
    viterbi,
)
from ml.mapmatch.reference import match_trajectory_reference


def _long_route(net, seed: int = 0):
    """A long shortest path on the network, its polyline and cumulative length."""
    rng = np.random.default_rng(seed)
    src = int(rng.integers(net.n_nodes))
    dist, pred = net.shortest_paths_from(np.array([src]))
    d = np.where(np.isfinite(dist[0]), dist[0], 0.0)
    tgt = int(np.argmax(d))
    line = net.path_polyline(net.node_path(pred[0], tgt))
    return line, polyline_cum_m(line)


@pytest.fixture(scope="module")
def noisy_gps(grid_net):
    line, cum = _long_route(grid_net, 0)
    s = np.arange(0.0, cum[-1], 40.0)
    t = s / 10.0  # 10 m/s
    truth = point_at_distance(line, cum, s)
    obs = truth + np.random.default_rng(1).normal(0.0, 6.0, truth.shape)
    return line, cum, t, truth, obs


def test_recovers_route_from_noisy_gps(grid_net, noisy_gps):
    line, cum, t, truth, obs = noisy_gps
    r = match_trajectory(grid_net, obs, t, sigma_m=6.0, beta_m=30.0, max_speed_mps=30.0)
    assert r.n_breaks == 0 and r.n_unmatched == 0
    err = np.hypot(*(r.point_xy - truth).T)
    assert np.median(err) < 8.0
    assert abs(r.route_length_m - cum[-1]) < 0.03 * cum[-1]
    assert np.all(np.diff(r.point_route_m) >= -1e-9)
    assert r.route_cum_m[0] == 0.0 and len(r.route_cum_m) == len(r.route_xy)
    # point_route_m indexes the route: the route at that distance is the snapped point
    on_route = point_at_distance(r.route_xy, r.route_cum_m, r.point_route_m)
    assert np.hypot(*(on_route - r.point_xy).T).max() < 1.0
    # positions at the observation times come back close to the truth
    q = r.positions_at(t, t)
    assert np.median(np.hypot(*(q - truth).T)) < 8.0


def test_agrees_with_pure_python_reference(grid_net, noisy_gps):
    _, _, t, _, obs = noisy_gps
    kw = dict(sigma_m=6.0, beta_m=30.0, max_speed_mps=30.0)
    fast = match_trajectory(grid_net, obs[:30], t[:30], **kw)
    ref = match_trajectory_reference(grid_net, obs[:30], t[:30], **kw)
    assert np.array_equal(fast.point_edge, ref.point_edge)
    np.testing.assert_allclose(fast.point_route_m, ref.point_route_m, atol=1e-6)
    assert fast.route_length_m == pytest.approx(ref.route_length_m, abs=1e-6)


def test_cell_sized_sigma_agrees_with_reference(grid_net, noisy_gps):
    _, _, t, truth, _ = noisy_gps
    obs = truth[::5] + np.random.default_rng(2).normal(0.0, 200.0, truth[::5].shape)
    kw = dict(sigma_m=300.0, beta_m=200.0, max_speed_mps=25.0, radius_m=600.0)
    fast = match_trajectory(grid_net, obs, t[::5], **kw)
    ref = match_trajectory_reference(grid_net, obs, t[::5], **kw)
    assert np.array_equal(fast.point_edge, ref.point_edge)
    assert fast.route_length_m == pytest.approx(ref.route_length_m, rel=1e-9)


def test_unmatched_points_are_nan(grid_net, noisy_gps):
    _, _, t, _, obs = noisy_gps
    obs = obs[:10].copy()
    obs[3] = obs[3] + 5000.0  # far off the map
    obs[6] = np.nan
    r = match_trajectory(grid_net, obs, t[:10], sigma_m=6.0)
    assert r.n_unmatched == 2
    assert np.isnan(r.point_xy[[3, 6]]).all() and np.isnan(r.point_route_m[[3, 6]]).all()
    assert (r.point_edge[[3, 6]] == -1).all()
    assert np.isfinite(r.point_xy[[0, 1, 2, 4, 5, 7, 8, 9]]).all()


def test_speed_pruning_causes_break_and_route_stays_continuous(grid_net, noisy_gps):
    line, cum, t, truth, obs = noisy_gps
    # jump 1.5 km in 1 s: impossible at 30 m/s, so the chain breaks and restarts
    i = np.searchsorted(cum, 1500.0)
    pts = np.vstack([truth[:3], point_at_distance(line, cum, np.array([cum[i] + 0.0]))])
    tt = np.array([0.0, 4.0, 8.0, 9.0])
    r = match_trajectory(grid_net, pts, tt, sigma_m=5.0, max_speed_mps=30.0)
    assert r.n_breaks == 1
    assert np.isfinite(r.point_xy).all()
    # continuous: no route step longer than the longest road segment
    assert np.hypot(*np.diff(r.route_xy, axis=0).T).max() <= grid_net.segments["len"].max() + 1e-6
    assert r.point_route_m[-1] >= r.point_route_m[-2]


def test_same_edge_forward_move(grid_net):
    e = int(np.argmax(grid_net.edge_length_m))
    geom = grid_net.edge_geometry(e)
    L = grid_net.edge_length_m[e]
    a = edge_subline(geom, L, 0.2 * L, 0.2 * L)[0]
    b = edge_subline(geom, L, 0.7 * L, 0.7 * L)[0]
    r = match_trajectory(grid_net, np.vstack([a, b]), np.array([0.0, 10.0]), sigma_m=2.0, max_speed_mps=40.0)
    assert r.point_edge[0] == r.point_edge[1] or r.route_length_m == pytest.approx(0.5 * L, rel=0.02)
    assert r.route_length_m == pytest.approx(0.5 * L, rel=0.02)


def test_empty_and_bad_input(grid_net):
    r = match_trajectory(grid_net, np.zeros((0, 2)), np.zeros(0), sigma_m=5.0)
    assert r.n_unmatched == 0 and len(r.route_xy) == 0
    with pytest.raises(ValueError, match="non-decreasing"):
        match_trajectory(grid_net, np.zeros((2, 2)), np.array([1.0, 0.0]), sigma_m=5.0)
    with pytest.raises(ValueError, match="rows"):
        match_trajectory(grid_net, np.zeros((2, 2)), np.zeros(3), sigma_m=5.0)


# ---------------------------------------------------------------- interpolation along a route
def test_interpolate_along_route_hand_case():
    route = np.array([[0.0, 0.0], [100.0, 0.0], [100.0, 100.0]])
    cum = polyline_cum_m(route)
    np.testing.assert_allclose(cum, [0.0, 100.0, 200.0])
    # anchors: t=10 at 0 m, t=20 at 150 m; NaN anchor ignored; backwards anchor clamped
    q = interpolate_along_route(route, cum, np.array([0.0, np.nan, 150.0, 120.0]),
                                np.array([10.0, 12.0, 20.0, 25.0]), np.array([0.0, 15.0, 20.0, 30.0]))
    np.testing.assert_allclose(q, [[0.0, 0.0], [75.0, 0.0], [100.0, 50.0], [100.0, 50.0]])


def test_interpolate_no_anchor_is_nan():
    route = np.array([[0.0, 0.0], [1.0, 0.0]])
    q = interpolate_along_route(route, polyline_cum_m(route), np.array([np.nan]), np.array([0.0]), np.array([0.0, 1.0]))
    assert q.shape == (2, 2) and np.isnan(q).all()


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(0, 1000), min_size=1, max_size=8),
    st.lists(st.floats(-50, 150), min_size=1, max_size=20),
)
def test_interpolated_progress_is_monotone(anchor_m, query_t):
    route = np.array([[0.0, 0.0], [300.0, 0.0], [300.0, 400.0], [0.0, 400.0]])
    cum = polyline_cum_m(route)
    a_t = np.linspace(0.0, 100.0, len(anchor_m))
    qt = np.sort(np.asarray(query_t))
    q = interpolate_along_route(route, cum, np.asarray(anchor_m), a_t, qt)
    # progress along this route = position's arc length; recover it and check monotone
    s = np.where(q[:, 1] == 0.0, q[:, 0], np.where(q[:, 0] == 300.0, 300.0 + q[:, 1], 700.0 + 300.0 - q[:, 0]))
    assert np.all(np.diff(s) >= -1e-6)
    assert np.all(s <= min(max(anchor_m), cum[-1]) + 1e-6)


def _brute_force_path(log_emit, log_trans):
    """Best path by enumerating every state sequence (dense transitions, no breaks)."""
    import itertools

    T, S = log_emit.shape
    best, arg = -np.inf, None
    for seq in itertools.product(range(S), repeat=T):
        v = log_emit[0, seq[0]] + sum(log_trans[k - 1, seq[k], seq[k - 1]] + log_emit[k, seq[k]] for k in range(1, T))
        if v > best:
            best, arg = v, seq
    return list(arg)


def test_viterbi_matches_brute_force_dense_and_sparse():
    rng = np.random.default_rng(0)
    for _ in range(20):
        T, S = 5, 3
        le = rng.normal(size=(T, S))
        lt = rng.normal(size=(T - 1, S, S))
        lt[rng.random(lt.shape) < 0.2] = -np.inf
        lt[:, np.arange(S), np.arange(S)] = 0.0  # staying is always possible: no break
        want = _brute_force_path(le, lt)
        vp = viterbi(le, lt)
        assert vp.states.tolist() == want and vp.n_breaks == 0 and vp.linked[1:].all()
        # the same model through the sparse layout (predecessor table, one matrix per step)
        pred = np.tile(np.arange(S), (S, 1))
        assert viterbi(le, lt, pred=pred).states.tolist() == want


def test_viterbi_break_restarts_from_emissions():
    le = np.log(np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8], [0.3, 0.7]]))
    lt = np.zeros((3, 2, 2))
    lt[1] = -np.inf  # nothing reaches step 2: a break
    for pred in (None, np.array([[0, 1], [0, 1]])):
        vp = viterbi(le, lt, pred=pred)
        assert vp.n_breaks == 1
        assert vp.linked.tolist() == [False, True, False, True]
        assert vp.states.tolist() == [0, 0, 1, 1]  # first segment: its best final state


def test_viterbi_rejects_a_step_without_states():
    le = np.zeros((3, 2))
    le[1] = -np.inf
    with pytest.raises(ValueError, match="step 1"):
        viterbi(le, np.zeros((2, 2, 2)))
