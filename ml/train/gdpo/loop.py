"""``train_gdpo``: Traj-GDPO fine-tuning of an SFT video model on the train windows of a rendered-arrays folder.

Writes under ``out_dir``: ``gdpo.pt`` (``ml.models.checkpoint`` format, the file evaluation and serving
load), ``gdpo_metrics.json`` (metrics, per-iteration history, validations) and ``checkpoints/resume.pt``
(the training state after every iteration, written atomically: a run stopped at any point, even by
SIGKILL, continues from its last completed iteration when started again with the same inputs). With
``select_checkpoint = 'best_val'`` the exported weights are those of the validation with the highest reward total on the val
windows if it beats the SFT weights (scored at iteration 0) by ``select_min_gain``, else the SFT weights.
The ``selected/*`` scores are measured on the windows that chose them, so they lean high; the evaluation
report's test windows give the unbiased figure. With a tracking URI the run is logged to MLflow
(every iteration's rewards, KL, clip fraction, zero-variance share and time split; the validations).
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, default_collate

from ml.io import write_text_atomic
from ml.train.gdpo.config import GDPOConfig
from ml.train.gdpo.module import GDPOModule, RewardFn
from ml.train.kit import (TrainResult, content_sha256, data_files_key, log_final, mlflow_logger, resume_or_supersede,
                          select_step)

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class GDPOResult(TrainResult):
    """What :func:`train_gdpo` produced (:class:`ml.train.kit.TrainResult`; its steps are GDPO iterations,
    ``selected`` is 'last', 'start' (the SFT model) or 'best:<iteration>')."""


RESUME_FILE = Path("checkpoints") / "resume.pt"
#: GDPOConfig fields that do not change what is trained (a change keeps the run resumable)
_NOT_IN_RUN_KEY = ("progress_bar", "log_every_n_steps", "experiment_name", "run_name", "accelerator", "precision")


def _run_key(cfg: GDPOConfig, rendered_dir: Path, sft_checkpoint: Path, reward_fn: Any, head_decoder: Any) -> dict:
    """What makes a run the same run (so that it can be resumed): the config, the data's files, the SFT
    weights' content and any custom reward or decoder."""
    name = lambda f: None if f is None else getattr(f, "__qualname__", type(f).__qualname__)  # noqa: E731
    return {"cfg": {k: v for k, v in cfg.model_dump(mode="json").items() if k not in _NOT_IN_RUN_KEY},
            **data_files_key(rendered_dir), "sft_sha256": content_sha256(sft_checkpoint),
            "reward_fn": name(reward_fn), "head_decoder": name(head_decoder)}


class _ResumableGDPOModule(GDPOModule):
    """GDPOModule that skips the iterations a resumed run has done (the loader replays the same sampled
    conditions, so iteration numbers and the validation schedule stay those of an uninterrupted run) and
    restores the optimizer's state."""

    skip: int = 0
    optimizer_state: dict[str, Any] | None = None

    def configure_optimizers(self) -> torch.optim.Optimizer:
        opt = super().configure_optimizers()
        if self.optimizer_state is not None:
            opt.load_state_dict(self.optimizer_state)
        return opt

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        if batch_idx < self.skip:
            return None
        return super().training_step(batch, batch_idx)


class _SaveResumeState(L.Callback):
    """After every ``every`` iterations (and the last), write the whole training state to ``path``
    atomically (policy, optimizer, rollout generator, histories, best weights so far)."""

    def __init__(self, path: Path, every: int, extra: Callable[[], dict[str, Any]]) -> None:
        self.path, self.every, self.extra = Path(path), max(1, int(every)), extra

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        from ml.models.checkpoint import torch_save_atomic

        it = batch_idx + 1
        if batch_idx < pl_module.skip or (it % self.every and it != trainer.num_training_batches):
            return
        if not trainer.is_global_zero:
            return
        gen = pl_module._generator
        state = {"iteration": it,
                 "policy": {k: v.detach().cpu() for k, v in pl_module.policy.state_dict().items()},
                 "optimizer": trainer.optimizers[0].state_dict(),
                 "generator": None if gen is None else gen.get_state(), "history": pl_module.history,
                 "val_history": pl_module.val_history, "best_total": pl_module.best_total,
                 "best_iteration": pl_module.best_iteration, "best_state": pl_module.best_state, **self.extra()}
        torch_save_atomic(state, self.path)


