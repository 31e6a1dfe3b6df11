"""Import of user-supplied tables: read CSV/Parquet, coerce to the data contract, pseudonymise ids."""

from ml.ingest.loader import (
    IMPORTABLE_TABLES,
    IngestError,
    coerce_table,
    load_imported_tables,
    pseudonymise_table,
    read_table_file,
)
from ml.ingest.pseudonym import KEY_ENV_VAR, PseudonymKeyError, key_from_env, pseudonymise

__all__ = [
    "IMPORTABLE_TABLES", "IngestError", "coerce_table", "load_imported_tables", "pseudonymise_table",
    "read_table_file", "KEY_ENV_VAR", "PseudonymKeyError", "key_from_env", "pseudonymise",
]
