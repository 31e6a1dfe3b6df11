"""``dataset_version``: DVC snapshot of ``data/`` after the raw stages."""


import dagster as dg

from ml.versioning import version_data
from dagster_project.partitions import cities_partitions
from dagster_project.resources import PathsResource

RAW_ASSETS = ["road_network", "cell_towers", "taxi_gps", "signaling_records", "measurement_reports", "raw_pairs", "samples"]


@dg.asset(
    partitions_def=cities_partitions,
    group_name="raw",
    deps=[dg.AssetKey(k) for k in RAW_ASSETS],
    pool="dvc",
    kinds={"dvc"},
)
def dataset_version(context: dg.AssetExecutionContext, paths: PathsResource) -> dg.MaterializeResult:
    """``dvc add data`` in one serialised step; the hash is logged to every later MLflow run."""
    version = version_data(paths.root_path)
    context.log.info(f"data version {version}")
    return dg.MaterializeResult(metadata={"data_version": version}, data_version=dg.DataVersion(version))
