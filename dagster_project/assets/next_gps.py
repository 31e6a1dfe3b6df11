"""``next_gps_report``: next-GPS prediction (the video model continuing its drawing, and baselines) per city."""

import hashlib
import math

import dagster as dg

from ml.io import atomic_dir
from ml.tracking import data_version, mlflow_run
from dagster_project.assets.raw import city_context
from dagster_project.code_versions import ML, code_version
from dagster_project.metadata import mlflow_link, table_metadata
from dagster_project.partitions import cities_partitions
from dagster_project.resources import ComputeResource, MLflowResource, PathsResource


def _code_version() -> str:
    """The predictions' code version (every method's library code) combined with ``ml/nextgps``'s files."""
    h = hashlib.sha256(code_version("predictions").encode())
    for f in sorted((ML / "nextgps").rglob("*.py")):
        h.update(str(f.relative_to(ML)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


# retried: the MLflow store (sqlite) can be locked for a moment by another process logging to it
@dg.asset(partitions_def=cities_partitions, group_name="evaluation",
          deps=["samples", "sample_truth", "rendered_videos", "sft_checkpoint", "seq2seq_checkpoint",
                "seq2seq_prefix_checkpoint"],
          kinds={"pandas", "pytorch", "mlflow"}, code_version=_code_version(),
          retry_policy=dg.RetryPolicy(max_retries=2, delay=5.0, backoff=dg.Backoff.EXPONENTIAL))
def next_gps_report(context: dg.AssetExecutionContext, paths: PathsResource, mlflow: MLflowResource,
                    compute: ComputeResource) -> dg.MaterializeResult:
    """Given a window's signaling and its first ``known_s`` seconds of GPS, the positions at each horizon after
    it: video continuation (Euler steps chosen on val), constant velocity along the road, the industrial HMM
    joined to the prefix, seq2seq with the prefix as tokens (and without); scored once on the test windows.
    Writes ``next_gps.json`` and ``.md``."""
    from ml.nextgps import next_gps_report as run_report
    from ml.nextgps import write_next_gps

    cc = city_context(context, paths, compute)
    cfg = compute.stage_config("next_gps", cc.city)
    rcfg = compute.stage_config("render", cc.city)
    rendered = cc.paths.render_dir(rcfg.resolution, rcfg.frames)
    video = {"sft": cc.paths.sft_model, "gdpo": cc.paths.gdpo_model}[cfg.video_checkpoint]
    seq2seq, seq2seq_prefix = cc.paths.seq2seq_model, cc.paths.seq2seq_prefix_model
    for what, p in (("video model", video), ("rendered arrays", rendered / "index.parquet"), ("seq2seq", seq2seq),
                    ("seq2seq_prefix", seq2seq_prefix)):
        if not p.is_file():
            context.log.warning(f"next_gps: no {what} at {p}; its methods are skipped")
    has_video = video.is_file() and (rendered / "index.parquet").is_file()
    obs = cc.learned_observation(compute.stage_config("footprints", cc.city))  # as the seq2seq models were trained
    report, scored = run_report(
        cc.city.name, cc.sample_contexts(cfg.val_split, observation=obs), cc.sample_contexts(cfg.split, observation=obs),
        cfg,
        video_checkpoint=video if has_video else None, rendered_dir=rendered if has_video else None,
        seq2seq_checkpoint=seq2seq if seq2seq.is_file() else None, device=compute.torch_device(),
        progress=context.log.info, seq2seq_prefix_checkpoint=seq2seq_prefix if seq2seq_prefix.is_file() else None)
    out = cc.paths.next_gps_dir  # where the evaluation report reads it
    with atomic_dir(out) as tmp:
        write_next_gps(report, scored, tmp)

    version = data_version(cc.paths.data_version_file)
    uri = mlflow.uri(paths.root_path)
    with mlflow_run("next_gps", cc.city.name, uri, run_name=f"{cc.city.name}-next-gps", root=paths.root_path,
                    data_version=version, dagster_run_id=context.run_id, profile=compute.profile) as run:
        import mlflow as mlf

        mlf.log_params({"known_s": cfg.known_s, "horizons_s": ",".join(f"{h:g}" for h in cfg.horizons_s),
                        "split": cfg.split, "n_samples": report["n_samples"], "video_steps": report["video_steps"],
                        "video_checkpoint": report["video_checkpoint"]})
        mlf.log_metrics({f"{m}.{h}.{k}": v for m, hs in report["methods"].items() for h, r in hs.items()
                         for k, v in r.items() if k in ("median_error_m", "p90_error_m") and math.isfinite(v)})
        mlf.log_artifacts(str(out), artifact_path="next_gps")
        run_id = run.info.run_id

    table = [{"method": m, **{f"{h}_{k.split('_')[0]}_m": r[k] for h, r in hs.items()
                              for k in ("median_error_m", "p90_error_m")}} for m, hs in report["methods"].items()]
    return dg.MaterializeResult(metadata={
        "report": dg.MetadataValue.path(str(out / "next_gps.md")),
        "next_gps_json": dg.MetadataValue.path(str(cc.paths.next_gps_json)),
        "comparison": table_metadata(table), "n_samples": report["n_samples"],
        "video_steps": report["video_steps"] if report["video_steps"] is not None else -1,
        "data_version": version, **mlflow_link(uri, run_id)})
