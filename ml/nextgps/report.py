"""Next-GPS prediction end to end: every method on the same windows, one scoring code, the report.

``predict_next_gps`` runs the methods, ``score_next_gps`` scores them (``ml.metrics.point_errors_m`` and
``error_stats``, as the evaluation), ``next_gps_report`` makes the choices on val windows and scores
the test windows once, ``write_next_gps`` writes ``next_gps.json`` and ``next_gps.md``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml.baselines import SampleContext
from ml.metrics import error_stats, point_errors_m
from ml.nextgps.config import NextGPSConfig
from ml.nextgps.predict import (_target_rows, constant_velocity_road, industrial_hmm_joined, last_position,
                                seq2seq_at_targets, video_at_targets)
from ml.nextgps.road import RoadWalker

#: what each method is, for the report (the video model's own rows say which steps val chose)
METHOD_NOTES: dict[str, str] = {
    "video_continuation": "video model, frames up to known_s fixed to the known GPS drawing (inpainting), decoded",
    "video_no_prefix": "video model sampled without the prefix (its reconstruction), read at the target times",
    "constant_velocity_road": "last known position and speed, advanced along the road from the heading edge",
    "industrial_hmm_joined": "industrial HMM route on the window's signaling, joined at the last known position",
    "industrial_hmm": "industrial HMM reconstruction of the window, read at the target times (no prefix)",
    "seq2seq": "seq2seq reconstruction of the window, read at the target times (no prefix)",
    "seq2seq_prefix": "seq2seq trained for next-GPS: the known GPS as extra tokens beside the records, snapped",
    "last_position": "the last known position held (floor)",
}

Predictions = dict[str, dict[str, np.ndarray]]  # method -> sample_id -> (n_horizons, 2)


def predict_next_gps(
    contexts: Sequence[SampleContext],
    cfg: NextGPSConfig,
    video_checkpoint: Path | None = None,
    rendered_dir: Path | None = None,
    seq2seq_checkpoint: Path | None = None,
    video_steps: int | None = None,
    device: str = "cpu",
    progress: Callable[[str], None] | None = None,
    seq2seq_prefix_checkpoint: Path | None = None,
) -> Predictions:
    """Positions at ``cfg.target_times()`` of every window by every method that can run.

    The video methods run when ``video_checkpoint`` and ``rendered_dir`` are given (``video_steps`` Euler
    steps, default the first of ``cfg.video_steps_choices``), seq2seq and seq2seq_prefix when their checkpoints are.
    """
    if not contexts:
        raise ValueError("predict_next_gps: no windows given")
    walker = RoadWalker(contexts[0].net)
    preds: Predictions = {k: {} for k in ("constant_velocity_road", "industrial_hmm_joined", "industrial_hmm",
                                          "last_position")}
    for c in contexts:
        preds["last_position"][c.sample_id] = last_position(c, cfg)
        preds["constant_velocity_road"][c.sample_id] = constant_velocity_road(c, cfg, walker)
        raw, joined = industrial_hmm_joined(c, cfg)
        preds["industrial_hmm"][c.sample_id], preds["industrial_hmm_joined"][c.sample_id] = raw, joined
    if progress:
        progress(f"next_gps: baselines done on {len(contexts)} windows")
    if seq2seq_checkpoint is not None:
        preds["seq2seq"] = seq2seq_at_targets(seq2seq_checkpoint, contexts, cfg, device=device)
    if seq2seq_prefix_checkpoint is not None:
        preds["seq2seq_prefix"] = seq2seq_at_targets(seq2seq_prefix_checkpoint, contexts, cfg, device=device)
    if video_checkpoint is not None and rendered_dir is not None:
        steps = video_steps or cfg.video_steps_choices[0]
        preds["video_continuation"] = video_at_targets(video_checkpoint, rendered_dir, contexts, cfg, steps,
                                                       with_prefix=True, device=device, progress=progress)
        preds["video_no_prefix"] = video_at_targets(video_checkpoint, rendered_dir, contexts, cfg, steps,
                                                    with_prefix=False, device=device, progress=progress)
    return preds


def score_next_gps(preds: Predictions, contexts: Sequence[SampleContext], cfg: NextGPSConfig) -> pd.DataFrame:
    """One row per (method, sample, horizon): the haversine error (m) against the truth at the target time.

    A missing prediction (NaN) is kept as a row with ``failed`` True and no error: it is counted, never dropped.
    """
    rows = []
    for method, by_sample in preds.items():
        for c in contexts:
            p = np.asarray(by_sample.get(c.sample_id, np.full((len(cfg.horizons_s), 2), np.nan)), dtype=np.float64)
            truth = np.asarray(c.truth_xy, dtype=np.float64)[_target_rows(c, cfg)]
            ok = np.isfinite(p).all(axis=1) & np.isfinite(truth).all(axis=1)
            err = np.full(len(p), np.nan)
            if ok.any():
                err[ok] = point_errors_m(p[ok], truth[ok], c.crs)
            for h, e, f in zip(cfg.horizons_s, err, ~ok):
                rows.append({"method": method, "sample_id": c.sample_id, "horizon_s": float(h),
                             "error_m": float(e), "failed": bool(f)})
    return pd.DataFrame(rows)


def summarise_next_gps(scored: pd.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    """``{method: {"<h>s": {median_error_m, p90_error_m, mean_error_m, n, n_failed}}}`` (``ml.metrics.error_stats``)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for (method, h), g in scored.groupby(["method", "horizon_s"], sort=True):
        st = error_stats(g["error_m"].to_numpy())
        out.setdefault(str(method), {})[f"{h:g}s"] = {
            "median_error_m": st["median_error_m"], "p90_error_m": st["p90_error_m"],
            "mean_error_m": st["mean_error_m"], "n": int(len(g)), "n_failed": int(g["failed"].sum())}
    return out


