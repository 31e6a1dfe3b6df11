"""Import user-supplied tables (CSV or Parquet) named in a city's ``[imported]`` section.

Each file is read, reduced to the contract columns, coerced to the contract dtypes (errors name the
file, the column, the rule and example rows) and its device/vehicle ids are pseudonymised with a
keyed hash. Value rules (ranges, foreign keys, bbox, time order) are left to ``ml.validation``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ml.cities.config import CityConfig, resolve_path
from ml.ingest.pseudonym import _STR_DTYPE, PseudonymKeyError, key_from_env, pseudonymise
from ml.validation.contract import PSEUDONYMISED_COLUMNS, SOURCE_ATTR, SOURCE_ROW_INDEX, TABLE_COLUMNS, Kind

log = logging.getLogger(__name__)

IMPORTABLE_TABLES: tuple[str, ...] = ("towers", "gps", "signaling", "mr", "truth_links")
#: Contract row order after import (stable sorts, so MR rows of one instant keep serving-cell first).
SORT_KEYS: dict[str, list[str]] = {
    "towers": ["cell_id"], "gps": ["vehicle_id", "ts"], "signaling": ["device_id", "ts"], "mr": ["device_id", "ts"],
}
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".csv.xz")
PARQUET_SUFFIXES = (".parquet", ".pq")
_NA_STRINGS = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"]
_MAX_SHOWN = 5


class IngestError(ValueError):
    """An imported file cannot be read or coerced; the message names file, column, rule and rows."""


def read_table_file(path: Path, display: str | None = None) -> pd.DataFrame:
    """Read a CSV (every column as text, nulls from empty/NA cells) or a Parquet file.

    ``display`` is how messages name the file (the path as the user gave it; default ``path``).
    """
    shown = display or str(path)
    name = path.name.lower()
    if not path.is_file():
        raise IngestError(f"{shown}: file not found")
    if not name.endswith(CSV_SUFFIXES + PARQUET_SUFFIXES):
        raise IngestError(f"{shown}: unsupported file type (use {', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)})")
    if path.stat().st_size == 0:
        raise IngestError(f"{shown}: the file is empty (rule: a header row naming the columns, then at least one data row)")
    try:
        if name.endswith(CSV_SUFFIXES):
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=_NA_STRINGS)
        return pd.read_parquet(path)
    except pd.errors.EmptyDataError as exc:
        raise IngestError(f"{shown}: no columns to read (rule: a header row naming the columns): {exc}") from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        # pyarrow's errors (ArrowInvalid is a ValueError, ArrowIOError an OSError) say why: truncated, not
        # Parquet, ...; they name the resolved path, which the message replaces by the path as given
        why = str(exc).replace(str(path), shown)
        raise IngestError(f"{shown}: cannot be read as {'CSV' if name.endswith(CSV_SUFFIXES) else 'Parquet'} "
                          f"(truncated or not in that format?): {why}") from None


def _rows_text(mask: np.ndarray, series: pd.Series, show_values: bool) -> str:
    """``e.g. rows 4, 9: 'a', 'b'`` with 1-based data-row numbers (CSV line = row + 1)."""
    pos = np.flatnonzero(mask)[:_MAX_SHOWN]
    text = "e.g. row" + ("s " if len(pos) > 1 else " ") + ", ".join(str(int(p) + 1) for p in pos)
    if show_values:
        text += ": " + ", ".join(repr(str(series.iat[int(p)]))[:60] for p in pos)
    return text


def _problem(source: str, column: str, mask: np.ndarray, what: str, series: pd.Series, show_values: bool) -> str:
    """``file: column 'c': n values <what>, e.g. rows ...``; ``what`` is "plural|singular" or one text."""
    n = int(mask.sum())
    plural, _, singular = what.partition("|")
    text = plural if n != 1 or not singular else singular
    return f"{source}: column '{column}': {n} value{'s' if n != 1 else ''} {text}, {_rows_text(mask, series, show_values)}"


def _blank_to_na(s: pd.Series) -> pd.Series:
    """Text columns: empty or whitespace-only cells become missing."""
    if pd.api.types.is_string_dtype(s.dtype) or s.dtype == object:
        try:
            blank = s.str.strip().eq("").fillna(False).to_numpy(dtype=bool)
        except AttributeError:  # object column without any strings
            return s
        if blank.any():
            return s.astype(object).where(~blank, None)
    return s


def _as_str(s: pd.Series) -> pd.Series:
    if isinstance(s.dtype, pd.StringDtype):
        return s.astype(_STR_DTYPE)
    na = s.isna().to_numpy()
    values = s.astype(object)
    if pd.api.types.is_float_dtype(s.dtype):  # ids stored as floats: 12.0 -> "12"
        whole = ~na & (np.mod(s.fillna(0).to_numpy(), 1) == 0)
        values = values.where(~whole, s.where(whole, 0).astype("int64").astype(object))
    values = values.map(str).where(~na, None)
    return values.astype(_STR_DTYPE)


def _wrong_dtype(s: pd.Series, expected: str, bad: tuple[str, ...]) -> str | None:
    """A message when the (Parquet) column's own dtype cannot hold ``expected`` values, else None."""
    dtype = s.dtype
    kinds = {
        "booleans": pd.api.types.is_bool_dtype(dtype),
        "timestamps": pd.api.types.is_datetime64_any_dtype(dtype),
        "durations": pd.api.types.is_timedelta64_dtype(dtype),
        "categories": isinstance(dtype, pd.CategoricalDtype),
    }
    for label in bad:
        if kinds[label]:
            return f"expected {expected}, got {label} (dtype {dtype})"
    return None


