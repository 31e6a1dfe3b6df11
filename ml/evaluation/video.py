"""The video methods (``video_sft``, ``video_gdpo``): sample videos for the test conditions and decode them."""

from __future__ import annotations

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
    from ml.decode import drawing_metrics
    from ml.inference import SamplingSettings, predict_windows, rendered_window
    from ml.models import load_video_model
    from ml.observation.evidence import context_evidence
    from ml.render.arrays import RenderedArrays
    from ml.rewards import compute_rewards

    model, _ = load_video_model(checkpoint, device=device)
    arrays = RenderedArrays(rendered_dir)
    row_of = {sid: i for i, sid in enumerate(arrays.index["sample_id"].astype(str))}
    run = MethodRun(name, "signaling", {}, {})
    windows, rows = [], []
    for ctx in contexts:
        if ctx.sample_id not in row_of:
            run.failures[ctx.sample_id] = "sample not in the rendered arrays"
            run.predictions[ctx.sample_id] = np.full((ctx.n_eval, 2), np.nan)
            run.latency_ms[ctx.sample_id] = float("nan")
            continue
        r = row_of[ctx.sample_id]
        windows.append(rendered_window(arrays, r, ctx.sample_id, ctx.eval_t, ctx.net,
                                       model.cfg.max_records if model.cfg.uses_records else None,
                                       context_evidence(ctx, cfg.video_record_evidence_weight)))
        rows.append(r)
    settings = SamplingSettings(cfg.video_sampling_steps, cfg.video_noise_scale, seed=cfg.video_seed,
                                batch_size=cfg.video_batch_size)
    reward_rows = []
    for batch in predict_windows(model, windows, settings, device=device, frames=arrays.frames, progress=progress,
                                 label=name):
        batch_rows = np.array(rows[batch.start : batch.start + len(batch.windows)])
        _, true_video = arrays.batch(batch_rows)
        mpp = np.array([arrays.tile(r).metres_per_pixel(arrays.resolution) for r in batch_rows])
        rewards = compute_rewards(batch.video, true_video, mpp)
        drawing = drawing_metrics(batch.video, true_video, batch.layer)
        for j, pred in enumerate(batch.predictions):
            run.predictions[pred.key] = pred.xy
            run.latency_ms[pred.key] = pred.latency_ms
            if pred.failure is not None:
                run.failures[pred.key] = pred.failure
            reward_rows.append({"sample_id": pred.key, **{f"reward_{k}": float(v[j]) for k, v in rewards.items()},
                                **{k: float(v[j]) for k, v in drawing.items()}, "decode_issues": "; ".join(pred.issues)})
    run.extra["rewards"] = pd.DataFrame(reward_rows)
    return run
