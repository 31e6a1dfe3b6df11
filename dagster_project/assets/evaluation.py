"""``predictions`` and ``evaluation_report``: every method on the same test windows, one scoring code."""

import math
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from ml.io import atomic_dir, write_json_atomic
from ml.tracking import data_version, mlflow_run, run_tags
from dagster_project.assets.raw import CityContext, city_context
from dagster_project.code_versions import code_version
from dagster_project.metadata import image_markdown, mlflow_link, table_metadata
from dagster_project.partitions import cities_partitions
from dagster_project.resources import ComputeResource, MLflowResource, PathsResource

VIDEO_CHECKPOINTS = {"video_sft": ("sft", "model.pt"), "video_gdpo": ("gdpo", "gdpo.pt")}


def _contexts(cc: CityContext, cfg, observation=None):
    ctxs = cc.sample_contexts(cfg.split, with_mr=True, observation=observation)
    if not ctxs:
        raise dg.Failure(f"{cc.city.name}: no samples in split '{cfg.split}' to evaluate")
    return ctxs[: cfg.max_samples] if cfg.max_samples else ctxs


def _prediction_file(track: str, method: str) -> str:
    return f"{track}__{method}.parquet"


@dg.asset(partitions_def=cities_partitions, group_name="evaluation",
          deps=["samples", "sample_truth", "measurement_reports", "cell_footprints", "rendered_videos", "sft_checkpoint",
                "gdpo_checkpoint", "seq2seq_checkpoint"],
          kinds={"pandas", "pytorch"}, code_version=code_version("predictions"))
def predictions(context: dg.AssetExecutionContext, paths: PathsResource, compute: ComputeResource) -> dg.MaterializeResult:
    """Trajectories of every method on the evaluation split, as ``outputs/<city>/predictions/<track>__<method>.parquet``."""
    from ml.baselines import MR_METHODS
    from ml.evaluation import (predict_seq2seq_method, predict_video_method, predictions_frame, run_method,
                               signaling_methods)

    cc = city_context(context, paths, compute)
    cfg = compute.stage_config("evaluation", cc.city)
    ctxs = _contexts(cc, cfg, observation=cc.learned_observation(compute.stage_config("footprints", cc.city)))
    log = context.log.info
    # learned_hmm, the oracle_records bound, and the peer engines when the `peers` extra is installed
    methods, skipped = signaling_methods(footprints=True, references=True)
    for why in skipped.values():
        context.log.warning(why)
    runs = [run_method(n, "signaling", f, ctxs, log) for n, f in methods.items()]
    if any(c.mr is not None and len(c.mr) for c in ctxs):
        runs += [run_method(n, "mr", f, ctxs, log) for n, f in MR_METHODS.items()]
    rcfg = compute.stage_config("render", cc.city)
    rendered = cc.paths.render_dir(rcfg.resolution, rcfg.frames)
    for method, (stage, fname) in VIDEO_CHECKPOINTS.items():
        ckpt = cc.paths.checkpoints / stage / fname
        if ckpt.is_file():
            runs.append(predict_video_method(method, ckpt, rendered, ctxs, cfg, device=compute.torch_device(), progress=log))
        else:
            context.log.warning(f"{method}: no checkpoint at {ckpt}; method skipped")
    seq2seq = cc.paths.checkpoints / "seq2seq" / "model.pt"
    if seq2seq.is_file():
        runs.append(predict_seq2seq_method(seq2seq, ctxs, device=compute.torch_device(), progress=log))
    else:
        context.log.warning(f"seq2seq: no checkpoint at {seq2seq}; method skipped")
    with atomic_dir(cc.paths.predictions) as tmp:
        meta: dict = {"samples": len(ctxs), "split": cfg.split, "skipped_peers": ", ".join(skipped) or "none"}
        for run in runs:
            predictions_frame(run, ctxs).to_parquet(tmp / _prediction_file(run.track, run.method), index=False)
            if "rewards" in run.extra:
                run.extra["rewards"].to_parquet(tmp / f"{run.track}__{run.method}.rewards.parquet", index=False)
    meta["methods"] = table_metadata(
        [{"track": run.track, "method": run.method, "failed": len(run.failures),
          "median_latency_ms": float(np.nanmedian(list(run.latency_ms.values())))} for run in runs],
        descriptions={"failed": "windows without an output", "median_latency_ms": "per window"})
    meta["path"] = dg.MetadataValue.path(str(cc.paths.predictions))
    return dg.MaterializeResult(metadata=meta)


