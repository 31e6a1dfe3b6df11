"""Decoding rendered (and corrupted) videos back into trajectories."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from ml.decode import (
    decode_head_positions,
    decode_path_mask,
    decode_video_to_trajectory,
    skeleton_endpoints,
    skeletonize_path,
)
from ml.render import RenderConfig, render_condition_image, render_target_video
from ml.render.dataset import video_to_model_space
from ml.render.synthetic import synthetic_windows

RES, K = 64, 9


@pytest.fixture(scope="module")
def rendered(grid_net):
    cfg = RenderConfig(zoom_sizes_m=(1500.0, 2500.0, 4000.0))
    # steady driving (no stops, one speed factor): errors come from the representation, not from
    # speed changes between frames, which no decoder can see
    ws, _ = synthetic_windows(grid_net, 6, seed=11, cfg=cfg, stop_prob=0.0, speed_factor=(0.7, 0.7))
    out = []
    for w in ws:
        cond = render_condition_image(grid_net, w.tile, RES, w.record_xy, w.tower_xy, w.record_t)
        video = render_target_video(cond, w.tile, RES, w.truth_xy, w.truth_t, w.duration_s, K)
        out.append((w, cond, video))
    return out


def _truth_px(w, res=RES, k=K):
    tk = np.linspace(0, w.duration_s, k)
    xy = np.column_stack([np.interp(tk, w.truth_t, w.truth_xy[:, 0]), np.interp(tk, w.truth_t, w.truth_xy[:, 1])])
    return w.tile.xy_to_pixel(xy, res)


def _inside(px, res=RES, margin=2.5):
    return ((px > margin) & (px < res - margin)).all(axis=1)


def test_heads_recovered_exactly(rendered):
    for w, _, video in rendered:
        got = decode_head_positions(video)
        want = _truth_px(w)
        ok = _inside(want)
        assert np.isfinite(got[ok]).all()
        err = np.hypot(*(got[ok] - want[ok]).T)
        assert err.max() < 0.5 and np.median(err) < 0.3


def test_trajectory_recovers_truth_unsnapped(rendered):
    errs, mpps = [], []
    for w, _, video in rendered:
        d = decode_video_to_trajectory(video, w.tile, RES, w.duration_s, None, w.truth_t, snap=False)
        assert d.xy.shape == (len(w.truth_t), 2) and np.isfinite(d.xy).all()
        assert d.n_missing_dots == 0 and not d.snapped
        errs.append(np.hypot(*(d.xy - w.truth_xy).T) / w.tile.metres_per_pixel(RES))
    e = np.concatenate(errs)
    assert np.median(e) < 0.5, f"median round-trip error {np.median(e):.2f} px"


def test_trajectory_snapped_to_roads(grid_net, rendered):
    from ml.mapmatch import match_trajectory  # noqa: F401  (engine present)

    errs = []
    for w, _, video in rendered[:4]:
        d = decode_video_to_trajectory(video, w.tile, RES, w.duration_s, grid_net, w.truth_t, snap=True)
        assert d.snapped and d.snap_method == "hmm", d.issues
        cand = grid_net.edge_candidates(d.xy, radius_m=2.0, max_per_point=1)
        assert len(np.unique(cand.point)) == len(d.xy), "every snapped point lies on a road"
        errs.append(np.hypot(*(d.xy - w.truth_xy).T))
    assert np.median(np.concatenate(errs)) < 30.0


def test_float_and_channels_first_inputs(rendered):
    w, _, video = rendered[0]
    ref = decode_head_positions(video)
    np.testing.assert_allclose(decode_head_positions(video.astype(np.float32) / 255.0), ref, atol=1e-4)
    np.testing.assert_allclose(decode_head_positions(video_to_model_space(video)), ref, atol=1e-3)


def test_path_mask_and_skeleton(rendered):
    from skimage.measure import label

    for w, cond, video in rendered:
        assert not decode_path_mask(cond).any(), "nothing path-coloured in the conditioning image"
        m = decode_path_mask(video[-1])
        assert m.any()
        skel = skeletonize_path(m)
        assert skel.sum() <= m.sum()
        # a drive within the tile is one connected stroke
        if _inside(w.tile.xy_to_pixel(w.truth_xy, RES), margin=0).all():
            assert label(m, connectivity=2).max() == 1
    assert len(skeleton_endpoints(np.eye(8, dtype=bool))) == 2


# ------------------------------------------------------------------ degradation
def _corrupt(video, kind, rng):
    v = video.astype(np.float32)
    if kind == "noise":
        v = v + rng.normal(0, 12, v.shape)
    elif kind == "blur":
        v = gaussian_filter(v, sigma=(0, 0.6, 0.6, 0))
    elif kind == "drift":
        v = v * np.array([0.9, 1.05, 0.92]) + np.array([12, -8, 15])
    elif kind == "all":
        v = gaussian_filter(v, sigma=(0, 0.5, 0.5, 0)) * np.array([0.93, 1.04, 0.95]) + rng.normal(0, 8, v.shape)
    return np.clip(v, 0, 255)


@pytest.mark.parametrize("kind", ["noise", "blur", "drift", "all"])
def test_graceful_on_corrupted_videos(rendered, kind):
    rng = np.random.default_rng(0)
    errs, found = [], []
    for w, _, video in rendered:
        bad = _corrupt(video, kind, rng)
        got = decode_head_positions(bad)
        want = _truth_px(w)
        ok = _inside(want)
        found.append(np.isfinite(got[ok]).all(axis=1))
        e = np.hypot(*(got[ok] - want[ok]).T)
        errs.append(e[np.isfinite(e)])
        d = decode_video_to_trajectory(bad, w.tile, RES, w.duration_s, None, w.truth_t, snap=False)
        assert np.isfinite(d.xy).all()
    assert np.concatenate(found).mean() >= 0.95
    assert np.median(np.concatenate(errs)) < 0.6


def test_dropped_frames_and_dots(rendered):
    w, cond, video = rendered[2]
    v = video.copy()
    v[3] = cond  # a frame without dot or path
    v[5] = 0  # a black frame
    heads = decode_head_positions(v)
    assert np.isnan(heads[[3, 5]]).all() and np.isfinite(np.delete(heads, [3, 5], axis=0)).all()
    d = decode_video_to_trajectory(v, w.tile, RES, w.duration_s, None, w.truth_t, snap=False)
    assert d.n_missing_dots == 2
    assert any("missing in 2 of 9" in s for s in d.issues)
    assert np.isfinite(d.xy).all()
    e = np.hypot(*(d.xy - w.truth_xy).T) / w.tile.metres_per_pixel(RES)
    assert np.median(e) < 1.5
    # first and last dot dropped: positions held, reported
    v2 = video.copy()
    v2[0] = cond
    v2[-1, ..., :] = np.where(decode_path_mask(video[-1], include_head=False)[..., None], video[-1], cond)
    d2 = decode_video_to_trajectory(v2, w.tile, RES, w.duration_s, None, w.truth_t, snap=False)
    assert any("first or last" in s for s in d2.issues) and np.isfinite(d2.xy).all()


def test_broken_path_is_reported(rendered):
    w, cond, video = rendered[1]
    v = video.copy()
    heads = decode_head_positions(video)
    # erase the last frame's path in a band between two middle anchors
    c0, r0 = heads[4]
    c1, r1 = heads[5]
    cm, rm = int((c0 + c1) / 2), int((r0 + r1) / 2)
    sl = (slice(max(rm - 2, 0), rm + 3), slice(max(cm - 2, 0), cm + 3))
    v[-1][sl] = cond[sl]
    d = decode_video_to_trajectory(v, w.tile, RES, w.duration_s, None, w.truth_t, snap=False)
    assert np.isfinite(d.xy).all()
    assert any("broken" in s or "from the drawn path" in s for s in d.issues), d.issues


def test_no_dots_at_all(rendered):
    w, cond, _ = rendered[0]
    video = np.repeat(cond[None], K, axis=0)
    d = decode_video_to_trajectory(video, w.tile, RES, w.duration_s, None, w.truth_t)
    assert np.isnan(d.xy).all() and d.n_missing_dots == K
    assert any("no head dot" in s for s in d.issues)
    noise = np.random.default_rng(1).integers(0, 256, (K, RES, RES, 3)).astype(np.uint8)
    d = decode_video_to_trajectory(noise, w.tile, RES, w.duration_s, None, w.truth_t)
    assert d.xy.shape == (len(w.truth_t), 2)  # decodes something or NaNs, never raises


def test_travel_time_interpolation(grid_net):
    from ml.decode import interpolate_by_travel_time

    rng = np.random.default_rng(0)
    from ml.render.synthetic import drive_route

    xy, _ = drive_route(grid_net, rng, 300.0, step_s=5.0, stop_prob=0.0)
    route = xy[np.r_[True, np.hypot(*np.diff(xy, axis=0).T) > 0]]
    cum = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(route, axis=0).T))])
    a_m = np.array([0.0, cum[-1] / 2, cum[-1]])
    a_t = np.array([0.0, 100.0, 200.0])
    q = np.linspace(-10, 210, 45)
    p = interpolate_by_travel_time(grid_net, route, cum, a_m, a_t, q)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p[0], route[0], atol=1e-6)  # held before the first anchor
    np.testing.assert_allclose(p[-1], route[-1], atol=1e-6)  # held after the last one
    mid = interpolate_by_travel_time(grid_net, route, cum, a_m, a_t, np.array([100.0]))[0]
    half = np.interp(cum[-1] / 2, cum, route[:, 0]), np.interp(cum[-1] / 2, cum, route[:, 1])
    np.testing.assert_allclose(mid, half, atol=1e-3)  # exact at an anchor
    # progress along the route never goes backwards
    s = np.array([cum[np.argmin(np.hypot(*(route - pt).T))] for pt in p])
    assert np.all(np.diff(s) >= -np.diff(cum).max())


def test_spur_pruning():
    from ml.decode import default_prune_px, prune_spurs

    s = np.zeros((16, 16), dtype=bool)
    s[8, 1:15] = True  # the path
    s[6:8, 7] = True  # a 2-px spur ending at a junction
    assert len(skeleton_endpoints(s)) == 3
    p = prune_spurs(s, 2)
    assert len(skeleton_endpoints(p)) == 2 and p[8, 1:15].all() and not p[6, 7]
    line = np.zeros((12, 12), dtype=bool)
    line[3, 2:9] = True
    np.testing.assert_array_equal(prune_spurs(line, 3), line)  # no junction: ends kept
    assert default_prune_px(64) == 0 and default_prune_px(128) >= 2


class _PullTowards:
    """An observation model whose every record says "near ``xy``" (a Gaussian of ``sigma_m``)."""

    name = "pull"
    sigma_m = 80.0

    def __init__(self, xy):
        self.xy = np.asarray(xy, dtype=float)

    def log_likelihood(self, cell, left, xy):
        return -0.5 * ((np.asarray(xy) - self.xy) ** 2).sum(-1) / self.sigma_m**2


def test_record_evidence_reweighs_the_snapping(grid_net, rendered):
    """The records' log-likelihoods join the snapping HMM: evidence pulling away from the drawing moves the decoded
    positions at the record times toward it; weight 0 is the drawing alone."""
    from ml.observation.evidence import RecordEvidence

    w, _, video = rendered[0]
    plain = decode_video_to_trajectory(video, w.tile, RES, w.duration_s, grid_net, w.truth_t)
    mid = len(w.truth_t) // 2
    pull = plain.xy[mid] + np.array([120.0, 120.0])  # off the decoded route
    t_rec = np.array([w.truth_t[mid - 1], w.truth_t[mid], w.truth_t[mid + 1]])
    cells = np.zeros(3, dtype=np.int64)
    left = -np.ones(3, dtype=np.int64)
    model = _PullTowards(pull)
    off = decode_video_to_trajectory(video, w.tile, RES, w.duration_s, grid_net, w.truth_t,
                                     evidence=RecordEvidence(t_rec, cells, left, model, 0.0))
    np.testing.assert_allclose(off.xy, plain.xy)
    pulled = decode_video_to_trajectory(video, w.tile, RES, w.duration_s, grid_net, w.truth_t,
                                        evidence=RecordEvidence(t_rec, cells, left, model, 50.0))
    assert pulled.snapped and pulled.snap_method == "hmm", pulled.issues
    d_plain = np.hypot(*(plain.xy[mid] - pull))
    d_pulled = np.hypot(*(pulled.xy[mid] - pull))
    assert d_pulled < d_plain - 20.0, (d_plain, d_pulled)


def test_record_evidence_checks_its_inputs():
    from ml.observation.evidence import RecordEvidence

    with pytest.raises(ValueError, match="differ in length"):
        RecordEvidence(np.zeros(2), np.zeros(3, dtype=np.int64), np.zeros(3, dtype=np.int64), _PullTowards((0, 0)))
    with pytest.raises(ValueError, match="weight must be >= 0"):
        RecordEvidence(np.zeros(1), np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), _PullTowards((0, 0)), -1.0)
