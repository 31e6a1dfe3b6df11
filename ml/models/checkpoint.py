"""A small, self-describing file for a trained video model (used by GDPO, evaluation and serving).

Format (one ``torch.save`` file, loadable with ``weights_only=True``)::

    {"format": "sig2gps-video-model", "version": 1,
     "config": ModelConfig.model_dump(),      # everything needed to rebuild the architecture
     "partial": bool,                         # True: only trainable weights (LoRA of a pretrained Wan);
                                              #   the base weights come from config["pretrained_path"]
     "state_dict": {name: tensor},            # VideoFlowModel state (float32 or bf16 on request)
     "meta": {...}}                           # free JSON-able info: steps, metrics, data, git commit
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from ml.models.backbone import VideoFlowModel, build_video_model
from ml.models.config import ModelConfig

FORMAT = "sig2gps-video-model"
VERSION = 1


def save_video_model(path: str | Path, model: VideoFlowModel, cfg: ModelConfig | None = None,
                     meta: dict[str, Any] | None = None, dtype: torch.dtype | None = None) -> Path:
    """Write ``model`` (and its config) to ``path`` atomically; returns the path."""
    cfg = cfg or model.cfg
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = model.trainable_state_dict()
    sd = {k: (v.detach().to("cpu", dtype=dtype) if (dtype is not None and v.is_floating_point()) else v.detach().cpu())
          for k, v in sd.items()}
    obj = {"format": FORMAT, "version": VERSION, "config": cfg.model_dump(mode="json"), "partial": model.latent,
           "state_dict": sd, "meta": dict(meta or {})}
    return torch_save_atomic(obj, path)


class CheckpointError(ValueError):
    """A checkpoint file exists but cannot be read (truncated by a full disk or a killed copy, or
    corrupted); the message names the file, what is wrong and what to do."""


#: what torch.load raises on a truncated or corrupted file
LOAD_ERRORS = (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError, KeyError,
               IndexError, TypeError)

MODEL_REMEDY = ("write it again: `sig2gps run <city> --select sft_checkpoint` re-exports the SFT model "
                "(`--select gdpo_checkpoint` the GDPO one; CityPaths.sft_model / gdpo_model say where), or restore "
                "it from the MLflow run's artifacts")


def torch_save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a hidden temporary sibling, then one rename (:func:`ml.io.atomic_file`): a reader
    sees the previous file or the complete new one; a full disk is a clear :class:`ml.io.OutputWriteError`."""
    import errno

    from ml.io import atomic_file, write_error

    path = Path(path)
    with atomic_file(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as exc:  # torch reports a failed write (full disk) as a RuntimeError
            raise write_error(path, OSError(errno.EIO, f"torch.save failed ({str(exc).splitlines()[0]}); is the "
                                                       f"disk full?")) from exc
    return path


def torch_load_checked(path: str | Path, what: str, remedy: str, **kwargs: Any) -> Any:
    """``torch.load(path)`` with one clear :class:`CheckpointError` (file, what is wrong, ``remedy``) for a
    truncated or corrupted file, instead of torch's zip or pickle internals."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", **kwargs)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except LOAD_ERRORS as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0][:160]
        if "Weights only load failed" in str(exc):
            raise CheckpointError(f"{path}: not a {what} (it holds objects a weights-only load refuses: "
                                  f"{detail}); {remedy}") from exc
        raise CheckpointError(f"{path}: the {what} cannot be read: the file ({path.stat().st_size} bytes) is "
                              f"truncated or corrupted ({type(exc).__name__}: {detail}); {remedy}") from exc


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, checked for the format marker (clear error otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video model checkpoint '{path}' does not exist")
    obj = torch_load_checked(path, f"{FORMAT} checkpoint", MODEL_REMEDY, weights_only=True)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ValueError(f"'{path}' is not a {FORMAT} file (a Lightning .ckpt? use ml.train.sft.module.export_from_lightning)")
    if int(obj.get("version", 0)) > VERSION:
        raise ValueError(f"'{path}' has format version {obj['version']}, this code reads <= {VERSION}")
    return obj


def load_video_model(path: str | Path, device: str | torch.device = "cpu",
                     **config_overrides: Any) -> tuple[VideoFlowModel, ModelConfig]:
    """Rebuild the model from a checkpoint written by ``save_video_model``; returns (model in eval mode, config)."""
    obj = read_checkpoint(path)
    values = dict(obj["config"])
    values.update(config_overrides)
    cfg = ModelConfig.model_validate(values)
    model = build_video_model(cfg)
    sd = {k: v.float() if v.is_floating_point() else v for k, v in obj["state_dict"].items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if unexpected:
        raise ValueError(f"{path}: unexpected weights {unexpected[:5]} (architecture mismatch)")
    expected = set(model.trainable_state_dict())
    really_missing = [k for k in missing if k in expected]
    if really_missing:
        raise ValueError(f"{path}: missing weights {really_missing[:5]} (architecture mismatch)")
    model.to(device).eval()
    return model, cfg


def checkpoint_meta(path: str | Path) -> dict[str, Any]:
    """The ``meta`` dict and config of a checkpoint without building the model."""
    obj = read_checkpoint(path)
    return {"config": obj["config"], "partial": obj["partial"], **obj.get("meta", {})}