@torch.no_grad()
def evaluate_policy(policy: nn.Module, batches: list[dict[str, Any]], n_steps: int, reward_fn: RewardFn,
                    init_noise_scale: float = 0.0, seed: int = 0, shift: float = 1.0) -> dict[str, float]:
    """Mean rewards of ``policy`` on condition batches, one video per condition, with the evaluation's
    deterministic sampler (:func:`ml.models.sampling.generate`, the one sample path); ``total`` is their sum.

    The initial noise comes from ``seed`` so that every call sees the same noise.
    """
    from ml.models.sampling import generate

    policy.eval()
    dev = next(policy.parameters()).device
    gen = torch.Generator(device=dev if dev.type == "cuda" else "cpu").manual_seed(seed)
    acc: dict[str, list[np.ndarray]] = {}
    for batch in batches:
        heads = np.asarray(torch.as_tensor(batch["true_head_px"]), dtype=np.float64)
        video, _ = generate(policy, batch["cond"].to(dev), n_steps, generator=gen, tokens=_opt(batch, "tokens", dev),
                            token_mask=_opt(batch, "token_mask", dev), frames=heads.shape[1], shift=shift,
                            noise_scale=init_noise_scale)
        for k, v in reward_fn(video, heads, np.asarray(torch.as_tensor(batch["mpp"]), dtype=np.float64)).items():
            acc.setdefault(k, []).append(np.asarray(v, dtype=np.float64))
    out = {k: float(np.concatenate(v).mean()) for k, v in acc.items()}
    out["n"] = float(sum(len(b["cond"]) for b in batches))
    return out


def _opt(batch: dict[str, Any], key: str, dev: torch.device) -> torch.Tensor | None:
    t = batch.get(key)
    return None if t is None else t.to(dev)


