"""The session's shared materialised city (``ci_city`` in conftest.py): complete, and copies are private.

Every test that needs a materialised tiny city reads ``ci_city`` or works on ``ci_city.copy_to(tmp)``;
this module checks the contract those tests rely on.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef

pytestmark = pytest.mark.slow  # the whole ci pipeline, once per session (shared with every ci_city test)


def test_every_city_asset_is_materialised_in_one_run(ci_city) -> None:
    from dagster_project.definitions import defs, partitioned_by
    from dagster_project.partitions import cities_partitions

    keys = dg.AssetSelection.all().resolve(defs.resolve_asset_graph()) & set(
        partitioned_by(cities_partitions).resolve(defs.resolve_asset_graph()))
    assert {"road_network", "rendered_videos", "sft_checkpoint", "evaluation_report"} <= {k.to_user_string() for k in keys}
    for key in keys:
        ev = ci_city.instance.get_latest_materialization_event(key)
        assert ev is not None and ev.run_id == ci_city.run_id and ev.asset_materialization.partition == ci_city.city, key
    report = json.loads((ci_city.paths.outputs / "report" / "evaluation.json").read_text())
    assert report["city"] == ci_city.city and report["n_samples"] > 0
    assert (ci_city.root / "mlflow" / "mlflow.db").is_file() and ci_city.home.is_dir()


def test_a_copy_is_private_and_carries_the_instance(ci_city, tmp_path: Path) -> None:
    before = sorted(str(p.relative_to(ci_city.root)) for p in ci_city.root.rglob("*"))
    copy = ci_city.copy_to(tmp_path / "project")
    assert not (copy / "mlflow").exists()  # absolute artifact paths: the copy makes its own store
    assert (copy / "data" / ci_city.city).is_dir() and (copy / "cities" / f"{ci_city.city}.toml").is_file()
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(copy / ".dagster_home"))) as inst:
        ev = inst.get_latest_materialization_event(dg.AssetKey("samples"))
        assert ev is not None and ev.run_id == ci_city.run_id
    # changing the copy leaves the shared root as it was
    towers = ci_city.paths.table("towers")
    (copy / towers.relative_to(ci_city.root)).write_bytes(b"corrupt")
    assert towers.read_bytes() != b"corrupt"
    assert sorted(str(p.relative_to(ci_city.root)) for p in ci_city.root.rglob("*")) == before
    assert (ci_city.copy_to(tmp_path / "with_store", mlflow=True) / "mlflow" / "mlflow.db").is_file()
