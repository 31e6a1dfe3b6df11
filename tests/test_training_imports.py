"""The training path imports what the README says: ``python -m ml.train sft|gdpo`` needs numpy, torch,
lightning, diffusers and scikit-image, with pandas/pyarrow for the arrays, and nothing of the pipeline's
geo, map-matching, orchestration or tracking stack (pyproj, networkx, shapely, osmnx, dagster, ...).

A subprocess first imports the allowed libraries (and what they load lazily: the Wan model class pulls in
diffusers' accelerate/peft, lightning fsspec, ``skimage.io`` imageio/PIL), then runs a two-step SFT and a one-step GDPO
through the CLI's ``main`` on toy arrays, and reports every non-stdlib top-level module that appeared
after the baseline. The typed configs are pydantic models (validation with clear errors), the one
addition allowed besides ``ml`` itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

ALLOWED_EXTRA = {"ml", "pydantic", "pydantic_core", "annotated_types", "typing_inspection"}

SCRIPT = r"""
import json, sys
import numpy, torch, lightning, pandas, pyarrow, skimage, skimage.io, skimage.measure, skimage.morphology
import fsspec, imageio.v3, PIL.Image  # loaded lazily by lightning (checkpoint files) and skimage.io (images)
from diffusers import WanTransformer3DModel  # noqa: F401  (loads diffusers' lazy dependencies)
top = lambda mods: {m.split(".")[0] for m in mods}
base = top(sys.modules)
from ml.models.data import make_toy_rendered_arrays
from ml.train.__main__ import main
root = sys.argv[1]
data = make_toy_rendered_arrays(root + "/r32_k5", n=8, resolution=32, frames=5, seed=0, shard_size=4)
assert main(["sft", "--data", str(data), "--out", root + "/sft", "--profile", "ci", "--max-steps", "2",
             "--no-progress", "--set", "n_val_samples=1"]) == 0
assert main(["gdpo", "--data", str(data), "--sft", root + "/sft/model.pt", "--out", root + "/gdpo", "--profile", "ci",
             "--steps", "1", "--no-progress"]) == 0
new = top(sys.modules) - base
print("NEW_MODULES=" + json.dumps(sorted(m for m in new if m not in sys.stdlib_module_names and not m.startswith("_"))))
"""


@pytest.mark.slow  # a fresh interpreter importing the training stack, two CLI trainings (about 7 s)
def test_train_sft_and_gdpo_import_only_the_training_stack(tmp_path) -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                         timeout=600, env={"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("NEW_MODULES="))
    extra = set(json.loads(line.split("=", 1)[1])) - ALLOWED_EXTRA
    assert not extra, f"the training path imports {sorted(extra)} beyond numpy/torch/lightning/diffusers/skimage/pandas"
