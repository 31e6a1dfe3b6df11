"""dagster_project.metadata: tables go to Dagster as typed ``MetadataValue.table``, not Markdown."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd

from dagster_project.metadata import frame_metadata, table_metadata


def test_rows_become_a_typed_table():
    rows = [{"track": "signaling", "method": "mar", "n": np.int64(3), "rmse_m": np.float64(12.5), "ok": np.bool_(True),
             "tme_pct": float("nan")},
            {"track": "mr", "method": "hre", "n": 4, "rmse_m": None, "ok": False, "tme_pct": np.nan}]
    m = table_metadata(rows, descriptions={"n": "windows"})
    assert isinstance(m, dg.TableMetadataValue)
    assert [(c.name, c.type) for c in m.schema.columns] == [
        ("track", "string"), ("method", "string"), ("n", "int"), ("rmse_m", "float"), ("ok", "bool"), ("tme_pct", "float")]
    assert m.schema.columns[2].description == "windows"
    assert m.records[0].data == {"track": "signaling", "method": "mar", "n": 3, "rmse_m": 12.5, "ok": True, "tme_pct": None}
    assert m.records[1].data["rmse_m"] is None and type(m.records[0].data["n"]) is int
    dg.MaterializeResult(metadata={"comparison": m})  # accepted as asset metadata


def test_frame_preview_and_empty_table():
    df = pd.DataFrame({"ts": pd.to_datetime(["2024-01-01 08:00", "2024-01-01 08:01"]), "cell_id": [7, 8], "x": [1.0, 2.0]})
    m = frame_metadata(df, n=1)
    assert [(c.name, c.type) for c in m.schema.columns] == [("ts", "string"), ("cell_id", "int"), ("x", "float")]
    assert [r.data for r in m.records] == [{"ts": "2024-01-01 08:00:00", "cell_id": 7, "x": 1.0}]
    empty = table_metadata([])
    assert empty.records == [] and empty.schema.columns == []
