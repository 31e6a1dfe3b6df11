"""``dataset_version``: DVC snapshot of one city's data (for the run's profile): the raw tables and the cell footprints."""


import dagster as dg

from ml.versioning import version_data
from dagster_project.code_versions import code_version
from dagster_project.partitions import cities_partitions
from dagster_project.resources import ComputeResource, PathsResource

# the city's data: the raw tables and what is learned from them as data (the cell footprints)
DATA_ASSETS = ["road_network", "cell_towers", "taxi_gps", "signaling_records", "measurement_reports", "raw_pairs",
               "samples", "sample_truth", "cell_footprints"]


@dg.asset(
    partitions_def=cities_partitions,
    group_name="raw",
    deps=[dg.AssetKey(k) for k in DATA_ASSETS],
    pool="dvc",
    kinds={"dvc"},
    code_version=code_version("dataset_version"),
    retry_policy=dg.RetryPolicy(max_retries=2, delay=2.0, backoff=dg.Backoff.EXPONENTIAL),
)
def dataset_version(context: dg.AssetExecutionContext, paths: PathsResource,
                    compute: ComputeResource) -> dg.MaterializeResult:
    """``dvc add data/<city>/<profile>`` in one serialised step; the hash is logged to every later MLflow run
    of the city. Retried: DVC can fail on a transient lock held by another tool."""
    cp = paths.city(context.partition_key, compute.profile)
    version = version_data(paths.root_path, cp.data)
    context.log.info(f"{cp.data}: data version {version}")
    return dg.MaterializeResult(metadata={"data_version": version, "profile": compute.profile,
                                          "dvc_file": dg.MetadataValue.path(str(cp.data_version_file))},
                                data_version=dg.DataVersion(version))
