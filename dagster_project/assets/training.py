"""``sft_checkpoint`` and ``gdpo_checkpoint``: the two training stages, in the ``gpu`` pool of one, each with a
blocking check on the model it wrote (finite weights, decodes val windows); and the seq2seq baselines."""

from collections.abc import Callable
from pathlib import Path

import dagster as dg

from ml.paths import CityPaths
from ml.tracking import data_version, run_tags
from dagster_project.assets.raw import city_context
from dagster_project.checks import outcome_result
from dagster_project.code_versions import code_version
from dagster_project.metadata import flat_metadata, mlflow_link
from dagster_project.partitions import cities_partitions
from dagster_project.resources import ComputeResource, MLflowResource, PathsResource


def _rendered_dir(cc, compute: ComputeResource):
    cfg = compute.stage_config("render", cc.city)
    d = cc.paths.render_dir(cfg.resolution, cfg.frames)
    if not (d / "index.parquet").is_file():
        raise dg.Failure(f"{d}: no rendered arrays; materialise rendered_videos first")
    return d


def _register(context, cc, compute: ComputeResource, checkpoint, alias: str, run_id: str | None, uri: str,
              tags: dict) -> dict:
    """Register the checkpoint as ``sig2gps-video-<city>@<alias>``: a pyfunc from signaling records to GPS."""
    from ml.serving import log_video_model

    samples_cfg = compute.stage_config("samples", cc.city)
    eval_cfg = compute.stage_config("evaluation", cc.city)
    logged = log_video_model(
        checkpoint, cc.city.name, towers=cc.paths.table("towers"), roads=cc.net, duration_s=samples_cfg.window_s,
        tracking_uri=uri, alias=alias, eval_interval_s=samples_cfg.eval_interval_s,
        n_steps=eval_cfg.video_sampling_steps, noise_scale=eval_cfg.video_noise_scale,
        render_cfg=compute.stage_config("render", cc.city), run_id=run_id, tags=tags,
        footprints=cc.paths.footprints, footprint_cfg=compute.stage_config("footprints", cc.city),
        record_evidence_weight=eval_cfg.video_record_evidence_weight,
    )
    context.log.info(f"registered {logged.name} version {logged.version} as {logged.alias_uri}")
    return {"registered_model": logged.name, "model_version": logged.version, "model_uri": logged.alias_uri}


#: the registration metadata of a model that was not registered
NOT_REGISTERED = "not registered: weights not finite"


def _register_finite(context, cc, compute: ComputeResource, checkpoint, alias: str, run_id: str | None, uri: str,
                     tags: dict) -> dict:
    """:func:`_register` for a model whose weights are all finite; a diverged one never gets the alias (its
    blocking check, which also decodes val windows, then fails and stops what is below it)."""
    from ml.checks import check_video_weights

    outcome = check_video_weights(checkpoint)
    if not outcome.passed:
        context.log.warning(f"{alias} model not registered in MLflow: {outcome.description}")
        return {"registered_model": NOT_REGISTERED}
    return _register(context, cc, compute, checkpoint, alias, run_id, uri, tags)


@dg.asset(partitions_def=cities_partitions, group_name="video", deps=["rendered_videos"], pool="gpu",
          kinds={"pytorch", "mlflow"}, code_version=code_version("training"))
def sft_checkpoint(context: dg.AssetExecutionContext, paths: PathsResource, mlflow: MLflowResource,
                   compute: ComputeResource) -> dg.MaterializeResult:
    """Supervised fine-tuning with the conditional flow-matching loss (resumes from ``last.ckpt``)."""
    from ml.train import train_sft

    cc = city_context(context, paths, compute)
    uri = mlflow.uri(paths.root_path)
    cfg = compute.stage_config("sft", cc.city, run_name=f"{cc.city.name}-sft")
    tags = run_tags(cc.city.name, "sft", paths.root_path, data_version=data_version(cc.paths.data_version_file),
                    dagster_run_id=context.run_id, profile=compute.profile)
    res = train_sft(_rendered_dir(cc, compute), cc.paths.sft_dir, cfg, tracking_uri=uri, tags=tags,
                    resume=True, road_network=cc.net)
    if res.resumed_from_step:
        context.log.info(f"resumed from step {res.resumed_from_step}")
    meta = {"checkpoint": dg.MetadataValue.path(res.checkpoint_path), "global_step": res.global_step,
            "resumed_from_step": res.resumed_from_step or 0, "data_version": tags["data_version"],
            "selected_weights": res.selected,
            **mlflow_link(uri, res.mlflow_run_id),
            **{f"metric.{k}": v for k, v in flat_metadata(res.metrics).items()}}
    meta.update(_register_finite(context, cc, compute, res.checkpoint_path, "sft", res.mlflow_run_id, uri, tags))
    return dg.MaterializeResult(metadata=meta)


