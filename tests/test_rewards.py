"""Traj-GDPO rewards on hand-made videos: exact, shifted, reversed, broken and fragmented paths."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.draw import disk, line
from skimage.measure import label, regionprops

from ml.rewards import (
    RewardConfig,
    compute_rewards,
    connectivity_reward,
    direction_reward,
    distance_frame_indices,
    distance_reward,
    path_topology,
)

from ml.render import style

# Hand-made videos use the renderer's colours, so the real decoder (ml.decode) reads them too.
BG = style.BACKGROUND
PATH = style.PATH
HEAD = style.HEAD
H = W = 32
K = 9


def _close(img: np.ndarray, colour: tuple[int, int, int], tol: int = 40) -> np.ndarray:
    return (np.abs(img.astype(np.int16) - np.array(colour, dtype=np.int16)) <= tol).all(-1)


def toy_head_decoder(video: np.ndarray) -> np.ndarray:
    """(K, 2) (col, row) centroid of the largest head-coloured blob per frame, NaN where none."""
    out = np.full((video.shape[0], 2), np.nan)
    for k, frame in enumerate(video):
        lab = label(_close(frame, HEAD), connectivity=2)
        props = regionprops(lab)
        if props:
            p = max(props, key=lambda r: r.area)
            r, c = p.centroid
            out[k] = (c + 0.5, r + 0.5)
    return out


def toy_path_decoder(frame: np.ndarray) -> np.ndarray:
    return _close(frame, PATH) | _close(frame, HEAD)


def draw_video(points_colrow: list[tuple[int, int]], drop_head: set[int] = frozenset(), gaps: list[tuple[int, int]] = (),
               width: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A K-frame video drawing the polyline progressively; returns (video, true head (K, 2))."""
    pts = np.asarray(points_colrow, dtype=float)
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    cum = np.concatenate([[0], np.cumsum(seg)])
    video = np.empty((K, H, W, 3), np.uint8)
    heads = np.zeros((K, 2))
    for k in range(K):
        frame = np.empty((H, W, 3), np.uint8)
        frame[:] = BG
        dist = cum[-1] * k / (K - 1)
        i = min(int(np.searchsorted(cum, dist, side="right")) - 1, len(seg) - 1)
        f = 0.0 if seg[i] == 0 else (dist - cum[i]) / seg[i]
        head = pts[i] + f * (pts[i + 1] - pts[i])
        poly = np.vstack([pts[: i + 1], head])
        for a, b in zip(poly[:-1], poly[1:]):
            rr, cc = line(int(round(a[1])), int(round(a[0])), int(round(b[1])), int(round(b[0])))
            for dr in range(width):
                frame[np.clip(rr + dr, 0, H - 1), cc] = PATH
        for r0, r1 in gaps:
            frame[r0:r1] = BG
        if k not in drop_head:
            rr, cc = disk((round(head[1]), round(head[0])), 2, shape=(H, W))
            frame[rr, cc] = HEAD
        video[k] = frame
        heads[k] = head
    return video, heads


L_PATH = [(4, 6), (24, 6), (24, 26)]


# ---------------------------------------------------------------- distance
def test_distance_frames_first_last_three_between() -> None:
    assert distance_frame_indices(9).tolist() == [0, 2, 4, 6, 8]
    assert distance_frame_indices(5).tolist() == [0, 1, 2, 3, 4]


def test_distance_reward_mapping_and_missing() -> None:
    cfg = RewardConfig(distance_scale_m=200.0)
    true = np.stack([np.linspace(2, 20, K), np.full(K, 10.0)], axis=1)
    assert distance_reward(true, true, 10.0, cfg)[0] == pytest.approx(1.0)
    shifted = true + np.array([3.0, 4.0])  # 5 px = 50 m at 10 m/px
    assert distance_reward(shifted, true, 10.0, cfg)[0] == pytest.approx(math.exp(-50 / 200))
    gen = true.copy()
    gen[4] = np.nan  # a scored frame lost its dot -> that frame scores 0
    assert distance_reward(gen, true, 10.0, cfg)[0] == pytest.approx(4 / 5)
    gen = true.copy()
    gen[3] = np.nan  # not a scored frame
    assert distance_reward(gen, true, 10.0, cfg)[0] == pytest.approx(1.0)
    assert distance_reward(np.full_like(true, np.nan), true, 10.0, cfg)[0] == 0.0
    t2 = true.copy()
    t2[8] = np.nan  # a missing *true* dot leaves the frame out
    assert distance_reward(shifted, t2, 10.0, cfg)[0] == pytest.approx(math.exp(-50 / 200))
    # batched with per-sample scale; farther is worse
    b = distance_reward(np.stack([shifted, shifted]), np.stack([true, true]), np.array([10.0, 40.0]), cfg)
    assert b.shape == (2,) and b[0] > b[1] and b[1] == pytest.approx(math.exp(-200 / 200))


# ---------------------------------------------------------------- direction
def test_direction_reward_cases() -> None:
    true = np.stack([np.linspace(2, 20, K), np.full(K, 10.0)], axis=1)
    assert direction_reward(true, true)[0] == pytest.approx(1.0)
    assert direction_reward(true[::-1], true)[0] == pytest.approx(-1.0)
    perp = np.stack([np.full(K, 10.0), np.linspace(2, 20, K)], axis=1)
    assert direction_reward(perp, true)[0] == pytest.approx(0.0, abs=1e-12)
    missing = true.copy()
    missing[0] = np.nan
    assert direction_reward(missing, true)[0] == -1.0  # missing -> worst
    still = np.tile([[5.0, 5.0]], (K, 1))
    assert direction_reward(still, true)[0] == 0.0  # no generated direction
    t2 = true.copy()
    t2[0] = np.nan  # truth falls back to the first found dot
    assert direction_reward(true, t2)[0] == pytest.approx(1.0)


