"""The map matcher's per-city precomputation: OD table, candidate search and memo (ml.mapmatch)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse.csgraph import dijkstra

from ml.baselines import build_sample_contexts, industrial_hmm
from ml.observation.context import synthetic_signaling_tables
from ml.baselines.hmm_setup import observation_positions, prepare_industrial_hmm
from ml.mapmatch import match_trajectory
from ml.mapmatch.candidates import CandidateMemo, candidate_memo, edge_candidates
from ml.mapmatch.od import ODTable, od_table_for, set_od_table


def _fields(c):
    return (c.point, c.edge, c.offset_m, c.xy, c.distance_m)


@pytest.fixture(scope="module")
def signaling(grid_net):
    tabs = synthetic_signaling_tables(grid_net, 10, seed=4, duration_s=600.0)
    ctxs = build_sample_contexts(tabs["samples"], tabs["signaling"], tabs["towers"], grid_net,
                                 sample_truth=tabs["sample_truth"])
    return tabs, ctxs


def _cell_windows(net, n=12, seed=0):
    """Noisy, sparse cell-like observations along random routes: (xy, t) pairs."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        src = int(rng.integers(net.n_nodes))
        dist, pred = net.shortest_paths_from(np.array([src]))
        ok = np.nonzero(np.isfinite(dist[0]) & (dist[0] > 800))[0]
        tgt = int(rng.choice(ok))
        line = net.path_polyline(net.node_path(pred[0], tgt))
        k = rng.integers(0, len(line), size=8)
        xy = line[np.sort(k)] + rng.normal(0, 150.0, (8, 2))
        out.append((xy, np.cumsum(rng.uniform(5, 90, 8))))
    return out


def test_dense_table_matches_dijkstra(grid_net):
    t = ODTable.build(grid_net)
    assert t.dense and t.delta_m == np.inf and t.build_s >= 0
    d = dijkstra(grid_net.adjacency_length, directed=True, indices=[0, 5, 17])
    np.testing.assert_array_equal(t.distances(np.array([0, 5, 17])[:, None], np.arange(grid_net.n_nodes)[None, :]), d)
    path = t.path(0, 17)
    assert path[0] == 0 and path[-1] == 17
    length = sum(grid_net.adjacency_length[a, b] for a, b in zip(path[:-1], path[1:]))
    assert length == pytest.approx(float(t.distances(np.array(0), np.array(17))), rel=1e-12)


def test_bounded_table_is_exact_up_to_delta(grid_net):
    t = ODTable.build(grid_net, delta_m=600.0)
    assert not t.dense and t.covers(600.0) and not t.covers(601.0)
    src = np.arange(0, grid_net.n_nodes, 7)
    d = dijkstra(grid_net.adjacency_length, directed=True, indices=src)
    got = t.distances(src[:, None], np.arange(grid_net.n_nodes)[None, :])
    np.testing.assert_array_equal(got, np.where(d <= 600.0, d, np.inf))
    far = np.argwhere(np.isfinite(d) & (d > 600.0))[0]
    assert t.path(int(src[far[0]]), int(far[1])) is None
    near = np.argwhere((d > 100.0) & (d <= 600.0))[0]
    p = t.path(int(src[near[0]]), int(near[1]))
    assert p[0] == src[near[0]] and p[-1] == near[1]


def test_table_validation(grid_net, radial_net):
    with pytest.raises(ValueError, match="delta_m"):
        ODTable.build(grid_net, delta_m=0.0)
    with pytest.raises(ValueError, match="nodes"):
        set_od_table(grid_net, ODTable.build(radial_net))
    with pytest.raises(ValueError, match="od table"):
        match_trajectory(grid_net, np.zeros((2, 2)), np.zeros(2), sigma_m=5.0, od=ODTable.build(radial_net))


@pytest.mark.parametrize("kind", ["grid_net", "radial_net", "organic_net"])
def test_candidates_identical_to_network_search(kind, request):
    net = request.getfixturevalue(kind)
    rng = np.random.default_rng(1)
    x0, y0, x1, y1 = net.bounds
    for trial in range(40):
        xy = np.column_stack([rng.uniform(x0 - 200, x1 + 200, 9), rng.uniform(y0 - 200, y1 + 200, 9)])
        xy[0] = net.node_xy[rng.integers(net.n_nodes)]  # exactly on a node: ties between edges
        r, k = float(rng.uniform(20.0, 900.0)), int(rng.integers(1, 16))
        a, b = net.edge_candidates(xy, r, k), edge_candidates(net, xy, r, k)
        for fa, fb in zip(_fields(a), _fields(b)):
            np.testing.assert_array_equal(fa, fb)


