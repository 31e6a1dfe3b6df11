"""Run by tests/test_ddp.py in a subprocess: two CPU processes (Lightning DDP, gloo) run a few GDPO iterations of
the ci video model; each rank writes the conditions it rolled out and its policy weights before and after."""

import json
import sys
from pathlib import Path

import lightning as L
import torch

from ml.models.config import gdpo_profile
from ml.train.gdpo import train_gdpo


class RecordRank(L.Callback):
    def __init__(self, out: Path) -> None:
        self.out, self.seen = out, []

    def _save(self, trainer: L.Trainer, module: L.LightningModule, what: str) -> None:
        torch.save({k: v.detach().cpu().clone() for k, v in module.policy.state_dict().items()},
                   self.out / f"gdpo_{what}_rank{trainer.global_rank}.pt")

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._save(trainer, module, "start")

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.seen.extend(int(i) for i in batch["index"])

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._save(trainer, module, "end")
        (self.out / f"gdpo_seen_rank{trainer.global_rank}.json").write_text(
            json.dumps({"world_size": trainer.world_size, "strategy": type(trainer.strategy).__name__,
                        "backend": torch.distributed.get_backend(), "seen": self.seen,
                        "updated": [h["updated"] for h in module.history]}))


if __name__ == "__main__":
    data, sft, out = (Path(a) for a in sys.argv[1:4])
    # the ci profile's sizes; only the device settings change. No KL reference and one inner epoch keep it short;
    # select "last" so the exported weights are the trained ones
    cfg = gdpo_profile("ci", steps=3, conditions_per_step=2, group_size=4, n_eval=1, accelerator="cpu", devices=2,
                       select_checkpoint="last", progress_bar=False, inner_epochs=1)
    train_gdpo(data, sft, out / "gdpo", cfg, callbacks=[RecordRank(out)])
