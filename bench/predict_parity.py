"""The video evaluation and next-GPS paths of an older commit against this checkout's, on a ci city.

    python bench/predict_parity.py <older commit> [project root]

Loads ``ml/evaluation/video.py`` and ``ml/nextgps/predict.py`` as they were at the older commit (``git show``,
run against this checkout's other modules) and this checkout's versions, runs both on the first 12 test
windows of gridville's ci profile (``sig2gps run gridville --profile ci --select '*sft_checkpoint'`` first;
initial-noise scales 0 and 0.7, batches of 5) and prints whether predictions, failures and rewards are
bit-identical. The older modules must find what they import in this checkout: issue 28 ran it with 781fd1e
to show ``ml.inference.predict_windows`` changed nothing, before ``ml.models.data.record_tokens_batch`` (which
781fd1e's evaluation imports) was removed as dead code; later changes compare with a later commit.
"""
import subprocess
import sys
import types
from pathlib import Path

import numpy as np

from ml.config import stage_config
from ml.evaluation.transfer import city_windows, rendered_dir

OLD = sys.argv[1]
root = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).resolve().parents[1]
ctxs = city_windows(root, "gridville", "ci").splits["test"][:12]
ckpt = root / "outputs/gridville/ci/checkpoints/sft/model.pt"
rend = rendered_dir(root, "gridville", "ci")


def old_module(path):
    src = subprocess.run(["git", "-C", str(root), "show", f"{OLD}:{path}"], capture_output=True, text=True,
                         check=True).stdout
    m = types.ModuleType("old_" + path.replace("/", "_"))
    exec(compile(src, path, "exec"), m.__dict__)
    return m


from ml.evaluation.video import predict_video_method as new_eval

for noise in (0.0, 0.7):
    cfg = stage_config("evaluation", "ci").model_copy(update={"video_noise_scale": noise, "video_batch_size": 5})
    a = old_module("ml/evaluation/video.py").predict_video_method("v", ckpt, rend, ctxs, cfg)
    b = new_eval("v", ckpt, rend, ctxs, cfg)
    same = all(np.array_equal(a.predictions[k], b.predictions[k], equal_nan=True) for k in a.predictions)
    ra, rb = a.extra["rewards"], b.extra["rewards"]
    print(f"evaluation noise {noise}: predictions identical {same}, failures {a.failures == b.failures}, "
          f"rewards identical {ra.equals(rb)}, n={len(a.predictions)}")

from ml.nextgps import NextGPSConfig
from ml.nextgps.predict import video_at_targets as new_ng

ncfg = NextGPSConfig().model_copy(update={"video_batch_size": 5})
old_ng = old_module("ml/nextgps/predict.py").video_at_targets
for prefix in (True, False):
    a = old_ng(ckpt, rend, ctxs, ncfg, n_steps=2, with_prefix=prefix)
    b = new_ng(ckpt, rend, ctxs, ncfg, n_steps=2, with_prefix=prefix)
    print(f"next-GPS with_prefix={prefix}: identical",
          all(np.array_equal(a[k], b[k], equal_nan=True) for k in a), len(a))
