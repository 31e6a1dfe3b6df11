"""The next-GPS seq2seq model's choices on a city's val windows (never test): the prior after the prefix.

    python -m bench.seq2seq_prefix [--root DIR] [--city gridville] [--priors anchored blended records]

Needs the city's ``samples`` materialised for the demo profile. Each variant is the demo profile's seq2seq
trained with ``prefix_s = next_gps.known_s`` (the known GPS as tokens) and one ``prefix_prior``; it is
scored at the next-GPS horizons on the first ``--n-val`` val windows, beside the baselines that need no
training (constant velocity along the road, the industrial HMM joined to the prefix) on the same windows.
Writes ``outputs/bench/seq2seq_prefix.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.common import ROOT, write_result


def main() -> None:
    from ml.config import stage_config
    from ml.evaluation.transfer import city_windows
    from ml.nextgps import predict_next_gps, score_next_gps, seq2seq_at_targets, summarise_next_gps
    from ml.train.seq2seq import train_seq2seq

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=ROOT)
    ap.add_argument("--city", default="gridville")
    ap.add_argument("--priors", nargs="+", default=["anchored", "blended", "records"],
                    choices=["anchored", "blended", "records"])
    ap.add_argument("--n-val", type=int, default=100)
    args = ap.parse_args()
    w = city_windows(args.root, args.city, "demo")
    ncfg = stage_config("next_gps", "demo")
    val = w.splits["val"][: args.n_val]

    def table(preds: dict) -> dict:
        return {m: {h: round(r["median_error_m"], 1) for h, r in hs.items()}
                for m, hs in summarise_next_gps(score_next_gps(preds, val, ncfg)).items()}

    out = {"baselines": table(predict_next_gps(val, ncfg))}
    print("baselines", out["baselines"], flush=True)
    for prior in args.priors:
        cfg = stage_config("seq2seq", "demo", progress_bar=False, prefix_s=ncfg.known_s, prefix_prior=prior)
        t0 = time.perf_counter()
        res = train_seq2seq(w.splits["train"], w.splits["val"], cfg,
                            args.root / "outputs" / "bench" / "seq2seq_prefix" / prior)
        train_s = time.perf_counter() - t0
        scores = table({"seq2seq_prefix": seq2seq_at_targets(Path(res.checkpoint_path), val, ncfg)})
        out[prior] = {"val_median_m": scores["seq2seq_prefix"],
                      "mean_median_m": round(sum(scores["seq2seq_prefix"].values()) / len(ncfg.horizons_s), 1),
                      "all_val_unsnapped_median_m": round(res.metrics["val/median_m"], 1),
                      "all_val_prior_median_m": round(res.metrics["val/prior_median_m"], 1),
                      "best_step": res.best_step, "train_seconds": round(train_s, 1)}
        print(prior, out[prior], flush=True)
    write_result("seq2seq_prefix", {"city": args.city, "n_val": len(val), "known_s": ncfg.known_s,
                                    "horizons_s": list(ncfg.horizons_s), "variants": out})


if __name__ == "__main__":
    main()
