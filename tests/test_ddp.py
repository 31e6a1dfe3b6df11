"""Multi-device training without a GPU: Lightning DDP on two CPU processes (gloo) for a few SFT and GDPO steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch


@pytest.mark.slow
def test_two_ddp_ranks_see_different_windows_and_end_with_the_same_weights(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("ddp_sft_probe.py")), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"seen_rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 and r["strategy"] == "DDPStrategy" and r["backend"] == "gloo" for r in ranks)
    seen0, seen1 = set(ranks[0]["seen"]), set(ranks[1]["seen"])
    assert seen0 and seen1 and not seen0 & seen1, (seen0, seen1)  # DistributedSampler: each rank its own windows
    start = torch.load(tmp_path / "start_rank0.pt")
    end0, end1 = torch.load(tmp_path / "end_rank0.pt"), torch.load(tmp_path / "end_rank1.pt")
    assert all(torch.equal(end0[k], end1[k]) for k in end0)  # gradients were all-reduced
    assert any(not torch.equal(start[k], end0[k]) for k in start)  # and training moved the weights
    assert (tmp_path / "sft" / "model.pt").is_file()


@pytest.mark.slow
def test_gdpo_on_two_ddp_ranks_rolls_out_different_conditions_and_keeps_one_policy(tmp_path: Path) -> None:
    from ml.models.backbone import build_video_model
    from ml.models.checkpoint import save_video_model
    from ml.models.config import model_preset
    from ml.models.data import make_toy_rendered_arrays

    data = make_toy_rendered_arrays(tmp_path / "r32_k5", n=16, resolution=32, frames=5, seed=0, shard_size=8)
    torch.manual_seed(0)
    mcfg = model_preset("ci", frames=5)
    sft = save_video_model(tmp_path / "sft.pt", build_video_model(mcfg), mcfg)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("ddp_gdpo_probe.py")), str(data), str(sft),
                           str(tmp_path)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"gdpo_seen_rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 and r["strategy"] == "DDPStrategy" and r["backend"] == "gloo" for r in ranks)
    seen0, seen1 = ranks[0]["seen"], ranks[1]["seen"]
    assert len(seen0) == len(seen1) == 3 * 2 and seen0 != seen1  # each rank rolled out its own sampled conditions
    assert any(ranks[0]["updated"]) or any(ranks[1]["updated"])  # some group carried signal: there was a gradient
    start = torch.load(tmp_path / "gdpo_start_rank0.pt")
    end0, end1 = torch.load(tmp_path / "gdpo_end_rank0.pt"), torch.load(tmp_path / "gdpo_end_rank1.pt")
    assert all(torch.equal(end0[k], end1[k]) for k in end0)  # gradients were all-reduced: one policy
    assert any(not torch.equal(start[k], end0[k]) for k in start)  # and the updates moved it
    assert (tmp_path / "gdpo" / "gdpo.pt").is_file()
