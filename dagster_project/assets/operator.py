"""Operator scale in Dagster: a simulated operator day, its out-of-core pairing and windows, per city and day.

Partitioned by ``city x day`` (``city_days_partitions``), so months of signaling are materialised and
backfilled one day at a time; each day's files live in ``data/<city>/<profile>/operator/<day>/``
(``ml.paths.CityPaths.operator_day``). Models stay per city; ``road_network``
(per city) maps to every day of its city (Dagster infers the multi-to-single-dimension mapping). Sizes come from the profile (``operator``
stage: 36 phones in ``ci``, 2,000 in ``demo``, the issue's 100,000 phones and 2,000 taxis in ``gpu``);
the 100k-phone growth measurements are ``bench/operator_scale.py``. ``operator_trajectories`` reconstructs every
phone of the day on Ray (``ml.batch``); its method is run config (``TrajectoriesConfig``).
"""

import glob
from typing import Literal

import dagster as dg
import pandas as pd

from ml.cities import load_city
from ml.io import atomic_dir, write_parquet_atomic
from dagster_project.code_versions import code_version
from dagster_project.partitions import city_days_partitions
from dagster_project.resources import ComputeResource, MLflowResource, PathsResource

def _city_day(context: dg.AssetExecutionContext, paths: PathsResource, compute: ComputeResource):
    keys = context.partition_key.keys_by_dimension
    city = load_city(keys["city"], paths.root_path)
    cp = paths.city(city.name, compute.profile)
    return city, keys["day"], cp, cp.operator_day(keys["day"])


@dg.asset(partitions_def=city_days_partitions, group_name="operator", deps=["road_network"],
          code_version=code_version("operator"), kinds={"parquet"})
def operator_signaling(context: dg.AssetExecutionContext, paths: PathsResource,
                       compute: ComputeResource) -> dg.MaterializeResult:
    """One simulated operator day of the city: signaling and taxi GPS as hive-partitioned Parquet (by hour, shard)."""
    import datetime as dt

    from ml.scale import generate_operator_day

    city, day, cp, out = _city_day(context, paths, compute)
    if city.data_source == "import":
        raise dg.Failure(f"{city.name}: operator days are simulated; an imported city brings its own partitioned "
                         "signaling (point ml.scale.pairing.pair_day at its files)")
    sim = compute.stage_config("simulation", city).model_copy(update={"start_date": dt.date.fromisoformat(day)})
    cfg = compute.stage_config("operator").model_copy(update={"seed": city.seed, "simulation": sim})
    manifest = generate_operator_day(city, out, cfg, workers=1, cache_dir=cp.roads_dir, progress=context.log.info)
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(out)), "devices": manifest["devices"], "taxis": manifest["taxis"],
        "signaling_rows": manifest["rows"]["signaling"], "gps_rows": manifest["rows"]["gps"],
        "bytes_on_disk": sum(manifest["bytes"].values()), "records_per_device": manifest["records_per_device"]})


@dg.asset(partitions_def=city_days_partitions, group_name="operator", deps=["operator_signaling"],
          code_version=code_version("operator"), kinds={"duckdb", "parquet"})
def operator_pairs(context: dg.AssetExecutionContext, paths: PathsResource,
                   compute: ComputeResource) -> dg.MaterializeResult:
    """The day's (device, taxi) pairs by the out-of-core pairing (DuckDB, memory bounded by ``out_of_core``)."""
    from ml.pairing import pairing_quality
    from ml.scale import day_files
    from ml.scale.pairing import pair_day

    city, day, cp, out = _city_day(context, paths, compute)
    towers = pd.read_parquet(out / "towers.parquet")
    sig_files, gps_files = day_files(out, "signaling"), day_files(out, "gps")
    pairs, stats = pair_day(sig_files, gps_files, towers, compute.stage_config("pairing", city), out / ".pairing_work",
                            compute.stage_config("out_of_core"), progress=context.log.info)
    write_parquet_atomic(pairs, out / "pairs.parquet")
    truth = pd.concat([pd.read_parquet(f) for f in sorted(glob.glob(str(out / "truth_links" / "*.parquet")))])
    q = pairing_quality(pairs, truth)  # the hidden truth scores the pairing; the pairing never reads it
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(pairs), "precision": q["precision"], "recall_of_drivers": q["recall"],
        **{k: v for k, v in stats.items() if isinstance(v, (int, float))}})


@dg.asset(partitions_def=city_days_partitions, group_name="operator", deps=["operator_pairs"],
          code_version=code_version("operator"), kinds={"duckdb", "parquet"})
def operator_samples(context: dg.AssetExecutionContext, paths: PathsResource,
                     compute: ComputeResource) -> dg.MaterializeResult:
    """The day's windows and their truth, cut bucket by bucket of pairs (``ml.scale.pairing.cut_day``)."""
    from ml.pairing.pairing import projection_for
    from ml.scale import day_files
    from ml.scale.pairing import cut_day

    city, day, cp, out = _city_day(context, paths, compute)
    towers = pd.read_parquet(out / "towers.parquet")
    pairs = pd.read_parquet(out / "pairs.parquet")
    rcfg = compute.stage_config("render", city)
    # the previous windows stay until the new ones are complete
    with atomic_dir(out / "windows") as tmp:
        counts = cut_day(pairs, day_files(out, "signaling"), day_files(out, "gps"), towers,
                         projection_for(towers).crs, compute.stage_config("samples", city), seed=city.seed * 1000 + 5,
                         out_dir=tmp, ooc=compute.stage_config("out_of_core"), zoom_sizes_m=rcfg.zoom_sizes_m,
                         margin_m=rcfg.margin_m)
    return dg.MaterializeResult(metadata={"dagster/row_count": counts["samples"], **counts,
                                          "path": dg.MetadataValue.path(str(out / "windows"))})


