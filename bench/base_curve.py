"""Learning curve of the base model: every kept step checkpoint of a training run, scored on val windows.

    .venv/bin/python -m bench.base_curve [--run runs/base] [--cities gridville ringtown] [--val 48]
                                         [--sample-steps 10] [--png models/base_learning_curve.png]
                                         [--footprints] [--out base_curve] [--compare models/<other base>.pt]

For each ``step*.ckpt`` in ``<run>/checkpoints`` (kept with ``keep_checkpoints=-1``, see
models/train_base.sh) and step 0 (the untrained model, which draws the signaling prior exactly), one
video per val window of each city is sampled (Euler ODE) and decoded to GPS: head-detect rate, head
error (px) and decoded median error (m), the figures the model card shows. MaR and industrial_hmm on
the same windows are the reference lines. With ``--footprints`` the windows read their records through the
city's materialised ``cell_footprints`` (the footprint base's inputs; the decoder's record evidence reads them
too) and ``learned_hmm`` joins the reference lines. Writes ``outputs/bench/<out>.json`` and the PNG.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import write_result  # noqa: E402
from bench.sft_objective import baselines, score, val_contexts  # noqa: E402


def _step(path: Path) -> int:
    m = re.search(r"step(\d+)", path.name)
    return int(m.group(1)) if m else -1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, default=ROOT / "runs" / "base")
    ap.add_argument("--cities", nargs="+", default=["gridville", "ringtown"])
    ap.add_argument("--val", type=int, default=48)
    ap.add_argument("--sample-steps", type=int, default=10)
    ap.add_argument("--every", type=int, default=1, help="score every n-th checkpoint")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--png", type=Path, default=ROOT / "models" / "base_learning_curve.png")
    ap.add_argument("--footprints", action="store_true", help="windows read through the city's cell_footprints")
    ap.add_argument("--out", default="base_curve")
    ap.add_argument("--compare", type=Path, nargs="*", default=[],
                    help="other model.pt files (e.g. the previous base) scored on the same windows")
    args = ap.parse_args(argv)
    import torch

    from ml.train.sft.module import SFTModule

    torch.set_num_threads(args.threads)
    ckpts = sorted((p for p in (args.run / "checkpoints").glob("step*.ckpt")), key=_step)[:: args.every]
    if not ckpts:
        raise SystemExit(f"{args.run}/checkpoints: no step*.ckpt (train with --set keep_checkpoints=-1)")
    if args.footprints:
        from bench.decode_evidence import city_val

        cities = {c: (lambda v: (v[0][: args.val], v[1]))(city_val(c)) for c in args.cities}
    else:
        cities = {c: val_contexts(c, args.val) for c in args.cities}
    result = {"name": args.out, "run": str(args.run), "val_windows": {c: len(v[0]) for c, v in cities.items()},
              "footprints": args.footprints, "sample_steps": args.sample_steps,
              "baselines": {c: baselines(v[0], learned=args.footprints) for c, v in cities.items()}, "points": []}
    first = SFTModule.load_from_checkpoint(str(ckpts[0]), map_location="cpu", weights_only=False)
    untrained = SFTModule(first.cfg)  # step 0: the zero-initialised residual draws the prior
    for step, module in [(0, untrained)] + [(_step(p), p) for p in ckpts]:
        if isinstance(module, Path):
            module = SFTModule.load_from_checkpoint(str(module), map_location="cpu", weights_only=False)
        module.eval()
        point = {"step": step}
        with module.eval_weights():
            for city, (ctxs, cp) in cities.items():
                point[city] = score(module, cp.render_dir(64, 17), ctxs, args.sample_steps)
        result["points"].append(point)
        print(point, flush=True)
        write_result(args.out, result)
    for path in args.compare:
        from types import SimpleNamespace

        from ml.models import load_video_model

        model, mcfg = load_video_model(path)
        holder = SimpleNamespace(model=model, cfg=SimpleNamespace(model=mcfg))  # what score() reads of a module
        point = {"checkpoint": str(path)}
        for city, (ctxs, cp) in cities.items():
            point[city] = score(holder, cp.render_dir(64, 17), ctxs, args.sample_steps)
        result.setdefault("compared", []).append(point)
        print(point, flush=True)
        write_result(args.out, result)
    plot(result, args.png)
    return 0


def plot(result: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = result["points"]
    steps = [p["step"] for p in pts]
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    for city in result["val_windows"]:
        ax[0].plot(steps, [p[city]["head_detect_rate"] for p in pts], "o-", label=city)
        ax[1].plot(steps, [p[city]["head_error_px"] for p in pts], "o-", label=city)
        line = ax[2].plot(steps, [p[city]["median_error_m"] for p in pts], "o-", label=f"{city}: video")[0]
        for name, style in (("mar", ":"), ("industrial_hmm", "--"), ("learned_hmm", "-.")):
            if name not in result["baselines"][city]:
                continue
            ax[2].axhline(result["baselines"][city][name]["median_error_m"], ls=style, color=line.get_color(),
                          lw=1, label=f"{city}: {name}")
    ax[0].set(title="head detected (share of frames)", xlabel="training step", ylim=(0, 1.05))
    ax[1].set(title="head error (px, 64 px tiles)", xlabel="training step")
    ax[2].set(title="decoded median error (m)", xlabel="training step")
    ax[2].legend(fontsize=7)
    ax[0].legend(fontsize=7)
    fig.suptitle(f"base model on val windows ({result['sample_steps']} Euler steps); step 0 = the signaling prior",
                 fontsize=9)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    print(f"wrote {png}")


if __name__ == "__main__":
    raise SystemExit(main())
