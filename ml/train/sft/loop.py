"""``train_sft``: supervised fine-tuning of the video flow model on a rendered-arrays folder.

Writes under ``out_dir``: ``checkpoints/last.ckpt`` (Lightning, for resume) and the latest
periodic checkpoint, ``previews/`` (validation images), ``model.pt`` (``save_video_model`` format,
the file GDPO, evaluation and serving load) and ``sft_result.json``. With a tracking URI the run is
logged to MLflow (metrics, previews, ``model.pt``); the run id is kept in ``mlflow_run_id.txt`` so a
resumed training continues the same run. mlflow is optional: without a URI nothing imports it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ml.models.data import RenderedVideoDataModule
from ml.train.kit import (BestOnVal, TrainResult, content_sha256, data_files_key, load_selected, log_final,
                          mlflow_logger, resume_or_supersede, select_step)
from ml.train.sft.config import SFTConfig
from ml.train.sft.module import SFTModule, model_config_for_data

log = logging.getLogger(__name__)

LAST_CKPT = "last.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints (``last.ckpt``, the periodic ones, ``best.ckpt``) written to a hidden temporary
    sibling and renamed into place, so a process killed mid-write never leaves a truncated checkpoint
    that a resume would read (Lightning's own writer opens the final path and streams into it)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        from ml.models.checkpoint import torch_save_atomic

        torch_save_atomic(checkpoint, Path(path))


def read_resume_checkpoint(path: Path) -> dict[str, Any]:
    """``last.ckpt``, loaded, or one clear error: the file, that it is truncated or corrupted, and what to do
    (resume from the newest periodic checkpoint instead, or start over)."""
    from ml.models.checkpoint import torch_load_checked

    periodic = sorted(path.parent.glob("step*.ckpt"))
    if periodic:
        remedy = (f"to resume from the newest periodic checkpoint instead, copy it over: `cp {periodic[-1]} {path}`; "
                  f"to train from the start, delete {path.parent}")
    else:
        remedy = f"delete {path} (or its folder {path.parent}) to train from the start"
    return torch_load_checked(path, "Lightning checkpoint to resume training from", remedy, weights_only=False)


@dataclass(kw_only=True)
class SFTResult(TrainResult):
    """What a training run produced (:class:`ml.train.kit.TrainResult`) and its Lightning checkpoint."""

    lightning_checkpoint: str | None = None


def default_precision() -> str:
    """bf16-mixed on a CUDA GPU that supports it, else 32-true."""
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


class SaveLastOnException(L.Callback):
    """Write ``last.ckpt`` when training stops on an exception (crash, Ctrl-C), so a rerun resumes there.

    (Lightning's ``OnExceptionCheckpoint`` also makes ``fit(ckpt_path=None)`` load "last"
    implicitly, which would defeat ``resume=False``.)
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if trainer.global_step > 0:
            trainer.save_checkpoint(str(self.path))
            log.warning("training stopped by %s at step %d; saved %s", type(exception).__name__,
                        trainer.global_step, self.path)


#: the metrics logged to MLflow at the end (the per-step ones are logged as they come)
SUMMARY_METRICS = ("train_seconds", "select/step", "select/score", "select/start_score")
#: SFTConfig fields that define the objective: a change makes a new run, not a resume
OBJECTIVE_FIELDS = ("foreground_weight", "head_weight", "loss_space", "head_position_weight", "timestep_mean",
                    "timestep_std", "timestep_shift", "ema_decay")
#: the training recipe's code (schedule, EMA, checkpoint contents): a change makes a new run, since the old
#: checkpoints cannot be resumed by the new code
TRAINING_RECIPE = "adamw+diffusers-cosine-warmup+swa_utils-ema"


def _run_key(cfg: SFTConfig, rendered_dir: str | Path, init: Path | None) -> dict:
    """What makes a run the same run: the model, the objective, the data (its folder's name and its files'
    names, sizes and times, not its absolute path: a copied or moved project still resumes) and the
    starting weights (their content), not step counts."""
    return {"model": cfg.model.model_dump(mode="json"), **data_files_key(rendered_dir),
            # the continuation fields only when on, so that the run keys of every earlier run stay the same
            "objective": {k: getattr(cfg, k) for k in OBJECTIVE_FIELDS
                          + (("known_frames", "known_frames_prob") if cfg.known_frames else ())},
            "recipe": TRAINING_RECIPE,
            "init_checkpoint": cfg.init_checkpoint,
            "init_sha256": content_sha256(init)}


