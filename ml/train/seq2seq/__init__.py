"""The seq2seq baseline's trainer: ``module`` (the Lightning module) and ``loop`` (``train_seq2seq``). It has no
CLI of its own: its windows are a city's sample contexts, so it trains from the ``seq2seq_checkpoint`` asset
(``sig2gps run``), ``ml.evaluation.transfer`` and ``bench/seq2seq.py``."""

from __future__ import annotations

from typing import Any

__all__ = ["Seq2SeqResult", "train_seq2seq"]


def __getattr__(name: str) -> Any:
    # lazily, so that ``ml.train.seq2seq.config`` (read by ml.config's stage registry) does not import Lightning
    if name in __all__:
        from ml.train.seq2seq import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'ml.train.seq2seq' has no attribute '{name}'")