def _finite(d: dict) -> dict:
    return {k: float(v) for k, v in d.items() if isinstance(v, (int, float)) and math.isfinite(float(v))}


# retried: the MLflow store (sqlite) can be locked for a moment by another process logging to it
# after next_gps_report (when both run), whose next_gps.json the report embeds as its next-GPS section
@dg.asset(partitions_def=cities_partitions, group_name="evaluation", deps=["predictions", "next_gps_report", "cell_footprints"],
          kinds={"mlflow", "pandas"},
          code_version=code_version("evaluation_report"),
          retry_policy=dg.RetryPolicy(max_retries=2, delay=5.0, backoff=dg.Backoff.EXPONENTIAL))
def evaluation_report(context: dg.AssetExecutionContext, paths: PathsResource, mlflow: MLflowResource,
                      compute: ComputeResource) -> dg.MaterializeResult:
    """Metrics per method and track, robustness to missing MR, figures and case studies; all logged to MLflow."""
    from ml.baselines import MR_METHODS
    from ml.evaluation import peer_report_notes, run_from_frame, score_run, summarise
    from ml.report import (case_study, error_cdf, evaluation_json, per_sample_table, robustness_figure,
                           speed_profiles, write_markdown)

    cc = city_context(context, paths, compute)
    cfg = compute.stage_config("evaluation", cc.city)
    ctxs = _contexts(cc, cfg)
    pred_dir = cc.paths.predictions
    files = sorted(p for p in pred_dir.glob("*__*.parquet") if not p.name.endswith(".rewards.parquet"))
    if not files:
        raise dg.Failure(f"{pred_dir}: no predictions; materialise predictions first")
    with atomic_dir(cc.paths.report) as tmp:
        per_sample, summaries, runs = [], {}, {}
        for f in files:
            track, method = f.stem.split("__")
            run = run_from_frame(method, track, pd.read_parquet(f), ctxs)
            scored = score_run(run, ctxs)
            rw = f.with_name(f"{track}__{method}.rewards.parquet")
            if rw.is_file():
                scored = scored.merge(pd.read_parquet(rw), on="sample_id", how="left")
            per_sample.append(scored)
            summaries.setdefault(track, {})[method] = summarise(scored)
            runs.setdefault(track, {})[method] = run
            context.log.info(f"{track}/{method}: median error {summaries[track][method]['median_error_m']:.1f} m")
        per_sample_df = pd.concat(per_sample, ignore_index=True)
        peer_notes = peer_report_notes(summaries.get("signaling", {}))
        evaluation = evaluation_json(cc.city.name, cfg.split, len(ctxs), summaries, skipped=peer_notes)

        figures: dict[str, Path] = {}
        for track in summaries:
            figures[f"cdf_{track}"] = error_cdf(per_sample_df, track, tmp / f"error_cdf_{track}.png")
        sig_preds = {m: r.predictions for m, r in runs.get("signaling", {}).items()}
        figures["speed"] = speed_profiles(ctxs, sig_preds, tmp / "speed_profiles.png")
        for i, ctx in enumerate(ctxs[: cfg.case_studies]):
            figures[f"case_{i}"] = case_study(ctx, {m: p[ctx.sample_id] for m, p in sig_preds.items()},
                                              tmp / f"case_{i}.png", title=f"{cc.city.name}: {ctx.sample_id}")
        notes = list(peer_notes.values())
        mr_ctxs = [c for c in ctxs if c.mr is not None and len(c.mr)][: cfg.robustness_max_samples]
        if MR_METHODS and mr_ctxs:
            from ml.baselines.mr.robustness import robustness_study

            rob = robustness_study(mr_ctxs, MR_METHODS, cfg.robustness_drop_fracs, seeds=range(cfg.robustness_seeds))
            rob.to_parquet(tmp / "robustness.parquet", index=False)
            figures["robustness"] = robustness_figure(rob, tmp / "robustness.png")
            notes.append(f"Robustness: {len(mr_ctxs)} windows x {cfg.robustness_seeds} seeds per drop rate; "
                         f"{int((rob['error'] != '').sum())} method runs failed and are shown as gaps.")
        failed = {f"{t}/{m}": s["n_failed"] for t, ms in summaries.items() for m, s in ms.items() if s["n_failed"]}
        if failed:
            notes.append(f"Windows with no output (scored as missing): {failed}")
        version = data_version(cc.paths.data_version_file)
        write_json_atomic(evaluation, tmp / "evaluation.json")
        per_sample_table(per_sample_df).to_parquet(tmp / "per_sample.parquet", index=False)
        from ml.nextgps import load_next_gps, markdown_section

        next_gps = load_next_gps(cc.paths.outputs / "next_gps" / "next_gps.json")  # absent: no section
        write_markdown(evaluation, tmp, figures, notes, data_version=version,
                       sections=markdown_section(next_gps) if next_gps else None)
    report_dir = cc.paths.report

    # MLflow: a parent run with the report, one nested run per method with its metrics
    uri = mlflow.uri(paths.root_path)
    run_ids = {}
    with mlflow_run("evaluation", cc.city.name, uri, run_name=f"{cc.city.name}-evaluation", root=paths.root_path,
                    data_version=version, dagster_run_id=context.run_id, profile=compute.profile) as parent:
        import mlflow as mlf

        mlf.log_artifacts(str(report_dir), artifact_path="report")
        for track, methods in evaluation["tracks"].items():
            for method, row in methods.items():
                # in the parent's experiment (MLflow would put a nested run in the default one), with the same tags
                with mlf.start_run(run_name=f"{cc.city.name}-{track}-{method}", nested=True,
                                   experiment_id=parent.info.experiment_id,
                                   tags=run_tags(cc.city.name, "evaluation", paths.root_path, data_version=version,
                                                 track=track, method=method, dagster_run_id=context.run_id,
                                                 profile=compute.profile)) as child:
                    mlf.log_metrics(_finite(row))
                    run_ids[f"{track}/{method}"] = child.info.run_id
        parent_id = parent.info.run_id
    # learned_hmm as a served model, logged into the same run: the footprints it read are the run's artifact
    from ml.io import read_table
    from ml.serving.registry import log_learned_hmm_model

    windows = compute.stage_config("samples", cc.city)
    learned = log_learned_hmm_model(cc.city.name, read_table(cc.paths.table("towers"), "towers"), cc.net,
                                    cc.paths.footprints, windows.window_s, windows.eval_interval_s,
                                    compute.stage_config("footprints", cc.city), tracking_uri=uri, run_id=parent_id)

    table = [{"track": t, "method": m, **{k: r[k] for k in ("median_error_m", "rmse_m", "tme_pct", "route_f1", "n")}}
             for t, ms in evaluation["tracks"].items() for m, r in ms.items()]
    meta = {"report": dg.MetadataValue.path(str(report_dir / "evaluation.md")),
            "evaluation_json": dg.MetadataValue.path(str(report_dir / "evaluation.json")),
            "comparison": table_metadata(table), **mlflow_link(uri, parent_id),
            "learned_hmm_model": learned.alias_uri,
            "data_version": version}
    for track in summaries:
        meta[f"error_cdf_{track}"] = image_markdown(report_dir / f"error_cdf_{track}.png")
    for t, ms in evaluation["tracks"].items():
        for m, r in ms.items():
            if r.get("median_error_m") is not None:
                meta[f"{t}.{m}.median_error_m"] = r["median_error_m"]
    return dg.MaterializeResult(metadata=meta)
