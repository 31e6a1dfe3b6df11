#!/bin/bash
# The ci profile's base model (models/sig2gps-base-ci-32px-k9.pt): the ci-sized Wan model trained from scratch for
# 400 steps on 96 toy windows (ml.models.data.make_toy_rendered_arrays, towers 2 px off the route), so that the
# ci profile fine-tunes from a checkpoint as the demo profile does (a few minutes on 2 CPU cores).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/base_ci}
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
.venv/bin/python -c "
from ml.models.data import make_toy_rendered_arrays
make_toy_rendered_arrays('$OUT/data/r32_k9', n=96, resolution=32, frames=9, seed=7, shard_size=32, tower_offset_px=(2, 1))
"
.venv/bin/python -m ml.train sft --data "$OUT/data/r32_k9" --out "$OUT" --profile ci --from-scratch --max-steps 400 \
    --set val_every_n_steps=100 --set ckpt_every_n_steps=100 --no-progress
cp "$OUT/model.pt" models/sig2gps-base-ci-32px-k9.pt
