"""``Seq2SeqModule``: the Lightning module of the seq2seq baseline (Huber loss on positions, rotation
augmentation, AdamW with a cosine schedule)."""

from __future__ import annotations

import math
from typing import Any, Sequence

import lightning as L
import torch
from diffusers.optimization import get_cosine_schedule_with_warmup

from ml.seq2seq import RecordsToPositions, Seq2SeqConfig

#: metres of the Huber loss's quadratic zone: errors below it count as squared, above as absolute
HUBER_DELTA_M = 50.0


def rotate_windows(batch: Sequence[torch.Tensor], angle: torch.Tensor) -> list[torch.Tensor]:
    """Each window's positions (records, priors, truth) rotated by ``angle[i]`` about its origin."""
    records, rmask, qt, prior, qmask, target, *rest = batch
    c, s = angle.cos()[:, None], angle.sin()[:, None]  # (B, 1): one angle per window

    def rot(xy: torch.Tensor) -> torch.Tensor:
        return torch.stack([c * xy[..., 0] - s * xy[..., 1], s * xy[..., 0] + c * xy[..., 1]], dim=-1)

    records = torch.cat([rot(records[..., :2]), records[..., 2:]], dim=-1)
    return [records, rmask, qt, rot(prior), qmask, rot(target), *rest]


class Seq2SeqModule(L.LightningModule):
    def __init__(self, cfg: dict[str, Any] | Seq2SeqConfig) -> None:
        super().__init__()
        cfg = cfg if isinstance(cfg, Seq2SeqConfig) else Seq2SeqConfig.model_validate(cfg)
        self.save_hyperparameters({"cfg": cfg.model_dump(mode="json")})
        self.cfg = cfg
        self.model = RecordsToPositions(cfg)

    def _loss(self, batch: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        records, rmask, qt, prior, qmask, target, lmask = batch
        pred = self.model(records, rmask, qt, prior, qmask)
        delta = HUBER_DELTA_M / self.cfg.scale_m
        per = torch.nn.functional.huber_loss(pred, target, delta=delta, reduction="none").sum(-1)
        loss = (per * lmask).sum() / lmask.sum().clamp(min=1)
        se = ((pred - target) ** 2).sum(-1) * (self.cfg.scale_m ** 2)
        return loss, (se * lmask).sum() / lmask.sum().clamp(min=1)

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.cfg.augment_rotation:
            batch = rotate_windows(batch, torch.rand(len(batch[0]), device=batch[0].device) * (2 * math.pi))
        loss, _ = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch[0]))
        return loss

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        loss, mse = self._loss(batch)
        self.log("val/loss", loss, prog_bar=True, batch_size=len(batch[0]))
        self.log("val/mse_m2", mse, batch_size=len(batch[0]))

    def on_validation_epoch_end(self) -> None:
        mse = self.trainer.callback_metrics.get("val/mse_m2")
        if mse is not None:
            self.log("val/rmse_m", torch.sqrt(mse))

    def configure_optimizers(self) -> dict[str, Any]:
        c = self.cfg
        opt = torch.optim.AdamW(self.model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=c.warmup_steps, num_training_steps=c.max_steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
