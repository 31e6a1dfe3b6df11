#!/usr/bin/env bash
# Reproduces the shipped base model models/sig2gps-base-64px-k17.pt from scratch (models/README.md).
# Since the footprints the demo renders read each city's cell_footprints and draw the records' polyline
# (RenderConfig.trace = "records"), so this script now trains that base's recipe on the new inputs; the base the demo
# fine-tunes is made by models/train_base_footprints.sh.
#   models/train_base.sh [MAX_STEPS]      run from the repository root; needs ../shared/cities
# 1. registers the training cities (two synthetic ones beside the demo cities, four real extracts),
# 2. renders their windows with the demo profile (64 px, K = 17),
# 3. concatenates their train and val windows (test windows are never used),
# 4. trains from random weights with the demo model (MLflow experiment sig2gps-base), one checkpoint every
#    250 steps kept for the learning curve (bench/base_curve.py), and exports the last one.
set -euo pipefail
cd "$(dirname "$0")/.."
MAX_STEPS="${1:-1500}"
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
idx = concat_rendered([f"outputs/{c}/demo/render/r64_k17" for c in sys.argv[1:]], "outputs/base/r64_k17")
print(idx["split"].value_counts().to_dict())
PY
.venv/bin/python -m ml.train sft --data outputs/base/r64_k17 --out runs/base --profile demo --from-scratch \
  --lr 3e-4 --max-steps "$MAX_STEPS" --no-progress \
  --set warmup_steps=50 --set val_every_n_steps=250 --set n_val_samples=16 --set val_sample_steps=10 \
  --set limit_val_batches=2 --set ckpt_every_n_steps=250 --set keep_checkpoints=-1 --set log_every_n_steps=25 \
  --tracking-uri "sqlite:///$PWD/mlflow/mlflow.db" --experiment sig2gps-base --tag purpose=base-model
cp runs/base/model.pt models/sig2gps-base-64px-k17.pt
