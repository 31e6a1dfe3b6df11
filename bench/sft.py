"""Benchmark of the video model on this machine: SFT throughput and sampling latency.

    .venv/bin/python bench/sft.py [--presets demo ci] [--threads 2] [--steps 4] [--sample-steps 20]

Training: flow-matching steps (forward, backward, AdamW) on toy rendered arrays at the preset's
resolution, 9 frames, the profile's batch size; first step excluded as warm-up. Sampling: the Euler
ODE (``--sample-steps`` steps) for a batch of 1 and of 8 condition images; latency per trajectory
excludes decoding. Writes ``outputs/bench/sft.json`` with the machine description.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine  # noqa: E402


def bench_preset(preset: str, steps: int, sample_steps: int, device: str) -> dict:
    import torch

    from ml.models.backbone import VideoFlowModel
    from ml.train.sft.config import sft_profile
    from ml.models.data import RenderedVideoDataset, make_toy_rendered_arrays
    from ml.models.flow_matching import flow_matching_loss, interpolate, sample_timesteps
    from ml.models.sampling import euler_sample

    cfg = sft_profile(preset)
    mc = cfg.model
    B = cfg.batch_size
    with tempfile.TemporaryDirectory() as d:
        make_toy_rendered_arrays(d, n=max(B, 8), resolution=mc.resolution, frames=mc.frames, seed=0)
        ds = RenderedVideoDataset(d)
        video = torch.stack([ds[i % len(ds)]["video"] for i in range(B)]).to(device)
        cond = torch.stack([ds[i % len(ds)]["cond"] for i in range(B)]).to(device)
    torch.manual_seed(0)
    model = VideoFlowModel(mc).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    times, losses = [], []
    for i in range(steps + 1):
        t = time.perf_counter()
        e = torch.randn_like(video)
        s = sample_timesteps(B, device=device)
        loss = flow_matching_loss(model(interpolate(video, e, s), s, cond), video, e)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t)
        losses.append(float(loss.detach()))
    step_s = sum(times) / len(times)
    model.eval()
    sample = {}
    for nb in (1, 8):
        c = cond[:1].repeat(nb, 1, 1, 1)
        t = time.perf_counter()
        euler_sample(model, c, sample_steps, torch.Generator().manual_seed(0))
        dt = time.perf_counter() - t
        sample[f"batch{nb}_s"] = dt
        sample[f"batch{nb}_per_trajectory_s"] = dt / nb
    return {
        "preset": preset, "resolution": mc.resolution, "frames": mc.frames, "batch_size": B,
        "patch_size": list(mc.patch_size), "layers": mc.num_layers, "heads": mc.num_heads, "head_dim": mc.head_dim,
        "n_parameters": model.n_parameters(), "tokens_per_video": mc.frames * (mc.resolution // mc.patch_size[1]) ** 2,
        "timed_steps": len(times), "step_s": step_s, "train_samples_per_s": B / step_s,
        "sample_steps": sample_steps, "sampling": sample, "loss_first_last": [losses[0], losses[-1]],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["ci", "demo"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--sample-steps", type=int, default=20)
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench" / "sft.json")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    res = {"name": "sft", "machine": {**machine(), "torch_threads": a.threads}, "device": device,
           "command": "python bench/sft.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "results": []}
    for preset in a.presets:
        r = bench_preset(preset, a.steps, a.sample_steps, device)
        print(json.dumps(r), flush=True)
        r["load_avg_1m_after"] = os.getloadavg()[0]
        res["results"].append(r)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
