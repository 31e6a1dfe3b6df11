"""The seq2seq baseline's choices on a city's val windows (never test): training variants and snapping.

    python -m bench.seq2seq [--root DIR] [--city gridville] [--variants default no_rotation ...] [--footprints]
                            [--out seq2seq]

Needs the city's ``samples`` (and with ``--footprints`` its ``cell_footprints``) materialised for the demo
profile. With ``--footprints`` every window reads its records through the city's footprints, as the pipeline's
seq2seq assets do. Writes ``outputs/bench/<out>.json``: per variant the unsnapped and snapped val median error
of the first 100 val windows, the best step and the seconds it took, beside the prior, MaR and industrial_hmm
(and with ``--footprints`` learned_hmm) on the same windows.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench.common import ROOT, write_result

#: one change each against the demo profile's seq2seq
VARIANTS: dict[str, dict] = {
    "default": {},
    "no_rotation": {"augment_rotation": False},
    "unsnapped": {"snap": False},
    "snap_sigma_60": {"snap_sigma_m": 60.0},
    "snap_sigma_250": {"snap_sigma_m": 250.0},
    "spread": {"record_spread": True},
    "no_spread": {"record_spread": False},
    "no_dropout": {"dropout": 0.0},
    "spread_no_dropout": {"record_spread": True, "dropout": 0.0},
}


def _median(pred: dict, contexts) -> float:
    e = np.concatenate([np.linalg.norm(pred[c.sample_id] - c.truth_xy, axis=1) for c in contexts])
    return round(float(np.nanmedian(e)), 1)


def main() -> None:
    from ml.baselines import industrial_hmm, mar
    from ml.config import stage_config
    from ml.evaluation.seq2seq import predict_seq2seq_method
    from ml.evaluation.transfer import city_windows
    from ml.train.seq2seq import train_seq2seq

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=ROOT)
    ap.add_argument("--city", default="gridville")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--n-val", type=int, default=100)
    ap.add_argument("--footprints", action="store_true", help="windows read through the city's cell_footprints")
    ap.add_argument("--out", default="seq2seq")
    args = ap.parse_args()
    w = city_windows(args.root, args.city, "demo")
    if args.footprints:
        import dataclasses

        import pandas as pd

        from ml.observation import LearnedObservationModel
        from ml.paths import CityPaths

        ctx0 = w.splits["train"][0]
        obs = LearnedObservationModel(pd.read_parquet(CityPaths(args.root, args.city, "demo").footprints),
                                      ctx0.towers_xy, stage_config("footprints", "demo"))
        w.splits = {k: [dataclasses.replace(c, observation=obs) for c in v] for k, v in w.splits.items()}
    val = w.splits["val"][: args.n_val]
    rows = {"mar": _median({c.sample_id: mar(c) for c in val}, val),
            "industrial_hmm": _median({c.sample_id: industrial_hmm(c) for c in val}, val)}
    if args.footprints:
        from ml.baselines import learned_hmm

        rows["learned_hmm"] = _median({c.sample_id: learned_hmm(c) for c in val}, val)
    trained: dict[str, tuple] = {}
    out = {}
    for name in args.variants:
        over = VARIANTS[name]
        cfg = stage_config("seq2seq", "demo", progress_bar=False, **over)
        arch = cfg.model_copy(update={"snap": True, "snap_sigma_m": 120.0}).model_dump_json()
        t0 = time.perf_counter()
        if arch not in trained:  # snapping variants reuse the trained weights
            trained[arch] = train_seq2seq(w.splits["train"], w.splits["val"], cfg.model_copy(update={"snap": True}),
                                          ROOT / "outputs" / "bench" / args.out / name)
        res = trained[arch]
        ckpt = Path(res.checkpoint_path)
        if over:  # the snapping fields are read from the checkpoint's config: write the variant's
            from ml.seq2seq import load_seq2seq, save_seq2seq

            model, _ = load_seq2seq(ckpt)
            ckpt = save_seq2seq(ROOT / "outputs" / "bench" / args.out / f"{name}.pt", model, cfg, {})
        run = predict_seq2seq_method(ckpt, val)
        out[name] = {"overrides": over, "val_median_m": _median(run.predictions, val), "failures": len(run.failures),
                     "all_val_unsnapped_median_m": round(res.metrics["val/median_m"], 1),
                     "all_val_prior_median_m": round(res.metrics["val/prior_median_m"], 1),
                     "best_step": res.best_step, "seconds": round(time.perf_counter() - t0, 1)}
        print(name, out[name], flush=True)
        write_result(args.out, {"city": args.city, "footprints": args.footprints, "n_val": len(val),
                                "baselines_val_median_m": rows, "variants": out})


if __name__ == "__main__":
    main()
