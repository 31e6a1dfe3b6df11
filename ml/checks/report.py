"""Check on the evaluation report: every configured method is there, none fails on too many windows, and
every median error is a number (a method that decodes nothing has no median: the report would show a gap)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ml.checks.outcome import CheckOutcome, first


def configured_methods(video_models: Mapping[str, Path], seq2seq_model: Path, with_mr: bool,
                       include_peers: bool = True) -> dict[str, list[str]]:
    """The methods the ``predictions`` step runs, per track: the signaling methods (the project's own, the
    footprint methods, the reference bound, and each peer engine that is installed), the video methods whose
    model file exists (``video_models``: method -> file, ``CityPaths.video_models()``), ``seq2seq`` when its
    file exists, and the MR methods when the evaluated windows carry measurement reports (``with_mr``)."""
    from ml.baselines import MR_METHODS
    from ml.evaluation.peers import signaling_methods

    signaling, _ = signaling_methods(include_peers=include_peers, footprints=True, references=True)
    names = list(signaling) + [m for m, p in video_models.items() if Path(p).is_file()]
    if Path(seq2seq_model).is_file():
        names.append("seq2seq")
    out = {"signaling": names}
    if with_mr and MR_METHODS:
        out["mr"] = list(MR_METHODS)
    return out


def read_evaluation_report(path: str | Path) -> dict[str, Any]:
    """``evaluation.json`` as a dict; a missing or unreadable file is a :class:`ValueError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no evaluation report; materialise evaluation_report")
    try:
        report = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not readable as JSON ({exc}); materialise evaluation_report again") from exc
    if not isinstance(report, dict) or not isinstance(report.get("tracks"), dict):
        raise ValueError(f"{path}: no 'tracks' object (not an evaluation report in ml.report.evaluation_json's schema)")
    return report


def check_evaluation_report(report: Mapping[str, Any], expected: Mapping[str, Iterable[str]],
                            max_failure_share: float, source: str = "evaluation.json") -> CheckOutcome:
    """``report`` (``ml.report.evaluation_json``'s schema) against the ``expected`` methods per track.

    Rules: each expected method has a row in its track; in every row, ``n_failed / n`` (windows without an
    output) is at most ``max_failure_share`` and ``median_error_m`` is a finite number. ``source`` names the
    report in the description.
    """
    tracks: Mapping[str, Mapping[str, Mapping[str, Any]]] = report.get("tracks", {})
    missing = [f"{t}/{m}" for t, ms in expected.items() for m in ms if m not in tracks.get(t, {})]
    over, no_median = [], []
    worst = 0.0
    for t, ms in tracks.items():
        for m, row in ms.items():
            n, n_failed = int(row.get("n") or 0), int(row.get("n_failed") or 0)
            share = n_failed / n if n else 1.0  # a method scored on no window has failed on all of them
            worst = max(worst, share)
            if share > max_failure_share:
                over.append(f"{t}/{m}: {n_failed} of {n}")
            med = row.get("median_error_m")
            if not (isinstance(med, (int, float)) and math.isfinite(med)):
                no_median.append(f"{t}/{m}")
    problems = []
    if missing:
        problems.append(f"{len(missing)} configured method(s) missing ({first(missing)}; rule: every method the "
                        "predictions step runs is reported)")
    if over:
        problems.append(f"{len(over)} method(s) without output on more than {max_failure_share:.0%} of the windows "
                        f"({first(over)}; rule: field max_failure_share of the evaluation config)")
    if no_median:
        problems.append(f"{len(no_median)} method(s) without a finite median error ({first(no_median)}; rule: "
                        "median_error_m finite)")
    n_methods = sum(len(ms) for ms in tracks.values())
    meta = {"methods": n_methods, "expected": sum(len(list(ms)) for ms in expected.values()),
            "missing": first(missing) if missing else "none", "over_failure_bound": first(over) if over else "none",
            "without_median": first(no_median) if no_median else "none",
            "max_failure_share": max_failure_share, "worst_failure_share": round(worst, 4),
            "n_samples": int(report.get("n_samples") or 0)}
    if problems:
        return CheckOutcome.failed(f"{source}: " + "; ".join(problems), **meta)
    return CheckOutcome(True, f"{source}: {n_methods} methods over {len(tracks)} track(s), every configured one "
                              f"present, at most {worst:.0%} of windows without output (bound "
                              f"{max_failure_share:.0%}), every median finite", meta)
