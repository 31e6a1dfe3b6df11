"""Which objective makes the video model draw the route: every variant trained for the same wall-clock
time on the same windows, scored on val windows (model choices are made on val, never on test).

    .venv/bin/python -m bench.sft_objective [--city gridville] [--minutes 4] [--val 48] [--sample-steps 10]
                                            [--variants NAME ...] [--threads 2] [--seed 0]

Each variant starts from scratch (no base checkpoint) with the ``demo`` model sizes and batch, and
trains for ``--minutes`` of wall-clock time; then one video per val window is sampled with the Euler
ODE and decoded to GPS. Reported per variant: training steps and s/step; head-detect rate (share of
frames with a true dot where a generated dot is found), head error (px), last-frame path IoU, the
decoded median error against the true GPS (m) and the windows that decoded nothing. ``prior_only``
is the untrained residual model (it draws the signaling prior exactly): the reference that shows
what training adds. ``mar`` and ``industrial_hmm`` on the same windows give the baselines' scale.
Writes ``outputs/bench/sft_objective.json``; the table goes to docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine, write_result  # noqa: E402

# Overrides of the demo profile (model fields under "model"); every variant states its objective in full, so
# a change of the defaults cannot change what a variant measures. Names say what changes.
TODAY = dict(foreground_weight=1.0, loss_space="velocity", head_position_weight=0.0)  # the objective before this bench
FG_X0 = dict(foreground_weight=20.0, loss_space="x0", head_position_weight=0.0)
NO_PRIOR = dict(signal_prior=False, prior_residual=False)
VARIANTS: dict[str, dict] = {
    "rgb_today": dict(model=dict(target="rgb", **NO_PRIOR), **TODAY),
    "layer": dict(model=dict(target="layer", **NO_PRIOR), **TODAY),
    "layer_fg": dict(model=dict(target="layer", **NO_PRIOR), foreground_weight=20.0, loss_space="velocity",
                     head_position_weight=0.0),
    "layer_fg_x0loss": dict(model=dict(target="layer", **NO_PRIOR), **FG_X0),
    "layer_fg_x0loss_tokens": dict(model=dict(target="layer", signaling_tokens=True, **NO_PRIOR), **FG_X0),
    "layer_fg_x0loss_prior": dict(model=dict(target="layer", signal_prior=True, prior_residual=False), **FG_X0),
    "layer_fg_x0loss_prior_residual": dict(model=dict(target="layer", signal_prior=True, prior_residual=True), **FG_X0),
    "layer_fg_x0loss_prior_residual_wideblob": dict(
        model=dict(target="layer", signal_prior=True, prior_residual=True, head_blob_sigma_px=3.0), **FG_X0),
    "layer_fg_x0loss_prior_residual_priorsource": dict(
        model=dict(target="layer", signal_prior=True, prior_residual=True, source_noise=0.5), **FG_X0),
    "layer_fg_x0loss_prior_residual_head10": dict(
        model=dict(target="layer", signal_prior=True, prior_residual=True), **FG_X0, head_weight=10.0),
    "layer_fg_x0loss_prior_residual_headpos0.01": dict(
        model=dict(target="layer", signal_prior=True, prior_residual=True), **{**FG_X0, "head_position_weight": 0.01}),
    "layer_fg_x0loss_prior_residual_headpos0.1": dict(
        model=dict(target="layer", signal_prior=True, prior_residual=True), **{**FG_X0, "head_position_weight": 0.1}),
    "layer_fg_x0loss_prior_residual_headpos1": dict(
        model=dict(target="layer", signal_prior=True, prior_residual=True), **{**FG_X0, "head_position_weight": 1.0}),
    "layer_fg_x0loss_prior_residual_headpos3": dict(
        model=dict(target="layer", signal_prior=True, prior_residual=True), **{**FG_X0, "head_position_weight": 3.0}),
    "rgb_fg_x0loss_prior_residual": dict(model=dict(target="rgb", signal_prior=True, prior_residual=True), **FG_X0),
}
PRIOR_ONLY = "prior_only"
PRIOR_ONLY_OF = "layer_fg_x0loss_prior_residual"


def _config(name: str, seed: int):
    from ml.models.config import model_preset
    from ml.train.sft.config import sft_profile

    over = dict(VARIANTS[name])
    model = model_preset("demo", **over.pop("model"))
    # from scratch; a long max_steps keeps the learning rate flat after warm-up within the budget
    return sft_profile("demo", model=model, init_checkpoint=None, lr=3e-4, warmup_steps=20, max_steps=100_000,
                       seed=seed, **over)


def train_for(name: str, rendered: Path, seconds: float, seed: int):
    """Train one variant for ``seconds`` of wall-clock time; returns (module, steps, s/step)."""
    import numpy as np
    import torch

    from ml.models.data import RenderedVideoDataModule
    from ml.train.sft.module import SFTModule, model_config_for_data

    cfg = _config(PRIOR_ONLY_OF if name == PRIOR_ONLY else name, seed)
    dm = RenderedVideoDataModule(rendered, batch_size=cfg.batch_size, seed=seed, with_tokens=cfg.model.uses_records,
                                 max_records=cfg.model.max_records)
    dm.setup("fit")
    cfg = cfg.model_copy(update={"model": model_config_for_data(cfg.model, dm.resolution, dm.frames)})
    torch.manual_seed(seed)
    module = SFTModule(cfg)
    opts = module.configure_optimizers()
    opt, sched = opts["optimizer"], opts["lr_scheduler"]["scheduler"]
    steps, t_start = 0, time.perf_counter()
    loader = dm.train_dataloader()
    module.train()
    while name != PRIOR_ONLY and time.perf_counter() - t_start < seconds:
        for batch in loader:
            loss = module.flow_loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip or 1e9)
            opt.step()
            sched.step()
            steps += 1
            if steps % 25 == 0:
                print(f"  {name}: step {steps} loss {float(loss):.4f} ({time.perf_counter() - t_start:.0f}s)", flush=True)
            if time.perf_counter() - t_start >= seconds:
                break
    elapsed = time.perf_counter() - t_start
    module.eval()
    return module, steps, (elapsed / steps if steps else float("nan")), float(np.nan if not steps else float(loss))


def score(module, rendered: Path, contexts, sample_steps: int) -> dict:
    """Sample and decode the val windows with ``predict_video_method``; the evaluation's own metrics."""
    from ml.evaluation import score_run, summarise
    from ml.evaluation.config import EvaluationConfig
    from ml.evaluation.video import predict_video_method
    from ml.models.checkpoint import save_video_model

    with tempfile.TemporaryDirectory() as d:
        ckpt = save_video_model(Path(d) / "model.pt", module.model, module.cfg.model)
        t0 = time.perf_counter()
        run = predict_video_method("video", ckpt, rendered, contexts,
                                   EvaluationConfig(split="val", video_sampling_steps=sample_steps))
        wall = time.perf_counter() - t0
    scored = score_run(run, contexts).merge(run.extra["rewards"], on="sample_id", how="left")
    s = summarise(scored)
    keep = ("median_error_m", "mean_error_m", "p90_error_m", "route_f1", "n", "n_failed", "head_detect_rate",
            "head_error_px", "path_iou", "reward_distance", "reward_direction", "reward_connectivity")
    out = {k: s.get(k) for k in keep}
    out["sample_s_per_window"] = wall / max(1, len(contexts))
    return out


