"""Training of the seq2seq baseline (``ml.seq2seq``): Lightning, val-based early stopping, MLflow.

``train_seq2seq(train, val, cfg, out_dir)`` fits :class:`ml.seq2seq.RecordsToPositions` on the train
windows with a Huber loss on positions, validates every ``val_every_n_steps`` on the val windows,
stops after ``patience`` validations without a better ``val/loss`` and exports the best weights to
``out_dir/model.pt``. Nothing here reads test windows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from ml.observation.context import SampleContext
from ml.seq2seq import Seq2SeqConfig, WindowBatch, window_batch
from ml.seq2seq.checkpoint import load_seq2seq, save_seq2seq
from ml.train.kit import (BestOnVal, TrainResult, content_sha256, load_selected, log_final, mlflow_logger,
                          resume_or_supersede, select_step)
from ml.train.seq2seq.module import Seq2SeqModule

log = logging.getLogger(__name__)

def _tensors(b: WindowBatch) -> TensorDataset:
    return TensorDataset(*(torch.from_numpy(a) for a in (b.records, b.record_mask, b.query_t, b.query_prior,
                                                        b.query_mask, b.target, b.loss_mask)))


@dataclass(kw_only=True)
class Seq2SeqResult(TrainResult):
    """What :func:`train_seq2seq` produced (:class:`ml.train.kit.TrainResult`), the windows it read and those
    it left out (no records), and the step of the exported weights."""

    best_step: int = 0
    n_train: int = 0
    n_val: int = 0
    skipped: dict[str, str] = field(default_factory=dict)


def train_seq2seq(
    train: Sequence[SampleContext],
    val: Sequence[SampleContext],
    cfg: Seq2SeqConfig,
    out_dir: str | Path,
    tracking_uri: str | None = None,
    tags: dict[str, str] | None = None,
    init_checkpoint: str | Path | None = None,
) -> Seq2SeqResult:
    """Fit on ``train``, stop early on ``val``, export the best weights to ``out_dir/model.pt``.

    ``init_checkpoint`` (a ``model.pt`` of this trainer) starts from trained weights: a fine-tune, e.g.
    of a model trained on other cities (its architecture fields must equal ``cfg``'s).
    """
    from lightning.pytorch.callbacks import EarlyStopping

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not val:
        raise ValueError("train_seq2seq: no val windows; early stopping and model choice need them")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    tb, vb = window_batch(train, cfg), window_batch(val, cfg)
    if len(tb) == 0 or len(vb) == 0:
        raise ValueError(f"train_seq2seq: {len(tb)} train and {len(vb)} val windows with records; need both")
    skipped = {**tb.skipped, **vb.skipped}
    if skipped:
        log.warning("seq2seq: %d windows without records left out of training and validation", len(skipped))
    g = torch.Generator().manual_seed(cfg.seed)
    train_dl = DataLoader(_tensors(tb), batch_size=cfg.batch_size, shuffle=True, generator=g, drop_last=len(tb) > cfg.batch_size)
    val_dl = DataLoader(_tensors(vb), batch_size=max(cfg.batch_size, 64))
    module = Seq2SeqModule(cfg)
    if init_checkpoint is not None:
        init_model, init_cfg = load_seq2seq(init_checkpoint)
        arch = ("d_model", "n_heads", "encoder_layers", "decoder_layers", "n_freqs", "scale_m", "prefix_s")
        differ = [k for k in arch if getattr(init_cfg, k) != getattr(cfg, k)]
        if differ:
            raise ValueError(f"init checkpoint {init_checkpoint}: {differ} differ from the config being trained")
        module.model.load_state_dict(init_model.state_dict())
    key = {"cfg": cfg.model_dump(mode="json"), "n_train": len(tb), "n_val": len(vb),
           "init_sha256": content_sha256(init_checkpoint)}
    # a seq2seq fit takes a minute or two, so it never resumes: the kit only records the run's key
    resume_or_supersede(out_dir, key, out_dir / "checkpoints" / "best.ckpt", resume=False)
    best = BestOnVal(out_dir / "checkpoints", "val/loss", "min")
    stop = EarlyStopping(monitor="val/loss", mode="min", patience=cfg.patience, check_finite=True)
    logger = mlflow_logger(out_dir, tracking_uri, cfg.experiment_name, cfg.run_name, tags, resuming=False)
    if logger is not None:
        logger.log_hyperparams(cfg.model_dump(mode="json"))
    trainer = L.Trainer(accelerator=cfg.accelerator, devices=1, max_steps=cfg.max_steps, max_epochs=-1,
                        val_check_interval=cfg.val_every_n_steps, check_val_every_n_epoch=None,
                        num_sanity_val_steps=0, logger=logger if logger is not None else False,
                        callbacks=[best, stop], enable_progress_bar=cfg.progress_bar, enable_model_summary=False,
                        enable_checkpointing=False, default_root_dir=str(out_dir), log_every_n_steps=10,
                        gradient_clip_val=1.0)
    t0 = time.time()
    trainer.fit(module, train_dataloaders=train_dl, val_dataloaders=val_dl)
    train_s = time.time() - t0
    if not best.scores:
        raise RuntimeError(f"{out_dir}: no validation was scored; nothing to export")
    best_step = select_step(best.scores, "min", start_step=None)
    selected = load_selected(module, best, best_step, int(trainer.global_step))
    metrics = {"val/loss": float(best.scores[best_step]), "train_seconds": train_s, "best_step": float(best_step),
               "global_step": float(trainer.global_step), "stopped_early": float(stop.stopped_epoch > 0
                                                                                 or trainer.global_step < cfg.max_steps)}
    with torch.no_grad():
        module.model.eval()
        pred = np.concatenate([module.model(*b[:5]).numpy() for b in val_dl])
    err = np.linalg.norm((pred - vb.target) * cfg.scale_m, axis=-1)[vb.loss_mask]
    prior_err = np.linalg.norm((vb.query_prior - vb.target) * cfg.scale_m, axis=-1)[vb.loss_mask]
    metrics.update({"val/rmse_m": float(np.sqrt(np.mean(err ** 2))), "val/median_m": float(np.median(err)),
                    "val/prior_median_m": float(np.median(prior_err))})
    meta = {"metrics": metrics, "tags": dict(tags or {}), "n_train": len(tb), "n_val": len(vb),
            "init_checkpoint": str(init_checkpoint) if init_checkpoint else None}
    path = save_seq2seq(out_dir / "model.pt", module.model, cfg, meta)
    run_id = log_final(logger, metrics, selected, artifacts=[(path, "model")])
    log.info("seq2seq: best val/loss %.4f at step %d of %d (val median %.1f m, prior %.1f m)", metrics["val/loss"],
             best_step, trainer.global_step, metrics["val/median_m"], metrics["val/prior_median_m"])
    return Seq2SeqResult(checkpoint_path=path, metrics=metrics, mlflow_run_id=run_id, selected=selected,
                         global_step=int(trainer.global_step), best_step=best_step, n_train=len(tb), n_val=len(vb),
                         skipped=skipped)
