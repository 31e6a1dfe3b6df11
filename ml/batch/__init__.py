"""Batch reconstruction of a partitioned signaling table on Ray Data (local mode or a cluster).

Entry point: :func:`reconstruct_dataset`. ``ml.serving.reconstruct_file`` stays the single-machine
path for one file and a registered model.
"""

from ml.batch.reconstruct import (
    METHODS,
    BatchResult,
    CityInputs,
    VideoSource,
    city_inputs,
    operator_day_inputs,
    reconstruct_dataset,
    video_source_from_checkpoint,
    window_records,
    window_rows,
    write_partitioned_signaling,
)

__all__ = ["METHODS", "BatchResult", "CityInputs", "VideoSource", "city_inputs", "operator_day_inputs",
           "reconstruct_dataset",
           "video_source_from_checkpoint", "window_records", "window_rows",
           "write_partitioned_signaling"]
