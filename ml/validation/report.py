"""Validation results: one :class:`RuleFailure` per broken rule, gathered in a :class:`ValidationReport`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

MAX_EXAMPLES = 5
#: Rules about a whole column or table: their message gives no per-row count.
STRUCTURAL_RULES = frozenset({"column_exists", "dtype", "non_empty", "unique_column_names"})


class DataValidationError(ValueError):
    """A table breaks the data contract; the message names table, column, rule and example rows."""

    def __init__(self, message: str, failures: list["RuleFailure"] | None = None) -> None:
        super().__init__(message)
        self.failures: list[RuleFailure] = list(failures or [])


@dataclass(frozen=True)
class RuleFailure:
    """One broken rule.

    ``column`` is ``None`` for table-level rules (row count); several columns are joined by ``+``.
    ``examples`` holds up to :data:`MAX_EXAMPLES` offending rows as JSON-safe dicts whose ``row`` key
    is the 0-based position in the validated frame.
    """

    table: str
    column: str | None
    rule: str
    n_failed: int
    examples: list[dict[str, Any]] = field(default_factory=list)
    detail: str = ""

    def describe(self) -> str:
        """One human-readable line: ``table.column [rule]: n rows fail (detail); e.g. ...``."""
        where = f"{self.table}.{self.column}" if self.column else self.table
        if self.rule in STRUCTURAL_RULES:
            text = f"{where} [{self.rule}]: {self.detail}"
        else:
            text = f"{where} [{self.rule}]: {self.n_failed} row(s) fail"
            if self.detail:
                text += f" ({self.detail})"
        if self.examples:
            shown = "; ".join(_format_example(e) for e in self.examples[:MAX_EXAMPLES])
            text += f"; e.g. {shown}"
        return text


@dataclass
class ValidationReport:
    """Outcome of validating one table against its suite."""

    table: str
    n_rows: int
    n_rules: int
    failures: list[RuleFailure] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    #: The file an imported table was read from, as the city file names it (None for derived tables).
    source: str | None = None

    @property
    def where(self) -> str:
        """``table 'signaling'``, or ``table 'signaling' (file incoming/signaling.csv)`` for imported tables."""
        return f"table '{self.table}'" + (f" (file {self.source})" if self.source else "")

    @property
    def success(self) -> bool:
        """True when no rule failed."""
        return not self.failures

    def summary(self) -> str:
        """Multi-line text: a headline and one line per failure."""
        if self.success:
            head = f"{self.where}: {self.n_rules} rules passed on {self.n_rows} rows"
            return head + (f" (skipped: {', '.join(self.skipped)})" if self.skipped else "")
        lines = [
            f"{self.where} failed {len(self.failures)} of {self.n_rules} rules on {self.n_rows} rows"
            + (" (file rows count data rows from 1, after the header)"
               if any("file_row" in e for f in self.failures for e in f.examples) else "") + ":"
        ]
        lines += [f"  - {f.describe()}" for f in self.failures]
        return "\n".join(lines)

    def to_metadata(self) -> dict[str, Any]:
        """JSON-safe dict for Dagster asset-check (or MLflow) metadata."""
        return {
            "table": self.table,
            **({"source": self.source} if self.source else {}),
            "success": self.success,
            "n_rows": int(self.n_rows),
            "n_rules": int(self.n_rules),
            "n_failed_rules": len(self.failures),
            "failed_rules": [f"{f.column or '(table)'}:{f.rule}" for f in self.failures],
            "failures": [asdict(f) for f in self.failures],
            "skipped_rules": list(self.skipped),
            "elapsed_s": round(float(self.elapsed_s), 3),
            "summary": self.summary(),
        }

    def raise_if_failed(self) -> "ValidationReport":
        """Raise :class:`DataValidationError` listing every failure; return ``self`` when all rules pass."""
        if self.failures:
            raise DataValidationError("Data validation failed: " + self.summary(), self.failures)
        return self


def _format_example(example: dict[str, Any]) -> str:
    """``row 3: cell_id=999, ...``; for imported tables the row of the user's file: ``file row 17: ...``."""
    hidden = ("row", "file_row", "previous_row", "previous_file_row") if "file_row" in example else ("row",)
    inner = ", ".join(f"{k}={v!r}" for k, v in example.items() if k not in hidden)
    if "file_row" in example:
        if "previous_file_row" in example:
            inner += f", previous file row {example['previous_file_row']}"
        return f"file row {example['file_row']}: {inner}"
    return f"row {example.get('row')}: {inner}" if "row" in example else inner


def json_safe(value: Any) -> Any:
    """Convert a pandas/numpy scalar to a JSON-serialisable Python value (timestamps as ISO text)."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, (pd.Timestamp, np.datetime64)):
        ts = pd.Timestamp(value)
        return None if pd.isna(ts) else ts.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (str, int, float, bool)):
        return value
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def example_rows(df: pd.DataFrame, rows: np.ndarray | list[int], columns: list[str]) -> list[dict[str, Any]]:
    """Up to :data:`MAX_EXAMPLES` rows (0-based positions) of ``df`` restricted to ``columns``."""
    cols = [c for c in dict.fromkeys(columns) if c in df.columns]
    out: list[dict[str, Any]] = []
    for pos in list(rows)[:MAX_EXAMPLES]:
        pos = int(pos)
        rec: dict[str, Any] = {"row": pos}
        for c in cols:
            rec[c] = json_safe(df[c].iat[pos])
        out.append(rec)
    return out
