"""Lightning module for supervised fine-tuning of the video flow model (conditional flow matching).

Training step: x0 = video in model space (the drawing layer by default), e ~ N(0, I), the flow's
start x_1 = ``model.source_sample(cond, e)``, s ~ logit-normal (shifted), x_s = (1 - s) x0 + s x_1,
loss = ``flow_matching_loss`` in velocity or x0 space with foreground (and head) weights. AdamW with
diffusers' cosine schedule with linear warm-up (to zero at ``max_steps``), optional EMA of the trainable
weights (``torch.optim.swa_utils.AveragedModel``).

Validation: the flow-matching loss at fixed noise, then a few videos sampled with the Euler ODE
(``ml.inference.predict_windows``, the evaluation's loop), compared with the truth video (pixel MSE) and by their decoded
heads and paths (``ml.decode.drawing_metrics``: detection rate, pixel error, path IoU) and, with a
road network, by their decoded trajectories (metres). Preview images (truth row over generated row) are written and logged to MLflow.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import lightning as L
import numpy as np
import torch
from diffusers.optimization import get_cosine_schedule_with_warmup

from ml.models.backbone import VideoFlowModel, build_video_model
from ml.models.config import ModelConfig
from ml.models.data import to_uint8_frames
from ml.models.flow_matching import (flow_matching_loss, foreground_weights, interpolate, sample_timesteps,
                                      x0_from_velocity)
from ml.models.layer import head_position_loss
from ml.pixels import SCALE
from ml.train.sft.config import SFTConfig

log = logging.getLogger(__name__)


class _TrainableParameters(torch.nn.Module):
    """The trainable parameters of a model, as one module: what the EMA averages (a frozen backbone is
    not copied)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.values = torch.nn.ParameterList([p for _, p in named])


