"""Rendering: georeference, conditioning images, target videos, arrays on disk, previews."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from ml.geo import CityProjection, Tile
from ml.render import RenderConfig, render_condition_image, render_target_video, style
from ml.render.arrays import RenderedArrays
from ml.render.dataset import (
    INDEX_COLUMNS,
    image_to_model_space,
    prepare_samples,
    render_samples,
    video_from_model_space,
    video_to_model_space,
)
from ml.render.synthetic import synthetic_windows, windows_to_tables


@pytest.fixture(scope="module")
def windows(grid_net):
    cfg = RenderConfig(zoom_sizes_m=(1500.0, 2500.0, 4000.0))
    ws, towers = synthetic_windows(grid_net, 6, seed=3, cfg=cfg)
    return ws, towers


@pytest.fixture(scope="module")
def tables(grid_net, windows):
    ws, towers = windows
    return windows_to_tables(grid_net, ws, towers)


# ------------------------------------------------------------------ georeference
@settings(max_examples=60, deadline=None)
@given(
    x0=st.floats(-5000, 5000), y0=st.floats(-5000, 5000), size=st.sampled_from([1500.0, 2500.0, 4000.0]),
    res=st.sampled_from([32, 64, 128, 256]),
    cr=st.lists(st.tuples(st.floats(-2, 258), st.floats(-2, 258)), min_size=1, max_size=20),
)
def test_georeference_round_trip(grid_net, x0, y0, size, res, cr):
    """pixel -> xy -> lon/lat -> xy -> pixel is exact to a micro-pixel."""
    cx, cy = np.mean(grid_net.node_xy, axis=0)
    tile = Tile(grid_net.crs, cx + x0, cy + y0, size)
    proj = CityProjection(grid_net.crs)
    px = np.asarray(cr, dtype=np.float64) * res / 256.0
    xy = tile.pixel_to_xy(px, res)
    ll = proj.to_lonlat(xy)
    back = tile.xy_to_pixel(proj.to_xy(ll[:, 0], ll[:, 1]), res)
    np.testing.assert_allclose(back, px, atol=1e-6)
    # pixel-centre convention: the centre of pixel (r, c) is at (c + 0.5, r + 0.5); row 0 is north
    c = tile.xy_to_pixel(np.array([[tile.x0 + 0.5 * tile.size_m / res, tile.y0 + tile.size_m - 0.5 * tile.size_m / res]]), res)
    np.testing.assert_allclose(c, [[0.5, 0.5]], atol=1e-9)


# ------------------------------------------------------------------ images
def test_condition_image_layers_and_colours(grid_net, windows):
    ws, _ = windows
    w = ws[0]
    img = render_condition_image(grid_net, w.tile, 64, w.record_xy, w.tower_xy, w.record_t)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    flat = img.reshape(-1, 3)
    colours = {tuple(int(v) for v in c) for c in np.unique(flat, axis=0)}
    assert tuple(style.BACKGROUND) in colours
    assert any(c[0] == c[1] == c[2] and c[0] in style.ROAD_GREY for c in colours), "roads drawn in class greys"
    assert tuple(style.TOWER) in colours
    greenish = [c for c in colours if c[1] > c[0] + 10 and c[1] > c[2] + 10]
    assert len(greenish) >= 3, "signaling ramp shows several colours along time"
    # the decoder contract: nothing in the conditioning image looks like the path or the head
    assert style.redness(img).max() < style.REDNESS_THRESHOLD
    assert style.blueness(img).max() < style.BLUENESS_THRESHOLD
    # ramp runs from RAMP_START to RAMP_END
    np.testing.assert_array_equal(style.ramp_colours(np.array([0.0, 1.0])), [style.RAMP_START, style.RAMP_END])


def test_target_video_progressive_path_and_head(grid_net, windows):
    ws, _ = windows
    w = ws[1]
    res, K = 64, 9
    cond = render_condition_image(grid_net, w.tile, res, w.record_xy, w.tower_xy, w.record_t)
    video = render_target_video(cond, w.tile, res, w.truth_xy, w.truth_t, w.duration_s, K)
    assert video.shape == (K, res, res, 3) and video.dtype == np.uint8
    path = np.all(video == np.asarray(style.PATH, np.uint8), axis=-1)
    head = np.all(video == np.asarray(style.HEAD, np.uint8), axis=-1)
    for k in range(K):
        assert head[k].sum() >= 5, "head dot present and wider than the path"
    drawn = path | head
    for k in range(K - 1):
        assert np.all(path[k] <= drawn[k + 1]), "the path only grows"
    assert drawn[-1].sum() > drawn[0].sum()
    # off the drawn layers, every frame equals the conditioning image
    for k in range(K):
        np.testing.assert_array_equal(video[k][~drawn[k]], cond[~drawn[k]])
    # head centroid at the truth position at t_k (within half a pixel)
    tk = np.linspace(0, w.duration_s, K)
    truth_px = w.tile.xy_to_pixel(np.column_stack([np.interp(tk, w.truth_t, w.truth_xy[:, 0]),
                                                   np.interp(tk, w.truth_t, w.truth_xy[:, 1])]), res)
    for k in range(K):
        rr, cc = np.nonzero(head[k])
        inside = (truth_px[k] > 2).all() and (truth_px[k] < res - 2).all()
        if inside:
            assert np.hypot(cc.mean() + 0.5 - truth_px[k, 0], rr.mean() + 0.5 - truth_px[k, 1]) < 0.5


def test_config_rules():
    with pytest.raises(ValueError, match="4k"):
        RenderConfig(frames=8)
    c = RenderConfig(resolution=256)
    assert c.head_radius() > c.scaled(c.path_width_px) / 2 + 0.9
    assert RenderConfig(resolution=32).head_radius() >= 1.5


# ------------------------------------------------------------------ tiles never see the truth
def test_tile_and_condition_never_depend_on_truth(grid_net, tables):
    samples, signaling, towers, truth = tables
    cfg = RenderConfig(resolution=32)
    moved = truth.copy()
    moved["lon"] += 0.01  # about 700 m east: a different truth
    a = prepare_samples(grid_net, samples, signaling, towers, truth, cfg)
    b = prepare_samples(grid_net, samples, signaling, towers, moved, cfg)
    for pa, pb in zip(a, b):
        assert pa.tile == pb.tile
        ca = render_condition_image(grid_net, pa.tile, 32, pa.record_xy, pa.tower_xy, pa.record_t, cfg)
        cb = render_condition_image(grid_net, pb.tile, 32, pb.record_xy, pb.tower_xy, pb.record_t, cfg)
        np.testing.assert_array_equal(ca, cb)
        assert not np.allclose(pa.truth_xy, pb.truth_xy)


# ------------------------------------------------------------------ arrays on disk
def test_render_samples_round_trip(grid_net, windows, tables, tmp_path):
    ws, _ = windows
    samples, signaling, towers, truth = tables
    cfg = RenderConfig(resolution=32, frames=5, shard_size=4)
    out = tmp_path / "render" / "r32_k5"
    index = render_samples(grid_net, samples, signaling, towers, truth, cfg, out, workers=1)
    assert list(index.columns[: len(INDEX_COLUMNS)]) == list(INDEX_COLUMNS)
    assert sorted(p.name for p in out.iterdir()) == [
        "cond_0000.npy", "cond_0001.npy", "index.parquet", "render_config.json", "tokens_0000.npy", "tokens_0001.npy",
        "video_0000.npy", "video_0001.npy"]
    ra = RenderedArrays(out)
    assert len(ra) == len(samples) and ra.resolution == 32 and ra.frames == 5
    idx = pd.read_parquet(out / "index.parquet")
    assert idx["shard"].dtype == np.int64 and idx["tile_size_m"].dtype == np.float64
    assert set(idx["split"]) <= {"train", "val", "test"}
    for i, w in enumerate(ws):
        assert ra.index["sample_id"].iloc[i] == w.sample_id
        assert ra.tile(i) == w.tile
        cond = render_condition_image(grid_net, w.tile, 32, w.record_xy, w.tower_xy, w.record_t, cfg)
        np.testing.assert_array_equal(ra.cond(i), cond)
        assert ra.video(i).shape == (5, 32, 32, 3)
        assert isinstance(ra.video(i), np.memmap) or isinstance(ra.video(i).base, np.memmap)
        assert abs(ra.duration_s(i) - w.duration_s) < 1e-6
    c, v = ra.batch(ra.indices("train"))
    mv = video_to_model_space(v)
    assert mv.shape == (len(c), 3, 5, 32, 32) and mv.dtype == np.float32 and mv.min() >= -1 and mv.max() <= 1
    assert image_to_model_space(c).shape == (len(c), 3, 32, 32)
    np.testing.assert_array_equal(video_from_model_space(mv), v)


def test_render_samples_writes_signaling_tokens(grid_net, windows, tables, tmp_path):
    from ml.observation.context import TowerTable
    from ml.observation import record_positions
    from ml.validation.contract import EVENTS

    ws, _ = windows
    samples, signaling, towers, truth = tables
    signaling = signaling.copy()
    # varied events, one outside the vocabulary (-> id len(EVENTS)); signaling is in window/time order
    names = np.array(list(EVENTS) + ["mystery"], dtype=object)
    signaling["event"] = names[np.arange(len(signaling)) % len(names)]
    n_rec = np.array([len(w.record_t) for w in ws])
    R = int(np.median(n_rec))  # some windows are cut (subsampled), others padded
    assert (n_rec > R).any() and (n_rec < R).any()
    cfg = RenderConfig(resolution=32, frames=5, shard_size=4, max_token_records=R)
    out = tmp_path / "r32_k5"
    render_samples(grid_net, samples, signaling, towers, truth, cfg, out, workers=1)
    ra = RenderedArrays(out)
    table = TowerTable(towers, grid_net.crs)
    shards = sorted(out.glob("tokens_*.npy"))
    assert [p.name for p in shards] == ["tokens_0000.npy", "tokens_0001.npy"]
    assert all(np.load(p).dtype == np.float32 for p in shards)
    assert sum(len(np.load(p)) for p in shards) == len(samples)
    ev_all = np.where(np.isin(signaling["event"], EVENTS),
                      pd.Categorical(signaling["event"], categories=list(EVENTS)).codes, len(EVENTS))
    start = 0
    for i, w in enumerate(ws):
        tok = ra.tokens(i)
        n = len(w.record_t)
        m = min(n, R)
        assert tok.shape == (R, 4) and tok.dtype == np.float32
        valid = ~np.isnan(tok).any(axis=1)
        assert valid[:m].all() and np.isnan(tok[m:]).all()  # NaN padding after the records
        v = tok[:m]
        assert (v[:, 2] >= 0).all() and (v[:, 2] <= 1).all() and (np.diff(v[:, 2]) >= 0).all()
        assert set(np.unique(v[:, 3])) <= set(range(len(EVENTS) + 1))
        idx = np.arange(n) if n <= R else np.unique(np.linspace(0, n - 1, R).round().astype(int))
        np.testing.assert_allclose(v[:, 2], w.record_t[idx] / w.duration_s, atol=1e-5)
        # positions through the observation model: omni cells sit at the mast, a handover midway
        cells = signaling["cell_id"].to_numpy()[start:start + n]
        obs = record_positions(cells, signaling["event"].to_numpy()[start:start + n], table)
        np.testing.assert_allclose(v[:, :2], w.tile.xy_to_pixel(obs[idx], 32) / 32, atol=1e-4)
        np.testing.assert_array_equal(v[:, 3], ev_all[start:start + n][idx])
        if n > R:  # evenly subsampled, first and last record kept
            assert v[0, 2] == pytest.approx(w.record_t[0] / w.duration_s, abs=1e-6)
            assert v[-1, 2] == pytest.approx(w.record_t[-1] / w.duration_s, abs=1e-6)
        start += n
    # serving towers sit inside the tile chosen from them
    allv = np.concatenate([ra.tokens(i) for i in range(len(ra))])
    allv = allv[~np.isnan(allv[:, 0])]
    assert (allv[:, :2] >= 0).all() and (allv[:, :2] <= 1).all()


def test_parallel_workers_match_serial(grid_net, tables, tmp_path):
    samples, signaling, towers, truth = tables
    cfg = RenderConfig(resolution=32, frames=5, shard_size=3)
    a = render_samples(grid_net, samples, signaling, towers, truth, cfg, tmp_path / "a", workers=1)
    b = render_samples(grid_net, samples, signaling, towers, truth, cfg, tmp_path / "b", workers=2)
    pd.testing.assert_frame_equal(a, b)
    ra, rb = RenderedArrays(tmp_path / "a"), RenderedArrays(tmp_path / "b")
    for i in range(len(ra)):
        np.testing.assert_array_equal(ra.video(i), rb.video(i))


def _fail_on_sample(monkeypatch, sample_id):
    """Make rendering raise at one sample (patched in the parent, inherited by the forked workers)."""
    import ml.render.dataset as rd

    real = rd.render_prepared

    def render_or_fail(net, s, cfg):
        if s.sample_id == sample_id:
            raise RuntimeError(f"injected failure at sample {sample_id}")
        return real(net, s, cfg)

    monkeypatch.setattr(rd, "render_prepared", render_or_fail)


def test_failed_render_leaves_no_partial_folder(grid_net, tables, tmp_path, monkeypatch):
    samples, signaling, towers, truth = tables
    cfg = RenderConfig(resolution=32, frames=5, shard_size=2)
    ids = [p.sample_id for p in prepare_samples(grid_net, samples, signaling, towers, truth, cfg)]
    out = tmp_path / "r32_k5"
    with monkeypatch.context() as m:
        _fail_on_sample(m, ids[3])  # the second shard: the first one is already on disk
        with pytest.raises(RuntimeError, match="injected"):
            render_samples(grid_net, samples, signaling, towers, truth, cfg, out, workers=1)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
    # a previous complete folder survives a failed re-render untouched
    render_samples(grid_net, samples, signaling, towers, truth, cfg, out, workers=1)
    before = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in out.iterdir())
    with monkeypatch.context() as m:
        _fail_on_sample(m, ids[1])
        with pytest.raises(RuntimeError, match="injected"):
            render_samples(grid_net, samples, signaling, towers, truth, cfg, out, workers=2)
    assert sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in out.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["r32_k5"]


def test_bad_inputs_are_named(grid_net, tables, tmp_path):
    samples, signaling, towers, truth = tables
    cfg = RenderConfig(resolution=32, frames=5)
    bad = signaling.copy()
    bad.loc[bad.index[0], "cell_id"] = 10**9
    with pytest.raises(ValueError, match="signaling.*cell_id"):
        render_samples(grid_net, samples, bad, towers, truth, cfg, tmp_path / "x", workers=1)
    with pytest.raises(ValueError, match="sample_truth"):
        render_samples(grid_net, samples, signaling, towers, truth.iloc[0:0], cfg, tmp_path / "x", workers=1)
    assert not (tmp_path / "x").exists()


def test_previews(grid_net, tables, tmp_path):
    from ml.evaluation.preview import write_previews

    samples, signaling, towers, truth = tables
    cfg = RenderConfig(resolution=32, frames=5)
    render_samples(grid_net, samples, signaling, towers, truth, cfg, tmp_path / "r", workers=1)
    paths = write_previews(tmp_path / "r", tmp_path / "gallery", net=grid_net, n=2)
    names = sorted(p.name for p in paths)
    assert "contact_sheet.png" in names and sum(n.endswith(".gif") for n in names) == 2
    assert all(p.stat().st_size > 0 for p in paths)


def test_city_road_raster_alignment(grid_net, windows):
    """The cached city raster follows the tile origin: a one-pixel shift shifts the layer by one pixel,
    and it agrees with direct per-tile rasterisation except on a few edge pixels of thin roads."""
    from ml.render.image import render_road_layer

    ws, _ = windows
    for w in ws[:3]:
        a = render_road_layer(grid_net, w.tile, 64)
        mpp = w.tile.metres_per_pixel(64)
        shifted = Tile(w.tile.crs, w.tile.x0 + mpp, w.tile.y0, w.tile.size_m)
        b = render_road_layer(grid_net, shifted, 64)
        assert (a[:, 1:] == b[:, :-1]).all(axis=-1).mean() > 0.99
        direct = render_road_layer(grid_net, w.tile, 64, use_city_raster=False)
        assert (a == direct).all(axis=-1).mean() > 0.85


def test_render_at_32px_decodes(grid_net, windows):
    from ml.decode import decode_head_positions

    ws, _ = windows
    for w in ws[:3]:
        cond = render_condition_image(grid_net, w.tile, 32, w.record_xy, w.tower_xy, w.record_t)
        video = render_target_video(cond, w.tile, 32, w.truth_xy, w.truth_t, w.duration_s, 5)
        tk = np.linspace(0, w.duration_s, 5)
        want = w.tile.xy_to_pixel(np.column_stack([np.interp(tk, w.truth_t, w.truth_xy[:, 0]),
                                                   np.interp(tk, w.truth_t, w.truth_xy[:, 1])]), 32)
        got = decode_head_positions(video)
        inside = ((want > 2) & (want < 30)).all(axis=1)
        assert np.hypot(*(got[inside] - want[inside]).T).max() < 0.6


def test_trace_draws_the_polyline_through_serving_towers_or_record_positions(grid_net, windows):
    """``RenderConfig.trace``: the condition image's signaling polyline joins the serving towers or the records'
    observation-model positions; nothing else in the image changes."""
    from ml.render.dataset import PreparedSample, render_prepared

    w = windows[0][0]
    shifted = w.record_xy + np.array([180.0, -120.0])  # where an observation model would put the records
    s = PreparedSample("s", "test", w.tile, w.duration_s, w.record_xy, shifted, w.record_t, w.tower_xy,
                       w.truth_xy, w.truth_t)
    towers_img, _ = render_prepared(grid_net, s, RenderConfig(trace="serving_towers"))
    records_img, _ = render_prepared(grid_net, s, RenderConfig(trace="records"))
    np.testing.assert_array_equal(
        towers_img, render_condition_image(grid_net, w.tile, 64, w.record_xy, w.tower_xy, w.record_t))
    np.testing.assert_array_equal(
        records_img, render_condition_image(grid_net, w.tile, 64, shifted, w.tower_xy, w.record_t))
    assert (towers_img != records_img).any()
