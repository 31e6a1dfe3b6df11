"""Evaluation: every method on the same windows, scored by ``ml.metrics`` (the single source of truth)."""

from ml.evaluation.config import EvaluationConfig
from ml.evaluation.methods import MethodRun, predictions_frame, run_from_frame, run_method, score_run, summarise
from ml.evaluation.peers import peer_report_notes, signaling_methods
from ml.evaluation.seq2seq import predict_seq2seq_method
from ml.evaluation.video import predict_video_method

__all__ = [
    "EvaluationConfig", "MethodRun", "predictions_frame", "run_from_frame", "run_method", "score_run",
    "summarise", "predict_seq2seq_method", "predict_video_method", "signaling_methods", "peer_report_notes",
]