# ---------------------------------------------------------------- connectivity
def _mask_from(points: list[tuple[int, int]], width: int = 1) -> np.ndarray:
    m = np.zeros((H, W), bool)
    for a, b in zip(points[:-1], points[1:]):
        rr, cc = line(a[1], a[0], b[1], b[0])
        for dr in range(width):
            m[np.clip(rr + dr, 0, H - 1), cc] = True
    return m


def test_connectivity_good_paths() -> None:
    assert connectivity_reward(_mask_from([(3, 3), (28, 3)])) == 1.0
    assert connectivity_reward(_mask_from(L_PATH)) == 1.0
    assert connectivity_reward(_mask_from(L_PATH, width=2)) == 1.0
    assert connectivity_reward(_mask_from([(3, 3), (15, 3), (15, 15), (28, 15), (28, 28)], width=2)) == 1.0
    assert connectivity_reward(_mask_from([(3, 3), (25, 25)])) == 1.0  # diagonal, 8-connected


def test_connectivity_bad_paths() -> None:
    broken = _mask_from(L_PATH)
    broken[6, 12:14] = False
    assert path_topology(broken) == (2, 4)
    assert connectivity_reward(broken) == 0.0
    fragmented = np.zeros((H, W), bool)
    fragmented[5, 2:8] = fragmented[12, 10:20] = fragmented[25, 3:30] = True
    assert connectivity_reward(fragmented) == 0.0
    branched = _mask_from([(3, 10), (28, 10)]) | _mask_from([(15, 10), (15, 28)])
    assert path_topology(branched)[1] == 3 and connectivity_reward(branched) == 0.0
    loop = _mask_from([(5, 5), (25, 5), (25, 25), (5, 25), (5, 5)])
    assert path_topology(loop) == (1, 0) and connectivity_reward(loop) == 0.0
    assert connectivity_reward(np.zeros((H, W), bool)) == 0.0
    speck = _mask_from(L_PATH)
    speck[28, 2] = True  # one stray pixel is a second component
    assert connectivity_reward(speck) == 0.0


# ---------------------------------------------------------------- batched entry on videos
def test_compute_rewards_on_hand_made_videos() -> None:
    true, true_head = draw_video(L_PATH)
    reversed_, _ = draw_video(L_PATH[::-1])
    fragmented, _ = draw_video(L_PATH, gaps=[(10, 12), (18, 20)])
    no_dots, _ = draw_video(L_PATH, drop_head=set(range(K)))
    shifted, _ = draw_video([(c + 3, r) for c, r in L_PATH])
    gen = np.stack([true, reversed_, fragmented, no_dots, shifted])
    truth = np.stack([true] * 5)
    mpp = np.full(5, 10.0)
    r = compute_rewards(gen, truth, mpp, head_decoder=toy_head_decoder, path_decoder=toy_path_decoder)
    assert set(r) == {"distance", "direction", "connectivity"}
    assert all(v.shape == (5,) for v in r.values())
    d, a, c = r["distance"], r["direction"], r["connectivity"]
    assert d[0] > 0.95 and a[0] > 0.99 and c[0] == 1.0  # the truth itself
    assert a[1] < -0.99 and d[1] < d[0] and c[1] == 1.0  # reversed: connected but wrong way
    assert c[2] == 0.0 and d[2] > 0.95 and a[2] > 0.99  # fragmented last frame
    assert d[3] == 0.0 and a[3] == -1.0  # no dots: worst values
    assert d[4] == pytest.approx(math.exp(-30 / 200), abs=0.03) and a[4] > 0.99  # 3 px = 30 m off
    # truth as head positions gives the same rewards as truth as videos
    heads = np.stack([toy_head_decoder(true)] * 5)
    r2 = compute_rewards(gen, heads, mpp, head_decoder=toy_head_decoder, path_decoder=toy_path_decoder)
    for k in r:
        np.testing.assert_allclose(r[k], r2[k])
    # the drawn head and the decoded one agree
    np.testing.assert_allclose(toy_head_decoder(true), true_head + 0.5, atol=1.0)


def test_compute_rewards_rejects_bad_shapes() -> None:
    v, _ = draw_video(L_PATH)
    with pytest.raises(ValueError, match="gen_videos"):
        compute_rewards(v, v, 1.0, head_decoder=toy_head_decoder, path_decoder=toy_path_decoder)
    with pytest.raises(ValueError, match="truth"):
        compute_rewards(v[None], np.zeros((1, K)), 1.0, head_decoder=toy_head_decoder, path_decoder=toy_path_decoder)


def test_compute_rewards_with_ml_decode_defaults() -> None:
    """The default decoders (ml.decode) on the same hand-made videos give the same verdicts."""
    true, _ = draw_video(L_PATH)
    reversed_, _ = draw_video(L_PATH[::-1])
    fragmented, _ = draw_video(L_PATH, gaps=[(10, 12), (18, 20)])
    no_dots, _ = draw_video(L_PATH, drop_head=set(range(K)))
    gen = np.stack([true, reversed_, fragmented, no_dots])
    r = compute_rewards(gen, np.stack([true] * 4), 10.0)
    assert r["distance"][0] > 0.95 and r["direction"][0] > 0.99 and r["connectivity"][0] == 1.0
    assert r["direction"][1] < -0.99 and r["connectivity"][1] == 1.0
    assert r["connectivity"][2] == 0.0
    assert r["distance"][3] == 0.0 and r["direction"][3] == -1.0