class TrajectoriesConfig(dg.Config):
    """How ``operator_trajectories`` reconstructs the day (run config; the launchpad shows these fields)."""

    method: Literal["industrial_hmm", "learned_hmm", "video"] = "industrial_hmm"
    workers: int = 1  # Ray actors (one CPU each; one GPU each for video when the cluster has GPUs)
    model_alias: str = "sft"  # video: the registered model models:/sig2gps-video-<city>@<alias>
    ray_address: str = ""  # a running Ray cluster (host:port, ray://host:port or auto); empty: a local Ray


def _same_towers(day_towers: pd.DataFrame, city_towers_path, what: str) -> None:
    """``learned_hmm``'s footprints and the video model read the city's cells: the day must use the same towers."""
    import numpy as np

    if not city_towers_path.is_file():
        raise dg.Failure(f"{what} reads the city's towers ({city_towers_path}), which are not materialised: "
                         "run cell_towers (and cell_footprints / the model) for this profile first")
    city = pd.read_parquet(city_towers_path).sort_values("cell_id", ignore_index=True)
    day = day_towers.sort_values("cell_id", ignore_index=True)
    same = (len(city) == len(day) and (city["cell_id"].to_numpy() == day["cell_id"].to_numpy()).all()
            and np.allclose(city[["lon", "lat"]].to_numpy(float), day[["lon", "lat"]].to_numpy(float)))
    if not same:
        raise dg.Failure(f"{what} was learned on the city's towers ({city_towers_path}, {len(city)} cells), but this "
                         f"operator day has its own ({len(day)} cells, towers.parquet): its cells would be read through "
                         "another network's footprints. Use method industrial_hmm for this day")


@dg.asset(partitions_def=city_days_partitions, group_name="operator", deps=["operator_signaling"],
          code_version=code_version("batch"), kinds={"ray", "parquet"})
def operator_trajectories(context: dg.AssetExecutionContext, config: TrajectoriesConfig, paths: PathsResource,
                          compute: ComputeResource, mlflow: MLflowResource) -> dg.MaterializeResult:
    """Every phone of the day reconstructed (taxi drivers and everyone else) with the configured method, on Ray Data
    (``ml.batch.reconstruct_dataset``: buckets of devices, each written atomically; a re-run resumes the buckets
    without a done marker). Output: ``trajectories/day=D/hour=H/<bucket>.parquet`` in the day's folder."""
    from ml.batch import CityInputs, OutputMismatchError, VideoSource, operator_day_inputs, reconstruct_dataset
    from ml.serving import registered_name

    if config.workers < 1:
        raise dg.Failure(f"operator_trajectories config: workers must be >= 1 (got {config.workers})")
    city, day, cp, out = _city_day(context, paths, compute)
    inputs, signaling = operator_day_inputs(out, roads_dir=cp.roads_dir)
    samples = compute.stage_config("samples", city)
    video = None
    if config.method == "learned_hmm":
        _same_towers(inputs.towers, cp.table("towers"), "learned_hmm (the city's cell footprints)")
        if not cp.footprints.is_file():
            raise dg.Failure(f"learned_hmm needs the city's cell footprints ({cp.footprints}): materialise them "
                             f"first (sig2gps run {city.name} --profile {compute.profile} --select '*cell_footprints')")
        inputs = CityInputs(inputs.roads_npz, inputs.towers, pd.read_parquet(cp.footprints))
    elif config.method == "video":
        _same_towers(inputs.towers, cp.table("towers"), f"the video model {registered_name(city.name)}")
        video = VideoSource(model_uri=f"models:/{registered_name(city.name)}@{config.model_alias}",
                            tracking_uri=mlflow.uri(paths.root_path))
    kwargs = dict(video=video, duration_s=None if video else samples.window_s, eval_interval_s=samples.eval_interval_s,
                  num_workers=config.workers, ray_address=config.ray_address or None,
                  config=compute.stage_config("batch"), progress=context.log.info)
    target = out / "trajectories"
    try:  # the same inputs and method: only the buckets without a done marker are run
        res = reconstruct_dataset(signaling, target, config.method, inputs, **kwargs)
    except OutputMismatchError as exc:  # another method or changed inputs: this materialisation replaces it
        context.log.warning(f"starting over: {exc}")
        res = reconstruct_dataset(signaling, target, config.method, inputs, overwrite=True, **kwargs)
    meta: dict = {
        "dagster/row_count": res.n_rows, "path": dg.MetadataValue.path(str(target)), "method": config.method,
        "records": res.n_records, "windows": res.n_windows, "failed_windows": res.n_failed,
        "failures_by_reason": dg.MetadataValue.json(res.failures_by_reason), "fallback_windows": res.n_fallback,
        "workers": res.num_workers, "buckets": res.n_buckets, "buckets_run": res.n_buckets_run,
        "buckets_from": res.buckets_from, "seconds": round(res.seconds, 2),
        "windows_per_s": round(res.windows_per_s, 2) if res.n_windows_run else 0.0,
        "windows_per_s_per_worker": round(res.windows_per_s / res.num_workers, 2) if res.n_windows_run else 0.0,
        "ray_job_id": res.ray_job_id or "",
    }
    if res.n_buckets_run and res.peak_rss_mb_per_worker == res.peak_rss_mb_per_worker:
        meta["peak_rss_mb_per_worker"] = res.peak_rss_mb_per_worker
    if res.dashboard_url:
        meta["ray_dashboard"] = dg.MetadataValue.url(res.dashboard_url)
    return dg.MaterializeResult(metadata=meta)