def condition_batches(ds, n: int, batch_size: int) -> list[dict[str, Any]]:
    """The first ``n`` items of ``ds`` as collated batches (the fixed val windows of the selection)."""
    items = [ds[i] for i in range(min(n, len(ds)))]
    return [default_collate(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]


def _device(cfg: GDPOConfig) -> torch.device:
    """This process's device: under DDP each rank has its own GPU (``LOCAL_RANK``, set by Lightning's launcher)."""
    if torch.cuda.is_available() and cfg.accelerator in ("auto", "gpu", "cuda"):
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def _is_global_zero() -> bool:
    """Rank 0 writes the files (under DDP every rank runs all of ``train_gdpo``; ``RANK`` is Lightning's)."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0


def train_gdpo(
    rendered_dir: str | Path,
    sft_checkpoint: str | Path,
    out_dir: str | Path,
    cfg: GDPOConfig | None = None,
    tracking_uri: str | None = None,
    tags: dict[str, str] | None = None,
    reward_fn: RewardFn | None = None,
    head_decoder: Callable[[np.ndarray], np.ndarray] | None = None,
    resume: bool = True,
    ckpt_every_n_steps: int = 1,
    callbacks: list[L.Callback] | None = None,
) -> GDPOResult:
    """Fine-tune an SFT video model with Traj-GDPO on the train split of ``rendered_dir``; see the module doc.

    Metrics: ``start/<reward>`` and ``selected/<reward>`` (the deterministic sampler on the first
    ``n_eval`` windows of ``eval_split``, before training and for the exported weights), ``final/<metric>``
    (mean over the last quarter of the iterations), ``time/<part>_s`` (total seconds per part of the
    iterations: rollout, reward, reference, update) and ``train_s``. ``tracking_uri`` None: no MLflow run.

    With ``resume`` and a ``checkpoints/resume.pt`` of the same run (config, data, SFT weights) training
    continues after its last saved iteration (``resumed_from_step``; also the metric ``resumed_from_iteration``);
    the state is saved every ``ckpt_every_n_steps`` iterations. ``callbacks``: more Lightning callbacks.
    With ``cfg.devices > 1`` it runs as Lightning DDP (one process per device; rank 0 writes the files).
    """
    import pandas as pd

    from ml.models.checkpoint import load_video_model, save_video_model
    from ml.models.data import GDPOConditionDataset, split_rows
    from ml.rewards import compute_rewards

    cfg = cfg or GDPOConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    policy, model_cfg = load_video_model(sft_checkpoint)
    reference = load_video_model(sft_checkpoint)[0] if cfg.beta > 0 else None
    with_tokens, max_records = bool(model_cfg.uses_records), int(model_cfg.max_records)

    index_path = Path(rendered_dir) / "index.parquet"
    rows = split_rows(pd.read_parquet(index_path), val_fraction=0.1, seed=cfg.seed)
    if len(rows["train"]) == 0:
        raise ValueError(f"{index_path}: no 'train' rows to run GDPO on")
    eval_rows = rows.get(cfg.eval_split, np.array([], dtype=np.int64))
    if len(eval_rows) == 0:
        raise ValueError(f"{index_path}: no '{cfg.eval_split}' rows to select the GDPO weights on (gdpo.eval_split)")
    train_ds = GDPOConditionDataset(rendered_dir, rows["train"], head_decoder, with_tokens, max_records)
    eval_ds = GDPOConditionDataset(rendered_dir, eval_rows, head_decoder, with_tokens, max_records)
    rfn = reward_fn or partial(compute_rewards, cfg=cfg.reward)
    dev = _device(cfg)
    eval_batches = condition_batches(eval_ds, cfg.n_eval, 16)

    def validate(model: nn.Module) -> dict[str, float]:
        # full precision, as evaluation and serving sample (Lightning's bf16 autocast wraps training_step)
        with torch.autocast(device_type=dev.type, enabled=False):
            out = evaluate_policy(model, eval_batches, cfg.n_steps, rfn, cfg.init_noise_scale, cfg.seed + 1,
                                  cfg.sample_shift)
        out["total"] = float(sum(out[k] for k in cfg.rewards))
        return out

    resume_path = out_dir / RESUME_FILE
    resuming = resume_or_supersede(out_dir, _run_key(cfg, Path(rendered_dir), Path(sft_checkpoint), reward_fn,
                                                     head_decoder), resume_path, resume)
    saved = None
    if resuming:
        from ml.models.checkpoint import torch_load_checked

        saved = torch_load_checked(resume_path, "GDPO training state to resume from",
                                   f"delete {resume_path} to train GDPO from the start", weights_only=False)
    start_state = {k: v.detach().cpu().clone() for k, v in policy.state_dict().items()}
    module = _ResumableGDPOModule(policy.to(dev), cfg, reference, rfn, validate=validate)
    prior_train_s = 0.0
    if saved is None:
        start = module.score(0)
    else:
        policy.load_state_dict(saved["policy"])
        module.skip, module.optimizer_state = int(saved["iteration"]), saved["optimizer"]
        module.history, module.val_history = list(saved["history"]), list(saved["val_history"])
        module.best_total, module.best_iteration = float(saved["best_total"]), saved["best_iteration"]
        module.best_state = saved["best_state"]
        if saved["generator"] is not None:
            module._generator = torch.Generator(device=dev if dev.type == "cuda" else "cpu")
            module._generator.set_state(saved["generator"])
        start = next(v for v in module.val_history if v["iteration"] == 0)
        prior_train_s = float(saved.get("train_s", 0.0))
        log.info("GDPO: resuming from %s after iteration %d of %d", resume_path, module.skip, cfg.steps)
    sampler = RandomSampler(train_ds, replacement=True, num_samples=cfg.steps * cfg.conditions_per_step,
                            generator=torch.Generator().manual_seed(cfg.seed))
    loader = DataLoader(train_ds, batch_size=cfg.conditions_per_step, sampler=sampler, num_workers=0)

    logger = mlflow_logger(out_dir, tracking_uri, cfg.experiment_name, cfg.run_name, tags, resuming=saved is not None)
    if logger is not None and saved is None:
        logger.log_hyperparams({**cfg.model_dump(mode="json"), "sft_checkpoint": str(sft_checkpoint),
                                "rendered_dir": str(rendered_dir)})
        logger.log_metrics({f"val/{k}": v for k, v in start.items() if k != "iteration"}, step=0)

    precision = cfg.precision or ("bf16-mixed" if dev.type == "cuda" else "32-true")
    # DDP: Lightning gives each rank its share of the sampled conditions (a DistributedSampler over the sampler)
    # and all-reduces the gradients at every manual_backward, so the ranks' policies stay identical
    trainer = L.Trainer(max_epochs=1, accelerator=cfg.accelerator, devices=cfg.devices, precision=precision,
                        num_nodes=cfg.num_nodes, strategy="ddp" if cfg.devices * cfg.num_nodes > 1 else "auto",
                        logger=logger if logger is not None else False, enable_checkpointing=False,
                        log_every_n_steps=cfg.log_every_n_steps, enable_progress_bar=cfg.progress_bar,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                        default_root_dir=str(out_dir),
                        callbacks=[_SaveResumeState(resume_path, ckpt_every_n_steps, lambda: {
                            "train_s": prior_train_s + time.perf_counter() - t0}), *(callbacks or [])])
    # GDPO keeps the policy in eval mode on purpose (no dropout: an unchanged policy has ratio 1)
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")
    t0 = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    train_s = prior_train_s + time.perf_counter() - t0

    selected, chosen = "last", module.val_history[-1]
    if cfg.select_checkpoint == "best_val":
        totals = {int(v["iteration"]): float(v["total"]) for v in module.val_history}
        step = select_step(totals, "max", start_step=0, min_gain=cfg.select_min_gain)
        if step == 0:
            policy.load_state_dict(start_state)
            selected, chosen = "start", start
            log.info("GDPO: no validation beat the SFT weights by %.3f (best gain %.4f); exporting the SFT weights",
                     cfg.select_min_gain, max(totals.values()) - start["total"])
        else:
            if step != module.best_iteration:  # the module keeps the weights of the best validation only
                raise RuntimeError(f"GDPO selection: the rule picks iteration {step}, the module kept "
                                   f"{module.best_iteration}")
            policy.load_state_dict(module.best_state)
            selected = f"best:{step}"
            chosen = next(v for v in module.val_history if v["iteration"] == step)
    metrics: dict[str, float] = {"train_s": train_s, "iterations": float(len(module.history)),
                                 "resumed_from_iteration": float(module.skip)}
    metrics.update({f"start/{k}": v for k, v in start.items() if k != "iteration"})
    metrics.update({f"selected/{k}": v for k, v in chosen.items()})
    metrics.update({f"last/{k}": v for k, v in module.val_history[-1].items()})
    tail = module.history[-max(1, len(module.history) // 4):]
    for k in tail[0]:
        if not k.startswith("time/"):
            metrics[f"final/{k}"] = float(np.nanmean([h[k] for h in tail]))
    for part in ("rollout", "reward", "reference", "update", "iteration"):
        metrics[f"time/{part}_s"] = float(sum(h[f"time/{part}_s"] for h in module.history))

    policy.cpu()
    resumed_from = module.skip if saved is not None else None
    if not _is_global_zero():  # the other ranks hold the same weights; rank 0 writes them
        return GDPOResult(checkpoint_path=out_dir / "gdpo.pt", metrics=metrics, selected=selected,
                          global_step=len(module.history), resumed_from_step=resumed_from)
    ckpt = save_video_model(out_dir / "gdpo.pt", policy, model_cfg,
                            meta={"stage": "gdpo", "sft_checkpoint": str(sft_checkpoint), "selected": selected,
                                  "gdpo": cfg.model_dump(mode="json"), "metrics": metrics})
    write_text_atomic(json.dumps(
        {"metrics": metrics, "selected": selected, "history": module.history, "validations": module.val_history},
        indent=2), out_dir / "gdpo_metrics.json")
    run_id = log_final(logger, {k: v for k, v in metrics.items() if k.split("/")[0] in ("start", "selected", "time")},
                       selected, artifacts=[(out_dir / "gdpo_metrics.json", None)])
    result = GDPOResult(checkpoint_path=Path(ckpt), metrics=metrics, mlflow_run_id=run_id, selected=selected,
                        global_step=len(module.history), resumed_from_step=resumed_from)
    result.write(out_dir / "gdpo_result.json")
    return result
