"""Great Expectations gates: validate tables *before* they are written; and the model and report checks' results.

A failing table records a failed (blocking) asset check with the report as metadata and stops the
run; nothing is written, so earlier materialisations stay untouched and downstream assets do not
run. When every table passes, all are written atomically and the checks recorded as passed.
"""

from collections.abc import Iterator, Sequence
from pathlib import Path

import dagster as dg
import pandas as pd

from ml.checks import CheckOutcome
from ml.io import write_parquet_atomic
from ml.validation import ValidationContext, validate_table


def ge_check_spec(asset: str, table: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        name=f"{table}_contract",
        asset=asset,
        blocking=True,
        description=f"Great Expectations suite for the '{table}' table: columns, types, ranges, "
        "monotonic time per id, coordinates inside the city, foreign keys.",
    )


def validate_then_write(
    context: dg.AssetExecutionContext,
    tables: Sequence[tuple[str, pd.DataFrame, Path]],
    vctx: ValidationContext,
    checked: Sequence[str] | None = None,
) -> Iterator[dg.AssetCheckResult]:
    """Validate every (table, df, path); write them all only if all pass.

    ``checked`` names the tables that have an asset check spec (default: all); the others are
    validated too but reported only through the failure message.
    """
    checked = [t for t, _, _ in tables] if checked is None else list(checked)
    reports = {t: validate_table(t, df, vctx) for t, df, _ in tables}
    failed = [r for r in reports.values() if not r.success]
    for t in checked:
        yield dg.AssetCheckResult(check_name=f"{t}_contract", passed=reports[t].success,
                                  metadata=reports[t].to_metadata(), severity=dg.AssetCheckSeverity.ERROR)
    if failed:
        messages = []
        for r in failed:
            try:
                r.raise_if_failed()
            except Exception as exc:  # noqa: BLE001 - collected into one Dagster failure with the same text
                messages.append(str(exc))
        raise dg.Failure(description="\n\n".join(messages), metadata={"tables": ", ".join(r.table for r in failed)})
    for t, df, path in tables:
        # an imported frame carries its source file in attrs (for messages): pandas would store attrs in
        # the Parquet schema, so the dataset would depend on where the user kept their files
        if df.attrs:
            df = df.copy(deep=False)
            df.attrs = {}
        write_parquet_atomic(df, path)
        context.log.info(f"{t}: {len(df):,} rows validated ({reports[t].n_rules} rules), written to {path}")


def outcome_result(outcome: "CheckOutcome") -> dg.AssetCheckResult:
    """An ``ml.checks.CheckOutcome`` as Dagster's check result: severity ERROR, so that a failed blocking check
    stops the assets below it; the outcome's description and metadata are what the UI shows.

    The checks that use it (``@dg.asset_check(..., blocking=True)`` beside their asset) run as their own step
    after the asset, like the ML example's model checks, so a check can be run again from the UI on what is on
    disk. They carry no ``partitions_def`` (a Dagster preview feature): in a city's run they read the run's
    partition key, as the Great Expectations specs do."""
    return dg.AssetCheckResult(passed=bool(outcome.passed), description=outcome.description,
                               metadata=dict(outcome.metadata), severity=dg.AssetCheckSeverity.ERROR)
