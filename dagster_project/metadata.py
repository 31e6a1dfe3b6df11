"""Helpers to turn library outputs into Dagster metadata (tables, images, previews)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Mapping

import dagster as dg


def image_markdown(path: Path, alt: str = "preview") -> dg.MetadataValue:
    """Embed a small PNG in asset metadata as Markdown (shown inline in the Dagster UI)."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{data})")


def table_markdown(rows: list[Mapping[str, Any]], floatfmt: str = ".3g") -> dg.MetadataValue:
    if not rows:
        return dg.MetadataValue.md("_(empty)_")
    cols = list(rows[0].keys())

    def fmt(v: Any) -> str:
        return format(v, floatfmt) if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return dg.MetadataValue.md("\n".join(lines))


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
