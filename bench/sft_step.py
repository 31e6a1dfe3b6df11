"""Training-step time of model sizes side by side (one run, same machine state).

    python -m bench.sft_step            # demo preset with 1x4x4 vs 1x8x8 patches, deeper, 32 px

Writes ``outputs/bench/sft_step.json``: seconds per AdamW step for a batch of 8 videos of 9 frames.
"""

from __future__ import annotations

import time

import torch

from bench.common import write_result
from ml.models.backbone import build_video_model
from ml.models.config import model_preset
from ml.models.flow_matching import flow_matching_loss, interpolate

VARIANTS = [  # (label, resolution, patch, layers)
    ("demo 64px patch 1x4x4", 64, (1, 4, 4), 4),
    ("demo 64px patch 1x8x8", 64, (1, 8, 8), 4),
    ("64px patch 1x8x8, 6 layers", 64, (1, 8, 8), 6),
    ("32px patch 1x4x4", 32, (1, 4, 4), 4),
]


def step_seconds(resolution: int, patch: tuple[int, int, int], layers: int, batch: int = 8, repeats: int = 4) -> dict:
    torch.manual_seed(0)
    model = build_video_model(model_preset("demo", resolution=resolution, patch_size=patch, num_layers=layers))
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x0 = torch.randn(batch, 3, 9, resolution, resolution)
    cond = torch.randn(batch, 3, resolution, resolution)
    times = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        s = torch.rand(batch)
        e = torch.randn_like(x0)
        loss = flow_matching_loss(model(interpolate(x0, e, s), s, cond), x0, e)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return {"params": sum(p.numel() for p in model.parameters()), "s_per_step_min": min(times[1:]),
            "s_per_step_median": sorted(times[1:])[len(times[1:]) // 2]}


def main() -> dict:
    torch.set_num_threads(2)
    rows = []
    for label, res, patch, layers in VARIANTS:
        rows.append({"variant": label, **step_seconds(res, patch, layers)})
        print(rows[-1], flush=True)
    write_result("sft_step", {"batch": 8, "frames": 9, "threads": 2, "rows": rows})
    return {"rows": rows}


if __name__ == "__main__":
    main()
