"""The video model's inference loop (``predict_windows``), shared by evaluation, next-GPS, serving, batch
reconstruction and SFT validation."""

from ml.inference.windows import (PredictedBatch, SamplingSettings, VideoWindow, WindowPrediction, predict_windows,
                                  rendered_window)

__all__ = ["PredictedBatch", "SamplingSettings", "VideoWindow", "WindowPrediction", "predict_windows", "rendered_window"]