def test_memo_is_exact_and_counts(grid_net):
    memo = CandidateMemo(max_points=50)
    rng = np.random.default_rng(2)
    x0, y0, x1, y1 = grid_net.bounds
    xy = np.column_stack([rng.uniform(x0, x1, 30), rng.uniform(y0, y1, 30)])
    first = memo.query(grid_net, xy, 400.0, 12)
    assert memo.misses == 30 and memo.hits == 0
    again = memo.query(grid_net, xy[::-1], 400.0, 12)
    assert memo.hits == 30
    ref = edge_candidates(grid_net, xy[::-1], 400.0, 12)
    for fa, fb in zip(_fields(again), _fields(ref)):
        np.testing.assert_array_equal(fa, fb)
    for fa, fb in zip(_fields(first), _fields(edge_candidates(grid_net, xy, 400.0, 12))):
        np.testing.assert_array_equal(fa, fb)
    memo.query(grid_net, xy + 1.0, 400.0, 12)  # over the bound: starts afresh
    assert memo._n <= 50
    memo.clear()
    assert memo.hits == memo.misses == 0


def test_table_and_search_give_the_same_match(grid_net):
    """Dense table, bounded table (with per-step Dijkstra where a step exceeds it) and no table agree."""
    bounded = ODTable.build(grid_net, delta_m=700.0)
    for xy, t in _cell_windows(grid_net):
        kw = dict(sigma_m=150.0, beta_m=150.0, max_speed_mps=30.0, radius_m=375.0, max_candidates=12)
        a = match_trajectory(grid_net, xy, t, **kw)
        b = match_trajectory(grid_net, xy, t, od=False, **kw)
        c = match_trajectory(grid_net, xy, t, od=bounded, **kw)
        for r in (b, c):
            np.testing.assert_array_equal(a.point_edge, r.point_edge)
            np.testing.assert_array_equal(a.route_xy, r.route_xy)
            np.testing.assert_array_equal(a.point_route_m, r.point_route_m)
            assert a.n_breaks == r.n_breaks
        # without a speed bound (the decoder's use): route_factor bounds the search
        a = match_trajectory(grid_net, xy, t, sigma_m=150.0, beta_m=100.0)
        b = match_trajectory(grid_net, xy, t, sigma_m=150.0, beta_m=100.0, od=False)
        np.testing.assert_array_equal(a.route_xy, b.route_xy)
        np.testing.assert_array_equal(a.point_edge, b.point_edge)


def test_od_cache_follows_the_network(grid_net):
    t = od_table_for(grid_net)
    assert od_table_for(grid_net) is t
    set_od_table(grid_net, None)
    assert od_table_for(grid_net, build=False) is None
    set_od_table(grid_net, t)
    assert od_table_for(grid_net, build=False) is t


def test_prepare_industrial_hmm_changes_nothing_but_speed(grid_net, signaling):
    tabs, ctxs = signaling
    towers = ctxs[0].towers_xy
    candidate_memo(grid_net).clear()
    cold = [industrial_hmm(c) for c in ctxs]
    candidate_memo(grid_net).clear()
    info = prepare_industrial_hmm(grid_net, towers)
    assert info["positions"] >= len(towers) and info["setup_s"] > 0
    warm = [industrial_hmm(c) for c in ctxs]
    memo = candidate_memo(grid_net)
    assert memo.hits / (memo.hits + memo.misses) > 0.9  # the setup covered the windows' observations
    for a, b in zip(cold, warm):
        np.testing.assert_array_equal(a, b)


def test_observation_positions_include_centres_and_boundaries(grid_net, signaling):
    from ml.baselines.signaling import IndustrialHMMConfig
    from ml.observation import record_positions

    towers = signaling[1][0].towers_xy
    pos = observation_positions(towers)
    cells = towers.cell_ids
    centres = record_positions(cells, np.full(len(cells), ""), towers, IndustrialHMMConfig())
    keys = {p.tobytes() for p in pos}
    assert all(c.tobytes() in keys for c in centres)
    ho = record_positions(cells[:2], np.array(["", "handover"], dtype=object), towers,
                          IndustrialHMMConfig())
    assert ho[1].tobytes() in keys  # two sectors of one site
    with pytest.raises(ValueError, match="pair_factor"):
        observation_positions(towers, pair_factor=-1.0)