def _resolve_init(init: str | Path | None) -> Path | None:
    """A base checkpoint path: absolute, else relative to the working folder or the repository (``models/``)."""
    if not init:
        return None
    p = Path(init)
    for cand in (p, Path(__file__).resolve().parents[3] / p):
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"init checkpoint '{init}' not found (looked in the working folder and the repository); "
                            "train one with `python -m ml.train sft` or set init_checkpoint to None")


def _select_weights(module: SFTModule, best: BestOnVal, metrics: dict[str, float]) -> str:
    """Load into ``module`` the weights the selection rule picks among the validations (the final one, run
    after ``fit``, scores the last weights); records the scores in ``metrics``."""
    scores = dict(best.scores)
    last_step = int(metrics["global_step"])
    if best.metric in metrics and last_step not in scores:  # the final validation, run after fit
        scores[last_step] = metrics[best.metric]
    step = select_step(scores, "min", start_step=0)
    metrics["select/score"], metrics["select/step"] = scores[step], float(step)
    if 0 in scores:
        metrics["select/start_score"] = scores[0]
    log.info("exporting the weights of step %d (%s %.2f; scores by step: %s)", step, best.metric, scores[step],
             ", ".join(f"{k}: {v:.2f}" for k, v in sorted(scores.items())))
    return load_selected(module, best, step, last_step)


def _load_init(module: SFTModule, init: str | Path) -> None:
    """Initialise the model weights from a ``save_video_model`` file or a Lightning SFT checkpoint."""
    from ml.models.checkpoint import FORMAT, torch_load_checked

    obj = torch_load_checked(init, "initial checkpoint (init_checkpoint)", "restore the file (models/ ships the base "
                             "checkpoints) or set init_checkpoint to None", weights_only=False)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        sd = obj["state_dict"]
    elif isinstance(obj, dict) and "state_dict" in obj:
        sd = {k[len("model."):]: v for k, v in obj["state_dict"].items() if k.startswith("model.")}
    else:
        raise ValueError(f"--init '{init}' is neither a video-model file nor a Lightning SFT checkpoint")
    sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
    model_sd = module.model.state_dict()
    shape_bad = [k for k, v in sd.items() if k in model_sd and model_sd[k].shape != v.shape]
    if shape_bad:
        raise ValueError(f"--init '{init}': shapes differ for {shape_bad[:5]} (different preset?)")
    missing, unexpected = module.model.load_state_dict(sd, strict=False)
    if unexpected:
        raise ValueError(f"--init '{init}': unexpected weights {unexpected[:5]}")
    log.info("initialised from %s (%d tensors, %d left at their initial values)", init, len(sd), len(missing))
    if module.ema is not None:
        from ml.train.sft.module import EMA

        module.ema = EMA(module.model, module.ema.decay)


