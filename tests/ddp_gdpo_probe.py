"""Run by tests/test_ddp.py in a subprocess: two CPU processes (Lightning DDP, gloo) run a few GDPO iterations of
the ci video model; each rank writes the conditions it rolled out and its policy weights before and after."""

import sys
from pathlib import Path

from ddp_sft_probe import RecordRank  # the probe's script folder (tests/) is on sys.path
from ml.train.gdpo.config import gdpo_profile
from ml.train.gdpo import train_gdpo


if __name__ == "__main__":
    data, sft, out = (Path(a) for a in sys.argv[1:4])
    # the ci profile's sizes; only the device settings change. One inner epoch keeps it short;
    # select "last" so the exported weights are the trained ones
    cfg = gdpo_profile("ci", steps=3, conditions_per_step=2, group_size=4, n_eval=1, accelerator="cpu", devices=2,
                       select_checkpoint="last", progress_bar=False, inner_epochs=1)
    train_gdpo(data, sft, out / "gdpo", cfg, callbacks=[RecordRank(
        out, weights="policy", prefix="gdpo_", extra=lambda m: {"updated": [h["updated"] for h in m.history]})])
