"""Run by tests/test_ddp.py in a subprocess: two CPU processes (Lightning DDP, gloo) train the ci SFT model a
few steps; each rank writes the rows it trained on and its weights before and after."""

import json
import os
import sys
from pathlib import Path

import lightning as L
import torch

from ml.train.sft.config import sft_profile
from ml.models.data import make_toy_rendered_arrays
from ml.train.sft import train_sft


class RecordRank(L.Callback):
    """Writes ``<prefix>seen_rank<r>.json`` (the rows the rank trained on) and the weights of ``module.<weights>``
    at the start and the end (``<prefix>start_rank<r>.pt``, ``<prefix>end_rank<r>.pt``); also used by
    tests/ddp_gdpo_probe.py."""

    def __init__(self, out: Path, weights: str = "model", prefix: str = "", extra=None) -> None:
        self.out, self.weights, self.prefix, self.extra, self.seen = out, weights, prefix, extra, []

    def _save(self, trainer: L.Trainer, module: L.LightningModule, what: str) -> None:
        state = getattr(module, self.weights).state_dict()
        torch.save({k: v.detach().cpu().clone() for k, v in state.items()},
                   self.out / f"{self.prefix}{what}_rank{trainer.global_rank}.pt")

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._save(trainer, module, "start")

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.seen.extend(int(i) for i in batch["index"])

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._save(trainer, module, "end")
        (self.out / f"{self.prefix}seen_rank{trainer.global_rank}.json").write_text(
            json.dumps({"world_size": trainer.world_size, "strategy": type(trainer.strategy).__name__,
                        "backend": torch.distributed.get_backend(), "seen": self.seen,
                        **(self.extra(module) if self.extra else {})}))


if __name__ == "__main__":
    out = Path(sys.argv[1])
    data = out / "r32_k9"
    if int(os.environ.get("LOCAL_RANK", "0")) == 0 and not (data / "index.parquet").is_file():
        make_toy_rendered_arrays(data, n=24, resolution=32, frames=9, seed=0, shard_size=8)
    # the ci profile's sizes; only the device settings change (what the gpu profile sets for N GPUs)
    cfg = sft_profile("ci", max_steps=3, batch_size=2, accelerator="cpu", devices=2, strategy="ddp",
                      select_checkpoint="last", val_every_n_steps=100, progress_bar=False, init_checkpoint=None)
    train_sft(data, out / "sft", cfg, callbacks=[RecordRank(out)])
