"""The SFT trainer: ``config`` (``SFTConfig``, profiles), ``module`` (the Lightning module: flow-matching loss,
EMA, validation), ``loop`` (``train_sft``) and ``cli`` (``python -m ml.train sft``)."""

from __future__ import annotations

from typing import Any

__all__ = ["SFTResult", "train_sft"]


def __getattr__(name: str) -> Any:
    # lazily, so that ``ml.train.sft.config`` (read by ml.config's stage registry) does not import Lightning
    if name in __all__:
        from ml.train.sft import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'ml.train.sft' has no attribute '{name}'")
