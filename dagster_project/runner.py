"""Materialise a city's assets in-process, recorded in the repository's Dagster instance."""

from __future__ import annotations

from pathlib import Path

import dagster as dg


def resources_for(profile: str, root: Path) -> dict:
    from dagster_project.resources import ComputeResource, MLflowResource, PathsResource

    return {
        "paths": PathsResource(root=str(root)),
        "mlflow": MLflowResource(),
        "compute": ComputeResource(profile=profile),
    }


def parse_selection(selection: str) -> dg.AssetSelection:
    """Dagster selection syntax, plus comma-separated lists as a union (``road_network,cell_towers``)."""
    parts = [p.strip() for p in selection.split(",") if p.strip()]
    if not parts:
        raise ValueError("empty asset selection")
    sel = dg.AssetSelection.from_string(parts[0])
    for p in parts[1:]:
        sel = sel | dg.AssetSelection.from_string(p)
    return sel


def run_city(city: str, selection: str = "*", profile: str = "demo", root: Path | None = None,
             instance: dg.DagsterInstance | None = None, raise_on_error: bool = False) -> bool:
    """Materialise ``selection`` (Dagster selection syntax) for one city partition; True on success."""
    from ml.cities import load_city
    from ml.cities.config import project_root
    from dagster_project.definitions import all_assets_and_checks
    from dagster_project.sensors import sync_city_partitions

    root = root or project_root()
    load_city(city, root)  # clear error for an unknown or invalid city before Dagster starts
    instance = instance or dg.DagsterInstance.get()
    sync_city_partitions(instance)
    result = dg.materialize(
        all_assets_and_checks(),
        selection=parse_selection(selection),
        partition_key=city,
        instance=instance,
        resources=resources_for(profile, root),
        raise_on_error=raise_on_error,
        tags={"sig2gps/profile": profile, "sig2gps/launched_by": "cli"},
    )
    mats = [e.asset_key.to_user_string() for e in result.get_asset_materialization_events()]
    print(f"run {result.run_id}: {'success' if result.success else 'FAILED'}; materialised {len(mats)}: {', '.join(mats)}")
    if not result.success:
        for ev in result.all_events:
            if ev.is_step_failure:
                err = ev.step_failure_data.error
                print(f"step {ev.step_key} failed: {err.message.strip() if err else ''}")
    return result.success


def where_to_look(city: str, root: Path) -> str:
    out = root / "outputs" / city
    return "\n".join([
        "",
        "Where to look:",
        "  Dagster UI:  make ui         -> http://127.0.0.1:3000 (assets, runs, checks, metadata)",
        "  MLflow UI:   make mlflow-ui  -> http://127.0.0.1:5000 (runs per stage, registered models)",
        f"  Reports:     {out}/report/evaluation.md and evaluation.json",
        f"  Data:        {root}/data/{city}/ (Parquet tables, DVC-versioned)",
        f"  Gallery:     {out}/render/gallery/",
    ])
