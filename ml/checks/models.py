"""Checks on a trained video model: its weights are finite, and it decodes a few val windows to trajectories.

A checkpoint with NaN or infinite weights (a diverged step, a bad bf16 cast) still loads and samples; what
comes out is an evaluation full of NaNs. These checks stop it where it is written (``sft_checkpoint``,
``gdpo_checkpoint``), before GDPO, the predictions and the registered model read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ml.checks.outcome import CheckOutcome, first

if TYPE_CHECKING:
    from ml.evaluation.config import EvaluationConfig
    from ml.evaluation.methods import MethodRun
    from ml.baselines import SampleContext


def check_video_weights(path: str | Path) -> CheckOutcome:
    """Every floating-point tensor of the checkpoint at ``path`` (``ml.models.save_video_model`` format) is finite.

    An unreadable file (missing, truncated, not the format) fails the check with the reader's message. Only the
    stored weights are read: a partial checkpoint (LoRA of a pretrained base) stores just what was trained.
    """
    import torch

    from ml.models.checkpoint import CheckpointError, read_checkpoint

    path = Path(path)
    try:
        state = read_checkpoint(path)["state_dict"]
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        return CheckOutcome.failed(f"{path}: the checkpoint cannot be read: {exc}", checkpoint=str(path))
    bad: dict[str, int] = {}
    n_params = 0
    for name, t in state.items():
        if not (isinstance(t, torch.Tensor) and t.is_floating_point()):
            continue
        n_params += t.numel()
        n_bad = int((~torch.isfinite(t)).sum())
        if n_bad:
            bad[name] = n_bad
    meta = {"checkpoint": str(path), "tensors": len(state), "parameters": n_params,
            "non_finite_values": sum(bad.values()), "non_finite_tensors": len(bad)}
    if bad:
        return CheckOutcome.failed(
            f"{path}: {sum(bad.values())} of {n_params} weights are NaN or infinite, in {len(bad)} tensor(s) "
            f"({first(f'{k}: {v}' for k, v in bad.items())}); rule: every weight finite. The training diverged "
            "or the export cast overflowed: retrain (a lower lr) or restore the MLflow run's artifact",
            **meta, first_bad_tensors=first(bad))
    return CheckOutcome(True, f"{path}: all {n_params} weights in {len(state)} tensors are finite", meta)


def judge_decoded_windows(run: MethodRun, contexts: Sequence[SampleContext]) -> CheckOutcome:
    """Every window of ``contexts`` was decoded by ``run`` to a trajectory with only finite positions.

    A window fails when the method labelled it a failure (nothing decoded, not in the rendered arrays), has
    no prediction, or predicted a NaN or infinite position at one of its evaluation times.
    """
    problems: dict[str, str] = {}
    for ctx in contexts:
        xy = run.predictions.get(ctx.sample_id)
        if ctx.sample_id in run.failures:
            problems[ctx.sample_id] = run.failures[ctx.sample_id]
        elif xy is None:
            problems[ctx.sample_id] = "no prediction"
        elif not np.isfinite(np.asarray(xy, dtype=np.float64)).all():
            n_bad = int((~np.isfinite(np.asarray(xy, dtype=np.float64)).all(axis=-1)).sum())
            problems[ctx.sample_id] = f"{n_bad} of {len(xy)} positions not finite"
    meta = {"windows": len(contexts), "decoded": len(contexts) - len(problems), "failed": len(problems)}
    if not contexts:
        return CheckOutcome.failed(f"{run.method}: no windows to decode; rule: at least one window", **meta)
    if problems:
        return CheckOutcome.failed(
            f"{run.method}: {len(problems)} of {len(contexts)} windows not decoded to a finite trajectory "
            f"({first(f'{k}: {v}' for k, v in problems.items())}); rule: every checked window decodes",
            **meta, failed_windows=first(problems))
    return CheckOutcome(True, f"{run.method}: {len(contexts)} of {len(contexts)} windows decoded to finite "
                              "trajectories", meta)


def check_video_checkpoint(path: str | Path, rendered_dir: str | Path, contexts: Sequence[SampleContext],
                           cfg: EvaluationConfig, device: str = "cpu") -> CheckOutcome:
    """:func:`check_video_weights`, then the model decodes the first ``cfg.check_windows`` of ``contexts``
    (windows of the rendered arrays at ``rendered_dir``) through the evaluation's own path
    (:func:`ml.evaluation.predict_video_method`, the same sampling settings), each to a finite trajectory.

    The decoding is skipped when the weights already fail (it would only repeat the NaNs).
    """
    from ml.evaluation import predict_video_method

    weights = check_video_weights(path)
    if not weights.passed:
        return weights
    ctxs = list(contexts)[: cfg.check_windows]
    if not ctxs:
        return CheckOutcome.failed(f"{path}: no {cfg.check_split} windows to decode (the samples table has none); "
                                   f"rule: the model decodes {cfg.check_windows} {cfg.check_split} windows",
                                   **weights.metadata, windows=0)
    run = predict_video_method(Path(path).name, Path(path), Path(rendered_dir), ctxs, cfg, device=device)
    decoded = judge_decoded_windows(run, ctxs)
    meta = {**weights.metadata, **decoded.metadata, "split": cfg.check_split}
    latency = [v for v in run.latency_ms.values() if np.isfinite(v)]
    if latency:
        meta["median_latency_ms"] = round(float(np.median(latency)), 2)
    if not decoded.passed:
        return CheckOutcome.failed(f"{path}: {decoded.description}", **meta)
    return CheckOutcome(True, f"{weights.description}; {decoded.description} ({cfg.check_split})", meta)
