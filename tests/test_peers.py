"""Peer map-matching engines (ml.baselines.peers) and their place in the evaluation report.

The engines come from the optional ``peers`` extra: their tests skip when a package is absent.
"""

from __future__ import annotations

import numpy as np
import pytest

from ml.baselines import build_sample_contexts, industrial_hmm, mar
from ml.observation.context import synthetic_signaling_tables
from ml.baselines.peers import PEER_KEYS, peer_methods, peer_status
from ml.baselines.peers import common as C
from ml.baselines.peers import fmm as F
from ml.baselines.peers import leuven as L
from ml.baselines.peers import valhalla_meili as V


@pytest.fixture(scope="module")
def contexts(grid_net):
    tabs = synthetic_signaling_tables(grid_net, 6, seed=8, duration_s=300.0)
    return build_sample_contexts(tabs["samples"], tabs["signaling"], tabs["towers"], grid_net,
                                 sample_truth=tabs["sample_truth"])


def _median_error(fn, ctxs):
    e = np.concatenate([np.hypot(*(fn(c) - c.truth_xy).T) for c in ctxs])
    return float(np.nanmedian(e))


# ------------------------------------------------------------------ always (no extra needed)
def test_route_from_pieces_joins_and_places_anchors():
    a = np.array([[0.0, 0.0], [100.0, 0.0]])
    b = np.array([[100.0, 50.0], [100.0, 150.0]])
    r = C.route_from_pieces([(a, {0: 0.0, 1: 0.5}), (b, {3: 1.0})], n_obs=4)
    assert r.n_pieces == 2 and len(r.route_xy) == 4
    np.testing.assert_allclose(r.point_route_m[[0, 1, 3]], [0.0, 50.0, 250.0])  # straight join of 50 m
    assert np.isnan(r.point_route_m[2])
    empty = C.route_from_pieces([], n_obs=3)
    assert empty.n_matched == 0 and len(empty.route_xy) == 0


def test_positions_raise_when_nothing_matched(contexts):
    ctx = contexts[0]
    with pytest.raises(C.PeerMatchError, match="matched none"):
        C.positions_from_route(ctx, C.route_from_pieces([], 3), np.arange(3.0), "x")


def test_observations_are_the_industrial_pipelines(contexts):
    from ml.baselines.signaling import IndustrialHMMConfig, cell_observations

    ctx = contexts[1]
    t, xy, sigma = C.window_observations(ctx)
    rec = ctx.records
    t2, xy2 = cell_observations(rec["t"].to_numpy(), rec["cell_id"].to_numpy(), rec["site_id"].to_numpy(),
                                rec["event"].to_numpy(), ctx.towers_xy, IndustrialHMMConfig())
    np.testing.assert_array_equal(t, t2)
    np.testing.assert_array_equal(xy, xy2)
    assert 100.0 <= sigma <= 800.0


def test_missing_engines_are_skipped_with_a_reason(monkeypatch):
    import ml.baselines.peers as P

    monkeypatch.setitem(P._AVAILABLE, "fmm", lambda: "fmm skipped: the fastmm package is not installed")
    methods, skipped = peer_methods()
    assert "fmm" not in methods and skipped["fmm"].startswith("fmm skipped")
    assert set(peer_status()) == set(PEER_KEYS)


def test_valhalla_skip_message_on_an_interpreter_without_it(monkeypatch):
    monkeypatch.setattr(V, "_in_process", lambda: False)
    monkeypatch.delenv(V.ENV_PYTHON, raising=False)
    why = V.available()
    assert why.startswith("valhalla_meili skipped") and "3.12" in why
    monkeypatch.setenv(V.ENV_PYTHON, "/no/such/python")
    assert "not a file" in V.available()


