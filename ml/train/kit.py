"""The training kit: the bookkeeping every trainer (SFT, GDPO, seq2seq) shares, as small tested functions.

- :func:`run_key_fingerprint` / :func:`data_files_key` / :func:`content_sha256`: what makes a run the same run;
- :func:`resume_or_supersede`: continue an interrupted run of the same key, or start a new one with the old
  run's files moved aside (never deleted);
- :func:`mlflow_logger`: Lightning's MLflow logger, continuing the MLflow run of a resumed training;
- :func:`select_step` and :class:`BestOnVal`: which weights to export, by one rule (the best validation score,
  ties to the later weights, the starting weights unless beaten by a margin);
- :class:`TrainResult`: the record a trainer returns and writes beside its model;
- :func:`parse_overrides`: the one CLI convention for config overrides (``--set FIELD=VALUE``).

Nothing here knows a model: the trainers pass keys, folders, scores and weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import lightning as L

from ml.io import write_text_atomic

log = logging.getLogger(__name__)

RUN_KEY_FILE = "run_key.json"
MLFLOW_RUN_FILE = "mlflow_run_id.txt"


# --- what makes a run the same run ------------------------------------------------------------------------------


def files_fingerprint(paths: Iterable[Path]) -> str:
    """sha256 over the names, sizes and modification times of files (folders written atomically change all
    three when rewritten), 16 hex digits."""
    h = hashlib.sha256()
    for p in sorted(Path(p) for p in paths):
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def data_files_key(folder: str | Path) -> dict[str, str]:
    """A data folder as part of a run key: its name and its files' fingerprint, not its absolute path (a copied
    or moved project still resumes)."""
    folder = Path(folder).resolve()
    return {"data": folder.name, "data_files": files_fingerprint(p for p in folder.iterdir() if p.is_file())}


def content_sha256(path: str | Path | None) -> str | None:
    """The first 16 hex digits of a file's sha256 (starting weights: a file replaced under the same name is a
    new run), or None."""
    return None if path is None else hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def resume_or_supersede(out_dir: Path, key: Mapping[str, Any], state: Path, resume: bool,
                        move_aside: Sequence[str] = ("checkpoints",)) -> bool:
    """Whether to continue the run saved in ``state`` (a file under ``out_dir``); records ``key`` as the run's.

    The saved run is continued when ``resume`` is set, ``state`` exists and the key recorded with it
    (``out_dir/run_key.json``) equals ``key``. A saved run of another key (another model, objective, data or
    starting weights) is superseded: the folders ``move_aside`` (relative to ``out_dir``) move into
    ``out_dir/<first>_superseded_<UTC time>/`` (the first one renamed, the others inside it), so nothing is
    deleted and nothing of the old run can be resumed by mistake. ``resume=False`` starts afresh without moving
    anything (the trainer overwrites its own files).
    """
    out_dir = Path(out_dir)
    key_file = out_dir / RUN_KEY_FILE
    key = json.loads(json.dumps(key))  # the JSON form, as it is compared with the file
    same_run = key_file.is_file() and json.loads(key_file.read_text()) == key
    if resume and state.is_file() and not same_run:
        first, *rest = move_aside
        kept = out_dir / f"{first}_superseded_{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
        (out_dir / first).rename(kept)
        for name in rest:
            if (out_dir / name).exists():
                (out_dir / name).rename(kept / name)
        log.warning("%s: the model, objective, data or starting weights changed since the last run: starting a new "
                    "run; the old run's files are in %s", out_dir, kept)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(json.dumps(key, indent=1), key_file)
    return bool(resume and state.is_file())


# --- MLflow -----------------------------------------------------------------------------------------------------


def mlflow_logger(out_dir: Path, tracking_uri: str | None, experiment_name: str, run_name: str | None,
                  tags: Mapping[str, str] | None, resuming: bool) -> Any:
    """Lightning's MLFlowLogger for a training in ``out_dir``, or None without a tracking URI.

    A resumed training logs into the MLflow run recorded in ``out_dir/mlflow_run_id.txt`` when the store still
    has it (params it already holds are not logged again: MLflow refuses to change one); otherwise, and for a
    new training, a new run opens. The run id is written at once, so that a run stopped before its end resumes
    into the same MLflow run.
    """
    if not tracking_uri:
        return None
    from lightning.pytorch.loggers import MLFlowLogger

    from ml.tracking import artifact_location_for, init_mlflow_store

    init_mlflow_store(tracking_uri)
    run_file = Path(out_dir) / MLFLOW_RUN_FILE
    run_id = run_file.read_text().strip() if (resuming and run_file.is_file()) else None
    if run_id:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        try:
            MlflowClient(tracking_uri).get_run(run_id)
        except MlflowException as exc:  # only a run the store does not have; other errors are raised
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            log.warning("%s: MLflow run %s is not in %s; the resumed training logs to a new run", run_file, run_id,
                        tracking_uri)
            run_id = None
    cls = _resumed_logger_class() if run_id else MLFlowLogger
    logger = cls(experiment_name=experiment_name, tracking_uri=tracking_uri, tags=dict(tags or {}),
                 run_name=run_name, run_id=run_id, artifact_location=artifact_location_for(tracking_uri))
    if logger.run_id is not None:  # None on the other ranks of a DDP run: rank 0 records the run
        write_text_atomic(str(logger.run_id), run_file)
    return logger


def _resumed_logger_class() -> type:
    from lightning.pytorch.loggers import MLFlowLogger

    class ResumedMLFlowLogger(MLFlowLogger):
        """The MLflow logger of a resumed training: params the run already has are not logged again (one that
        differs, a setting outside the run key such as run_name, keeps its first value, with a warning)."""

        def log_hyperparams(self, params: Any) -> None:
            from lightning.fabric.utilities.logger import _convert_params, _flatten_dict

            flat = _flatten_dict(_convert_params(params))
            have = self.experiment.get_run(self.run_id).data.params
            changed = sorted(k for k, v in flat.items() if k in have and have[k] != str(v)[:250])
            if changed:
                log.warning("resumed MLflow run %s keeps the first values of params %s", self.run_id, changed[:10])
            new = {k: v for k, v in flat.items() if k not in have}
            if new:
                super().log_hyperparams(new)

    return ResumedMLFlowLogger


def log_final(logger: Any, metrics: Mapping[str, float], selected: str,
              artifacts: Sequence[tuple[Path, str | None]] = (), status: str = "FINISHED") -> str | None:
    """The end of a training's MLflow run: summary metrics (``a/b`` logged as ``a_b``, non-finite skipped), the
    ``selected_weights`` tag and artifacts ``(path, artifact folder)``; returns the run id (None without MLflow)."""
    if logger is None:
        return None
    client, run_id = logger.experiment, logger.run_id
    for k, v in metrics.items():
        if isinstance(v, (int, float)) and math.isfinite(float(v)):
            client.log_metric(run_id, k.replace("/", "_"), float(v))
    client.set_tag(run_id, "selected_weights", selected)
    for path, folder in artifacts:
        client.log_artifact(run_id, str(path), artifact_path=folder)
    logger.finalize("success" if status == "FINISHED" else "killed")
    return run_id


# --- which weights to export ------------------------------------------------------------------------------------


def select_step(scores: Mapping[int, float], mode: Literal["min", "max"], start_step: int | None = 0,
                min_gain: float = 0.0) -> int:
    """The step whose weights to export: the best validation score (lowest for ``min``, highest for ``max``),
    ties to the later step; when ``start_step`` (the starting weights, scored before training) is among the
    scores, a trained step must beat it by at least ``min_gain`` or the starting weights are kept.

    A score that is not finite never wins against a finite one (a validation that decoded nothing scores +inf
    under ``min``, -inf under ``max``).
    """
    if not scores:
        raise ValueError("select_step: no validation scores to select from")
    sign = 1.0 if mode == "min" else -1.0 if mode == "max" else None
    if sign is None:
        raise ValueError(f"select_step: mode must be 'min' or 'max', got {mode!r}")
    # lower is better; NaN is the worst, as is the worst infinity of the mode
    loss = {int(k): sign * float(v) if not math.isnan(float(v)) else math.inf for k, v in scores.items()}
    trained = {k: v for k, v in loss.items() if k != start_step} or loss
    best = min(trained, key=lambda k: (trained[k], -k))
    if start_step in loss and best != start_step and not loss[best] <= loss[start_step] - min_gain:
        return start_step
    return best


class BestOnVal(L.Callback):
    """Scores every validation by ``metric`` and keeps the weights of the best one on disk (``mode`` as in
    :func:`select_step`, ties to the later step).

    A validation before the first step (``trainer.validate`` ahead of ``fit``) scores the starting weights,
    saved as ``start.pt`` (``pl_module.model``'s state dict); validations during training save ``best.ckpt``
    when they are at least as good as every earlier one. A validation without the metric scores as the worst.
    The scores travel in Lightning's checkpoints, so a resumed run keeps them.
    """

    def __init__(self, folder: Path, metric: str, mode: Literal["min", "max"] = "min") -> None:
        self.folder, self.metric, self.mode = Path(folder), metric, mode
        self.start_path, self.best_path = self.folder / "start.pt", self.folder / "best.ckpt"
        self.scores: dict[int, float] = {}  # global step -> score

    def _score(self, trainer: L.Trainer) -> float:
        v = trainer.callback_metrics.get(self.metric)
        if v is None:
            log.warning("validation at step %d has no '%s': scored as the worst", trainer.global_step, self.metric)
            return float("inf") if self.mode == "min" else -float("inf")
        return float(v)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        step, score = int(trainer.global_step), self._score(trainer)
        if trainer.state.fn == "validate" and step == 0:
            from ml.models.checkpoint import torch_save_atomic

            torch_save_atomic(pl_module.model.state_dict(), self.start_path)
        elif trainer.state.fn != "fit":
            return
        earlier = {k: v for k, v in self.scores.items() if k != 0}
        self.scores[step] = score
        if step > 0 and select_step({**earlier, step: score}, self.mode, start_step=None) == step:
            trainer.save_checkpoint(str(self.best_path))

    def state_dict(self) -> dict[str, Any]:
        return {"scores": dict(self.scores)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scores = {int(k): float(v) for k, v in state.get("scores", {}).items()}


def load_selected(module: L.LightningModule, best: BestOnVal, step: int, last_step: int) -> str:
    """Load the weights of ``step`` into ``module`` (``step`` from :func:`select_step` over ``best.scores``):
    nothing for the last step, ``start.pt`` for step 0, ``best.ckpt`` otherwise; returns the selection's name
    ('last', 'start' or 'best:<step>')."""
    import torch

    if step == last_step:
        return "last"
    if step == 0:
        module.model.load_state_dict(torch.load(best.start_path, map_location="cpu", weights_only=False))
        return "start"
    ck = torch.load(best.best_path, map_location="cpu", weights_only=False)
    if int(ck.get("global_step", step)) != step:
        raise RuntimeError(f"{best.best_path} holds step {ck.get('global_step')}, not the selected step {step}")
    module.load_state_dict(ck["state_dict"], strict=False)
    module.on_load_checkpoint(ck)
    return f"best:{step}"


# --- the result record ------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class TrainResult:
    """What a training run produced: the exported model, its metrics, the MLflow run, which weights were
    exported ('last', 'start' or 'best:<step>'), the steps done and the step a resumed run started from."""

    checkpoint_path: Path
    metrics: dict[str, float] = field(default_factory=dict)
    mlflow_run_id: str | None = None
    selected: str = "last"
    global_step: int = 0
    resumed_from_step: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}

    def write(self, path: Path) -> Path:
        """The record as JSON (the trainers write it beside the model)."""
        write_text_atomic(json.dumps(self.to_dict(), indent=2), path)
        return path


# --- the CLI convention -----------------------------------------------------------------------------------------


def parse_overrides(items: Sequence[str], option: str = "--set") -> dict[str, Any]:
    """``FIELD=VALUE`` items as a dict (VALUE as JSON when it parses, else the plain string); dotted fields
    (``model.FIELD``) become nested dicts. The one way every trainer's CLI takes config overrides."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"{option} {item!r}: expected FIELD=VALUE")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise SystemExit(f"{option} {item!r}: '{p}' is set both as a value and as a group")
        node[leaf] = value
    return out


def parse_tags(items: Sequence[str]) -> dict[str, str]:
    """``KEY=VALUE`` MLflow tags from a CLI's repeatable ``--tag``."""
    tags = {}
    for t in items:
        k, sep, v = t.partition("=")
        if not sep or not k:
            raise SystemExit(f"--tag expects KEY=VALUE, got '{t}'")
        tags[k] = v
    return tags


def add_override_args(p: Any) -> None:
    """The options every trainer's CLI shares: ``--set FIELD=VALUE`` (any config field; nested ones as
    ``model.FIELD``), MLflow (``--tracking-uri``, ``--experiment``, ``--tag``) and ``--no-progress``."""
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a config field (nested: model.FIELD); VALUE is JSON or a plain string (repeatable), "
                   "e.g. --set lr=1e-4 --set model.prior_residual=false")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (omit: no MLflow)")
    p.add_argument("--experiment", default=None, help="MLflow experiment name")
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="MLflow run tag (repeatable)")
    p.add_argument("--no-progress", action="store_true")


def apply_overrides(cfg: Any, overrides: Mapping[str, Any]) -> Any:
    """A pydantic config with ``overrides`` (from :func:`parse_overrides`) applied and validated; nested dicts
    update nested configs field by field. An unknown field is an error that names it."""
    data = cfg.model_dump()
    unknown = _merge(data, overrides, "")
    if unknown:
        raise SystemExit(f"--set: unknown config field(s) {', '.join(unknown)} of {type(cfg).__name__}")
    return type(cfg).model_validate(data)


def _merge(data: dict[str, Any], over: Mapping[str, Any], prefix: str) -> list[str]:
    unknown = []
    for k, v in over.items():
        if k not in data:
            unknown.append(prefix + k)
        elif isinstance(v, dict) and isinstance(data[k], dict):
            unknown += _merge(data[k], v, f"{prefix}{k}.")
        else:
            data[k] = v
    return unknown
