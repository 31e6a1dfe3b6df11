"""The Dagster code location: ``defs``."""

from __future__ import annotations

import dagster as dg

from dagster_project.assets import (evaluation, footprints, next_gps, operator, raw, render, roads, training, transfer,
                                    versioning)
from dagster_project.partitions import cities_partitions
from dagster_project.resources import ComputeResource, MLflowResource, PathsResource
from dagster_project.sensors import city_registry_sensor

# Asset modules, upstream first. Each module's assets and checks are collected automatically.
ASSET_MODULES = [roads, raw, footprints, versioning, render, training, evaluation, next_gps, operator, transfer]


ASSETS = dg.load_assets_from_modules(ASSET_MODULES)


def partitioned_by(partitions_def: dg.PartitionsDefinition) -> dg.AssetSelection:
    """The assets partitioned by ``partitions_def``: a run has one partition key, so it holds one kind of asset."""
    return dg.AssetSelection.assets(*[k for a in ASSETS if isinstance(a, dg.AssetsDefinition)
                                      and a.partitions_def == partitions_def for k in a.keys])


#: every asset of one city partition (not the per-city-and-day ones of group ``operator``), each step in its own
#: process (``multiprocess_executor``: steps that do not depend on each other run at once, up to ``max_concurrent``;
#: the ``gpu`` and ``dvc`` pools still run one step at a time). The same definitions run on a cluster with another
#: executor, e.g. ``dagster_k8s.k8s_job_executor`` or ``dagster_celery.celery_executor`` (docs/architecture.md,
#: "Running beyond one process").
city_pipeline = dg.define_asset_job("city_pipeline", selection=partitioned_by(cities_partitions),
                                    partitions_def=cities_partitions,
                                    executor_def=dg.multiprocess_executor)

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=dg.load_asset_checks_from_modules(ASSET_MODULES),
    jobs=[city_pipeline],
    resources={"paths": PathsResource(), "mlflow": MLflowResource(), "compute": ComputeResource()},
    sensors=[city_registry_sensor],
)


def city_pipeline_job() -> dg.JobDefinition:
    """The resolved ``city_pipeline`` (what ``dg.reconstructable`` loads again in each step's process)."""
    return defs.resolve_job_def("city_pipeline")
