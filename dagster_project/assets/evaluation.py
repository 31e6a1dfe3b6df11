"""``predictions`` and ``evaluation_report``: every method on the same test windows, one scoring code."""

import math

import dagster as dg
import numpy as np

from ml.io import atomic_dir
from ml.tracking import data_version, mlflow_run, run_tags
from dagster_project.assets.raw import CityContext, city_context
from dagster_project.checks import outcome_result
from dagster_project.code_versions import code_version
from dagster_project.metadata import image_markdown, mlflow_link, table_metadata
from dagster_project.partitions import cities_partitions
from dagster_project.resources import ComputeResource, MLflowResource, PathsResource

def _contexts(cc: CityContext, cfg, observation=None):
    ctxs = cc.sample_contexts(cfg.split, with_mr=True, observation=observation)
    if not ctxs:
        raise dg.Failure(f"{cc.city.name}: no samples in split '{cfg.split}' to evaluate")
    return ctxs[: cfg.max_samples] if cfg.max_samples else ctxs


@dg.asset(partitions_def=cities_partitions, group_name="evaluation",
          deps=["samples", "sample_truth", "measurement_reports", "cell_footprints", "rendered_videos", "sft_checkpoint",
                "gdpo_checkpoint", "seq2seq_checkpoint"],
          kinds={"pandas", "pytorch"}, code_version=code_version("predictions"))
def predictions(context: dg.AssetExecutionContext, paths: PathsResource, compute: ComputeResource) -> dg.MaterializeResult:
    """Trajectories of every method on the evaluation split, as ``outputs/<city>/predictions/<track>__<method>.parquet``."""
    from ml.baselines import MR_METHODS
    from ml.evaluation import (predict_seq2seq_method, predict_video_method, predictions_frame, run_method,
                               signaling_methods)
    from ml.report import prediction_file_name, rewards_file_name

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
    for method, ckpt in cc.paths.video_models().items():
        if ckpt.is_file():
            runs.append(predict_video_method(method, ckpt, rendered, ctxs, cfg, device=compute.torch_device(), progress=log))
        else:
            context.log.warning(f"{method}: no checkpoint at {ckpt}; method skipped")
    seq2seq = cc.paths.seq2seq_model
    if seq2seq.is_file():
        runs.append(predict_seq2seq_method(seq2seq, ctxs, device=compute.torch_device(), progress=log))
    else:
        context.log.warning(f"seq2seq: no checkpoint at {seq2seq}; method skipped")
    with atomic_dir(cc.paths.predictions) as tmp:
        meta: dict = {"samples": len(ctxs), "split": cfg.split, "skipped_peers": ", ".join(skipped) or "none"}
        for run in runs:
            predictions_frame(run, ctxs).to_parquet(tmp / prediction_file_name(run.track, run.method), index=False)
            if "rewards" in run.extra:
                run.extra["rewards"].to_parquet(tmp / rewards_file_name(run.track, run.method), index=False)
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
    """Metrics per method and track, robustness to missing MR, figures and case studies
    (``ml.report.build_evaluation_report``); all logged to MLflow, the comparison shown as metadata."""
    from ml.report import build_evaluation_report, prediction_files

    cc = city_context(context, paths, compute)
    cfg = compute.stage_config("evaluation", cc.city)
    ctxs = _contexts(cc, cfg)
    if not prediction_files(cc.paths.predictions):
        raise dg.Failure(f"{cc.paths.predictions}: no predictions; materialise predictions first")
    version = data_version(cc.paths.data_version_file)
    with atomic_dir(cc.paths.report) as tmp:
        built = build_evaluation_report(cc.city.name, ctxs, cc.paths.predictions, tmp, cfg, data_version=version,
                                        next_gps_json=cc.paths.next_gps_json, log=context.log.info)
    evaluation = built.evaluation
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
    meta = {"report": dg.MetadataValue.path(str(cc.paths.evaluation_markdown)),
            "evaluation_json": dg.MetadataValue.path(str(cc.paths.evaluation_json)),
            "comparison": table_metadata(table), **mlflow_link(uri, parent_id),
            "learned_hmm_model": learned.alias_uri,
            "data_version": version}
    for track in built.summaries:
        meta[f"error_cdf_{track}"] = image_markdown(report_dir / f"error_cdf_{track}.png")
    for t, ms in evaluation["tracks"].items():
        for m, r in ms.items():
            if r.get("median_error_m") is not None:
                meta[f"{t}.{m}.median_error_m"] = r["median_error_m"]
    return dg.MaterializeResult(metadata=meta)


@dg.asset_check(asset=evaluation_report, blocking=True,
                description="Every configured method is in evaluation.json (the signaling methods, the MR methods "
                            "when the windows carry MR, video_sft / video_gdpo / seq2seq when their model files exist), "
                            "none without output on more than evaluation.max_failure_share of the windows, every "
                            "median error finite (ml.checks.check_evaluation_report).")
def evaluation_report_complete(context: dg.AssetCheckExecutionContext, paths: PathsResource,
                               compute: ComputeResource) -> dg.AssetCheckResult:
    from ml.checks import CheckOutcome, check_evaluation_report, configured_methods, read_evaluation_report

    cc = city_context(context, paths, compute)
    cfg = compute.stage_config("evaluation", cc.city)
    # the windows the predictions step ran on decide whether it ran the MR track (its own rule)
    ctxs = _contexts(cc, cfg)
    expected = configured_methods(cc.paths.video_models(), cc.paths.seq2seq_model,
                                  with_mr=any(c.mr is not None and len(c.mr) for c in ctxs))
    try:
        report = read_evaluation_report(cc.paths.evaluation_json)
    except ValueError as exc:
        return outcome_result(CheckOutcome.failed(str(exc)))
    outcome = check_evaluation_report(report, expected, cfg.max_failure_share, source=str(cc.paths.evaluation_json))
    context.log.info(outcome.description)
    return outcome_result(outcome)
