"""The observation model: hand-made and learned (cell footprints), learned_hmm and the oracle_records bound."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.baselines import industrial_hmm, learned_hmm, oracle_records
from ml.mapmatch import match_trajectory
from ml.metrics import point_errors_m
from ml.observation import (FootprintConfig, HandmadeObservationModel, LearnedObservationModel, TowerTable,
                            build_cell_footprints, build_sample_contexts, empty_footprints, footprint_problems,
                            footprint_summary, left_cells, record_positions, synthetic_signaling_tables)


@pytest.fixture(scope="module")
def tables(grid_net):
    return synthetic_signaling_tables(grid_net, 60, seed=7, duration_s=600.0, mean_gap_s=40.0)


@pytest.fixture(scope="module")
def contexts(grid_net, tables):
    return build_sample_contexts(tables["samples"], tables["signaling"], tables["towers"], grid_net,
                                 sample_truth=tables["sample_truth"])


@pytest.fixture(scope="module")
def towers(grid_net, tables):
    return TowerTable(tables["towers"], grid_net.crs)


@pytest.fixture(scope="module")
def footprints(grid_net, contexts):
    return build_cell_footprints(contexts, grid_net)


def test_left_cells_marks_handovers_between_different_cells():
    cell = np.array([1, 2, 2, 3, 3])
    ev = np.array(["data", "handover", "handover", "periodic", "handover"], dtype=object)
    np.testing.assert_array_equal(left_cells(cell, ev), [-1, 1, -1, -1, -1])
    np.testing.assert_array_equal(left_cells(cell, ev, handover_boundary=False), [-1] * 5)


def test_handmade_model_is_record_positions(contexts, towers):
    model = HandmadeObservationModel(towers)
    for ctx in contexts[:5]:
        cell, ev = ctx.records["cell_id"].to_numpy(), ctx.records["event"].to_numpy()
        np.testing.assert_allclose(model.positions(cell, left_cells(cell, ev)), record_positions(cell, ev, towers))


def test_footprints_are_learned_from_train_windows_only(grid_net, contexts, footprints):
    n_train = sum(len(c.records) for c in contexts if c.split == "train")
    assert footprint_problems(footprints, n_train) == []
    assert int(footprint_summary(footprints)["n_records"].sum()) == n_train
    # poison every non-train window: moved truth, other records; the table does not change
    poisoned = [c if c.split == "train" else replace(c, truth_xy=c.truth_xy + 900.0,
                                                     records=c.records.assign(cell_id=c.records["cell_id"].iloc[0]))
                for c in contexts]
    pd.testing.assert_frame_equal(build_cell_footprints(poisoned, grid_net), footprints)
    assert build_cell_footprints([c for c in contexts if c.split != "train"], grid_net).empty


def test_footprint_problems_names_what_is_wrong(footprints, contexts):
    n_train = sum(len(c.records) for c in contexts if c.split == "train")
    bad = footprints.copy()
    bad.loc[0, "weight"] *= 2
    assert any("do not sum to 1" in p for p in footprint_problems(bad, n_train))
    assert any("identifier" in p for p in footprint_problems(footprints.assign(device_id="d"), n_train))
    assert any("train windows hold" in p for p in footprint_problems(footprints, n_train + 1))
    nan = footprints.copy()
    nan.loc[1, "mean_x"] = np.nan
    assert any("non-finite" in p for p in footprint_problems(nan, n_train))


def test_learned_model_without_history_is_the_handmade_model(towers, contexts):
    learned = LearnedObservationModel(empty_footprints(), towers)
    hand = HandmadeObservationModel(towers)
    cell = contexts[0].records["cell_id"].to_numpy()
    left = left_cells(cell, contexts[0].records["event"].to_numpy())
    np.testing.assert_allclose(learned.positions(cell, left), hand.positions(cell, left))
    xy = hand.positions(cell, left)[:, None, :] + np.array([[0.0, 0.0], [150.0, -80.0], [400.0, 30.0]])[None]
    np.testing.assert_allclose(learned.log_likelihood(cell, left, xy), hand.log_likelihood(cell, left, xy))
    np.testing.assert_allclose(learned.spread_m(cell, left), hand.spread_m(cell, left))
    np.testing.assert_allclose(hand.spread_m(cell, left), np.sqrt(2.0) * hand.sigma_m)


def test_spread_tends_to_the_footprints_own(towers, footprints):
    """With much history (weak prior) a key's spread is its phones' RMS distance from their mean."""
    summ = footprint_summary(footprints).sort_values("n_records").iloc[-1]
    cell, left = np.array([summ["cell_id"]]), np.array([summ["left_cell_id"]])
    near = LearnedObservationModel(footprints, towers, FootprintConfig(prior_strength=1e-6)).spread_m(cell, left)[0]
    assert near == pytest.approx(summ["spread_m"], rel=1e-3)
    weak = LearnedObservationModel(footprints, towers, FootprintConfig(prior_strength=1e6)).spread_m(cell, left)[0]
    assert weak == pytest.approx(np.sqrt(2.0) * HandmadeObservationModel(towers).sigma_m, rel=1e-3)


def test_history_pulls_the_point_toward_the_footprint_mean(towers, footprints):
    summ = footprint_summary(footprints).sort_values("n_records").iloc[-1]
    cell, left = np.array([summ["cell_id"]]), np.array([summ["left_cell_id"]])
    hand = HandmadeObservationModel(towers).positions(cell, left)[0]
    mean = np.array([summ["mean_x"], summ["mean_y"]])
    gaps = [np.linalg.norm(LearnedObservationModel(footprints, towers, FootprintConfig(prior_strength=a))
                           .positions(cell, left)[0] - mean) for a in (100.0, 10.0, 1.0)]
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[0] < np.linalg.norm(hand - mean)


@settings(max_examples=8, deadline=None)
@given(rank=st.integers(0, 20), h=st.sampled_from([40.0, 100.0]), alpha=st.sampled_from([1.0, 10.0]))
def test_learned_likelihood_is_a_density(towers, footprints, rank, h, alpha):
    """exp(log-likelihood) integrates to one over the plane, for any key, bandwidth and prior strength."""
    summ = footprint_summary(footprints).sort_values("n_records", ascending=False).reset_index(drop=True)
    row = summ.iloc[rank % len(summ)]
    model = LearnedObservationModel(footprints, towers, FootprintConfig(bandwidth_m=h, prior_strength=alpha))
    cell, left = np.array([row["cell_id"]]), np.array([row["left_cell_id"]])
    c = model.positions(cell, left)[0]
    step, half = 20.0, 2500.0
    g = np.arange(-half, half + step, step)
    xy = np.stack(np.meshgrid(c[0] + g, c[1] + g), -1).reshape(1, -1, 2)
    total = np.exp(model.log_likelihood(cell, left, xy)).sum() * step**2
    assert total == pytest.approx(1.0, abs=0.02)


def test_hmm_log_emission_hook_reproduces_the_gaussian(grid_net, contexts):
    from ml.baselines.signaling import window_observations

    obs_t, obs_xy, sigma = window_observations(contexts[1])
    a = match_trajectory(grid_net, obs_xy, obs_t, sigma, beta_m=sigma, max_speed_mps=35.0, radius_m=2.5 * sigma,
                         max_candidates=12)
    b = match_trajectory(grid_net, obs_xy, obs_t, sigma, beta_m=sigma, max_speed_mps=35.0, radius_m=2.5 * sigma,
                         max_candidates=12,
                         log_emission=lambda idx, cxy: -0.5 * (np.linalg.norm(cxy - obs_xy[idx][:, None], axis=-1)
                                                               / sigma) ** 2)
    np.testing.assert_array_equal(a.point_edge, b.point_edge)
    np.testing.assert_allclose(a.route_xy, b.route_xy)


def test_learned_hmm_needs_a_learned_model(contexts):
    with pytest.raises(ValueError, match="no learned observation model"):
        learned_hmm(contexts[0])


def _median(fn, ctxs):
    return float(np.nanmedian(np.concatenate([point_errors_m(fn(c), c.truth_xy, c.crs) for c in ctxs])))


def test_learned_hmm_learns_the_city(contexts, towers, footprints):
    """Learning test: footprints of the train windows take error off the industrial HMM on the test windows,
    and perfect record positions (the oracle bound) are better still."""
    test = [c for c in contexts if c.split == "test"]
    model = LearnedObservationModel(footprints, towers)
    base = _median(industrial_hmm, test)
    learned = _median(learned_hmm, [replace(c, observation=model) for c in test])
    oracle = _median(oracle_records, test)
    assert learned < 0.95 * base, (learned, base)
    assert oracle < learned


def test_learned_hmm_pyfunc_serves_what_the_evaluation_scores(grid_net, tables, contexts, towers, footprints):
    """The serving pyfunc's pipeline (records in, lon/lat out) gives learned_hmm's positions on the same windows."""
    from ml.geo import CityProjection
    from ml.serving.hmm_pyfunc import HMMReconstructor

    test = [c for c in contexts if c.split == "test"][:3]
    rec = HMMReconstructor(tables["towers"], grid_net, footprints,
                           {"duration_s": test[0].duration_s, "eval_interval_s": 30.0})
    req = tables["signaling"].merge(tables["samples"][["device_id", "sample_id", "t0", "t1"]], on="device_id")
    req = req[req["sample_id"].isin([c.sample_id for c in test]) & (req["ts"] >= req["t0"]) & (req["ts"] <= req["t1"])]
    out = rec.reconstruct(req[["sample_id", "ts", "cell_id", "event", "t0"]])
    assert set(out["method"]) == {"learned_hmm"} and (out["error"] == "").all()
    model = LearnedObservationModel(footprints, towers)
    for c in test:
        got = out[out["sample_id"] == c.sample_id]
        eval_t = np.arange(0.0, c.duration_s + 1e-9, 30.0)
        want = learned_hmm(replace(c, observation=model, eval_t=eval_t, truth_xy=None))
        xy = CityProjection(grid_net.crs).to_xy(got["lon"].to_numpy(), got["lat"].to_numpy())
        np.testing.assert_allclose(xy, want, atol=0.05)


@pytest.mark.parametrize("trace", ["serving_towers", "records"])
def test_served_tokens_equal_rendered_tokens_with_footprints(grid_net, tables, contexts, footprints, tmp_path, trace):
    """Parity: records placed through the learned footprints give the serving pyfunc the tokens and the condition
    image (its polyline through the serving towers or through the records' footprint positions) the renderer
    wrote for training (same windows, same tiles), and the tokens differ from the hand-made model's."""
    from ml.train.sft.config import sft_profile
    from ml.render.arrays import RenderedArrays
    from ml.render.config import RenderConfig
    from ml.render.dataset import render_samples
    from ml.geo import choose_tile
    from ml.serving.pyfunc import TrajectoryReconstructor
    from ml.train.sft.loop import _resolve_init

    towers = TowerTable(tables["towers"], grid_net.crs)
    model = LearnedObservationModel(footprints, towers)
    base = _resolve_init(sft_profile("demo").init_checkpoint)
    rec = TrajectoryReconstructor(base, tables["towers"], grid_net, {"duration_s": 600.0, "eval_interval_s": 30.0,
                                                                     "render": {"trace": trace}},
                                  footprints=footprints)
    cfg = RenderConfig(resolution=rec.model_cfg.resolution, frames=rec.model_cfg.frames, shard_size=8,
                       max_token_records=rec.model_cfg.max_records, trace=trace)
    test_ids = [c.sample_id for c in contexts if c.split == "test"][:4]
    samples = tables["samples"][tables["samples"]["sample_id"].isin(test_ids)].reset_index(drop=True)

    # the tile the server would choose from the window's serving towers, as the pipeline's samples carry it
    for i, sid in enumerate(samples["sample_id"]):
        c = next(c for c in contexts if c.sample_id == sid)
        tile = choose_tile(c.record_xy, grid_net.crs, cfg.zoom_sizes_m, cfg.margin_m)
        samples.loc[i, ["tile_crs", "tile_x0", "tile_y0", "tile_size_m"]] = [tile.crs, tile.x0, tile.y0, tile.size_m]
    out = tmp_path / "r"
    render_samples(grid_net, samples, tables["signaling"], tables["towers"], tables["sample_truth"], cfg, out,
                   workers=1, observation=model)
    arrays = RenderedArrays(out)
    req = tables["signaling"].merge(samples[["device_id", "sample_id", "t0", "t1"]], on="device_id")
    req = req[(req["ts"] >= req["t0"]) & (req["ts"] <= req["t1"])]
    groups = [(sid, req[req["sample_id"] == sid]) for sid in samples["sample_id"]]
    conds, toks, masks, _, _ = rec._cond_images(groups)
    for k, sid in enumerate(samples["sample_id"]):
        row = int(np.nonzero(arrays.index["sample_id"].to_numpy() == sid)[0][0])
        rendered = arrays.tokens(row)
        rendered = rendered[~np.isnan(rendered[:, 0])]  # the renderer pads with NaN, serving with a mask
        np.testing.assert_allclose(toks[k][masks[k].astype(bool)], rendered, atol=1e-5)
        np.testing.assert_array_equal(conds[k], arrays.batch(np.array([row]))[0][0])
    hand = TrajectoryReconstructor(base, tables["towers"], grid_net, {"duration_s": 600.0, "eval_interval_s": 30.0})
    assert hand.render_cfg.trace == "serving_towers"  # a registration without the setting drew the towers' polyline
    _, toks_hand, _, _, _ = hand._cond_images(groups)
    assert not np.allclose(toks_hand, toks)