class EMA:
    """Exponential moving average of a model's trainable parameters: ``torch.optim.swa_utils.AveragedModel``
    with ``get_ema_multi_avg_fn`` over those parameters, swapped into the model for validation and export.

    The average starts at the first update (AveragedModel copies the weights then) and lives on the
    parameters' device.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        self.decay = float(decay)
        self.averaged = AveragedModel(_TrainableParameters(model), multi_avg_fn=get_ema_multi_avg_fn(self.decay),
                                      use_buffers=False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        current = _TrainableParameters(model)
        if current.names != self.averaged.module.names:
            raise ValueError("EMA.update: the model's trainable parameters differ from those the EMA was built for")
        self.averaged.to(current.values[0].device)
        self.averaged.update_parameters(current)

    @contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[None]:
        """Temporarily swap the EMA weights into ``model`` (the model's own weights until the first update)."""
        if int(self.averaged.n_averaged) == 0:
            yield
            return
        params = dict(model.named_parameters())
        averaged = dict(zip(self.averaged.module.names, self.averaged.module.values))
        backup = {}
        with torch.no_grad():
            for n, v in averaged.items():
                backup[n] = params[n].detach().clone()
                params[n].copy_(v.to(params[n].device, params[n].dtype))
        try:
            yield
        finally:
            with torch.no_grad():
                for n, v in backup.items():
                    params[n].copy_(v)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "names": list(self.averaged.module.names),
                "averaged": {k: v.cpu() for k, v in self.averaged.state_dict().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "averaged" not in state:
            raise ValueError("the checkpoint's EMA is in an older format (before torch AveragedModel); "
                             "it cannot be resumed: train a new run")
        if list(state["names"]) != self.averaged.module.names:
            raise ValueError("the checkpoint's EMA holds other parameters than this model's trainable ones")
        self.decay = float(state["decay"])
        self.averaged.load_state_dict(state["averaged"])


class SFTModule(L.LightningModule):
    """Flow-matching SFT of a ``VideoFlowModel``; ``hparams`` hold the full ``SFTConfig`` for resume."""

    def __init__(self, cfg: dict[str, Any] | SFTConfig, preview_dir: str | None = None) -> None:
        super().__init__()
        cfg = cfg if isinstance(cfg, SFTConfig) else SFTConfig.model_validate(cfg)
        self.save_hyperparameters({"cfg": cfg.model_dump(mode="json"), "preview_dir": preview_dir})
        self.cfg = cfg
        self.model: VideoFlowModel = build_video_model(cfg.model)
        self.ema: EMA | None = EMA(self.model, cfg.ema_decay) if cfg.ema_decay else None
        self.preview_dir = Path(preview_dir) if preview_dir else None
        # pretrained Wan: checkpoints hold the trainable weights only
        self.strict_loading = not self.model.latent
        self.road_network = None  # set by train_sft when a network is available (decoded metrics)

    # ------------------------------------------------------------------ training
    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.model(*args, **kwargs)

    def flow_loss(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> torch.Tensor:
        """The flow-matching loss of a batch (noise and times from ``generator`` when given)."""
        x0 = self.model.encode_video(batch["video"])
        B = x0.shape[0]
        c = self.cfg
        if generator is None:
            noise = torch.randn_like(x0)
            s = sample_timesteps(B, None, c.timestep_mean, c.timestep_std, c.timestep_shift, device=x0.device)
        else:
            noise = torch.randn(x0.shape, generator=generator, device=generator.device).to(x0.device)
            s = sample_timesteps(B, generator, c.timestep_mean, c.timestep_std, c.timestep_shift).to(x0.device)
        if c.one_step_fraction > 0.0:  # these rows start where the evaluation's sampler does: s = 1, zero noise
            u = torch.rand(B, generator=generator, device=generator.device) if generator is not None \
                else torch.rand(B, device=x0.device)
            one = u.to(x0.device) < c.one_step_fraction
            noise = torch.where(one[:, None, None, None, None], torch.zeros_like(noise), noise)
            s = torch.where(one, torch.ones_like(s), s)
        tokens, token_mask = batch.get("tokens"), batch.get("token_mask")
        cond = self.model.encode_condition(batch["cond"], tokens, token_mask, frames=x0.shape[2])
        source = self.model.source_sample(cond, noise)  # x_1: noise, or the prior plus noise
        xs = interpolate(x0, source, s)
        given = None
        if c.known_frames:  # continuation: a clean prefix of frames, out of the loss
            u = torch.rand(B, generator=generator, device=generator.device) if generator is not None \
                else torch.rand(B, device=x0.device)
            first = torch.arange(x0.shape[2], device=x0.device) < c.known_frames
            given = (u.to(x0.device) < c.known_frames_prob)[:, None, None, None, None] & first[None, None, :, None, None]
            xs = torch.where(given, x0, xs)
        pred = self.model(xs, s, batch["cond"], tokens, token_mask, cond=cond)
        weight = None
        if c.foreground_weight != 1.0 or c.head_weight != 1.0:
            weight = foreground_weights(x0, self.model.prior_model_space(cond) if self.model.cfg.signal_prior else None,
                                        c.foreground_weight, c.head_weight)
        if given is not None:
            weight = (~given).float() if weight is None else weight * (~given).float()
        loss = flow_matching_loss(pred, x0, source, xs, s, c.loss_space, weight)
        if c.head_position_weight > 0.0:  # a layer target (checked by SFTConfig)
            x0_hat = x0_from_velocity(xs.float(), pred.float(), s)
            # the given frames are not drawn: out of the head loss as out of the flow loss
            drawn = None if given is None else ~given[:, 0, :, 0, 0]
            loss = loss + c.head_position_weight * head_position_loss(x0_hat, x0, drawn)
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.flow_loss(batch)
        bs = batch["video"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update(self.model)

    def configure_optimizers(self) -> dict[str, Any]:
        c = self.cfg
        params = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": c.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=c.lr, betas=tuple(c.betas))

        # diffusers' linear warm-up then half-cosine decay to zero over the run
        sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=c.warmup_steps, num_training_steps=c.max_steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.ema is not None:
            checkpoint["ema"] = self.ema.state_dict()
        if self.model.latent:
            keep = {"model." + k for k in self.model.trainable_state_dict()}
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "ema" in checkpoint:
            if self.ema is None:
                self.ema = EMA(self.model, float(checkpoint["ema"]["decay"]))
            self.ema.load_state_dict(checkpoint["ema"])

    @contextmanager
    def eval_weights(self) -> Iterator[None]:
        """EMA weights swapped in when EMA is on (else the raw weights)."""
        if self.ema is None:
            yield
        else:
            with self.ema.applied(self.model):
                yield

    # ------------------------------------------------------------------ validation
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        bs = batch["video"].shape[0]
        g = torch.Generator(device="cpu").manual_seed(1000 + batch_idx)
        with self.eval_weights():
            loss = self.flow_loss(batch, generator=g)
            self.log("val/loss", loss, prog_bar=True, batch_size=bs, sync_dist=True)
            # the first val batches, until n_val_samples windows (Lightning averages the logged metrics
            # over them, weighted by the windows of each)
            n = min(self.cfg.n_val_samples - batch_idx * bs, bs)
            if n > 0:
                self._sample_and_score(batch, n, preview=batch_idx == 0, seed=self.cfg.seed + 7 + batch_idx)

    def _sample_and_score(self, batch: dict[str, Any], n: int, preview: bool, seed: int) -> None:
        from ml.decode import drawing_metrics
        from ml.inference import SamplingSettings, predict_windows

        truth = batch["video"][:n]
        windows, decode = self._val_windows(batch, n)
        settings = SamplingSettings(self.cfg.val_sample_steps, self.cfg.val_noise_scale, self.cfg.sample_shift, seed,
                                    batch_size=n)
        (out,) = predict_windows(self.model, windows, settings, device=str(batch["cond"].device), decode=decode,
                                 frames=truth.shape[2])
        gen_u8, layers = out.video, out.layer
        true_u8 = to_uint8_frames(truth)
        gen = torch.from_numpy(gen_u8).float()
        tru = torch.from_numpy(true_u8).float()
        metrics = {"val/video_mse": float((((gen - tru) / SCALE) ** 2).mean()),
                   "val/last_frame_mse": float((((gen[:, -1] - tru[:, -1]) / SCALE) ** 2).mean())}
        drawn = drawing_metrics(gen_u8, true_u8, layers)
        metrics["val/head_detect_rate"] = float(np.mean(drawn["head_detect_rate"]))
        metrics["val/head_err_px"] = float(np.nanmean(drawn["head_error_px"])) if np.isfinite(drawn["head_error_px"]).any() \
            else float("nan")
        metrics["val/path_iou"] = float(np.nanmean(drawn["path_iou"])) if np.isfinite(drawn["path_iou"]).any() else float("nan")
        if decode:
            metrics.update(self._decoded_metrics(out, true_u8))
        for key, val in metrics.items():
            if val is not None and np.isfinite(val):
                self.log(key, val, batch_size=n)
        if preview:
            self._write_preview(true_u8, gen_u8)

    def _val_windows(self, batch: dict[str, Any], n: int) -> tuple[list[Any], bool]:
        """The first ``n`` windows of a validation batch for :func:`ml.inference.predict_windows`, and whether
        they can be decoded (a road network and the rendered index are known: the truth's GPS is not part of
        the rendered arrays, so the decoded truth video is the reference)."""
        from ml.inference import VideoWindow
        from ml.pixels import to_uint8

        net = self.road_network
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        index = batch.get("index")
        decode = net is not None and index is not None and dm is not None and hasattr(dm, "index_record")
        if decode:  # only then: ml.geo needs pyproj, which a bare GPU training box may lack
            from ml.geo import Tile
        cond = to_uint8(batch["cond"][:n]).movedim(1, -1).cpu().numpy()
        tokens, mask = batch.get("tokens"), batch.get("token_mask")
        frames = int(batch["video"].shape[2])
        windows = []
        for j in range(n):
            rec = dm.index_record(int(index[j])) if decode else None
            dur = float(rec["duration_s"]) if decode else 0.0
            windows.append(VideoWindow(
                str(j), cond[j], Tile.from_record(rec) if decode else None, dur, np.linspace(0.0, dur, frames),
                net if decode else None, None if tokens is None else tokens[j].cpu().numpy(),
                None if mask is None else mask[j].cpu().numpy()))
        return windows, decode

    def _decoded_metrics(self, out: Any, truth: np.ndarray) -> dict[str, float]:
        """Mean distance (m) between the trajectories decoded from the generated and the true videos."""
        from ml.decode import decode_video_to_trajectory

        terr = []
        for w, pred, tv in zip(out.windows, out.predictions, truth):
            t_tr = decode_video_to_trajectory(tv, w.tile, int(tv.shape[-2]), w.duration_s, w.net, w.eval_t)
            d = np.linalg.norm(pred.xy - np.asarray(t_tr.xy), axis=1)
            if np.isfinite(d).any():
                terr.append(np.nanmean(d))
        return {"val/traj_err_m": float(np.mean(terr))} if terr else {}

    def _write_preview(self, truth: np.ndarray, gen: np.ndarray) -> None:
        if self.preview_dir is None or self.trainer.sanity_checking:
            return
        # rows: truth over generated for each sample; columns: frames
        rows = []
        for t, g in zip(truth, gen):
            rows.append(np.concatenate(list(t), axis=1))
            rows.append(np.concatenate(list(g), axis=1))
        img = np.concatenate(rows, axis=0)
        self.preview_dir.mkdir(parents=True, exist_ok=True)
        path = self.preview_dir / f"val_step{self.global_step:07d}.png"
        try:
            import imageio.v3 as iio

            iio.imwrite(path, img)
        except Exception:  # imageio absent on a bare GPU box
            path = path.with_suffix(".npy")
            np.save(path, img)
        logger = self.logger
        if logger is not None and type(logger).__name__ == "MLFlowLogger":
            try:
                logger.experiment.log_artifact(logger.run_id, str(path), artifact_path="previews")
            except Exception as exc:  # pragma: no cover
                log.warning("could not log preview to MLflow: %s", exc)


def export_from_lightning(ckpt_path: str | Path, out_path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write the ``save_video_model`` file of a Lightning SFT checkpoint (EMA weights when present)."""
    from ml.models.checkpoint import save_video_model

    module = SFTModule.load_from_checkpoint(str(ckpt_path), map_location="cpu", weights_only=False)
    with module.eval_weights():
        return save_video_model(out_path, module.model, module.cfg.model, meta=meta)


def model_config_for_data(cfg: ModelConfig, resolution: int, frames: int) -> ModelConfig:
    """The model config with the data's resolution and frame count (warning when they differ)."""
    if cfg.resolution != resolution or cfg.frames != frames:
        log.warning("model preset %s is for %d px x %d frames; the data is %d px x %d frames: using the data's",
                    cfg.preset, cfg.resolution, cfg.frames, resolution, frames)
        return ModelConfig.model_validate({**cfg.model_dump(), "resolution": resolution, "frames": frames})
    return cfg
