"""Helpers to turn library outputs into Dagster metadata (tables, images, previews)."""

from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import dagster as dg
import pandas as pd


def image_markdown(path: Path, alt: str = "preview") -> dg.MetadataValue:
    """Embed a small PNG in asset metadata as Markdown (shown inline in the Dagster UI)."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{data})")


def _plain_scalar(v: Any) -> Any:
    """A numpy scalar as the Python scalar it holds; anything else unchanged."""
    if hasattr(v, "item") and getattr(v, "ndim", None) == 0:
        return v.item()
    return v


def _plain(v: Any) -> str | int | float | bool | None:
    """A table cell as Dagster stores it: numpy scalars unwrapped, NaN/None as None, others as text."""
    v = _plain_scalar(v)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


_COLUMN_TYPES = ((bool, "bool"), (int, "int"), (float, "float"), (str, "string"))


def table_metadata(rows: Sequence[Mapping[str, Any]], descriptions: Mapping[str, str] | None = None) -> dg.MetadataValue:
    """Rows (dicts; columns in first-seen order) as a ``MetadataValue.table`` with a typed ``TableSchema``.

    A column's type is that of its first non-missing cell (bool, int, float, else string); missing
    cells are None.
    """
    cols = list(dict.fromkeys(k for r in rows for k in r))
    records = [{c: _plain(r.get(c)) for c in cols} for r in rows]

    def col_type(c: str) -> str:
        v = next((r[c] for r in records if r[c] is not None), None)
        if v is None and any(isinstance(_plain_scalar(r.get(c)), float) for r in rows):
            return "float"  # only NaN: still a number column
        return next((name for t, name in _COLUMN_TYPES if isinstance(v, t)), "string")

    schema = dg.TableSchema(columns=[dg.TableColumn(c, col_type(c), description=(descriptions or {}).get(c))
                                     for c in cols])
    return dg.MetadataValue.table(records=[dg.TableRecord(r) for r in records], schema=schema)


def table_asset_metadata(df: pd.DataFrame, path: Path) -> dict[str, Any]:
    """What Dagster shows for a table asset: ``dagster/row_count``, ``dagster/column_schema`` (the pandas
    dtypes), the file and a preview of the first rows."""
    schema = dg.TableSchema(columns=[dg.TableColumn(str(c), str(t)) for c, t in df.dtypes.items()])
    return {"dagster/row_count": len(df), "dagster/column_schema": schema,
            "path": dg.MetadataValue.path(str(path)), "preview": frame_metadata(df)}


def frame_metadata(df: pd.DataFrame, n: int = 5) -> dg.MetadataValue:
    """The first ``n`` rows of a DataFrame as table metadata (see :func:`table_metadata`)."""
    return table_metadata(df.head(n).to_dict("records"))


def flat_metadata(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalars of a (nested) dict as metadata entries; nested keys joined with '.'."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flat_metadata(v, key + "."))
        elif isinstance(v, bool):
            out[key] = v
        elif isinstance(v, (int, float, str)):
            out[key] = v
    return out


def mlflow_link(uri: str, run_id: str | None) -> dict:
    """The run's id and a link that opens it in the MLflow UI."""
    if not run_id:
        return {}
    import mlflow

    from ml.tracking import mlflow_run_url

    experiment_id = mlflow.MlflowClient(tracking_uri=uri).get_run(run_id).info.experiment_id
    return {"mlflow_run_id": run_id, "mlflow_tracking_uri": uri,
            "mlflow_run": dg.MetadataValue.url(mlflow_run_url(uri, run_id, experiment_id))}
