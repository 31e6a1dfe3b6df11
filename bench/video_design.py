"""What the video model should read and how it should train, chosen on val windows at equal CPU time.

    .venv/bin/python -m bench.video_design [--cities gridville ringtown] [--minutes 4] [--variants NAME ...]
                                           [--threads 1] [--seed 0] [--evidence-weight 0]

For each city (its materialised demo data and ``cell_footprints``) the train and val windows are rendered
once per input design: the record tokens (and so the per-frame signal prior) placed by the hand-made
observation model or by the city's footprints, and the condition image's signaling polyline through the
serving towers or through the records' footprint positions (``RenderConfig.trace``). Every trained variant
starts from the shipped base and fine-tunes with the ``demo`` SFT settings for ``--minutes`` of wall-clock
time on one thread (equal CPU time), then every val window is sampled once with the evaluation's sampler
(one Euler step from zero noise) and decoded as the evaluation does, by default from the drawing alone
(``--evidence-weight 0``: the decoder's record evidence, bench/decode_evidence.py, would blur what the
variants draw differently). ``prior_only`` is the untrained
residual model (it draws the footprint prior exactly) and ``base`` the shipped base without fine-tuning:
the references that show what training adds. Reported: steps, s/step, head error (px, against the true
head), decoded median and mean error (m), windows with no output, and ``learned_hmm`` / ``industrial_hmm``
on the same windows. Writes ``outputs/bench/video_design.json``; the table goes to docs/results.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine, write_result  # noqa: E402

BASE = ROOT / "models" / "sig2gps-base-64px-k17.pt"
# variant -> (observation, trace, SFTConfig overrides, train?). Every variant states its inputs in full.
VARIANTS: dict[str, tuple[str, str, dict, bool]] = {
    "prior_only": ("learned", "serving_towers", {}, False),
    "base": ("learned", "serving_towers", {}, False),
    "handmade": ("handmade", "serving_towers", {}, True),
    "footprints": ("learned", "serving_towers", {}, True),
    "footprints_trace": ("learned", "records", {}, True),
    "footprints_nohead": ("learned", "serving_towers", {"head_position_weight": 0.0}, True),
    "footprints_onestep": ("learned", "serving_towers", {"one_step_fraction": 0.5}, True),
    "footprints_trace_onestep": ("learned", "records", {"one_step_fraction": 0.5}, True),
}


def city_data(city: str):
    import pandas as pd

    from ml.cities import load_city, load_road_network
    from ml.config import stage_config
    from ml.io import read_table
    from ml.observation import LearnedObservationModel, TowerTable, build_sample_contexts
    from ml.paths import CityPaths

    cp = CityPaths(ROOT, city, "demo")
    cfg_city = load_city(city, ROOT)
    net = load_road_network(cfg_city, cache_dir=cp.roads_dir)
    tabs = {k: read_table(cp.table(k), k) for k in ("samples", "signaling", "towers")}
    truth = read_table(cp.sample_truth, "sample_truth")
    learned = LearnedObservationModel(pd.read_parquet(cp.footprints), TowerTable(tabs["towers"], net.crs),
                                      stage_config("footprints", "demo"))
    val = build_sample_contexts(tabs["samples"], tabs["signaling"], tabs["towers"], net, sample_truth=truth,
                                split="val", observation=learned)
    return cfg_city, net, tabs, truth, learned, val


def fine_tune(rendered: Path, overrides: dict, seconds: float, seed: int, train_windows: int | None = None):
    """The demo SFT from the shipped base for ``seconds`` of wall-clock time (on the first ``train_windows`` train
    rows only, when given): ``(module, steps, s/step, losses, sample ids trained on)``."""
    import torch

    from ml.train.sft.config import sft_profile
    from ml.models.data import RenderedVideoDataModule
    from ml.train.sft.module import SFTModule, model_config_for_data
    from ml.train.sft.loop import _load_init

    # a long max_steps keeps the learning rate flat after warm-up within the budget
    cfg = sft_profile("demo", max_steps=100_000, seed=seed, **overrides)
    dm = RenderedVideoDataModule(rendered, batch_size=cfg.batch_size, seed=seed, with_tokens=cfg.model.uses_records,
                                 max_records=cfg.model.max_records)
    dm.setup("fit")
    if train_windows is not None:
        dm.rows["train"] = dm.rows["train"][:train_windows]
    cfg = cfg.model_copy(update={"model": model_config_for_data(cfg.model, dm.resolution, dm.frames)})
    torch.manual_seed(seed)
    module = SFTModule(cfg)
    _load_init(module, BASE)
    opts = module.configure_optimizers()
    opt, sched = opts["optimizer"], opts["lr_scheduler"]["scheduler"]
    steps, t_start, losses = 0, time.perf_counter(), []
    module.train()
    while time.perf_counter() - t_start < seconds:
        for batch in dm.train_dataloader():
            loss = module.flow_loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip or 1e9)
            opt.step()
            sched.step()
            if module.ema is not None:
                module.ema.update(module.model)
            steps += 1
            losses.append(loss.item())
            if time.perf_counter() - t_start >= seconds:
                break
    elapsed = time.perf_counter() - t_start
    module.eval()
    trained_ids = dm.index["sample_id"].astype(str).to_numpy()[dm.rows["train"]]
    return module, steps, elapsed / max(steps, 1), losses, trained_ids


def score(model, mcfg, rendered: Path, contexts, evidence_weight: float) -> dict:
    from ml.evaluation import score_run, summarise
    from ml.evaluation.config import EvaluationConfig
    from ml.evaluation.video import predict_video_method
    from ml.models.checkpoint import save_video_model

    with tempfile.TemporaryDirectory() as d:
        ckpt = save_video_model(Path(d) / "model.pt", model, mcfg)
        run = predict_video_method("video", ckpt, rendered, contexts,
                                   EvaluationConfig(split="val", video_record_evidence_weight=evidence_weight))
    s = summarise(score_run(run, contexts).merge(run.extra["rewards"], on="sample_id", how="left"))
    return {k: s.get(k) for k in ("median_error_m", "mean_error_m", "n", "n_failed", "head_detect_rate",
                                  "head_error_px", "reward_distance", "reward_direction", "reward_connectivity")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cities", nargs="+", default=["gridville", "ringtown"])
    ap.add_argument("--minutes", type=float, default=4.0)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--evidence-weight", type=float, default=0.0)
    ap.add_argument("--out", default="video_design")
    args = ap.parse_args(argv)
    import torch

    from ml.baselines import FOOTPRINT_METHODS, SIGNALING_METHODS
    from ml.config import stage_config
    from ml.evaluation import run_method, score_run, summarise
    from ml.models import load_video_model
    from ml.models.backbone import build_video_model
    from ml.render.dataset import render_samples

    torch.set_num_threads(args.threads)
    result = {"name": args.out, "machine": machine(), "minutes": args.minutes, "threads": args.threads,
              "evidence_weight": args.evidence_weight,
              "base": str(BASE.relative_to(ROOT)), "cities": {}}
    for city in args.cities:
        cfg_city, net, tabs, truth, learned, val = city_data(city)
        refs = {}
        for name, fn in (("industrial_hmm", SIGNALING_METHODS["industrial_hmm"]), ("learned_hmm", FOOTPRINT_METHODS["learned_hmm"])):
            refs[name] = summarise(score_run(run_method(name, "signaling", fn, val), val))["median_error_m"]
        print(f"{city}: {len(val)} val windows; " + ", ".join(f"{k} {v:.1f} m" for k, v in refs.items()), flush=True)
        fit_samples = tabs["samples"][tabs["samples"]["split"].isin(["train", "val"])]
        rows: dict = {}
        with tempfile.TemporaryDirectory(dir=ROOT / "outputs") as tmp:
            rendered: dict[tuple[str, str], Path] = {}
            for name in args.variants:
                obs, trace = VARIANTS[name][:2]
                if (obs, trace) not in rendered:
                    out = Path(tmp) / f"{obs}_{trace}"
                    rcfg = stage_config("render", "demo", cfg_city).model_copy(update={"trace": trace})
                    render_samples(net, fit_samples, tabs["signaling"], tabs["towers"], truth, rcfg, out, workers=1,
                                   observation=learned if obs == "learned" else None)
                    rendered[(obs, trace)] = out
            for name in args.variants:
                obs, trace, overrides, train = VARIANTS[name]
                data = rendered[(obs, trace)]
                steps, s_per_step = 0, float("nan")
                if train:
                    module, steps, s_per_step, _, _ = fine_tune(data, overrides, args.minutes * 60.0, args.seed)
                    with module.eval_weights():  # the EMA weights, as the trainer exports them
                        scores = score(module.model, module.cfg.model, data, val, args.evidence_weight)
                else:
                    model, mcfg = load_video_model(BASE)
                    if name == "prior_only":
                        torch.manual_seed(args.seed)
                        model = build_video_model(mcfg).eval()
                    scores = score(model, mcfg, data, val, args.evidence_weight)
                r = {"observation": obs, "trace": trace, "overrides": overrides, "steps": steps,
                     "s_per_step": s_per_step, **scores}
                rows[name] = r
                print(f"  {name}: {steps} steps ({s_per_step:.2f} s/step), head {r['head_error_px']:.2f} px, "
                      f"median {r['median_error_m']:.1f} m (x{r['median_error_m'] / refs['learned_hmm']:.3f} "
                      f"learned_hmm), failed {r['n_failed']}", flush=True)
                result["cities"][city] = {"val_windows": len(val), "references": refs, "variants": rows}
                write_result(args.out, result)
    return 0


def markdown_table(result: dict) -> str:
    """The docs/results.md table: one row per variant, the two cities side by side."""
    cities = list(result["cities"])
    head = "| variant | tokens / prior | polyline | " + " | ".join(
        f"{c}: steps | s/step | head px | median m" for c in cities) + " |"
    lines = [head, "|---|---|---|" + "---|---|---|---|" * len(cities)]
    names = list(next(iter(result["cities"].values()))["variants"])
    for n in names:
        v0 = result["cities"][cities[0]]["variants"][n]
        cells = []
        for c in cities:
            v = result["cities"][c]["variants"].get(n)
            cells.append("| | | |" if v is None else
                         f"{v['steps']} | {'' if v['s_per_step'] != v['s_per_step'] else format(v['s_per_step'], '.2f')} | "
                         f"{v['head_error_px']:.2f} | {v['median_error_m']:.1f}")
        lines.append(f"| {n} | {v0['observation']} | {v0['trace']} | " + " | ".join(cells) + " |")
    for ref in ("learned_hmm", "industrial_hmm"):
        lines.append(f"| *{ref}* | | | " + " | ".join(
            f"| | | {result['cities'][c]['references'][ref]:.1f}" for c in cities) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
