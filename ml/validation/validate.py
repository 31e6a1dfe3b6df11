"""Entry point: validate one data-contract table and return one report covering every rule.

Schema (presence, dtypes, parseable timestamps) is checked in pandas, value rules in a Great
Expectations suite, foreign keys and per-id time order vectorised in numpy; all land in the same
:class:`~ml.validation.report.ValidationReport`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Mapping

import numpy as np
import pandas as pd

from ml.validation.context import ValidationContext
from ml.validation.contract import KIND_LABEL, SOURCE_ATTR, SOURCE_ROW_INDEX, TABLE_COLUMNS, dtype_matches
from ml.validation.report import MAX_EXAMPLES, RuleFailure, ValidationReport, example_rows, json_safe

#: Column identifying the entity of a row, shown in every example.
ID_COLUMN: dict[str, str] = {
    "towers": "cell_id", "gps": "vehicle_id", "signaling": "device_id", "mr": "device_id",
    "pairs": "device_id", "samples": "sample_id", "sample_truth": "sample_id", "truth_links": "device_id",
    "footprints": "cell_id",
}
#: Tables whose ``ts`` must be non-decreasing within each id (rows taken in frame order).
MONOTONIC_BY: dict[str, str] = {"gps": "vehicle_id", "signaling": "device_id", "mr": "device_id", "sample_truth": "sample_id"}


def _positional(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a 0..n-1 RangeIndex so GE's unexpected indices are row positions (no copy under CoW)."""
    idx = df.index
    if isinstance(idx, pd.RangeIndex) and idx.start == 0 and idx.step == 1:
        return df
    return df.reset_index(drop=True)


def _check_schema(table: str, df: pd.DataFrame) -> tuple[set[str], list[RuleFailure], int]:
    """Presence and dtype of each required column. Returns usable columns, failures, rules run."""
    failures: list[RuleFailure] = []
    usable: set[str] = set()
    n_rules = 1
    dupes = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
    if dupes:
        failures.append(RuleFailure(table, "+".join(dupes), "unique_column_names", len(df),
                                    detail="column names appear more than once"))
    id_col = ID_COLUMN[table]
    for column, kind in TABLE_COLUMNS[table].items():
        n_rules += 1
        if column not in df.columns:
            present = ", ".join(map(str, df.columns)) or "none"
            failures.append(RuleFailure(table, column, "column_exists", len(df),
                                        detail=f"required column is missing (columns present: {present})"))
            continue
        if column in dupes:
            continue
        n_rules += 1
        series = df[column]
        if dtype_matches(series, kind):
            usable.add(column)
            continue
        if kind == "ts":
            failures.append(_timestamp_failure(table, column, df, id_col))
        else:
            failures.append(RuleFailure(table, column, "dtype", len(df),
                                        detail=f"expected {KIND_LABEL[kind]}, got {series.dtype}"))
    return usable, failures, n_rules


def _timestamp_failure(table: str, column: str, df: pd.DataFrame, id_col: str) -> RuleFailure:
    """Explain why a timestamp column has the wrong dtype: unparsable values, naive times, or text."""
    series = df[column]
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return RuleFailure(table, column, "dtype", len(df),
                           detail=f"expected UTC timestamps, got time zone {series.dtype.tz}")
    if pd.api.types.is_datetime64_dtype(series.dtype):
        return RuleFailure(table, column, "dtype", len(df),
                           detail=f"expected {KIND_LABEL['ts']}, got time-zone-naive {series.dtype}")
    if pd.api.types.is_string_dtype(series.dtype) or series.dtype == object:
        parsed = pd.to_datetime(series, utc=True, errors="coerce", format="ISO8601")
        bad = np.flatnonzero((parsed.isna() & series.notna()).to_numpy())
        if len(bad):
            values = ", ".join(repr(str(series.iat[i])) for i in bad[:MAX_EXAMPLES])
            return RuleFailure(table, column, "timestamp_parseable", len(bad),
                               example_rows(df, bad, [id_col, column]),
                               detail=f"values cannot be parsed as timestamps, e.g. {values}")
        return RuleFailure(table, column, "dtype", len(df),
                           detail=f"expected {KIND_LABEL['ts']}, got text timestamps (import through ml.ingest)")
    return RuleFailure(table, column, "dtype", len(df), detail=f"expected {KIND_LABEL['ts']}, got {series.dtype}")


