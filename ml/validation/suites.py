"""Great Expectations 1.x suites for the data-contract tables, run on an ephemeral, cached context.

The GE context is created once per process (creating it costs about a second) and holds one pandas
data source with one dataframe asset and one whole-dataframe batch definition per table. Suites
are built per call (cheap) because their parameters depend on the city bbox and the reference ids;
they are never added to the context's store, so nothing accumulates.
"""

from __future__ import annotations

import os

# No telemetry, no network: must be set before great_expectations is imported.
os.environ["GX_ANALYTICS_ENABLED"] = "false"

import threading  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import great_expectations as gx  # noqa: E402
import great_expectations.expectations as gxe  # noqa: E402
import pandas as pd  # noqa: E402

from ml.validation.contract import EVENTS, FOOTPRINT_KINDS, SPLITS, TABLE_COLUMNS, TRUTH_KINDS  # noqa: E402
from ml.validation.context import ValidationContext  # noqa: E402

_DATA_SOURCE = "sig2gps_tables"
_BATCH_DEFINITION = "whole_dataframe"
_LOCK = threading.Lock()
_STATE: dict[str, Any] = {}

#: Physical ranges of the contract (inclusive unless noted).
RANGES: dict[tuple[str, str], tuple[float | None, float | None]] = {
    ("towers", "azimuth_deg"): (0.0, 360.0),
    ("towers", "height_m"): (0.0, 300.0),  # strictly above 0
    ("towers", "tx_power_dbm"): (0.0, 80.0),
    ("gps", "speed_mps"): (0.0, 70.0),
    ("mr", "rsrp_dbm"): (-140.0, -44.0),  # 3GPP TS 36.133 reporting range
    ("pairs", "overlap_h"): (0.0, 24.0),
    ("pairs", "moving_h"): (0.0, 24.0),
    ("pairs", "mismatch_m"): (0.0, None),
    ("pairs", "margin"): (0.0, None),
    ("samples", "n_records"): (1, None),
    ("samples", "tile_size_m"): (0.0, None),  # strictly above 0
    ("footprints", "n_records"): (1, None),
    ("footprints", "spread_m"): (0.0, None),
    ("footprints", "weight"): (0.0, 1.0),  # strictly above 0
}
_STRICT_MIN = {("towers", "height_m"), ("samples", "tile_size_m"), ("footprints", "weight")}
#: Columns that may hold nulls (all other required columns must not).
NULLABLE: set[tuple[str, str]] = {("pairs", "margin"), ("truth_links", "vehicle_id")}
#: Tables whose ``lon``/``lat`` must lie inside the city bbox (with margin).
BBOX_TABLES = ("towers", "gps", "sample_truth")
#: (table, column) -> (context attribute, referenced table.column) for foreign keys (checked with numpy in
#: ``ml.validation.validate``, not in the GE suite; see :func:`build_suite`).
FOREIGN_KEYS: dict[tuple[str, str], tuple[str, str]] = {
    ("signaling", "cell_id"): ("tower_cell_ids", "towers.cell_id"),
    ("mr", "cell_id"): ("tower_cell_ids", "towers.cell_id"),
    ("pairs", "device_id"): ("device_ids", "signaling.device_id"),
    ("pairs", "vehicle_id"): ("vehicle_ids", "gps.vehicle_id"),
    ("samples", "device_id"): ("device_ids", "signaling.device_id"),
    ("samples", "vehicle_id"): ("vehicle_ids", "gps.vehicle_id"),
    ("sample_truth", "sample_id"): ("sample_ids", "samples.sample_id"),
    ("footprints", "cell_id"): ("tower_cell_ids", "towers.cell_id"),
}


@dataclass(frozen=True)
class _GxHandles:
    context: Any
    batch_definitions: dict[str, Any]


def gx_handles() -> _GxHandles:
    """The process-wide ephemeral GE context and its per-table batch definitions (created once)."""
    with _LOCK:
        if "handles" not in _STATE:
            from great_expectations.data_context.types.base import ProgressBarsConfig

            context = gx.get_context(mode="ephemeral")
            context.enable_analytics(False)  # belt and braces with GX_ANALYTICS_ENABLED=false
            context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
            source = context.data_sources.add_pandas(_DATA_SOURCE)
            batch_definitions = {}
            for table in TABLE_COLUMNS:
                asset = source.add_dataframe_asset(name=table)
                batch_definitions[table] = asset.add_batch_definition_whole_dataframe(_BATCH_DEFINITION)
            _STATE["handles"] = _GxHandles(context=context, batch_definitions=batch_definitions)
        return _STATE["handles"]