def _to_int(s: pd.Series, source: str, column: str, problems: list[str], show: bool) -> pd.Series:
    wrong = _wrong_dtype(s, "integers (int64)", ("booleans", "timestamps", "durations"))
    if wrong:
        problems.append(f"{source}: column '{column}': wrong dtype: {wrong}")
        return s
    s = _blank_to_na(s)
    na = s.isna().to_numpy()
    num = s if pd.api.types.is_numeric_dtype(s.dtype) else pd.to_numeric(s, errors="coerce")
    unparsable = num.isna().to_numpy() & ~na
    n_before = len(problems)
    if unparsable.any():
        problems.append(_problem(source, column, unparsable, "cannot be parsed as integers", s, show))
    if na.any():
        problems.append(_problem(source, column, na, "are missing (integers required)|is missing (integers required)", s, False))
    if not pd.api.types.is_integer_dtype(num.dtype):
        values = num.to_numpy(dtype=np.float64, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            frac = ~np.isnan(values) & ((np.mod(values, 1) != 0) | ~np.isfinite(values))
        if frac.any():
            problems.append(_problem(source, column, frac, "are not whole numbers|is not a whole number", s, show))
    return s if len(problems) > n_before else num.astype("int64")


def _to_float(s: pd.Series, source: str, column: str, problems: list[str], show: bool) -> pd.Series:
    wrong = _wrong_dtype(s, "numbers (float64)", ("booleans", "timestamps", "durations"))
    if wrong:
        problems.append(f"{source}: column '{column}': wrong dtype: {wrong}")
        return s
    s = _blank_to_na(s)
    num = s if pd.api.types.is_numeric_dtype(s.dtype) else pd.to_numeric(s, errors="coerce")
    bad = num.isna().to_numpy() & s.notna().to_numpy()
    if bad.any():
        problems.append(_problem(source, column, bad, "cannot be parsed as numbers", s, show))
        return s
    return num.astype("float64")


def _to_ts(s: pd.Series, source: str, column: str, problems: list[str], show: bool) -> pd.Series:
    """UTC ``datetime64[ns]``: tz-aware converted, naive taken as UTC, numbers as Unix seconds, text as ISO 8601."""
    wrong = _wrong_dtype(s, "timestamps (datetime, ISO 8601 text or Unix seconds)", ("booleans", "durations"))
    if wrong:
        problems.append(f"{source}: column '{column}': wrong dtype: {wrong}")
        return s
    s = _blank_to_na(s)
    try:
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            out = s.dt.tz_convert("UTC")
        elif pd.api.types.is_datetime64_dtype(s.dtype):
            out = s.dt.tz_localize("UTC")
        elif pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
            out = pd.to_datetime(s, unit="s", utc=True)
        else:
            text = s.astype(object).where(s.notna(), None)
            numeric = pd.to_numeric(text, errors="coerce")
            if numeric.notna().sum() == text.notna().sum() and text.notna().any():
                out = pd.to_datetime(numeric, unit="s", utc=True)  # CSV of Unix seconds
            else:
                out = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
                bad = out.isna().to_numpy() & s.notna().to_numpy()
                if bad.any():
                    problems.append(_problem(source, column, bad, "cannot be parsed as timestamps", s, show))
                    return s
        return out.astype("datetime64[ns, UTC]")
    except (ValueError, OverflowError, pd.errors.OutOfBoundsDatetime) as exc:
        problems.append(f"{source}: column '{column}': values cannot be converted to UTC timestamps "
                        f"(rule: datetime64[ns, UTC] between 1677 and 2262): {exc}")
        return s


_COERCE: dict[Kind, Callable[..., pd.Series]] = {"int": _to_int, "float": _to_float, "ts": _to_ts}


def coerce_table(table: str, raw: pd.DataFrame, source: str) -> pd.DataFrame:
    """Keep the contract columns of ``table`` (extra columns are dropped) coerced to contract dtypes.

    Raises :class:`IngestError` listing every problem of the file (missing columns, unparsable
    values). Values of id columns are never shown in messages (they are personal data).
    """
    spec = TABLE_COLUMNS[table]
    missing = [c for c in spec if c not in raw.columns]
    if missing:
        present = ", ".join(map(str, raw.columns)) or "none"
        raise IngestError(
            f"{source}: missing required column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(c) for c in missing)} for table '{table}' (columns present: {present})"
        )
    extra = [str(c) for c in raw.columns if c not in spec]
    if extra:
        log.info("%s: dropping %d column(s) not in the data contract: %s", source, len(extra), ", ".join(extra))
    problems: list[str] = []
    out: dict[str, pd.Series] = {}
    for column, kind in spec.items():
        s = raw[column]
        if isinstance(s, pd.DataFrame):
            problems.append(f"{source}: column '{column}' appears more than once")
            continue
        show = column not in PSEUDONYMISED_COLUMNS
        out[column] = _as_str(s) if kind == "str" else _COERCE[kind](s, source, column, problems, show)
    if problems:
        raise IngestError(f"{source}: cannot import table '{table}'; fix these problems:\n  " + "\n  ".join(problems))
    return pd.DataFrame(out).reset_index(drop=True)


def pseudonymise_table(df: pd.DataFrame, key: bytes) -> pd.DataFrame:
    """A copy of ``df`` with every device/vehicle id column replaced by its keyed pseudonym."""
    out = df.copy()
    for column, namespace in PSEUDONYMISED_COLUMNS.items():
        if column in out.columns:
            out[column] = pseudonymise(out[column], key, namespace)
    return out


def load_imported_tables(
    city: CityConfig, root: Path, key: bytes | None = None, sort: bool = True, only: Sequence[str] | None = None
) -> dict[str, pd.DataFrame]:
    """Read, coerce and pseudonymise the tables listed in ``city.imported`` (paths relative to ``root``).

    Returns ``{"towers", "gps", "signaling"}`` plus ``"mr"`` and ``"truth_links"`` when configured,
    in contract dtypes, sorted in contract order when ``sort``. ``only`` restricts the import to
    those tables (an asset reads just its own file, so one bad file fails one asset, once). ``key`` defaults to the
    ``SIG2GPS_PSEUDONYM_KEY`` environment variable (checked before any file is read; there is no
    default key).

    Messages name each file as the city file gives it. Each frame remembers where it came from, so
    that validation can name the file and its rows too: ``df.attrs[SOURCE_ATTR]`` is that path and
    the index (named ``SOURCE_ROW_INDEX``) holds each row's 0-based data-row position in the file
    (rows are re-ordered by the contract sort). Writers drop both (``index=False``, no attrs).
    """
    city_file = f"cities/{city.name}.toml"
    if city.imported is None:
        raise IngestError(f"{city_file}: city '{city.name}': data_source is '{city.data_source}' "
                          "and there is no [imported] section")
    if key is None:
        try:
            key = key_from_env()
        except PseudonymKeyError as exc:
            raise PseudonymKeyError(f"{city_file} [imported]: cannot import: {exc}") from None
    unknown = sorted(set(only or ()) - set(IMPORTABLE_TABLES))
    if unknown:
        raise ValueError(f"load_imported_tables: unknown table(s) {', '.join(unknown)} (known: {', '.join(IMPORTABLE_TABLES)})")
    tables: dict[str, pd.DataFrame] = {}
    for table in IMPORTABLE_TABLES:
        if only is not None and table not in only:
            continue
        rel = getattr(city.imported, table)
        if rel is None:
            continue
        path = resolve_path(rel, Path(root))
        if not path.is_file():
            raise IngestError(f"{rel}: file not found ({city_file}, [imported].{table})")
        df = coerce_table(table, read_table_file(path, rel), rel)
        df = pseudonymise_table(df, key)
        df.index = pd.RangeIndex(len(df), name=SOURCE_ROW_INDEX)
        if sort and table in SORT_KEYS:
            df = df.sort_values(SORT_KEYS[table], kind="mergesort", na_position="last")
        df.attrs = {SOURCE_ATTR: rel}
        tables[table] = df
        log.info("imported %s: %d rows from %s", table, len(df), rel)
    return tables
