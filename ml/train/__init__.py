"""Training entry points (``python -m ml.train sft|gdpo``); imports only the training-path libraries.

``train_sft`` and ``SFTResult`` are imported lazily so that ``import ml.train.<module>`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SFTResult", "train_sft"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from ml.train import sft

        return getattr(sft, name)
    raise AttributeError(f"module 'ml.train' has no attribute '{name}'")