def baselines(contexts, learned: bool = False) -> dict:
    """MaR and industrial_hmm on ``contexts`` (and ``learned_hmm`` with ``learned``: the windows carry footprints)."""
    from ml.baselines import FOOTPRINT_METHODS, SIGNALING_METHODS
    from ml.evaluation import run_method, score_run, summarise

    out = {}
    methods = {**SIGNALING_METHODS, **FOOTPRINT_METHODS}
    for name in ("mar", "industrial_hmm") + (("learned_hmm",) if learned else ()):
        s = summarise(score_run(run_method(name, "signaling", methods[name], contexts), contexts))
        out[name] = {k: s.get(k) for k in ("median_error_m", "mean_error_m", "p90_error_m", "route_f1", "n", "n_failed")}
    return out


def val_contexts(city: str, n: int):
    from ml.baselines import build_sample_contexts
    from ml.cities import load_city, load_road_network
    from ml.io import read_table
    from ml.paths import CityPaths

    cp = CityPaths(ROOT, city, "demo")
    net = load_road_network(load_city(city, ROOT), cache_dir=cp.roads_dir)
    ctxs = build_sample_contexts(read_table(cp.table("samples"), "samples"), read_table(cp.table("signaling"), "signaling"),
                                 read_table(cp.table("towers"), "towers"), net,
                                 sample_truth=read_table(cp.sample_truth, "sample_truth"), split="val")
    return ctxs[:n], cp