def _mean_median(summary: Mapping[str, Mapping[str, float]]) -> float:
    vals = [r["median_error_m"] for r in summary.values() if math.isfinite(r["median_error_m"])]
    return float(np.mean(vals)) if vals else float("inf")


def next_gps_report(
    city: str,
    val_contexts: Sequence[SampleContext],
    test_contexts: Sequence[SampleContext],
    cfg: NextGPSConfig,
    video_checkpoint: Path | None = None,
    rendered_dir: Path | None = None,
    seq2seq_checkpoint: Path | None = None,
    device: str = "cpu",
    progress: Callable[[str], None] | None = None,
    seq2seq_prefix_checkpoint: Path | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Choose the video model's Euler steps on the val windows (lowest mean over horizons of the median
    error of ``video_continuation``), then run every method once on the test windows.

    Returns ``(report dict, per-row test scores)``; the report holds the summary per method and horizon,
    the choice with its val numbers, and what each method is.
    """
    if not test_contexts:
        raise ValueError(f"{city}: no '{cfg.split}' windows for next-GPS prediction")
    val = list(val_contexts[: cfg.val_max_samples] if cfg.val_max_samples else val_contexts)
    test = list(test_contexts[: cfg.max_samples] if cfg.max_samples else test_contexts)
    has_video = video_checkpoint is not None and rendered_dir is not None
    chosen, val_scores = None, {}
    if has_video:
        if not val:
            raise ValueError(f"{city}: no '{cfg.val_split}' windows to choose the video model's steps on")
        for steps in cfg.video_steps_choices:
            pv = {"video_continuation": video_at_targets(video_checkpoint, rendered_dir, val, cfg, steps,
                                                         with_prefix=True, device=device, progress=progress)}
            summ = summarise_next_gps(score_next_gps(pv, val, cfg))["video_continuation"]
            val_scores[str(steps)] = {"mean_median_error_m": _mean_median(summ), **{h: r["median_error_m"]
                                                                                    for h, r in summ.items()}}
        chosen = int(min(val_scores, key=lambda s: val_scores[s]["mean_median_error_m"]))
        if progress:
            progress(f"next_gps: val chose {chosen} Euler steps ({val_scores})")
    preds = predict_next_gps(test, cfg, video_checkpoint if has_video else None, rendered_dir, seq2seq_checkpoint,
                             video_steps=chosen, device=device, progress=progress,
                             seq2seq_prefix_checkpoint=seq2seq_prefix_checkpoint)
    scored = score_next_gps(preds, test, cfg)
    report = {
        "city": city, "split": cfg.split, "n_samples": len(test), "val_split": cfg.val_split, "n_val": len(val),
        "known_s": cfg.known_s, "horizons_s": list(cfg.horizons_s),
        "video_steps": chosen, "video_steps_val": val_scores, "video_checkpoint": cfg.video_checkpoint if has_video
        else None,
        "methods": summarise_next_gps(scored),
        "method_notes": {m: METHOD_NOTES[m] for m in preds},
        "not_done": ([] if seq2seq_checkpoint is not None else ["seq2seq: no checkpoint"])
        + ([] if seq2seq_prefix_checkpoint is not None else ["seq2seq_prefix: no checkpoint"])
        + ([] if has_video else ["video methods: no checkpoint or rendered arrays"]),
    }
    return report, scored


def _fmt(x: float) -> str:
    return f"{x:.1f}" if isinstance(x, (int, float)) and math.isfinite(x) else "-"


def markdown_table(report: Mapping[str, Any]) -> list[str]:
    """The per-horizon table (median / p90 error in metres) as Markdown lines, best 30 s median first."""
    hs = [f"{h:g}s" for h in report["horizons_s"]]
    lines = ["| method | " + " | ".join(f"+{h} median / p90 (m)" for h in hs) + " | failed |",
             "|---|" + "---|" * (len(hs) + 1)]
    ms = report["methods"]
    for m in sorted(ms, key=lambda k: ms[k][hs[0]]["median_error_m"] if math.isfinite(ms[k][hs[0]]["median_error_m"])
                    else float("inf")):
        cells = [f"{_fmt(ms[m][h]['median_error_m'])} / {_fmt(ms[m][h]['p90_error_m'])}" for h in hs]
        failed = sum(ms[m][h]["n_failed"] for h in hs)
        lines.append(f"| `{m}` | " + " | ".join(cells) + f" | {failed} |")
    return lines


def markdown_section(report: Mapping[str, Any], level: int = 2) -> list[str]:
    """The next-GPS section (heading, setting, table, method notes) as Markdown lines; the evaluation report
    embeds it and ``next_gps.md`` is it alone."""
    head = "#" * level
    lines = [f"{head} Next-GPS prediction", "",
             f"{report['n_samples']} {report['split']} windows of {report['city']}: the window's signaling and its GPS "
             f"up to {report['known_s']:g} s are given; the positions {', '.join(f'+{h:g} s' for h in report['horizons_s'])} "
             "later are predicted. Haversine error at each target time (`ml.metrics`).", ""]
    if report.get("video_steps") is not None:
        lines += [f"Video model: `{report['video_checkpoint']}` checkpoint, {report['video_steps']} Euler steps chosen on "
                  f"{report['n_val']} {report['val_split']} windows (mean of the horizons' medians: "
                  + ", ".join(f"{s} steps {_fmt(v['mean_median_error_m'])} m" for s, v in report["video_steps_val"].items())
                  + ").", ""]
    lines += markdown_table(report) + [""]
    lines += [f"- `{m}`: {n}" for m, n in report["method_notes"].items()]
    if report.get("not_done"):
        lines += [f"- not done: {n}" for n in report["not_done"]]
    return lines + [""]


def write_next_gps(report: Mapping[str, Any], scored: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """``next_gps.json`` (the report; NaN written as null), ``next_gps.md`` and ``per_sample.parquet`` in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def clean(o: Any) -> Any:
        if isinstance(o, float):
            return o if math.isfinite(o) else None
        if isinstance(o, Mapping):
            return {str(k): clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        return o

    paths = {"json": out_dir / "next_gps.json", "md": out_dir / "next_gps.md", "per_sample": out_dir / "per_sample.parquet"}
    paths["json"].write_text(json.dumps(clean(report), indent=2))
    paths["md"].write_text("\n".join(["# " + markdown_section(report)[0].lstrip("# ")] + markdown_section(report)[1:]))
    scored.to_parquet(paths["per_sample"], index=False)
    return paths


def load_next_gps(path: Path) -> dict[str, Any] | None:
    """A written ``next_gps.json`` (nulls back to NaN), or None when there is none."""
    path = Path(path)
    if not path.is_file():
        return None

    def nan(o: Any) -> Any:
        if o is None:
            return float("nan")
        if isinstance(o, dict):
            return {k: nan(v) if k not in ("video_steps", "video_checkpoint") else v for k, v in o.items()}
        if isinstance(o, list):
            return [nan(v) for v in o]
        return o

    return nan(json.loads(path.read_text()))
