"""ml.geo.track.interpolate_positions: the one interpolation of positions along time."""

from __future__ import annotations

import numpy as np
import pytest

from ml.geo.track import collapse_same_time, interpolate_positions


def test_linear_between_and_held_beyond_the_ends():
    t = np.array([0.0, 10.0, 20.0])
    xy = np.array([[0.0, 0.0], [10.0, -10.0], [10.0, 10.0]])
    got = interpolate_positions(t, xy, [-5.0, 0.0, 5.0, 15.0, 20.0, 99.0])
    np.testing.assert_array_equal(got, [[0, 0], [0, 0], [5, -5], [10, 0], [10, 10], [10, 10]])
    assert got.dtype == np.float64


def test_one_position_is_held_everywhere():
    np.testing.assert_array_equal(interpolate_positions([3.0], [[1.0, 2.0]], [0.0, 3.0, 9.0]), [[1, 2]] * 3)


def test_empty_track_is_a_clear_error():
    with pytest.raises(ValueError, match="cannot interpolate request records in time: the track is empty"):
        interpolate_positions(np.zeros(0), np.zeros((0, 2)), [0.0, 1.0], "request records")
    with pytest.raises(ValueError, match="2 times but 1"):
        interpolate_positions([0.0, 1.0], [[0.0, 0.0]], [0.5])


def test_same_time_positions_are_averaged_and_unsorted_tracks_sorted():
    t = np.array([10.0, 0.0, 10.0])
    xy = np.array([[10.0, 0.0], [0.0, 0.0], [10.0, 20.0]])
    ct, cxy = collapse_same_time(t, xy)
    np.testing.assert_array_equal(ct, [0.0, 10.0])
    np.testing.assert_array_equal(cxy, [[0, 0], [10, 10]])
    np.testing.assert_array_equal(interpolate_positions(t, xy, [5.0, 10.0]), [[5, 5], [10, 10]])


def test_strictly_increasing_track_is_plain_np_interp():
    rng = np.random.default_rng(0)
    t = np.sort(rng.uniform(0, 100, 30))
    xy = rng.normal(0, 50, (30, 2))
    q = np.linspace(-10, 110, 77)
    want = np.column_stack([np.interp(q, t, xy[:, 0]), np.interp(q, t, xy[:, 1])])
    assert interpolate_positions(t, xy, q).tobytes() == want.tobytes()
    ct, cxy = collapse_same_time(t, xy)
    assert ct is t or np.shares_memory(ct, t)