def build_suite(table: str, usable: set[str], context: ValidationContext) -> gx.ExpectationSuite:
    """The GE suite of ``table`` restricted to ``usable`` columns (present with the right dtype).

    Every expectation carries ``meta = {"rule", "column", "detail"}`` so results map back to
    :class:`~ml.validation.report.RuleFailure`. Foreign keys are not in the suite (see
    :data:`FOREIGN_KEYS`): GE's ``in_set`` serialises the whole value set into its metric ids, which
    took 17 s for 100k reference ids, so they run as a vectorised ``isin`` in the same report.
    """
    gx_handles()  # suites resolve the active GE project on construction
    suite = gx.ExpectationSuite(name=f"sig2gps_{table}")

    def add(expectation_cls: type, columns: tuple[str, ...], rule: str, detail: str, **kwargs: Any) -> None:
        if not all(c in usable for c in columns):
            return
        meta = {"rule": rule, "column": "+".join(columns) if columns else None, "detail": detail}
        suite.add_expectation(expectation_cls(meta=meta, **kwargs))

    add(gxe.ExpectTableRowCountToBeBetween, (), "non_empty", "table must have at least one row", min_value=1)
    for column in TABLE_COLUMNS[table]:
        if (table, column) not in NULLABLE:
            add(gxe.ExpectColumnValuesToNotBeNull, (column,), "not_null", "must not be null", column=column)

    for (tbl, column), (lo, hi) in RANGES.items():
        if tbl != table:
            continue
        strict = (tbl, column) in _STRICT_MIN
        low_txt = "" if lo is None else (f"> {lo:g}" if strict else f">= {lo:g}")
        high_txt = "" if hi is None else f"<= {hi:g}"
        add(
            gxe.ExpectColumnValuesToBeBetween, (column,), "in_range",
            f"must be {' and '.join(t for t in (low_txt, high_txt) if t)}",
            column=column, min_value=lo, max_value=hi, strict_min=strict,
        )

    if table in BBOX_TABLES:
        for column, (lo, hi) in (("lon", context.lon_bounds()), ("lat", context.lat_bounds())):
            add(
                gxe.ExpectColumnValuesToBeBetween, (column,), "inside_city_bbox",
                f"must lie in [{lo:.5f}, {hi:.5f}]: the city bbox plus {context.margin_m:g} m",
                column=column, min_value=lo, max_value=hi,
            )

    if table == "towers":
        add(gxe.ExpectColumnValuesToBeUnique, ("cell_id",), "unique", "cell_id must be unique", column="cell_id")
    elif table == "signaling":
        add(gxe.ExpectColumnValuesToBeInSet, ("event",), "in_set", f"must be one of {', '.join(EVENTS)}",
            column="event", value_set=list(EVENTS))
    elif table == "pairs":
        add(gxe.ExpectColumnValuesToMatchRegex, ("day",), "date_format", "must be a date YYYY-MM-DD",
            column="day", regex=r"^\d{4}-\d{2}-\d{2}$")
        add(gxe.ExpectCompoundColumnsToBeUnique, ("device_id", "day"), "unique",
            "one accepted pair per device and day", column_list=["device_id", "day"])
    elif table == "samples":
        add(gxe.ExpectColumnValuesToBeUnique, ("sample_id",), "unique", "sample_id must be unique", column="sample_id")
        add(gxe.ExpectColumnValuesToBeInSet, ("split",), "in_set", f"must be one of {', '.join(SPLITS)}",
            column="split", value_set=list(SPLITS))
        add(gxe.ExpectColumnPairValuesAToBeGreaterThanB, ("t1", "t0"), "t1_after_t0", "t1 must be after t0",
            column_A="t1", column_B="t0", or_equal=False)
    elif table == "footprints":
        add(gxe.ExpectColumnValuesToBeInSet, ("kind",), "in_set", f"must be one of {', '.join(FOOTPRINT_KINDS)}",
            column="kind", value_set=list(FOOTPRINT_KINDS))
        add(gxe.ExpectCompoundColumnsToBeUnique, ("cell_id", "left_cell_id", "point_x", "point_y"), "unique",
            "one row per key and road point", column_list=["cell_id", "left_cell_id", "point_x", "point_y"])
    elif table == "truth_links":
        add(gxe.ExpectColumnValuesToBeInSet, ("kind",), "in_set", f"must be one of {', '.join(TRUTH_KINDS)}",
            column="kind", value_set=list(TRUTH_KINDS))

    return suite


def run_suite(table: str, df: pd.DataFrame, suite: gx.ExpectationSuite) -> Any:
    """Validate ``df`` (whole dataframe as one batch) against ``suite``; returns GE's suite result."""
    handles = gx_handles()
    batch = handles.batch_definitions[table].get_batch(batch_parameters={"dataframe": df})
    return batch.validate(suite, result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5})
