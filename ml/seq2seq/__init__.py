"""``seq2seq``: the learned coordinate baseline of the signaling track (the model specification).

A small transformer reads a window's signaling records and regresses the positions at the
evaluation times: the "regress coordinates" family the video method argues against, done
properly (val-based early stopping, the same observation model and road snapping as the other
methods). Training is :func:`ml.train.seq2seq.train_seq2seq`; evaluation
:func:`ml.evaluation.seq2seq.predict_seq2seq_method`.
"""

from ml.seq2seq.config import Seq2SeqConfig, seq2seq_profile
from ml.seq2seq.data import WindowBatch, window_batch
from ml.seq2seq.model import RecordsToPositions
from ml.seq2seq.checkpoint import load_seq2seq, save_seq2seq

__all__ = ["Seq2SeqConfig", "seq2seq_profile", "WindowBatch", "window_batch", "RecordsToPositions", "load_seq2seq",
           "save_seq2seq"]
