#!/usr/bin/env bash
# Reproduces the footprint base model models/sig2gps-base-fp-64px-k17.pt from scratch (models/README.md).
#   models/train_base_footprints.sh [MAX_STEPS] [THREADS]     run from the repository root; needs ../shared/cities
# 1. registers the training cities (two synthetic ones beside the demo cities, four real extracts),
# 2. materialises each city's data up to its rendered windows with the demo profile (64 px, K = 17): the record
#    tokens, the signal prior and the condition image's polyline all read the city's own cell_footprints, learned
#    from its train windows only,
# 3. concatenates their train and val windows (test windows are never used),
# 4. trains from random weights with the demo model and the one-step rows (one_step_fraction 0.5: half of each
#    batch starts where the evaluation samples, flow time 1 from zero noise), a checkpoint every 200 steps kept
#    for the learning curve (bench/base_curve.py), and exports the last one.
set -euo pipefail
cd "$(dirname "$0")/.."
MAX_STEPS="${1:-1600}"
export OMP_NUM_THREADS="${2:-1}" MKL_NUM_THREADS="${2:-1}"
S=.venv/bin/sig2gps
export DAGSTER_HOME="$PWD/.dagster_home" GX_ANALYTICS_ENABLED=false HF_HUB_OFFLINE=1
add() { [ -f "cities/$1.toml" ] || $S city add "$@"; }
add oakdale --synthetic organic --seed 3 --description "base-model training city (organic)"
add fernhill --synthetic organic --seed 8 --size-km 5 --description "base-model training city (organic)"
for c in krems aguascalientes bayreuth campo_grande; do
  add "$c" --osm "$(ls ../shared/cities/$c.osm*)" --description "real extract ($c)"
done
CITIES="gridville ringtown oakdale fernhill krems aguascalientes bayreuth campo_grande"
for c in $CITIES; do $S run "$c" --select "*rendered_videos"; done
.venv/bin/python - $CITIES <<'PY'
import sys
from ml.render.arrays import concat_rendered
idx = concat_rendered([f"outputs/{c}/demo/render/r64_k17" for c in sys.argv[1:]], "outputs/base_fp/r64_k17")
print(idx["split"].value_counts().to_dict())
PY
.venv/bin/python -m ml.train sft --data outputs/base_fp/r64_k17 --out runs/base_fp --profile demo --from-scratch \
  --lr 3e-4 --max-steps "$MAX_STEPS" --no-progress \
  --set warmup_steps=50 --set one_step_fraction=0.5 --set val_every_n_steps=200 --set n_val_samples=16 \
  --set val_sample_steps=1 --set limit_val_batches=2 --set ckpt_every_n_steps=200 --set keep_checkpoints=-1 \
  --set log_every_n_steps=25 \
  --tracking-uri "sqlite:///$PWD/mlflow/mlflow.db" --experiment sig2gps-base --tag purpose=base-model-footprints
cp runs/base_fp/model.pt models/sig2gps-base-fp-64px-k17.pt
