"""ml.pixels: the one uint8 <-> [-1, 1] conversion, the same for NumPy arrays and torch tensors."""

from __future__ import annotations

import numpy as np
import torch

from ml.pixels import SCALE, to_model_space, to_uint8, unit_from_255, unit_to_255


def test_every_pixel_level_round_trips():
    p = np.arange(256, dtype=np.uint8)
    m = to_model_space(p)
    assert m.dtype == np.float32 and m[0] == -1.0 and m[-1] == 1.0
    np.testing.assert_array_equal(to_uint8(m), p)
    t = to_model_space(torch.from_numpy(p))
    assert t.dtype == torch.float32
    np.testing.assert_array_equal(t.numpy(), m)
    assert to_uint8(t).dtype == torch.uint8
    np.testing.assert_array_equal(to_uint8(t).numpy(), p)


def test_to_uint8_clamps_and_rounds_half_to_even():
    x = np.array([-3.0, -1.0, 0.0, 1.0, 7.0, 1.0 / 255.0], dtype=np.float32)
    want = np.array([0, 0, 128, 255, 255, 128], dtype=np.uint8)  # 0 -> 127.5 -> 128 (even); 1/255 -> 128.0
    np.testing.assert_array_equal(to_uint8(x), want)
    np.testing.assert_array_equal(to_uint8(torch.from_numpy(x)).numpy(), want)


def test_numpy_and_torch_agree_bit_for_bit():
    x = np.random.default_rng(0).normal(0, 0.8, (3, 5, 7)).astype(np.float32)
    np.testing.assert_array_equal(to_uint8(torch.from_numpy(x)).numpy(), to_uint8(x))
    np.testing.assert_array_equal(unit_to_255(torch.from_numpy(x)).numpy(), unit_to_255(x))
    assert unit_to_255(x).dtype == np.float32 and SCALE == 127.5
    np.testing.assert_array_equal(unit_from_255(unit_to_255(np.float32(-1.0))), np.float32(-1.0))
