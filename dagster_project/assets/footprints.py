"""``cell_footprints``: where each cell's phones really were, learned from the train windows' paired GPS."""

import dagster as dg
import numpy as np

from ml.io import read_table, write_parquet_atomic
from ml.observation import FOOTPRINT_SPLIT, build_cell_footprints, footprint_problems, footprint_summary
from ml.validation import validate_table
from dagster_project.assets.raw import city_context
from dagster_project.checks import ge_check_spec
from dagster_project.code_versions import code_version
from dagster_project.metadata import image_markdown, table_asset_metadata
from dagster_project.partitions import cities_partitions
from dagster_project.resources import ComputeResource, PathsResource

TRAIN_ONLY_CHECK = "footprints_from_train"


@dg.asset(partitions_def=cities_partitions, group_name="observation", deps=["samples", "sample_truth"],
          code_version=code_version("footprints"), kinds={"pandas", "parquet"},
          check_specs=[ge_check_spec("cell_footprints", "footprints"),
                       dg.AssetCheckSpec(TRAIN_ONLY_CHECK, asset="cell_footprints", blocking=True,
                                         description="Finite, each key's weights sum to one, every train record "
                                                     "counted once and nothing else, no device/vehicle/sample id.")])
def cell_footprints(context: dg.AssetExecutionContext, paths: PathsResource, compute: ComputeResource):
    """Per cell and per (left, entered) handover pair: where its records' true positions lie on the roads
    (train windows only), with record count, mean and spread; ``learned_hmm`` reads them."""
    from ml.observation.preview import plot_footprints

    cc = city_context(context, paths, compute)
    cfg = compute.stage_config("footprints", cc.city)
    train = cc.sample_contexts(FOOTPRINT_SPLIT)  # only the train windows are ever loaded here
    fp = build_cell_footprints(train, cc.net, cfg)
    n_train_records = int(sum(len(c.records) for c in train))
    problems = footprint_problems(fp, n_train_records)
    yield dg.AssetCheckResult(check_name=TRAIN_ONLY_CHECK, passed=not problems, severity=dg.AssetCheckSeverity.ERROR,
                              metadata={"train_windows": len(train), "train_records": n_train_records,
                                        "problems": "; ".join(problems) or "none"})
    if problems:
        raise dg.Failure(description=f"{cc.paths.footprints}: " + "; ".join(problems))
    towers = read_table(cc.paths.table("towers"), "towers")
    if fp.empty:  # no paired history: nothing to learn, every record reads the hand-made model
        yield dg.AssetCheckResult(check_name="footprints_contract", passed=True,
                                  metadata={"note": "no train window with GPS truth: empty table"})
    else:
        report = validate_table("footprints", fp, cc.validation_context(tower_cell_ids=towers["cell_id"].to_numpy()))
        yield dg.AssetCheckResult(check_name="footprints_contract", passed=report.success,
                                  metadata=report.to_metadata(), severity=dg.AssetCheckSeverity.ERROR)
        report.raise_if_failed()
    write_parquet_atomic(fp, cc.paths.footprints)

    summary = footprint_summary(fp)
    cells = summary[summary["kind"] == "cell"]
    per_cell = cells["n_records"].to_numpy()
    meta = {**table_asset_metadata(fp, cc.paths.footprints), "train_windows": len(train),
            "train_records": n_train_records,
            "observation_model": "learned (footprints shrunk toward the hand-made model by count)" if len(fp)
            else "hand-made for every record: no paired history",
            "cells_with_history": int(len(cells)), "cells_in_towers": int(len(towers)),
            "handover_pairs_with_history": int((summary["kind"] == "handover").sum()),
            "records_per_cell_median": float(np.median(per_cell)) if len(per_cell) else 0.0,
            "records_per_cell_p10": float(np.percentile(per_cell, 10)) if len(per_cell) else 0.0,
            "bandwidth_m": cfg.bandwidth_m, "prior_strength": cfg.prior_strength,
            "point_spacing_m": cfg.point_spacing_m}
    test = cc.sample_contexts("test")  # read for one coverage figure only: nothing is learned from it
    test_cells = np.concatenate([c.records["cell_id"].to_numpy() for c in test]) if test else np.zeros(0, np.int64)
    if len(test_cells):
        meta["test_records_with_cell_history"] = round(float(np.isin(test_cells, cells["cell_id"]).mean()), 4)
    if len(fp):
        from ml.observation import TowerTable

        preview = plot_footprints(fp, cc.net, TowerTable(towers, cc.net.crs), cc.paths.outputs / "footprints.png",
                                  title=f"{cc.city.name}: six cells' footprints (x learned mean, + coverage centre)")
        meta["preview"] = image_markdown(preview, f"{cc.city.name} footprints")
    context.log.info(f"{cc.city.name}: footprints of {len(cells)} cells and "
                     f"{meta['handover_pairs_with_history']} handover pairs from {n_train_records} train records")
    yield dg.MaterializeResult(metadata=meta)
