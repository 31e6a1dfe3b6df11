"""What a person sees while a city materialises: one line per asset as it finishes.

A Dagster logger (``asset_lines``) that reads the run's event stream and prints, when a step ends,
each asset it materialised with the step's duration and the asset's key figure (rows written, the
data version, a median error). The rest of the stream stays in the run's log file.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import dagster as dg

#: the metadata entry that best says what each asset produced, and its unit
KEY_FIGURES: dict[str, tuple[str, str]] = {
    "road_network": ("km_total", "km of road"),
    "cell_towers": ("dagster/row_count", "cells"),
    "taxi_gps": ("dagster/row_count", "GPS fixes"),
    "signaling_records": ("dagster/row_count", "records"),
    "truth_links": ("dagster/row_count", "links"),
    "measurement_reports": ("dagster/row_count", "reports"),
    "raw_pairs": ("dagster/row_count", "pairs"),
    "samples": ("dagster/row_count", "windows"),
    "sample_truth": ("dagster/row_count", "positions"),
    "dataset_version": ("data_version", ""),
    "rendered_videos": ("samples", "windows rendered"),
    "sft_checkpoint": ("selected_weights", "weights selected"),
    "gdpo_checkpoint": ("selected_weights", "weights selected"),
    "seq2seq_checkpoint": ("metric.val/median_m", "m median error on val"),
    "seq2seq_prefix_checkpoint": ("metric.val/median_m", "m median error on val, after the prefix"),
    "predictions": ("samples", "test windows, every method"),
    "evaluation_report": ("signaling.video_sft.median_error_m", "m median error (video_sft)"),
}


def _value(entry: Any) -> Any:
    return getattr(entry, "value", entry)


def key_figure(asset: str, metadata: dict[str, Any]) -> str:
    """``"1,234 records"`` for an asset's materialisation metadata (empty when the entry is absent)."""
    key, unit = KEY_FIGURES.get(asset, ("", ""))
    if key not in metadata:
        return ""
    v = _value(metadata[key])
    text = f"{v:,}" if isinstance(v, int) else f"{v:.1f}" if isinstance(v, float) else str(v)
    return f"{text} {unit}".strip()


class AssetLineHandler(logging.Handler):
    """Prints one line per materialised asset when its step succeeds, and the failing step's name."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(logging.DEBUG)
        self.stream = stream
        self.pending: dict[str, list[tuple[str, str]]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        # Dagster puts the structured event on every record it logs under this attribute
        event = (getattr(record, "dagster_meta", None) or {}).get("dagster_event")
        if event is None or event.step_key is None:
            return
        step = event.step_key
        if event.is_step_materialization:
            mat = event.event_specific_data.materialization
            asset = mat.asset_key.to_user_string()
            self.pending.setdefault(step, []).append((asset, key_figure(asset, dict(mat.metadata))))
        elif event.is_step_success:
            seconds = event.event_specific_data.duration_ms / 1000.0
            for asset, figure in self.pending.pop(step, []) or [(step, "")]:
                self.stream.write(f"  done    {asset:22s} {seconds:7.1f} s   {figure}\n")
            self.stream.flush()
        elif event.is_step_failure:
            self.pending.pop(step, None)
            self.stream.write(f"  FAILED  {step:22s} (the error follows at the end of the run)\n")
            self.stream.flush()


@dg.logger(description="One line per materialised asset: duration and key figure.")
def asset_lines(init_context: dg.InitLoggerContext) -> logging.Logger:
    log = logging.Logger("sig2gps.assets", level=logging.DEBUG)
    log.addHandler(AssetLineHandler(sys.stdout))
    return log
