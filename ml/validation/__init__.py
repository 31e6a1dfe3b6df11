"""Data validation of the data-contract tables (Great Expectations 1.x suites plus vectorised rules).

Entry point: :func:`validate_table` (and :func:`validate_tables` for several tables with foreign keys
filled in). ``great_expectations`` is imported lazily, on the first validation.
"""

from ml.validation.context import ValidationContext
from ml.validation.contract import EVENTS, KIND_LABEL, SPLITS, TABLE_COLUMNS, TRUTH_KINDS, dtype_matches
from ml.validation.report import DataValidationError, RuleFailure, ValidationReport
from ml.validation.validate import validate_table, validate_tables

__all__ = [
    "ValidationContext", "ValidationReport", "RuleFailure", "DataValidationError",
    "validate_table", "validate_tables", "TABLE_COLUMNS", "KIND_LABEL", "EVENTS", "SPLITS", "TRUTH_KINDS",
    "dtype_matches",
]