def train_sft(
    rendered_dir: str | Path,
    out_dir: str | Path,
    cfg: SFTConfig,
    tracking_uri: str | None = None,
    tags: dict[str, str] | None = None,
    resume: bool = True,
    init_checkpoint: str | Path | None = None,
    road_network: Any = None,
    callbacks: Sequence[L.Callback] = (),
) -> SFTResult:
    """Train (or resume training) the video model on ``rendered_dir``; see the module docstring for outputs.

    ``cfg.model`` takes the data's resolution and frame count. With ``resume`` and an existing
    ``out_dir/checkpoints/last.ckpt`` training continues from it (global step, optimiser, EMA) up
    to ``cfg.max_steps``; ``init_checkpoint`` (a ``model.pt`` or Lightning checkpoint) initialises
    the weights of a fresh run (fine-tuning a base model). ``road_network`` (a ``RoadNetwork``)
    enables decoded-trajectory validation metrics. Extra Lightning ``callbacks`` are appended.
    """
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint

    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    dm = RenderedVideoDataModule(rendered_dir, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                                 val_fraction=cfg.val_fraction, seed=cfg.seed,
                                 with_tokens=cfg.model.uses_records, max_records=cfg.model.max_records)
    dm.setup("fit")
    cfg = cfg.model_copy(update={"model": model_config_for_data(cfg.model, dm.resolution, dm.frames)})

    last = ckpt_dir / LAST_CKPT
    init_checkpoint = _resolve_init(init_checkpoint or cfg.init_checkpoint)
    resuming = resume_or_supersede(out_dir, _run_key(cfg, rendered_dir, init_checkpoint), last, resume,
                                   move_aside=("checkpoints", "selection"))
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = str(last) if resuming else None
    resumed_from = None
    if ckpt_path:
        resumed_from = int(read_resume_checkpoint(last).get("global_step", 0))
        log.info("resuming from %s (step %d)", ckpt_path, resumed_from)

    module = SFTModule(cfg, preview_dir=str(out_dir / "previews"))
    module.road_network = road_network
    if init_checkpoint and not ckpt_path:
        _load_init(module, init_checkpoint)

    logger = mlflow_logger(out_dir, tracking_uri, cfg.experiment_name, cfg.run_name, tags, resuming=resuming)
    cbs: list[L.Callback] = [
        ModelCheckpoint(dirpath=ckpt_dir, filename="step{step:07d}", auto_insert_metric_name=False, save_last=True,
                        every_n_train_steps=cfg.ckpt_every_n_steps, save_top_k=cfg.keep_checkpoints, monitor=None),
        SaveLastOnException(last),
    ]
    if logger is not None:
        cbs.append(LearningRateMonitor(logging_interval="step"))
    has_val = len(dm.rows.get("val", [])) > 0
    select = has_val and cfg.select_checkpoint == "best_val"
    best_cb = BestOnVal(out_dir / "selection", cfg.select_metric, "min") if select else None
    if best_cb is not None:
        cbs.append(best_cb)
    cbs.extend(callbacks)
    trainer = L.Trainer(
        accelerator=cfg.accelerator, devices=cfg.devices, strategy=cfg.strategy, num_nodes=cfg.num_nodes,
        precision=cfg.precision or default_precision(),
        max_steps=cfg.max_steps, max_epochs=-1,
        val_check_interval=cfg.val_every_n_steps if has_val else None,
        check_val_every_n_epoch=None if has_val else 1,
        limit_val_batches=cfg.limit_val_batches if has_val else 0,
        num_sanity_val_steps=0,
        gradient_clip_val=cfg.grad_clip, accumulate_grad_batches=cfg.accumulate_grad_batches,
        log_every_n_steps=cfg.log_every_n_steps, logger=logger if logger is not None else False,
        callbacks=cbs, enable_progress_bar=cfg.progress_bar, enable_model_summary=False,
        default_root_dir=str(out_dir), deterministic=False, plugins=[AtomicCheckpointIO()],
    )
    if select and ckpt_path is None:
        if cfg.select_metric == "val/traj_err_m" and road_network is None:
            raise ValueError("select_metric 'val/traj_err_m' needs road_network (or set select_metric = "
                             "'val/head_err_px', or select_checkpoint = 'last')")
        trainer.validate(module, datamodule=dm, verbose=False)  # scores the starting weights (BestOnVal)
    t0 = time.time()
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    train_s = time.time() - t0
    if trainer.interrupted:
        log.warning("training interrupted at step %d; resume by running again", trainer.global_step)
    trainer.save_checkpoint(str(last))

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1}
    if has_val and not trainer.interrupted and trainer.global_step % cfg.val_every_n_steps != 0:
        for d in trainer.validate(module, datamodule=dm, verbose=False):
            metrics.update({k: float(v) for k, v in d.items()})
    metrics["train_seconds"] = train_s
    metrics["global_step"] = float(trainer.global_step)

    from ml.models.checkpoint import save_video_model

    selected = _select_weights(module, best_cb, metrics) if best_cb is not None else "last"
    meta = {"global_step": int(trainer.global_step), "rendered_dir": str(rendered_dir), "sft": cfg.model_dump(mode="json"),
            "metrics": metrics, "tags": dict(tags or {}), "selected": selected}
    if selected == "start":  # the starting weights as they were (an EMA holds trained weights)
        model_path = save_video_model(out_dir / "model.pt", module.model, cfg.model, meta=meta)
    else:
        with module.eval_weights():
            model_path = save_video_model(out_dir / "model.pt", module.model, cfg.model, meta=meta)

    if logger is not None:
        logger.experiment.log_dict(logger.run_id, cfg.model_dump(mode="json"), "sft_config.json")
    run_id = log_final(logger, {k: metrics[k] for k in SUMMARY_METRICS if k in metrics}, selected,
                       artifacts=[(model_path, "model")], status="KILLED" if trainer.interrupted else "FINISHED")
    result = SFTResult(checkpoint_path=model_path, metrics=metrics, mlflow_run_id=run_id,
                       lightning_checkpoint=str(last), resumed_from_step=resumed_from,
                       global_step=int(trainer.global_step), selected=selected)
    result.write(out_dir / "sft_result.json")
    return result
