"""Next-GPS prediction (ml.nextgps): road walking, constant velocity, the continuation sampler, scoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ml.baselines import SampleContext
from ml.observation.context import TowerTable
from ml.cities.network import RoadNetwork
from ml.geo import CityProjection
from ml.nextgps import (NextGPSConfig, RoadWalker, constant_velocity_road, continuation_sample, last_position,
                        score_next_gps, summarise_next_gps)

CRS = "EPSG:32633"
X0, Y0 = 500_000.0, 5_300_000.0


def _road_net() -> RoadNetwork:
    """A straight two-way east-west street 4 km long, nodes every 200 m, with a side street north and one
    south at x = 1000 m (a crossing the car must drive straight through)."""
    xs = np.arange(0.0, 4001.0, 200.0)
    nodes = [(X0 + x, Y0) for x in xs] + [(X0 + 1000.0, Y0 + 300.0), (X0 + 1000.0, Y0 - 300.0)]
    n_main = len(xs)
    pairs = [(i, i + 1) for i in range(n_main - 1)]
    mid = int(np.argmin(np.abs(xs - 1000.0)))
    pairs += [(mid, n_main), (mid, n_main + 1)]
    eu, ev = [], []
    for a, b in pairs:  # both directions
        eu += [a, b]
        ev += [b, a]
    node_xy = np.array(nodes)
    geoms = [np.vstack([node_xy[u], node_xy[v]]) for u, v in zip(eu, ev)]
    lengths = np.array([np.hypot(*(g[1] - g[0])) for g in geoms])
    return RoadNetwork(crs=CRS, node_ids=np.arange(len(nodes), dtype=np.int64), node_xy=node_xy,
                       edge_u=np.array(eu, dtype=np.int64), edge_v=np.array(ev, dtype=np.int64),
                       edge_length_m=lengths, edge_speed_mps=np.full(len(eu), 10.0),
                       edge_class=np.full(len(eu), 5, dtype=np.int8),
                       geom_offsets=np.concatenate([[0], np.cumsum([len(g) for g in geoms])]).astype(np.int64),
                       geom_xy=np.vstack(geoms))


def _context(net: RoadNetwork, truth_xy: np.ndarray, eval_t: np.ndarray) -> SampleContext:
    lon, lat = CityProjection(CRS).to_lonlat(np.array([[X0, Y0]]))[0]
    towers = pd.DataFrame({"cell_id": [1], "site_id": [1], "lon": [lon], "lat": [lat]})
    records = pd.DataFrame({"t": [0.0], "cell_id": [1], "event": ["periodic"], "site_id": [1], "x": [X0], "y": [Y0]})
    return SampleContext(sample_id="s0", t0=pd.Timestamp("2024-01-01", tz="UTC"), duration_s=300.0, eval_t=eval_t,
                         truth_xy=truth_xy, records=records, mr=None, towers_xy=TowerTable(towers, CRS), net=net, crs=CRS)


@pytest.fixture(scope="module")
def road() -> RoadNetwork:
    return _road_net()


def _drive(speed: float, start_x: float, direction: float = 1.0, noise_m: float = 0.0, seed: int = 0):
    eval_t = np.arange(0.0, 300.1, 15.0)
    rng = np.random.default_rng(seed)
    xy = np.column_stack([X0 + start_x + direction * speed * eval_t, np.full(len(eval_t), Y0)])
    return eval_t, xy + rng.normal(0.0, noise_m, xy.shape)


def test_constant_velocity_on_a_straight_road_predicts_within_a_few_metres(road: RoadNetwork) -> None:
    cfg = NextGPSConfig()
    # 10 m/s eastwards from x = 200 m: at 150 s the car is at 1700 m, past the crossing at 1000 m; GPS noise 1 m
    # (the speed is two noisy fixes 60 s apart, so the error grows with the horizon: 3 m noise gives 13 m at +120 s)
    eval_t, truth = _drive(10.0, 200.0, noise_m=1.0)
    ctx = _context(road, truth, eval_t)
    pred = constant_velocity_road(ctx, cfg)
    want = np.column_stack([X0 + 200.0 + 10.0 * np.array(cfg.target_times()), np.full(3, Y0)])
    assert np.abs(pred[:, 1] - Y0).max() < 1e-6  # on the road
    assert np.hypot(*(pred - want).T).max() < 6.0, pred - want
    # the scored error (the one scoring code) says the same
    scored = score_next_gps({"cv": {"s0": pred}}, [ctx], cfg)
    assert scored["error_m"].max() < 8.0 and not scored["failed"].any()


def test_constant_velocity_goes_straight_through_a_crossing_and_keeps_its_direction(road: RoadNetwork) -> None:
    cfg = NextGPSConfig(known_s=60.0)
    # westwards at 8 m/s from x = 1800: at 60 s at 1320 m, then through the crossing at 1000 m (side streets
    # north and south) and on west, not onto a side street nor back east on the other carriageway
    eval_t, truth = _drive(8.0, 1800.0, direction=-1.0)
    pred = constant_velocity_road(_context(road, truth, eval_t), cfg)
    want_x = X0 + 1800.0 - 8.0 * np.array(cfg.target_times())
    np.testing.assert_allclose(pred[:, 0], want_x, atol=1.0)
    np.testing.assert_allclose(pred[:, 1], Y0, atol=1e-6)


def test_a_standing_car_stays_and_last_position_holds(road: RoadNetwork) -> None:
    cfg = NextGPSConfig()
    eval_t, truth = _drive(0.0, 500.0, noise_m=0.5)
    ctx = _context(road, truth, eval_t)
    last = truth[eval_t <= cfg.known_s][-1]
    np.testing.assert_allclose(constant_velocity_road(ctx, cfg), np.repeat(last[None], 3, axis=0))
    np.testing.assert_allclose(last_position(ctx, cfg), np.repeat(last[None], 3, axis=0))


def test_the_walker_turns_at_a_dead_end_and_heading_needs_a_road(road: RoadNetwork) -> None:
    w = RoadWalker(road)
    pos = w.heading_edge(np.array([X0 + 3900.0, Y0 + 2.0]), np.array([1.0, 0.0]), 40.0)
    assert pos is not None
    # 100 m to the east end, then the only way on is back west: 300 m further ends 200 m west of the end
    np.testing.assert_allclose(w.advance(pos, 300.0), [X0 + 3800.0, Y0], atol=1e-6)
    assert w.heading_edge(np.array([X0 + 2000.0, Y0 + 500.0]), np.array([1.0, 0.0]), 40.0) is None


def test_scores_count_missing_predictions_and_summarise_per_horizon(road: RoadNetwork) -> None:
    cfg = NextGPSConfig()
    eval_t, truth = _drive(10.0, 200.0)
    ctx = _context(road, truth, eval_t)
    exact = truth[[int(np.argmin(np.abs(eval_t - t))) for t in cfg.target_times()]]
    off = exact + np.array([30.0, 40.0])  # 50 m off
    missing = np.full_like(exact, np.nan)
    summ = summarise_next_gps(score_next_gps({"exact": {"s0": exact}, "off": {"s0": off}, "none": {"s0": missing}},
                                             [ctx], cfg))
    assert summ["exact"]["30s"]["median_error_m"] < 0.01
    assert summ["off"]["120s"]["median_error_m"] == pytest.approx(50.0, abs=0.5)
    assert summ["none"]["60s"]["n_failed"] == 1 and np.isnan(summ["none"]["60s"]["median_error_m"])


def test_target_times_must_lie_in_the_window(road: RoadNetwork) -> None:
    eval_t, truth = _drive(10.0, 200.0)
    with pytest.raises(ValueError, match="exceeds the window"):
        last_position(_context(road, truth, eval_t), NextGPSConfig(known_s=250.0))
    with pytest.raises(ValueError, match="horizons_s"):
        NextGPSConfig(horizons_s=())


def test_the_stage_config_has_profiles() -> None:
    from ml.config import stage_config

    ci, demo = stage_config("next_gps", "ci"), stage_config("next_gps", "demo")
    assert isinstance(ci, NextGPSConfig) and ci.max_samples < demo.max_samples
    assert demo.target_times() == [180.0, 210.0, 270.0]


@pytest.fixture(scope="module")
def tiny_model():
    from ml.models import build_video_model
    from ml.models.config import model_preset

    torch.manual_seed(0)
    model = build_video_model(model_preset("ci", frames=5)).eval()
    # the output layer starts at zero (the x0 estimate is the signal prior, whatever the state): perturb every
    # weight, as training does, so that the velocity depends on the state's frames
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_the_continuation_keeps_the_known_frames_exactly(tiny_model) -> None:
    from ml.models.sampling import euler_sample

    g = torch.Generator().manual_seed(1)
    B, K, res = 2, 5, 32
    cond = torch.rand((B, 3, res, res), generator=g) * 2 - 1
    C, k, h, w = tiny_model.latent_shape(K, res)
    known = torch.rand((B, C, k, h, w), generator=g) * 2 - 1
    noise = torch.randn((B, C, k, h, w), generator=g)
    # four records a window ([col / res, row / res, t / W, event id]): the model's signal prior reads them
    tok = torch.cat([torch.rand((B, 4, 2), generator=g), torch.linspace(0, 1, 4).expand(B, 4)[..., None],
                     torch.zeros((B, 4, 1))], dim=-1)
    kw = dict(noise=noise, noise_scale=1.0, tokens=tok, token_mask=torch.ones((B, 4), dtype=torch.bool))
    x, _ = continuation_sample(tiny_model, cond, known, n_known=3, n_steps=3, **kw)
    assert torch.equal(x[:, :, :3], known[:, :, :3])  # exactly, not approximately
    # without known frames it is the evaluation's Euler sampler, step for step
    free, _ = continuation_sample(tiny_model, cond, known, n_known=0, n_steps=3, **kw)
    ref = euler_sample(tiny_model, cond, 3, noise=noise, frames=K, return_model_space=True, tokens=kw["tokens"],
                       token_mask=kw["token_mask"])
    torch.testing.assert_close(free, ref)
    # and the prefix reaches the frames the model draws (the frames attend to each other)
    assert not torch.allclose(x[:, :, 3:], free[:, :, 3:])
    with pytest.raises(ValueError, match="n_known"):
        continuation_sample(tiny_model, cond, known, n_known=k + 1, n_steps=1, **kw)


def test_the_report_round_trips_and_the_evaluation_report_embeds_its_section(road: RoadNetwork, tmp_path) -> None:
    from ml.nextgps import load_next_gps, markdown_section, next_gps_report, write_next_gps
    from ml.report import write_markdown

    cfg = NextGPSConfig()
    eval_t, truth = _drive(10.0, 200.0)
    report, scored = next_gps_report("tiny", [], [_context(road, truth, eval_t)], cfg)  # no video: no val needed
    assert report["video_steps"] is None and "constant_velocity_road" in report["methods"]
    write_next_gps(report, scored, tmp_path / "next_gps")
    back = load_next_gps(tmp_path / "next_gps" / "next_gps.json")
    assert back["methods"]["last_position"]["30s"]["n"] == 1
    md = write_markdown({"city": "tiny", "split": "test", "n_samples": 1, "tracks": {}}, tmp_path, {},
                        sections=markdown_section(back)).read_text()
    assert "## Next-GPS prediction" in md and "`constant_velocity_road`" in md
    assert load_next_gps(tmp_path / "absent.json") is None


def test_continuation_training_gives_the_known_frames_clean_and_scores_only_the_rest(tmp_path) -> None:
    from ml.models.config import model_preset
    from ml.train.sft.config import sft_profile
    from ml.models.data import RenderedVideoDataset, make_toy_rendered_arrays
    from ml.train.sft.module import SFTModule

    with pytest.raises(ValueError, match="needs both above 0"):
        sft_profile("ci", known_frames=2)
    with pytest.raises(ValueError, match="leaves none"):
        sft_profile("ci", model=model_preset("ci", frames=5), known_frames=5, known_frames_prob=1.0)
    root = make_toy_rendered_arrays(tmp_path / "toy", n=4, resolution=32, frames=5, seed=0)
    ds = RenderedVideoDataset(root, with_tokens=True, max_records=8)
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    cfg = sft_profile("ci", model=model_preset("ci", frames=5, max_records=8), init_checkpoint=None,
                      known_frames=2, known_frames_prob=1.0)
    module = SFTModule(cfg)
    seen = {}

    def keep(mod, args, out):
        seen["xs"] = args[0].detach().clone()
        out.retain_grad()
        seen["pred"] = out

    module.model.register_forward_hook(keep)
    loss = module.flow_loss(batch, generator=torch.Generator().manual_seed(0))
    loss.backward()
    x0 = module.model.encode_video(batch["video"])
    torch.testing.assert_close(seen["xs"][:, :, :2], x0[:, :, :2])  # the known frames are the data itself
    assert not torch.allclose(seen["xs"][:, :, 2:], x0[:, :, 2:])  # the others are noised
    grad = seen["pred"].grad
    assert torch.count_nonzero(grad[:, :, :2]) == 0 and torch.count_nonzero(grad[:, :, 2:]) > 0