@dg.asset(partitions_def=cities_partitions, group_name="video", deps=["sft_checkpoint"], pool="gpu",
          kinds={"pytorch", "mlflow"}, code_version=code_version("training"))
def gdpo_checkpoint(context: dg.AssetExecutionContext, paths: PathsResource, mlflow: MLflowResource,
                    compute: ComputeResource) -> dg.MaterializeResult:
    """Traj-GDPO: RL from verifiable rewards on the SFT model, KL-regularised to it."""
    from ml.train.gdpo import train_gdpo

    cc = city_context(context, paths, compute)
    uri = mlflow.uri(paths.root_path)
    sft = cc.paths.sft_model
    if not sft.is_file():
        raise dg.Failure(f"{sft}: no SFT model; materialise sft_checkpoint first")
    cfg = compute.stage_config("gdpo", cc.city, run_name=f"{cc.city.name}-gdpo")
    tags = run_tags(cc.city.name, "gdpo", paths.root_path, data_version=data_version(cc.paths.data_version_file),
                    dagster_run_id=context.run_id, profile=compute.profile)
    res = train_gdpo(_rendered_dir(cc, compute), sft, cc.paths.gdpo_dir, cfg, tracking_uri=uri, tags=tags)
    meta = {"checkpoint": dg.MetadataValue.path(str(res.checkpoint_path)), "data_version": tags["data_version"],
            "selected_weights": res.selected, **mlflow_link(uri, res.mlflow_run_id),
            **{f"metric.{k}": v for k, v in flat_metadata(res.metrics).items()}}
    meta.update(_register_finite(context, cc, compute, res.checkpoint_path, "gdpo", res.mlflow_run_id, uri, tags))
    return dg.MaterializeResult(metadata=meta)


def _video_checkpoint_check(context: dg.AssetCheckExecutionContext, paths: PathsResource, compute: ComputeResource,
                            model_file: Callable[[CityPaths], Path]) -> dg.AssetCheckResult:
    """``ml.checks.check_video_checkpoint`` on the city's model file (``model_file`` picks ``sft_model`` or
    ``gdpo_model`` of its ``CityPaths``): finite weights, then ``evaluation.check_windows`` windows of ``evaluation.check_split`` decoded
    by the evaluation's own sampling and decoding, with the observation model the predictions use."""
    from ml.checks import check_video_checkpoint

    cc = city_context(context, paths, compute)
    cfg = compute.stage_config("evaluation", cc.city)
    path = model_file(cc.paths)  # missing or unreadable: the check fails and says so
    obs = cc.learned_observation(compute.stage_config("footprints", cc.city))
    ctxs = cc.sample_contexts(cfg.check_split, observation=obs)[: cfg.check_windows]
    outcome = check_video_checkpoint(path, _rendered_dir(cc, compute), ctxs, cfg, device=compute.torch_device())
    context.log.info(outcome.description)
    return outcome_result(outcome)


# Blocking: a checkpoint that fails stops GDPO, the predictions and the next-GPS report (the model is registered
# in MLflow by the asset itself, so a failing one is there, under its alias, with this check failed in Dagster).
@dg.asset_check(asset=sft_checkpoint, blocking=True, pool="gpu",
                description="The SFT model's weights are all finite, and it decodes evaluation.check_windows val "
                            "windows to finite trajectories (ml.checks.check_video_checkpoint).")
def sft_model_decodes(context: dg.AssetCheckExecutionContext, paths: PathsResource,
                      compute: ComputeResource) -> dg.AssetCheckResult:
    return _video_checkpoint_check(context, paths, compute, lambda p: p.sft_model)


@dg.asset_check(asset=gdpo_checkpoint, blocking=True, pool="gpu",
                description="The GDPO model's weights are all finite, and it decodes evaluation.check_windows val "
                            "windows to finite trajectories (ml.checks.check_video_checkpoint).")
def gdpo_model_decodes(context: dg.AssetCheckExecutionContext, paths: PathsResource,
                       compute: ComputeResource) -> dg.AssetCheckResult:
    return _video_checkpoint_check(context, paths, compute, lambda p: p.gdpo_model)


