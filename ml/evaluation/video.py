"""The video methods (``video_sft``, ``video_gdpo``): sample videos for the test conditions and decode them."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ml.baselines import SampleContext
from ml.evaluation.config import EvaluationConfig
from ml.evaluation.methods import MethodRun


def predict_video_method(
    name: str,
    checkpoint: Path,
    rendered_dir: Path,
    contexts: Sequence[SampleContext],
    cfg: EvaluationConfig,
    device: str = "cpu",
    progress: Callable[[str], None] | None = None,
) -> MethodRun:
    """Sample one video per condition (Euler ODE), decode it to GPS at each sample's eval times (the snapping
    reads the window's records beside the drawing, ``cfg.video_record_evidence_weight``).

    The latency of a trajectory is its share of the batched sampling time plus its decoding time.
    Per-sample rewards (distance, direction, connectivity against the true video) and drawing metrics
    (:func:`drawing_metrics`) are kept in ``run.extra["rewards"]``. Samples missing from the rendered arrays are counted as failures.
    """
    import torch

    from ml.decode import decode_video_to_trajectory, drawing_metrics
    from ml.models import load_video_model
    from ml.models.data import cond_to_tensor, record_tokens_batch
    from ml.models.sampling import generate
    from ml.observation.evidence import context_evidence
    from ml.render.arrays import RenderedArrays
    from ml.rewards import compute_rewards

    model, _ = load_video_model(checkpoint, device=device)
    arrays = RenderedArrays(rendered_dir)
    row_of = {sid: i for i, sid in enumerate(arrays.index["sample_id"].astype(str))}
    run = MethodRun(name, "signaling", {}, {})
    todo = []
    for ctx in contexts:
        if ctx.sample_id in row_of:
            todo.append(ctx)
        else:
            run.failures[ctx.sample_id] = "sample not in the rendered arrays"
            run.predictions[ctx.sample_id] = np.full((ctx.n_eval, 2), np.nan)
            run.latency_ms[ctx.sample_id] = float("nan")
    reward_rows = []
    bs = cfg.video_batch_size
    started = time.perf_counter()
    for b in range(0, len(todo), bs):
        batch = todo[b : b + bs]
        rows = np.array([row_of[c.sample_id] for c in batch])
        cond, true_video = arrays.batch(rows)
        gen = torch.Generator(device="cpu").manual_seed(cfg.video_seed + b)
        tokens = mask = None
        if model.cfg.uses_records:
            tokens, mask = (t.to(device) for t in record_tokens_batch(arrays, rows, model.cfg.max_records))
        t0 = time.perf_counter()
        frames, layers = generate(model, cond_to_tensor(cond).to(device), cfg.video_sampling_steps, generator=gen,
                                  tokens=tokens, token_mask=mask, frames=arrays.frames, noise_scale=cfg.video_noise_scale)
        per_sample_ms = (time.perf_counter() - t0) * 1e3 / len(batch)
        mpp = np.array([arrays.tile(r).metres_per_pixel(arrays.resolution) for r in rows])
        rewards = compute_rewards(frames, true_video, mpp)
        drawing = drawing_metrics(frames, true_video, layers)
        for j, (ctx, r) in enumerate(zip(batch, rows)):
            t1 = time.perf_counter()
            dec = decode_video_to_trajectory(frames[j], arrays.tile(r), arrays.resolution, arrays.duration_s(r),
                                             ctx.net, ctx.eval_t, layer=None if layers is None else layers[j],
                                             evidence=context_evidence(ctx, cfg.video_record_evidence_weight))
            run.predictions[ctx.sample_id] = np.asarray(dec.xy, dtype=np.float64).reshape(ctx.n_eval, 2)
            run.latency_ms[ctx.sample_id] = per_sample_ms + (time.perf_counter() - t1) * 1e3
            if not np.isfinite(dec.xy).any():
                run.failures[ctx.sample_id] = "; ".join(dec.issues) or "nothing decoded"
            reward_rows.append({"sample_id": ctx.sample_id, **{f"reward_{k}": float(v[j]) for k, v in rewards.items()},
                                **{k: float(v[j]) for k, v in drawing.items()}, "decode_issues": "; ".join(dec.issues)})
        if progress:  # a text progress bar, one log line per batch (the console shows it as it goes)
            from tqdm import tqdm

            progress(f"{name}: " + tqdm.format_meter(min(b + bs, len(todo)), len(todo), time.perf_counter() - started,
                                                     ncols=80, unit="window"))
    run.extra["rewards"] = pd.DataFrame(reward_rows)
    return run
