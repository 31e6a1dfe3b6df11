"""Tests of the sample contexts and the signaling-track baselines (MaR, industrial HMM)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.baselines import SIGNALING_METHODS, build_sample_contexts, industrial_hmm, mar
from ml.observation.context import SampleContext, TowerTable, synthetic_signaling_tables
from ml.baselines.signaling import (
    IndustrialHMMConfig,
    _records,
    cell_observations,
    jump_outliers,
    mitigate_pingpong,
    observe_records,
    site_observations,
)
from ml.metrics import aggregate, evaluate_sample
from ml.observation import sector_unit_vectors


@pytest.fixture(scope="module")
def tables(grid_net):
    return synthetic_signaling_tables(grid_net, 8, seed=3, duration_s=600.0)


@pytest.fixture(scope="module")
def contexts(grid_net, tables):
    return build_sample_contexts(tables["samples"], tables["signaling"], tables["towers"], grid_net,
                                 sample_truth=tables["sample_truth"])


def test_build_sample_contexts(grid_net, tables, contexts):
    s = tables["samples"]
    assert [c.sample_id for c in contexts] == s["sample_id"].tolist()
    for c, n in zip(contexts, s["n_records"]):
        assert len(c.records) == n
        assert list(c.records.columns) == ["t", "cell_id", "event", "site_id", "x", "y"]
        assert c.records["t"].between(0.0, c.duration_s).all() and c.records["t"].is_monotonic_increasing
        assert c.truth_xy.shape == (len(c.eval_t), 2) and c.eval_t[0] == 0.0 and c.eval_t[-1] == 600.0
        np.testing.assert_allclose(c.record_xy, c.towers_xy(c.records["cell_id"].to_numpy()))
        assert c.crs == grid_net.crs and c.mr is None
    test_only = build_sample_contexts(s, tables["signaling"], tables["towers"], grid_net, split="test")
    assert {c.sample_id for c in test_only} == set(s.loc[s["split"] == "test", "sample_id"])
    assert test_only[0].truth_xy is None and np.allclose(np.diff(test_only[0].eval_t), 10.0)


def test_contexts_do_not_mix_devices_or_windows(grid_net, tables):
    sig = tables["signaling"]
    # a second device active at the same times, and records outside the window, must not leak
    other = sig.assign(device_id="intruder")
    late = sig[sig["device_id"] == "dev0000"].assign(ts=lambda d: d["ts"] + pd.Timedelta(hours=0.5))
    ctx = build_sample_contexts(tables["samples"].iloc[:1], pd.concat([late, other, sig]), tables["towers"], grid_net)[0]
    assert len(ctx.records) == tables["samples"].loc[0, "n_records"]


def test_mr_grouping_keeps_serving_first(grid_net, tables):
    sig = tables["signaling"]
    mr = pd.concat([sig.assign(rsrp_dbm=-80.0, _o=0), sig.assign(cell_id=sig["cell_id"] // 10 * 10 + (sig["cell_id"] + 1) % 10 % 3,
                                                                    rsrp_dbm=-95.0, _o=1)])
    mr = mr.sort_values(["ts", "_o"], kind="stable").drop(columns=["_o", "event"])
    ctx = build_sample_contexts(tables["samples"].iloc[:2], sig, tables["towers"], grid_net, mr=mr)[1]
    assert list(ctx.mr.columns) == ["t", "cell_id", "rsrp_dbm"]
    assert len(ctx.mr) == 2 * len(ctx.records)
    assert ctx.mr["t"].is_monotonic_increasing
    first = ctx.mr.groupby("t", sort=False)["rsrp_dbm"].first()
    assert (first == -80.0).all()  # the serving cell stays first within each report


def test_tower_table(tables, grid_net):
    tw = TowerTable(tables["towers"], grid_net.crs)
    c = int(tables["towers"]["cell_id"].iloc[4])
    assert c in tw and 999999 not in tw and len(tw) == len(tables["towers"])
    np.testing.assert_allclose(tw[c], tw(np.array([c]))[0])
    with pytest.raises(KeyError, match="999999"):
        tw(np.array([c, 999999]))
    site = tw.site_of(np.array([c]))
    np.testing.assert_allclose(tw.site_xy(site)[0], tw[c], atol=1e-6)  # sectors share the mast


def _ctx(grid_net, t, xy, site, eval_t) -> SampleContext:
    towers = pd.DataFrame({"cell_id": np.arange(len(site)), "site_id": site, "lon": 0.0, "lat": 0.0})
    tw = TowerTable(towers.drop_duplicates("cell_id"), grid_net.crs)
    rec = pd.DataFrame({"t": t, "cell_id": np.arange(len(t)), "event": "data", "site_id": site,
                        "x": xy[:, 0], "y": xy[:, 1]})
    return SampleContext("x", pd.Timestamp(0, tz="UTC"), float(max(eval_t)), np.asarray(eval_t, float), None, rec,
                         None, tw, grid_net, grid_net.crs)


def test_mar_hand_case(grid_net):
    ctx = _ctx(grid_net, np.array([10.0, 20.0, 20.0]), np.array([[0.0, 0.0], [100.0, 0.0], [100.0, 40.0]]),
               np.array([1, 2, 3]), [0.0, 15.0, 20.0, 30.0])
    np.testing.assert_allclose(mar(ctx), [[0, 0], [50, 10], [100, 20], [100, 20]])


def test_mitigate_pingpong_hand_cases():
    t = np.array([0.0, 5.0, 10.0, 100.0, 105.0, 200.0])
    s = np.array([1, 2, 1, 3, 1, 3])
    keep = mitigate_pingpong(t, s, window_s=30.0)
    # 1-2-1 within 10 s: drop the 2; 3-1-3 spans 100 s: kept
    np.testing.assert_array_equal(keep, [True, False, True, True, True, True])
    abab = mitigate_pingpong(np.arange(5.0), np.array([1, 2, 1, 2, 1]), 30.0)
    assert abab.sum() == 2 and abab[0] and abab[-1]


def test_site_observations_runs():
    t = np.array([0.0, 10.0, 20.0, 300.0, 310.0])
    site = np.array([1, 1, 2, 2, 3])
    sxy = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 5.0], [5.0, 5.0], [9.0, 9.0]])
    ot, oxy = site_observations(t, site, sxy, stay_s=120.0)
    np.testing.assert_allclose(ot, [5.0, 20.0, 300.0, 310.0])  # short run -> middle; long -> both ends
    np.testing.assert_allclose(oxy, [[0, 0], [5, 5], [5, 5], [9, 9]])


def test_industrial_hmm_beats_mar_and_stays_on_roads(grid_net, contexts):
    rows = {k: [] for k in SIGNALING_METHODS}
    for c in contexts:
        for k, f in SIGNALING_METHODS.items():
            p = f(c)
            assert p.shape == (len(c.eval_t), 2) and np.isfinite(p).all()
            rows[k].append(evaluate_sample(p, c.truth_xy, grid_net, grid_net.crs))
    agg = {k: aggregate(pd.DataFrame(v)) for k, v in rows.items()}
    assert agg["industrial_hmm"]["road_adherence"] == pytest.approx(1.0)
    assert agg["industrial_hmm"]["mean_error_m"] < agg["mar"]["mean_error_m"]
    assert agg["industrial_hmm"]["route_f1"] > agg["mar"]["route_f1"]
    assert agg["industrial_hmm"]["mean_error_m"] < 300.0  # cell-level accuracy, not worse


def test_industrial_hmm_without_records_is_nan(grid_net, contexts):
    c = contexts[0]
    empty = SampleContext(c.sample_id, c.t0, c.duration_s, c.eval_t, None, c.records.iloc[:0], None,
                          c.towers_xy, grid_net, grid_net.crs)
    assert np.isnan(industrial_hmm(empty)).all() and np.isnan(mar(empty)).all()


def _sector_towers(crs: str) -> TowerTable:
    # two 3-sector sites 400 m apart (east-west), sectors at 0 / 120 / 240 degrees
    sites = np.repeat([10, 20], 3)
    az = np.tile([0.0, 120.0, 240.0], 2)
    from ml.geo import CityProjection

    ll = CityProjection(crs).to_lonlat(np.array([[0.0, 0.0], [400.0, 0.0]]) + [500000.0, 5000000.0])
    towers = pd.DataFrame({"cell_id": np.arange(6), "site_id": sites, "lon": np.repeat(ll[:, 0], 3),
                           "lat": np.repeat(ll[:, 1], 3), "azimuth_deg": az})
    return TowerTable(towers, crs)


def test_sector_unit_vectors_and_missing_azimuth(grid_net):
    tw = _sector_towers(grid_net.crs)
    u = sector_unit_vectors(tw, np.array([0, 1, 5]))
    np.testing.assert_allclose(u, [[0, 1], [np.sin(np.deg2rad(120)), np.cos(np.deg2rad(120))],
                                   [np.sin(np.deg2rad(240)), np.cos(np.deg2rad(240))]], atol=1e-12)
    no_az = TowerTable(tw.frame.drop(columns=["azimuth_deg", "x", "y"]), grid_net.crs)
    np.testing.assert_allclose(sector_unit_vectors(no_az, np.array([0, 3])), 0.0)


def test_cell_observations_sector_shift_and_handover_boundary(grid_net):
    tw = _sector_towers(grid_net.crs)
    spacing = 400.0  # median nearest-site distance of the two sites
    cfg = IndustrialHMMConfig(sector_shift_factor=0.5)
    site_xy = tw.site_xy(np.array([10, 20]))
    c0 = site_xy[0] + 0.5 * spacing * np.array([0.0, 1.0])  # cell 0: north sector of site 10
    c5 = site_xy[1] + 0.5 * spacing * np.array([np.sin(np.deg2rad(240)), np.cos(np.deg2rad(240))])
    t = np.array([0.0, 100.0, 200.0])
    cell = np.array([0, 5, 5])
    site = np.array([10, 20, 20])
    ev = np.array(["data", "handover", "data"])
    ot, oxy = cell_observations(t, cell, site, ev, tw, cfg)
    np.testing.assert_allclose(ot, t)
    np.testing.assert_allclose(oxy, [c0, 0.5 * (c0 + c5), c5], atol=1e-6)  # handover: on the boundary
    # without the observation model: the mast positions (the old co-site merge)
    ot, oxy = cell_observations(t, cell, site, ev, tw, IndustrialHMMConfig(sector_shift_factor=0.0,
                                                                          handover_boundary=False))
    np.testing.assert_allclose(oxy, site_xy[[0, 1, 1]], atol=1e-6)
    # run collapse keeps the old behaviour (middle time of a short run)
    ot, oxy = cell_observations(t, cell, site, ev, tw, IndustrialHMMConfig(collapse_runs=True, stay_s=120.0))
    np.testing.assert_allclose(ot, [0.0, 150.0])
    np.testing.assert_allclose(oxy[1], 0.5 * (0.5 * (c0 + c5) + c5), atol=1e-6)


def test_jump_filter_drops_a_record_out_of_place_and_counts_it(grid_net):
    # a phone driving east at 10 m/s; one record from a cell booked 3 km away (a tower-table error)
    t = np.arange(0.0, 300.0, 30.0)
    xy = np.column_stack([10.0 * t, np.zeros(len(t))])
    xy[4] = [1200.0, 3000.0]
    bad = jump_outliers(t, xy, speed_mps=30.0, slack_m=400.0)
    assert bad.tolist() == [i == 4 for i in range(len(t))]
    # the ends have one neighbour each: never flagged, whatever they show
    xy[0] = [-5000.0, 0.0]
    assert not jump_outliers(t, xy, 30.0, 400.0)[0]
    assert not jump_outliers(t[:2], xy[:2], 30.0, 400.0).any()


def test_industrial_pipeline_counts_the_records_it_drops(grid_net, contexts):
    ctx = next(c for c in contexts if len(c.records) >= 5)
    t, cell, site, event = _records(ctx)
    assert IndustrialHMMConfig().outlier_speed_mps == 30.0  # on by default (chosen on val, issue 27)
    off = IndustrialHMMConfig(outlier_speed_mps=None)
    assert observe_records(t, cell, site, event, ctx.towers_xy, off).n_outliers == 0
    keep_all = observe_records(t, cell, site, event, ctx.towers_xy, IndustrialHMMConfig(pingpong_window_s=0.0))
    strict = IndustrialHMMConfig(outlier_speed_mps=0.0, outlier_slack_factor=0.0, pingpong_window_s=0.0)
    obs = observe_records(t, cell, site, event, ctx.towers_xy, strict)
    # with no allowance every middle record away from both neighbours is out of place: dropped and counted
    assert obs.n_outliers > 0 and len(obs.t) < len(keep_all.t)
    assert np.isfinite(industrial_hmm(ctx, strict)).all()
