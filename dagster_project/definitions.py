"""The Dagster code location: ``defs``."""

from __future__ import annotations

import dagster as dg

from dagster_project.assets import evaluation, raw, render, roads, training, versioning
from dagster_project.resources import ComputeResource, MLflowResource, PathsResource
from dagster_project.sensors import city_registry_sensor

# Asset modules, upstream first. Each module's assets and checks are collected automatically.
ASSET_MODULES = [roads, raw, versioning, render, training, evaluation]


defs = dg.Definitions(
    assets=dg.load_assets_from_modules(ASSET_MODULES),
    asset_checks=dg.load_asset_checks_from_modules(ASSET_MODULES),
    resources={"paths": PathsResource(), "mlflow": MLflowResource(), "compute": ComputeResource()},
    sensors=[city_registry_sensor],
)
