"""Learning test: the real Wan backbone at ci size learns to draw a head dot along a toy path.

Toy task (``make_toy_rendered_arrays``): an L-shaped route along a road grid, three tower records
near its start, middle and end, every tower 3 px off the route (plus jitter), as real towers stand
off the road. The signaling prior (serving towers interpolated in time) misses the route by that
offset and cuts the corner of the L; a model that learns draws the dot on the road. Scored on
held-out toy windows.
The thresholds are tighter than what the untrained (prior-only) model reaches, so the test fails
when the model stops learning; with the paper's RGB objective (velocity loss, no foreground weight,
no prior) it fails too (see the issue note and docs/results.md).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TRAIN_STEPS = 300
TOWER_OFFSET_PX = (0, 3)
DETECT_MIN = 0.9
HEAD_ERROR_MAX_PX = 2.4


def train_toy(tmp_path, steps: int, model_overrides: dict | None = None, sft_overrides: dict | None = None,
              seed: int = 0, sample_steps: int = 8) -> dict[str, float]:
    """Train the ci preset on toy windows for ``steps`` steps; head metrics of Euler samples on held-out windows."""
    from ml.decode import drawing_metrics
    from ml.models.config import model_preset
    from ml.train.sft.config import sft_profile
    from ml.models.data import RenderedVideoDataset, make_toy_rendered_arrays, to_uint8_frames
    from ml.train.sft.module import SFTModule
    from ml.models.sampling import generate

    torch.set_num_threads(1)
    root = make_toy_rendered_arrays(tmp_path / "toy", n=24, resolution=32, frames=5, seed=0, splits=(0.67, 0.33),
                                    tower_offset_px=TOWER_OFFSET_PX)
    ds = RenderedVideoDataset(root, with_tokens=True, max_records=8)
    train_rows, val_rows = ds.reader.indices("train"), ds.reader.indices("val")

    def collate(rows):
        return torch.utils.data.default_collate([ds[int(i)] for i in rows])

    torch.manual_seed(seed)
    cfg = sft_profile("ci", model=model_preset("ci", frames=5, max_records=8, **(model_overrides or {})), init_checkpoint=None,
                      lr=1e-3, warmup_steps=0, max_steps=max(1, steps), **(sft_overrides or {}))
    module = SFTModule(cfg)
    opt = module.configure_optimizers()["optimizer"]
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        loss = module.flow_loss(collate(rng.choice(train_rows, 8)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    module.eval()
    val = collate(val_rows)
    video, layer = generate(module.model, val["cond"], sample_steps, torch.Generator().manual_seed(1), tokens=val["tokens"],
                            token_mask=val["token_mask"], frames=5)
    m = drawing_metrics(video, to_uint8_frames(val["video"]), layer)
    return {"head_detect_rate": float(np.mean(m["head_detect_rate"])),
            "head_error_px": float(np.nanmean(m["head_error_px"])) if np.isfinite(m["head_error_px"]).any() else np.inf}


def test_untrained_model_draws_the_prior_only(tmp_path):
    """The reference the thresholds are set against: detected everywhere, but off the route."""
    m = train_toy(tmp_path, 0)
    assert m["head_detect_rate"] >= DETECT_MIN
    assert m["head_error_px"] > HEAD_ERROR_MAX_PX, m


@pytest.mark.slow
def test_the_model_learns_to_draw_the_head_on_the_route(tmp_path):
    m = train_toy(tmp_path, TRAIN_STEPS)
    assert m["head_detect_rate"] >= DETECT_MIN, m
    assert m["head_error_px"] <= HEAD_ERROR_MAX_PX, m
