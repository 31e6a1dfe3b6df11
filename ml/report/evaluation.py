"""The evaluation report of one city: every method's saved predictions scored on the same windows
(``ml.metrics`` through ``ml.evaluation``), ``evaluation.json``, ``per_sample.parquet``, figures, the MR
robustness study and ``evaluation.md``, written into one folder.

The ``evaluation_report`` asset calls :func:`build_evaluation_report` inside its atomic folder and does the
rest (MLflow, the served ``learned_hmm``, Dagster metadata); nothing here knows about the orchestrator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ml.baselines import SampleContext
from ml.evaluation.config import EvaluationConfig

#: ``<track>__<method>.parquet``: one method's predictions (``ml.evaluation.predictions_frame``); per-sample
#: rewards of a video method beside it as ``<track>__<method>.rewards.parquet``
REWARDS_SUFFIX = ".rewards.parquet"


def prediction_file_name(track: str, method: str) -> str:
    """The file name of one method's predictions in the predictions folder (written by ``predictions``)."""
    return f"{track}__{method}.parquet"


def rewards_file_name(track: str, method: str) -> str:
    return f"{track}__{method}{REWARDS_SUFFIX}"


def prediction_files(predictions_dir: Path) -> dict[tuple[str, str], Path]:
    """``{(track, method): file}`` of every method's predictions in ``predictions_dir``, sorted by file name."""
    files = sorted(p for p in Path(predictions_dir).glob("*__*.parquet") if not p.name.endswith(REWARDS_SUFFIX))
    return {tuple(p.stem.split("__", 1)): p for p in files}  # type: ignore[misc]


@dataclass
class EvaluationReport:
    """What :func:`build_evaluation_report` wrote and what the caller logs: ``evaluation`` is
    ``evaluation.json``'s content; ``summaries`` track -> method -> aggregate metrics; ``figures`` name -> PNG."""

    evaluation: dict[str, Any]
    summaries: dict[str, dict[str, dict[str, Any]]]
    per_sample: pd.DataFrame
    figures: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def build_evaluation_report(city: str, contexts: Sequence[SampleContext], predictions_dir: Path, out_dir: Path,
                            cfg: EvaluationConfig, data_version: str = "",
                            next_gps_json: Path | None = None,
                            log: Callable[[str], None] | None = None) -> EvaluationReport:
    """Score every saved method on ``contexts`` (the evaluated windows of ``cfg.split``) and write the report
    into ``out_dir``: ``evaluation.json``, ``per_sample.parquet``, the error CDF per track, speed profiles,
    ``cfg.case_studies`` case studies, the robustness study when the windows carry MR (``robustness.parquet``
    and its figure), and ``evaluation.md`` (with the next-GPS section when ``next_gps_json`` exists).

    Raises :class:`FileNotFoundError` (naming the folder) when ``predictions_dir`` holds no predictions.
    """
    from ml.baselines import MR_METHODS
    from ml.evaluation import peer_report_notes, run_from_frame, score_run, summarise
    from ml.io import write_json_atomic
    from ml.nextgps import load_next_gps, markdown_section
    from ml.report.figures import case_study, error_cdf, robustness_figure, speed_profiles
    from ml.report.report import evaluation_json, per_sample_table, write_markdown

    log = log or (lambda _msg: None)
    files = prediction_files(predictions_dir)
    if not files:
        raise FileNotFoundError(f"{predictions_dir}: no predictions; materialise predictions first")
    out_dir = Path(out_dir)
    per_sample, summaries, runs = [], {}, {}
    for (track, method), f in files.items():
        run = run_from_frame(method, track, pd.read_parquet(f), contexts)
        scored = score_run(run, contexts)
        rw = f.with_name(rewards_file_name(track, method))
        if rw.is_file():
            scored = scored.merge(pd.read_parquet(rw), on="sample_id", how="left")
        per_sample.append(scored)
        summaries.setdefault(track, {})[method] = summarise(scored)
        runs.setdefault(track, {})[method] = run
        log(f"{track}/{method}: median error {summaries[track][method]['median_error_m']:.1f} m")
    per_sample_df = pd.concat(per_sample, ignore_index=True)
    peer_notes = peer_report_notes(summaries.get("signaling", {}))
    evaluation = evaluation_json(city, cfg.split, len(contexts), summaries, skipped=peer_notes)

    figures: dict[str, Path] = {}
    for track in summaries:
        figures[f"cdf_{track}"] = error_cdf(per_sample_df, track, out_dir / f"error_cdf_{track}.png")
    sig_preds = {m: r.predictions for m, r in runs.get("signaling", {}).items()}
    figures["speed"] = speed_profiles(contexts, sig_preds, out_dir / "speed_profiles.png")
    for i, ctx in enumerate(contexts[: cfg.case_studies]):
        figures[f"case_{i}"] = case_study(ctx, {m: p[ctx.sample_id] for m, p in sig_preds.items()},
                                          out_dir / f"case_{i}.png", title=f"{city}: {ctx.sample_id}")
    notes = list(peer_notes.values())
    mr_ctxs = [c for c in contexts if c.mr is not None and len(c.mr)][: cfg.robustness_max_samples]
    if MR_METHODS and mr_ctxs:
        from ml.baselines.mr.robustness import robustness_study

        rob = robustness_study(mr_ctxs, MR_METHODS, cfg.robustness_drop_fracs, seeds=range(cfg.robustness_seeds))
        rob.to_parquet(out_dir / "robustness.parquet", index=False)
        figures["robustness"] = robustness_figure(rob, out_dir / "robustness.png")
        notes.append(f"Robustness: {len(mr_ctxs)} windows x {cfg.robustness_seeds} seeds per drop rate; "
                     f"{int((rob['error'] != '').sum())} method runs failed and are shown as gaps.")
    if "industrial_hmm" in summaries.get("signaling", {}):
        from ml.baselines.signaling import IndustrialHMMConfig, outlier_record_count

        dropped, total = outlier_record_count(contexts)
        evaluation["industrial_hmm_outlier_records"] = {"dropped": dropped, "records": total,
                                                        "outlier_speed_mps": IndustrialHMMConfig().outlier_speed_mps}
        if dropped:
            notes.append(f"industrial_hmm dropped {dropped} of {total} records as out of place (jump filter).")
    failed = {f"{t}/{m}": s["n_failed"] for t, ms in summaries.items() for m, s in ms.items() if s["n_failed"]}
    if failed:
        notes.append(f"Windows with no output (scored as missing): {failed}")
    write_json_atomic(evaluation, out_dir / "evaluation.json")
    per_sample_table(per_sample_df).to_parquet(out_dir / "per_sample.parquet", index=False)
    next_gps = load_next_gps(next_gps_json) if next_gps_json is not None else None  # absent: no section
    write_markdown(evaluation, out_dir, figures, notes, data_version=data_version,
                   sections=markdown_section(next_gps) if next_gps else None)
    return EvaluationReport(evaluation, summaries, per_sample_df, figures, notes)
