"""The CPU estimator of GPU training memory (bench/memory.py) measures something real: saved activations
shrink under gradient checkpointing and grow with the batch. Tiny ``ci``-sized model, about a second."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/ is not an installed package

from bench.memory import ActivationModel, LiveTensorBytes, measure_step  # noqa: E402

TINY = dict(layers=2, frames=3, resolution=32)  # ci widths (2 heads of 16), 3 x 8 x 8 = 192 tokens


@pytest.fixture(scope="module")
def rows():
    torch.set_num_threads(1)
    return {(b, ck): measure_step("ci", batch=b, checkpointing=ck, **TINY) for b in (1, 2) for ck in (False, True)}


def test_checkpointing_reduces_saved_activations(rows):
    for b in (1, 2):
        plain, ckpt = rows[(b, False)], rows[(b, True)]
        assert ckpt["checkpointed_block_calls"] == TINY["layers"]  # diffusers checkpoints every block
        assert plain["checkpointed_block_calls"] == 0
        assert ckpt["saved_by_kind"].get("checkpoint_input", 0) > 0  # the retained block inputs are counted
        assert ckpt["saved_bytes"] < 0.7 * plain["saved_bytes"]


def test_bytes_grow_with_batch(rows):
    for ck in (False, True):
        one, two = rows[(1, ck)], rows[(2, ck)]
        assert two["saved_bytes"] > 1.3 * one["saved_bytes"]
        assert two["activation_peak_bytes"] > one["activation_peak_bytes"]
    assert rows[(1, False)]["attention_kernels"]  # the SDPA node was seen (flash kernel on the CPU)


def test_live_counter_sees_allocations_and_frees():
    live = LiveTensorBytes()
    with live:
        a = torch.ones(1000)  # 4000 bytes
        b = a * 2
        del a
        c = b[:10]  # a view: no new storage
    assert live.peak == 8000 and live.current == 4000
    del b, c
    assert live.current == 0


def test_activation_model_is_trilinear_in_the_saved_bytes():
    # synthetic rows whose saved bytes are exactly trilinear: the model reproduces them and adds one block
    def row(B, L, N, ck):
        blk = B * N * 10.0 + 5.0
        saved = (3.0 + B * 2.0 + L * (B * N * 1.0)) if ck else (3.0 + B * 2.0 + L * blk)
        return {"batch": B, "layers": L, "tokens": N, "saved_bytes": saved, "activation_peak_bytes": saved * 1.1}
    grid = [(B, L, N) for B in (1, 2) for L in (1, 2) for N in (8, 16)] + [(3, 3, 32)]
    am = ActivationModel([row(*p, False) for p in grid], [row(*p, True) for p in grid])
    assert am.block(4, 100) == pytest.approx(4 * 100 * 10.0 + 5.0)
    assert am.saved(True, 4, 12, 100) == pytest.approx(3.0 + 8.0 + 12 * 400.0)
    assert am.peak(True, 4, 12, 100) > am.saved(True, 4, 12, 100) + am.block(4, 100)
