"""The Dagster code location: ``defs``."""

from __future__ import annotations

import importlib

import dagster as dg

from dagster_project.resources import ComputeResource, MLflowResource, PathsResource
from dagster_project.sensors import city_registry_sensor

# Asset modules, upstream first. Each module's assets and checks are collected automatically.
ASSET_MODULES = [
    "dagster_project.assets.roads",
    "dagster_project.assets.raw",
    "dagster_project.assets.versioning",
    "dagster_project.assets.render",
    "dagster_project.assets.training",
    "dagster_project.assets.evaluation",
]


def _modules():
    mods = []
    for name in ASSET_MODULES:
        try:
            mods.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency, not a stage still to come
                raise
    return mods


def all_assets_and_checks() -> list:
    mods = _modules()
    return [*dg.load_assets_from_modules(mods), *dg.load_asset_checks_from_modules(mods)]


defs = dg.Definitions(
    assets=dg.load_assets_from_modules(_modules()),
    asset_checks=dg.load_asset_checks_from_modules(_modules()),
    resources={"paths": PathsResource(), "mlflow": MLflowResource(), "compute": ComputeResource()},
    sensors=[city_registry_sensor],
)
