"""Batch reconstruction of a partitioned signaling table on Ray Data (local mode or a cluster), in buckets of
devices written atomically (resumable).

Entry point: :func:`reconstruct_dataset`. ``ml.serving.reconstruct_file`` stays the single-machine
path for one file and a registered model.
"""

from ml.batch.reconstruct import (
    METHODS,
    OUTPUT_COLUMNS,
    BatchConfig,
    BatchResult,
    Bucket,
    CityInputs,
    OutputMismatchError,
    VideoSource,
    city_inputs,
    operator_day_inputs,
    plan_buckets,
    reconstruct_dataset,
    run_bucket,
    video_source_from_checkpoint,
    window_records,
    window_rows,
    write_partitioned_signaling,
)

__all__ = ["METHODS", "OUTPUT_COLUMNS", "BatchConfig", "BatchResult", "Bucket", "CityInputs", "OutputMismatchError",
           "VideoSource",
           "city_inputs", "operator_day_inputs", "plan_buckets", "reconstruct_dataset", "run_bucket",
           "video_source_from_checkpoint", "window_records", "window_rows",
           "write_partitioned_signaling"]