def test_report_lists_skipped_peers(monkeypatch, tmp_path):
    import ml.baselines.peers as P
    from ml.evaluation import peer_report_notes, signaling_methods
    from ml.report import evaluation_json, write_markdown

    for k in PEER_KEYS:
        monkeypatch.setitem(P._AVAILABLE, k, lambda k=k: f"{k} skipped: not installed here")
    methods, skipped = signaling_methods()
    assert list(methods) == ["mar", "industrial_hmm"] and set(skipped) == set(PEER_KEYS)
    notes = peer_report_notes(["mar", "industrial_hmm"])
    assert list(notes) == list(PEER_KEYS) and all(len(n.splitlines()) == 1 for n in notes.values())
    row = {"median_error_m": 1.0, "n": 1}
    ev = evaluation_json("c", "test", 1, {"signaling": {"mar": row}}, skipped=notes)
    assert set(ev["skipped"]) == set(PEER_KEYS)
    md = write_markdown(ev, tmp_path, {}, list(notes.values())).read_text()
    for k in PEER_KEYS:
        assert f"Peer engine {k} skipped" in md
    assert peer_report_notes(["mar", "industrial_hmm", *PEER_KEYS]) == {}


def test_network_pbf_and_polyline(grid_net, tmp_path):
    import osmium  # a core dependency (roads import), never skipped
    p = tmp_path / "roads.osm.pbf"
    V.write_network_pbf(grid_net, p)
    ways = sum(1 for _ in osmium.FileProcessor(str(p), osmium.osm.WAY))
    assert ways == grid_net.n_edges
    # Google's polyline example, read at precision 6 (Valhalla's): coordinates a tenth of the usual
    got = V.decode_polyline6("_p~iF~ps|U_ulLnnqC_mqNvxq`@")
    np.testing.assert_allclose(got, [[-12.02, 3.85], [-12.095, 4.07], [-12.6453, 4.3252]], atol=1e-9)


def test_params_validation():
    with pytest.raises(ValueError):
        F.FMMParams(gps_error_factor=0.0)
    with pytest.raises(ValueError):
        L.LeuvenParams(max_lattice_width=0)
    with pytest.raises(ValueError):
        V.MeiliParams(beta_factor=-1.0)


# ------------------------------------------------------------------ engines (extra installed)
def test_fmm_matches_like_the_industrial_hmm(grid_net, contexts, tmp_path):
    pytest.importorskip("fastmm", reason="fastmm is in the optional 'peers' extra")
    eng = F.FMMEngine(grid_net, cache_dir=tmp_path)
    F.ENGINES.clear()
    F.ENGINES.get(grid_net, lambda _n: eng)
    out = F.fmm(contexts[0])
    assert out.shape == (contexts[0].n_eval, 2) and np.isfinite(out).all()
    e_fmm, e_hmm, e_mar = (_median_error(f, contexts) for f in (F.fmm, industrial_hmm, mar))
    assert e_fmm < e_mar and abs(e_fmm - e_hmm) < 0.5 * e_hmm
    # the UBODT went to the cache directory, and a second engine reuses it
    assert any(tmp_path.rglob("ubodt_*"))
    F.ENGINES.clear()


def test_fmm_empty_window_is_nan(contexts):
    pytest.importorskip("fastmm", reason="fastmm is in the optional 'peers' extra")
    import dataclasses

    ctx = dataclasses.replace(contexts[0], records=contexts[0].records.iloc[:0])
    assert np.isnan(F.fmm(ctx)).all()


@pytest.mark.slow
def test_leuven_matches(grid_net, contexts):
    pytest.importorskip("leuvenmapmatching", reason="leuvenmapmatching is in the optional 'peers' extra")
    pytest.importorskip("rtree", reason="rtree is in the optional 'peers' extra")
    L.ENGINES.clear()
    sub = contexts[:2]
    e_leu = _median_error(L.leuven, sub)
    assert np.isfinite(e_leu) and e_leu < 1.5 * _median_error(mar, sub)
    L.ENGINES.clear()


@pytest.mark.slow
def test_valhalla_meili_matches(grid_net, contexts, tmp_path):
    if V.available() is not None:
        pytest.skip(V.available())
    eng = V.ValhallaEngine(grid_net, cache_dir=tmp_path)
    try:
        assert eng.build_s > 0 and any(eng.tile_dir.rglob("*.gph"))
        t, xy, sigma = C.window_observations(contexts[0])
        route, ms = eng.match(xy, t, sigma, V.DEFAULT_PARAMS)
        assert route.n_matched >= 1 and ms > 0
        pos = C.positions_from_route(contexts[0], route, t, "valhalla_meili")
        assert np.isfinite(pos).all()
    finally:
        eng.close()
