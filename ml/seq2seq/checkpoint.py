"""The seq2seq model file (``model.pt``): weights, config and metadata; what evaluation, serving and
next-GPS load (no training code needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ml.seq2seq.config import Seq2SeqConfig
from ml.seq2seq.model import RecordsToPositions

FORMAT = "sig2gps-seq2seq-v1"


def save_seq2seq(path: Path, model: RecordsToPositions, cfg: Seq2SeqConfig, meta: dict[str, Any]) -> Path:
    """``model.pt``: weights, config and metadata (what :func:`load_seq2seq` reads)."""
    from ml.io import atomic_file

    with atomic_file(path) as tmp:
        torch.save({"format": FORMAT, "config": cfg.model_dump(mode="json"), "state_dict": model.state_dict(),
                    "meta": meta}, tmp)
    return path


def load_seq2seq(path: str | Path, device: str = "cpu") -> tuple[RecordsToPositions, Seq2SeqConfig]:
    """The model of a ``model.pt`` written by :func:`ml.train.seq2seq.train_seq2seq`, in eval mode."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise ValueError(f"{path}: not a readable seq2seq checkpoint ({type(exc).__name__}: {exc}); "
                         "train it again (materialise seq2seq_checkpoint)") from exc
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ValueError(f"{path}: not a seq2seq checkpoint (format {obj.get('format') if isinstance(obj, dict) else '?'}"
                         f", expected {FORMAT})")
    # checkpoints from before the spread feature read four columns per record
    cfg = Seq2SeqConfig.model_validate({"record_spread": False, **obj["config"]})
    model = RecordsToPositions(cfg)
    model.load_state_dict(obj["state_dict"])
    return model.to(device).eval(), cfg
