"""The evaluation report: ``evaluation.json`` (schema of DESIGN section 11) and a Markdown report."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

JSON_KEYS = ("median_error_m", "mean_error_m", "p90_error_m", "rmse_m", "tme_pct", "route_f1", "road_adherence",
             "latency_ms", "n")
REWARD_KEYS = ("reward_distance", "reward_direction", "reward_connectivity")
#: video methods also report how they draw (ml.decode.drawing_metrics)
DRAWING_KEYS = ("head_detect_rate", "head_error_px", "path_iou")
#: rows that are bounds needing the truth, not methods (``ml.baselines.REFERENCE_METHODS``): listed last, marked
REFERENCE_ROWS = ("oracle_records",)
REFERENCE_NOTE = ("a bound, not a method: the industrial pipeline fed the true position at each record time "
                  "(needs the truth); what the records' timing allows with perfect observations")


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def evaluation_json(city: str, split: str, n_samples: int, summaries: Mapping[str, Mapping[str, Mapping[str, Any]]],
                    skipped: Mapping[str, str] | None = None) -> dict:
    """``{"city", "split", "n_samples", "tracks": {track: {method: {keys...}}}}``; video methods add rewards and
    drawing metrics; ``skipped`` (method key -> reason), when given, is kept as ``"skipped"``."""
    tracks: dict[str, dict] = {}
    for track, methods in summaries.items():
        tracks[track] = {}
        for method, s in methods.items():
            row = {k: _clean(s.get(k)) for k in JSON_KEYS}
            row["n_failed"] = int(s.get("n_failed", 0))
            for k in REWARD_KEYS + DRAWING_KEYS:
                if k in s:
                    row[k] = _clean(s[k])
            tracks[track][method] = row
    out = {"city": city, "split": split, "n_samples": int(n_samples), "tracks": tracks}
    refs = {m: REFERENCE_NOTE for ms in tracks.values() for m in ms if m in REFERENCE_ROWS}
    if refs:
        out["references"] = refs
    if skipped:
        out["skipped"] = dict(skipped)
    return out


def comparison_table(evaluation: Mapping[str, Any], track: str) -> str:
    rows = evaluation["tracks"].get(track, {})
    if not rows:
        return "_no methods on this track_\n"
    cols = ["median_error_m", "mean_error_m", "p90_error_m", "rmse_m", "tme_pct", "route_f1", "road_adherence",
            "latency_ms", "n", "n_failed"]
    has_rewards = any(k in r for r in rows.values() for k in REWARD_KEYS)
    if has_rewards:
        cols += list(REWARD_KEYS) + [k for k in DRAWING_KEYS if any(k in r for r in rows.values())]

    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
        return str(v)

    out = ["| method | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    order = [m for m in rows if m not in REFERENCE_ROWS] + [m for m in rows if m in REFERENCE_ROWS]
    for m in order:
        name = f"_{m} (bound, needs the truth)_" if m in REFERENCE_ROWS else m
        out.append(f"| {name} | " + " | ".join(fmt(rows[m].get(c)) for c in cols) + " |")
    if any(m in REFERENCE_ROWS for m in rows):
        out += ["", f"_{', '.join(m for m in REFERENCE_ROWS if m in rows)}: {REFERENCE_NOTE}._"]
    return "\n".join(out) + "\n"


def write_markdown(
    evaluation: Mapping[str, Any],
    out_dir: Path,
    figures: Mapping[str, Path],
    notes: list[str] | None = None,
    data_version: str = "",
    sections: list[str] | None = None,
) -> Path:
    """``evaluation.md`` with the comparison tables and the figures (paths relative to the report);
    ``sections`` are further Markdown lines (e.g. the next-GPS section) placed before the notes."""
    lines = [
        f"# Evaluation: {evaluation['city']} ({evaluation['split']} split, {evaluation['n_samples']} samples)",
        "",
        f"Data version `{data_version}`. Errors are haversine metres at the evaluation times; RMSE is the HRE "
        "paper's QLE; TME counts route length missed plus route length added, over the true length; "
        "road adherence is the share of predicted points within 15 m of a drivable road; latency is "
        "the median per trajectory. `n_failed` counts windows where a method produced no output (scored as "
        "missing, never dropped).",
        "",
    ]
    for track, title in (("signaling", "Signaling track (sparse serving-cell records)"),
                         ("mr", "Measurement-report track (RSRP, as in the HRE paper)")):
        if track in evaluation["tracks"]:
            lines += [f"## {title}", "", comparison_table(evaluation, track)]
            if f"cdf_{track}" in figures:
                lines += [f"![error distribution]({figures[f'cdf_{track}'].name})", ""]
    if "speed" in figures:
        lines += ["## Speed profiles", "", f"![speed profiles]({figures['speed'].name})", ""]
    if "robustness" in figures:
        lines += ["## Robustness to missing MR records", "", f"![robustness]({figures['robustness'].name})", ""]
    cases = sorted(k for k in figures if k.startswith("case_"))
    if cases:
        lines += ["## Case studies", "", "Truth (black), serving towers (triangles, coloured by time), each method.", ""]
        lines += [f"![{k}]({figures[k].name})" for k in cases] + [""]
    lines += list(sections or [])
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    lines += ["Maps: (c) OpenStreetMap contributors (ODbL) for real cities; synthetic cities are generated.", ""]
    path = Path(out_dir) / "evaluation.md"
    path.write_text("\n".join(lines))
    return path


def per_sample_table(per_sample: pd.DataFrame) -> pd.DataFrame:
    """Per-sample metrics without the per-point arrays, for Parquet/CSV export."""
    return per_sample.drop(columns=[c for c in ("errors_m",) if c in per_sample.columns])
