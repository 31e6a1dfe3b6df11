"""Serving: the MLflow pyfunc of the video model, its registration, and batch reconstruction."""

from ml.serving.registry import LoggedModel, log_video_model, reconstruct_file, registered_name, windows_from_signaling

__all__ = ["LoggedModel", "log_video_model", "reconstruct_file", "registered_name", "windows_from_signaling"]