def _check_monotonic(table: str, df: pd.DataFrame, id_col: str) -> RuleFailure | None:
    """Rows whose ``ts`` is earlier than the previous row of the same id (frame order), vectorised."""
    codes, _ = pd.factorize(df[id_col], use_na_sentinel=True)
    ts = df["ts"].array.asi8  # int64 in the column's own unit; NaT is int64 min
    order = np.argsort(codes, kind="stable")
    c, t = codes[order], ts[order]
    nat = np.iinfo(np.int64).min
    valid = (c[1:] == c[:-1]) & (c[1:] >= 0) & (t[1:] != nat) & (t[:-1] != nat)
    bad = valid & (t[1:] < t[:-1])
    n_bad = int(bad.sum())
    if not n_bad:
        return None
    rows = order[1:][bad]
    prev = order[:-1][bad]
    examples = example_rows(df, rows, [id_col, "ts"])
    for ex, p in zip(examples, prev[:MAX_EXAMPLES]):
        ex["previous_row"] = int(p)
        ex["previous_ts"] = json_safe(df["ts"].iat[int(p)])
    return RuleFailure(table, "ts", "non_decreasing_per_id", n_bad, examples,
                       detail=f"ts must not decrease within each {id_col}")


def _check_foreign_key(table: str, df: pd.DataFrame, column: str, ref: pd.Index, target: str, id_col: str) -> RuleFailure | None:
    """Non-null values of ``column`` missing from the reference ids.

    Vectorised: factorise the column, look its unique values up in the reference's hash index,
    broadcast back (pandas' Arrow-string ``isin`` loops in Python over the reference set).
    """
    codes, uniques = pd.factorize(df[column], use_na_sentinel=True)
    lookup = np.asarray(uniques, dtype=object) if ref.dtype == object else np.asarray(uniques)
    known = ref.get_indexer(lookup) >= 0 if len(lookup) else np.zeros(0, dtype=bool)
    bad = (codes >= 0) & ~known[np.maximum(codes, 0)] if len(known) else np.zeros(len(codes), dtype=bool)
    n_bad = int(bad.sum())
    if not n_bad:
        return None
    rows = np.flatnonzero(bad)
    return RuleFailure(table, column, "foreign_key", n_bad, example_rows(df, rows, [id_col, "ts", column]),
                       detail=f"must exist in {target}")


def _ge_failures(table: str, df: pd.DataFrame, result: object, id_col: str) -> list[RuleFailure]:
    """Translate GE's suite result into :class:`RuleFailure` records (examples from row positions)."""
    failures: list[RuleFailure] = []
    for r in result.results:  # type: ignore[attr-defined]
        meta = r.expectation_config.meta or {}
        rule, column, detail = meta.get("rule", r.expectation_config.type), meta.get("column"), meta.get("detail", "")
        exc = r.exception_info or {}
        if exc.get("raised_exception") or any(isinstance(v, dict) and v.get("raised_exception") for v in exc.values()):
            messages = [exc.get("exception_message")] + [v.get("exception_message") for v in exc.values() if isinstance(v, dict)]
            msg = "; ".join(m for m in messages if m)[:300]
            failures.append(RuleFailure(table, column, rule, len(df), detail=f"{detail}; the check raised: {msg}"))
            continue
        if r.success:
            continue
        res = r.result or {}
        n_failed = res.get("unexpected_count")
        if n_failed is None:  # table-level expectation (row count)
            failures.append(RuleFailure(table, column, rule, 0, detail=f"{detail} (observed {res.get('observed_value')})"))
            continue
        cols = [id_col, "ts"] + (column.split("+") if column else [])
        rows = res.get("partial_unexpected_index_list") or []
        failures.append(RuleFailure(table, column, rule, int(n_failed), example_rows(df, rows, cols), detail=detail))
    return failures