def markdown_table(result: dict) -> str:
    """The docs/results.md table of a result file (val windows; baselines as reference rows)."""
    lines = ["| variant | head blob px | steps | s/step | head detected | head error px | last-frame path IoU | "
             "decoded median m | windows with no output |", "|---|---|---|---|---|---|---|---|---|"]

    def f(v, fmt):
        return "" if v is None or v != v else format(v, fmt)

    for name, r in result["variants"].items():
        sigma = r.get("head_blob_sigma_px")
        lines.append(f"| {name} | {'' if sigma is None else sigma} | {r['steps']} | {f(r['s_per_step'], '.2f')} | {f(r['head_detect_rate'], '.3f')} | "
                     f"{f(r['head_error_px'], '.2f')} | {f(r['path_iou'], '.3f')} | {f(r['median_error_m'], '.1f')} | "
                     f"{r['n_failed']} of {r['n']} |")
    for name, r in result["baselines"].items():
        lines.append(f"| *{name}* | | | | | | | {f(r['median_error_m'], '.1f')} | {r['n_failed']} of {r['n']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--city", default="gridville")
    ap.add_argument("--minutes", type=float, default=4.0, help="wall-clock training time per variant")
    ap.add_argument("--val", type=int, default=48, help="val windows scored")
    ap.add_argument("--sample-steps", type=int, default=10, help="Euler steps when sampling")
    ap.add_argument("--variants", nargs="*", default=[PRIOR_ONLY, *VARIANTS])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="sft_objective")
    ap.add_argument("--table", action="store_true", help="print the Markdown table of outputs/bench/<out>.json and exit")
    args = ap.parse_args(argv)
    if args.table:
        print(markdown_table(json.loads((ROOT / "outputs" / "bench" / f"{args.out}.json").read_text())))
        return 0
    import torch

    torch.set_num_threads(args.threads)
    contexts, cp = val_contexts(args.city, args.val)
    rendered = cp.render_dir(64, 17)
    if not (rendered / "index.parquet").is_file():
        raise SystemExit(f"{rendered}: no rendered arrays; run `sig2gps run {args.city} --select '*rendered_videos'`")
    result = {"name": args.out, "city": args.city, "minutes_per_variant": args.minutes, "val_windows": len(contexts),
              "sample_steps": args.sample_steps, "threads": args.threads, "seed": args.seed,
              "machine": machine(), "baselines": baselines(contexts), "variants": {}}
    print(json.dumps(result["baselines"]), flush=True)
    for name in args.variants:
        if name != PRIOR_ONLY and name not in VARIANTS:
            raise SystemExit(f"unknown variant '{name}' (choose from {PRIOR_ONLY}, {', '.join(VARIANTS)})")
        print(f"== {name}", flush=True)
        module, steps, s_per_step, last_loss = train_for(name, rendered, args.minutes * 60.0, args.seed)
        row = {"steps": steps, "s_per_step": s_per_step, "last_loss": last_loss,
               "head_blob_sigma_px": module.cfg.model.head_blob_sigma_px if module.cfg.model.target == "layer" else None,
               **score(module, rendered, contexts, args.sample_steps)}
        result["variants"][name] = row
        print(json.dumps({name: row}), flush=True)
        write_result(args.out, result)  # after every variant, so a long run keeps what it measured
    print(markdown_table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