@dg.asset(partitions_def=cities_partitions, group_name="baselines", deps=["samples", "sample_truth", "cell_footprints", "dataset_version"],
          kinds={"pytorch", "mlflow"}, code_version=code_version("seq2seq"))
def seq2seq_checkpoint(context: dg.AssetExecutionContext, paths: PathsResource, mlflow: MLflowResource,
                       compute: ComputeResource) -> dg.MaterializeResult:
    """The learned coordinate baseline (``ml.seq2seq``): trained on the train windows, early-stopped on val,
    registered as ``sig2gps-seq2seq-<city>``."""
    from ml.serving.registry import log_seq2seq_model
    from ml.train.seq2seq import train_seq2seq

    cc = city_context(context, paths, compute)
    uri = mlflow.uri(paths.root_path)
    cfg = compute.stage_config("seq2seq", cc.city, run_name=f"{cc.city.name}-seq2seq")
    tags = run_tags(cc.city.name, "seq2seq", paths.root_path, data_version=data_version(cc.paths.data_version_file),
                    dagster_run_id=context.run_id, profile=compute.profile)
    obs = cc.learned_observation(compute.stage_config("footprints", cc.city))  # its tokens read the footprints
    train, val = cc.sample_contexts("train", observation=obs), cc.sample_contexts("val", observation=obs)
    res = train_seq2seq(train, val, cfg, cc.paths.seq2seq_dir, tracking_uri=uri, tags=tags)
    if res.skipped:
        context.log.warning(f"seq2seq: {len(res.skipped)} windows without records were left out")
    logged = log_seq2seq_model(res.checkpoint_path, cc.city.name, uri, res.mlflow_run_id)
    context.log.info(f"registered {logged.name} version {logged.version} as {logged.alias_uri}")
    return dg.MaterializeResult(metadata={
        "checkpoint": dg.MetadataValue.path(res.checkpoint_path), "best_step": res.best_step,
        "global_step": res.global_step, "n_train": res.n_train, "n_val": res.n_val, "skipped_windows": len(res.skipped),
        "data_version": tags["data_version"], "registered_model": logged.name, "model_version": logged.version,
        "model_uri": logged.alias_uri, **mlflow_link(uri, res.mlflow_run_id),
        **{f"metric.{k}": v for k, v in flat_metadata(res.metrics).items()}})


@dg.asset(partitions_def=cities_partitions, group_name="baselines", deps=["samples", "sample_truth", "cell_footprints", "dataset_version"],
          kinds={"pytorch", "mlflow"}, code_version=code_version("seq2seq_prefix"))
def seq2seq_prefix_checkpoint(context: dg.AssetExecutionContext, paths: PathsResource, mlflow: MLflowResource,
                              compute: ComputeResource) -> dg.MaterializeResult:
    """The seq2seq baseline of next-GPS prediction: the same network and training, with the GPS of each window's
    first ``next_gps.known_s`` seconds as extra tokens and the loss on the later times only (``prefix_s``)."""
    from ml.train.seq2seq import train_seq2seq

    cc = city_context(context, paths, compute)
    uri = mlflow.uri(paths.root_path)
    known_s = compute.stage_config("next_gps", cc.city).known_s
    cfg = compute.stage_config("seq2seq", cc.city, run_name=f"{cc.city.name}-seq2seq-prefix", prefix_s=known_s)
    tags = run_tags(cc.city.name, "seq2seq_prefix", paths.root_path,
                    data_version=data_version(cc.paths.data_version_file), dagster_run_id=context.run_id,
                    profile=compute.profile)
    obs = cc.learned_observation(compute.stage_config("footprints", cc.city))  # its tokens read the footprints
    res = train_seq2seq(cc.sample_contexts("train", observation=obs), cc.sample_contexts("val", observation=obs), cfg,
                        cc.paths.seq2seq_prefix_dir, tracking_uri=uri, tags=tags)
    if res.skipped:
        context.log.warning(f"seq2seq_prefix: {len(res.skipped)} windows without records were left out")
    return dg.MaterializeResult(metadata={
        "checkpoint": dg.MetadataValue.path(res.checkpoint_path), "prefix_s": known_s, "best_step": res.best_step,
        "global_step": res.global_step, "n_train": res.n_train, "n_val": res.n_val, "skipped_windows": len(res.skipped),
        "data_version": tags["data_version"], **mlflow_link(uri, res.mlflow_run_id),
        **{f"metric.{k}": v for k, v in flat_metadata(res.metrics).items()}})