def validate_table(name: str, df: pd.DataFrame, context: ValidationContext) -> ValidationReport:
    """Validate one data-contract table and report every broken rule (never raises on bad data).

    Rules: required columns present with contract dtypes (timestamps parseable, UTC); then, in one
    Great Expectations suite on the columns that passed, non-empty table, not-null, ranges, lon/lat
    inside the city bbox plus ``context.margin_m``, categorical sets and uniqueness; finally, with
    numpy/pandas in the same report, foreign keys (against the reference ids in ``context``;
    skipped and listed in ``report.skipped`` when absent) and non-decreasing ``ts`` per id.
    Call ``report.raise_if_failed()`` to stop a pipeline on failure.
    """
    if name not in TABLE_COLUMNS:
        raise ValueError(f"validate_table: unknown table '{name}' (known: {', '.join(TABLE_COLUMNS)})")
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"validate_table: table '{name}' must be a pandas DataFrame, got {type(df).__name__}")
    from ml.validation.suites import FOREIGN_KEYS, build_suite, run_suite

    start = time.perf_counter()
    source = df.attrs.get(SOURCE_ATTR) if isinstance(df.attrs.get(SOURCE_ATTR), str) else None
    file_rows = df.index.to_numpy() if source and df.index.name == SOURCE_ROW_INDEX else None
    df = _positional(df)
    id_col = ID_COLUMN[name]
    usable, failures, n_rules = _check_schema(name, df)

    suite = build_suite(name, usable, context)
    n_rules += len(suite.expectations)
    if suite.expectations:
        failures += _ge_failures(name, df, run_suite(name, df, suite), id_col)

    skipped: list[str] = []
    for (table, column), (attr, target) in FOREIGN_KEYS.items():
        if table != name or column not in usable:
            continue
        ref = getattr(context, attr)
        if ref is None:
            skipped.append(f"{column}:foreign_key ({target} not given)")
            continue
        n_rules += 1
        failure = _check_foreign_key(name, df, column, ref, target, id_col)
        if failure is not None:
            failures.append(failure)

    by = MONOTONIC_BY.get(name)
    if by and {by, "ts"} <= usable:
        n_rules += 1
        failure = _check_monotonic(name, df, by)
        if failure is not None:
            failures.append(failure)
    if file_rows is not None:
        failures = [_with_file_rows(f, file_rows) for f in failures]
    return ValidationReport(table=name, n_rows=len(df), n_rules=n_rules, failures=failures,
                            skipped=skipped, elapsed_s=time.perf_counter() - start, source=source)


def _with_file_rows(failure: RuleFailure, file_rows: np.ndarray) -> RuleFailure:
    """Examples of an imported table also name the row of the user's file (1-based data row, as ingest does)."""
    if not failure.examples:
        return failure
    examples = []
    for ex in failure.examples:
        ex = dict(ex)
        if isinstance(ex.get("row"), int) and 0 <= ex["row"] < len(file_rows):
            ex["file_row"] = int(file_rows[ex["row"]]) + 1
        if isinstance(ex.get("previous_row"), int) and 0 <= ex["previous_row"] < len(file_rows):
            ex["previous_file_row"] = int(file_rows[ex["previous_row"]]) + 1
        examples.append(ex)
    return replace(failure, examples=examples)


def validate_tables(
    tables: Mapping[str, pd.DataFrame], context: ValidationContext, raise_on_failure: bool = False
) -> dict[str, ValidationReport]:
    """Validate several tables in dependency order, filling foreign-key references from ``tables``.

    References already set in ``context`` win over those taken from ``tables``.
    """
    order = [t for t in TABLE_COLUMNS if t in tables] + [t for t in tables if t not in TABLE_COLUMNS]
    refs = ValidationContext.with_tables(context, tables)
    ctx = ValidationContext(
        lon_min=context.lon_min, lat_min=context.lat_min, lon_max=context.lon_max, lat_max=context.lat_max,
        margin_m=context.margin_m,
        tower_cell_ids=context.tower_cell_ids if context.tower_cell_ids is not None else refs.tower_cell_ids,
        device_ids=context.device_ids if context.device_ids is not None else refs.device_ids,
        vehicle_ids=context.vehicle_ids if context.vehicle_ids is not None else refs.vehicle_ids,
        sample_ids=context.sample_ids if context.sample_ids is not None else refs.sample_ids,
    )
    reports = {t: validate_table(t, tables[t], ctx) for t in order}
    if raise_on_failure:
        for report in reports.values():
            report.raise_if_failed()
    return reports
