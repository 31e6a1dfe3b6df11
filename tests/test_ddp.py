"""Multi-device training without a GPU: Lightning DDP on two CPU processes (gloo) for a few SFT steps."""

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
