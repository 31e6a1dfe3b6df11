"""The trainers' outputs as hashes, to show a refactoring moved code without changing what it computes.

    PYTHONPATH=<checkout> python bench/train_parity.py <out folder> <project root with gridville ci data> > a.json

Trains SFT (6 steps from random weights on toy rendered arrays, best_val selection), GDPO (2 iterations on it)
and seq2seq (the ci profile on gridville's ci windows: ``sig2gps run gridville --profile ci --select
'*samples'`` first) with the code found on PYTHONPATH, and prints the sha256 of each exported model's
weights, the selected weights and the metrics (times left out). Run it with two checkouts (e.g. a ``git
clone`` at the older commit) and ``diff`` the two outputs. Imports work with the layout before and after
issue 28 (trainers in ml/train/<name>/).
"""
import hashlib
import json
import os
import sys
from pathlib import Path
os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch
torch.set_num_threads(1)

out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
from ml.models.data import make_toy_rendered_arrays
try:
    from ml.train.sft.config import sft_profile
    from ml.train.gdpo.config import gdpo_profile
except ImportError:
    from ml.models.config import sft_profile, gdpo_profile
from ml.train.sft import train_sft
from ml.train.gdpo import train_gdpo
from ml.train.seq2seq import train_seq2seq
from ml.seq2seq import seq2seq_profile
from ml.models.checkpoint import load_video_model

def h(sd):
    m = hashlib.sha256()
    for k in sorted(sd):
        m.update(k.encode()); m.update(sd[k].detach().cpu().numpy().tobytes())
    return m.hexdigest()[:16]

toy = make_toy_rendered_arrays(out / "toy" / "r32_k5", n=12, resolution=32, frames=5, seed=0, shard_size=5)
cfg = sft_profile("ci", max_steps=6, batch_size=2, val_every_n_steps=3, ckpt_every_n_steps=3, n_val_samples=2,
                  val_sample_steps=2, limit_val_batches=1, progress_bar=False, init_checkpoint=None)
r = train_sft(toy, out / "sft", cfg)
res = {"sft": {"weights": h(load_video_model(r.checkpoint_path)[0].state_dict()), "selected": r.selected,
               "metrics": {k: round(v, 6) for k, v in r.metrics.items() if "seconds" not in k}}}
g = train_gdpo(toy, r.checkpoint_path, out / "gdpo", gdpo_profile("ci", steps=2, n_eval=2))
res["gdpo"] = {"weights": h(load_video_model(g.checkpoint_path)[0].state_dict()), "selected": g.selected,
               "metrics": {k: round(v, 6) for k, v in g.metrics.items() if not k.startswith("time/") and k != "train_s"}}
from ml.evaluation.transfer import city_windows
cw = city_windows(Path(sys.argv[2]), "gridville", "ci").splits
s = train_seq2seq(cw["train"], cw["val"], seq2seq_profile("ci"), out / "s2s")
try:
    from ml.seq2seq import load_seq2seq
except ImportError:
    from ml.train.seq2seq import load_seq2seq
res["seq2seq"] = {"weights": h(load_seq2seq(s.checkpoint_path)[0].state_dict()), "best_step": s.best_step,
                  "metrics": {k: round(v, 6) for k, v in s.metrics.items() if k != "train_seconds"}}
print(json.dumps(res, indent=1, sort_keys=True))
