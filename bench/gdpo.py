"""Traj-GDPO benchmark: rewards before/after GDPO and the ablations GDPO vs GRPO, beta > 0 vs beta = 0.

Two modes, both writing ``outputs/bench/gdpo.json`` (or ``--out``):

* **toy** (default; CPU, about 2 minutes): the toy task of ``tests/test_gdpo.py`` (12 px, 5 frames,
  4 fixed conditions, an SFT model trained on a 50/50 mix of correct and reversed paths, real
  rewards and the real ``ml.decode`` decoder). For each seed, the same SFT model is fine-tuned by
  each variant; the three rewards are measured before and after on 32 rollouts (4 conditions x 8),
  with the SDE sampler (the policy GDPO optimises) and the deterministic Euler sampler (inference).
* **data** (``--data DIR --sft CKPT``): the real pipeline on a rendered-arrays folder and an SFT
  checkpoint (e.g. the demo profile's): :func:`ml.models.gdpo.train_gdpo` per variant, rewards
  before/after on the validation split (``--n-eval`` samples, Euler sampler).

    .venv/bin/python bench/gdpo.py                      # toy, seeds 0 and 1
    .venv/bin/python bench/gdpo.py --data outputs/gridville/render/r64_k9 \\
        --sft outputs/gridville/checkpoints/sft/model.pt --profile demo --steps 30
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import machine  # noqa: E402

VARIANTS: dict[str, dict] = {
    "gdpo_beta": {"advantage": "gdpo"},  # beta from the config (0.04)
    "grpo_beta": {"advantage": "grpo"},
    "gdpo_beta0": {"advantage": "gdpo", "beta": 0.0},
}
REWARDS = ("distance", "direction", "connectivity")


def _round(d: dict) -> dict:
    return {k: round(float(v), 4) for k, v in d.items()}


def _load_toy():
    """The toy task lives with its test (single source of truth for the learning evidence)."""
    spec = importlib.util.spec_from_file_location("_gdpo_toy", REPO / "tests" / "test_gdpo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def run_toy(seeds: list[int], steps: int) -> dict:
    from ml.models.gdpo import evaluate_policy

    toy = _load_toy()
    task = toy.make_toy_task()
    evb = toy.toy_eval_batch(task, repeats=8)
    rows = []
    for seed in seeds:
        t0 = time.perf_counter()
        sft = toy.sft_toy(task, seed=seed)
        sft_s = time.perf_counter() - t0
        before = {"sde": evaluate_policy(sft, evb, 8, toy.toy_reward_fn, noise_scale=0.7, seed=100 + seed),
                  "ode": evaluate_policy(sft, evb, 8, toy.toy_reward_fn, seed=100 + seed)}
        for name, over in VARIANTS.items():
            policy = copy.deepcopy(sft)
            t0 = time.perf_counter()
            module = toy.run_toy_gdpo(policy, task, steps=steps, seed=seed, **over)
            dt = time.perf_counter() - t0
            after = {"sde": evaluate_policy(policy, evb, 8, toy.toy_reward_fn, noise_scale=0.7, seed=100 + seed),
                     "ode": evaluate_policy(policy, evb, 8, toy.toy_reward_fn, seed=100 + seed)}
            last = module.history[-5:]
            row = {"seed": seed, "variant": name, "sft_s": round(sft_s, 2), "gdpo_s": round(dt, 2),
                   "s_per_iteration": round(dt / steps, 3),
                   "before": {k: _round({r: v[r] for r in REWARDS}) for k, v in before.items()},
                   "after": {k: _round({r: v[r] for r in REWARDS}) for k, v in after.items()},
                   "final_kl": round(sum(h["kl"] for h in last) / len(last), 5),
                   "mean_clip_frac": round(sum(h["clip_frac"] for h in module.history) / len(module.history), 4)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {}
    for name in VARIANTS:
        sel = [r for r in rows if r["variant"] == name]
        summary[name] = {
            f"{mode}_{when}_{rw}": round(sum(r[when][mode][rw] for r in sel) / len(sel), 4)
            for mode in ("sde", "ode") for when in ("before", "after") for rw in REWARDS
        }
        summary[name]["final_kl"] = round(sum(r["final_kl"] for r in sel) / len(sel), 5)
    cfg = dict(toy.TOY_GDPO, steps=steps)
    return {"mode": "toy", "config": cfg, "seeds": seeds, "n_eval_rollouts": 32, "rows": rows,
            "mean_over_seeds": summary}


def run_data(data: Path, sft: Path, profile: str, steps: int | None, n_eval: int | None, out_dir: Path) -> dict:
    from ml.models.gdpo import gdpo_profile, train_gdpo

    rows = []
    for name, over in VARIANTS.items():
        extra = dict(over)
        if steps is not None:
            extra["steps"] = steps
        if n_eval is not None:
            extra["n_eval"] = n_eval
        cfg = gdpo_profile(profile, progress_bar=False, **extra)
        t0 = time.perf_counter()
        res = train_gdpo(data, sft, out_dir / name, cfg)
        m = res.metrics
        row = {"variant": name, "seconds": round(time.perf_counter() - t0, 1), "steps": cfg.steps,
               "before": _round({r: m.get(f"before/{r}", float("nan")) for r in REWARDS}),
               "after": _round({r: m.get(f"after/{r}", float("nan")) for r in REWARDS}),
               "train_first": _round({r: m.get(f"first/reward/{r}", float("nan")) for r in REWARDS}),
               "train_final": _round({r: m.get(f"final/reward/{r}", float("nan")) for r in REWARDS}),
               "final_kl": round(m.get("final/kl", float("nan")), 5), "n_eval": m.get("before/n")}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {"mode": "data", "data": str(data), "sft": str(sft), "profile": profile, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="rendered-arrays folder (data mode)")
    ap.add_argument("--sft", type=Path, default=None, help="SFT checkpoint (data mode)")
    ap.add_argument("--profile", default="demo", choices=["ci", "demo", "gpu"])
    ap.add_argument("--steps", type=int, default=None, help="GDPO iterations (toy default 40)")
    ap.add_argument("--n-eval", type=int, default=None)
    ap.add_argument("--seeds", default="0,1", help="toy mode: comma-separated seeds")
    ap.add_argument("--out", type=Path, default=REPO / "outputs" / "bench" / "gdpo.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    if args.data is not None or args.sft is not None:
        if args.data is None or args.sft is None:
            ap.error("data mode needs both --data and --sft")
        result = run_data(args.data, args.sft, args.profile, args.steps, args.n_eval,
                          REPO / "outputs" / "bench" / "gdpo_runs")
    else:
        result = run_toy([int(s) for s in args.seeds.split(",")], args.steps or 40)
    result["total_s"] = round(time.perf_counter() - t0, 1)
    result["machine"] = machine()
    result["command"] = " ".join([".venv/bin/python", "bench/gdpo.py", *(argv if argv is not None else sys.argv[1:])])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out} in {result['total_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
