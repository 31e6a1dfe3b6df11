"""Run by tests/test_ddp.py in a subprocess: two CPU processes (Lightning DDP, gloo) train the ci SFT model a
few steps; each rank writes the rows it trained on and its weights before and after."""

import json
import os
import sys
from pathlib import Path

import lightning as L
import torch

from ml.models.config import sft_profile
from ml.models.data import make_toy_rendered_arrays
from ml.train.sft import train_sft


class RecordRank(L.Callback):
    def __init__(self, out: Path) -> None:
        self.out, self.seen = out, []

    def _save(self, trainer: L.Trainer, module: L.LightningModule, what: str) -> None:
        torch.save({k: v.detach().cpu().clone() for k, v in module.model.state_dict().items()},
                   self.out / f"{what}_rank{trainer.global_rank}.pt")

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._save(trainer, module, "start")

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.seen.extend(int(i) for i in batch["index"])

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._save(trainer, module, "end")
        (self.out / f"seen_rank{trainer.global_rank}.json").write_text(
            json.dumps({"world_size": trainer.world_size, "strategy": type(trainer.strategy).__name__,
                        "backend": torch.distributed.get_backend(), "seen": self.seen}))


if __name__ == "__main__":
    out = Path(sys.argv[1])
    data = out / "r32_k9"
    if int(os.environ.get("LOCAL_RANK", "0")) == 0 and not (data / "index.parquet").is_file():
        make_toy_rendered_arrays(data, n=24, resolution=32, frames=9, seed=0, shard_size=8)
    # the ci profile's sizes; only the device settings change (what the gpu profile sets for N GPUs)
    cfg = sft_profile("ci", max_steps=3, batch_size=2, accelerator="cpu", devices=2, strategy="ddp",
                      select_checkpoint="last", val_every_n_steps=100, progress_bar=False, init_checkpoint=None)
    train_sft(data, out / "sft", cfg, callbacks=[RecordRank(out)])
