"""Operator scale in Dagster: a simulated operator day, its out-of-core pairing and windows, per city and day.

Partitioned by ``city x day`` (``city_days_partitions``), so months of signaling are materialised and
backfilled one day at a time; each day's files live in ``data/<city>/<profile>/operator/<day>/``
(``ml.paths.CityPaths.operator_day``). Models stay per city; ``road_network``
(per city) maps to every day of its city (Dagster infers the multi-to-single-dimension mapping). Sizes come from the profile (``operator``
stage: 36 phones in ``ci``, 2,000 in ``demo``, the issue's 100,000 phones and 2,000 taxis in ``gpu``);
the 100k-phone growth measurements are ``bench/operator_scale.py``.
"""

import glob

import dagster as dg
import pandas as pd

from ml.cities import load_city
from ml.io import atomic_dir, write_parquet_atomic
from dagster_project.code_versions import code_version
from dagster_project.partitions import city_days_partitions
from dagster_project.resources import ComputeResource, PathsResource

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
