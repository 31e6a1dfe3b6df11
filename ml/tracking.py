"""MLflow and lineage helpers: tracking URI, data version (DVC), git commit, run tags.

mlflow is imported lazily so the training path still runs where only torch is installed.
"""

from __future__ import annotations

import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml

from ml.cities.config import project_root


def default_tracking_uri(root: Path | None = None) -> str:
    """Absolute ``sqlite:///`` URI of the local store under ``mlflow/`` (created on demand)."""
    d = (root or project_root()) / "mlflow"
    d.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{d.resolve() / 'mlflow.db'}"


def init_mlflow_store(tracking_uri: str) -> None:
    """Create (or upgrade) a local ``sqlite:///`` MLflow store under a file lock.

    MLflow builds the schema of a new sqlite store with alembic migrations when a client first opens it;
    two processes doing that at once (two cities materialised together on a fresh project) break each
    other's migration (``KeyError: 'dimension_attributes'``). Serialised, the second finds the schema
    at its head and does nothing. Other stores (a tracking server) are left alone.
    """
    import fcntl

    if not tracking_uri.startswith("sqlite:///"):
        return
    db = Path(tracking_uri[len("sqlite:///"):])
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(f"{db.name}.init.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            from mlflow.tracking import MlflowClient

            MlflowClient(tracking_uri)  # opening the store creates or upgrades its schema
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def git_commit(root: Path | None = None) -> str:
    """The checked-out commit (with ``-dirty`` when the tree has changes), or ``unknown``."""
    root = root or project_root()
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def data_version(version_file: Path) -> str:
    """The DVC hash recorded in a pointer file (``data/<city>/<profile>.dvc``, see ``ml.paths.CityPaths``),
    or ``unversioned`` before the first ``dvc add``."""
    p = Path(version_file)
    if not p.is_file():
        return "unversioned"
    try:
        outs = (yaml.safe_load(p.read_text()) or {}).get("outs") or []
    except yaml.YAMLError as exc:
        raise ValueError(f"{p}: not a DVC pointer file ({exc})") from exc
    return str(outs[0].get("md5", "unversioned")) if outs else "unversioned"


def mlflow_run_url(tracking_uri: str, run_id: str, experiment_id: str) -> str:
    """Where a person opens a run: the tracking server itself, or for a local ``sqlite:///`` store the
    MLflow UI that ``make mlflow-ui`` starts (``SIG2GPS_MLFLOW_UI_URL`` overrides its address)."""
    import os

    base = tracking_uri if tracking_uri.startswith(("http://", "https://")) else \
        os.environ.get("SIG2GPS_MLFLOW_UI_URL", "http://127.0.0.1:5000")
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def run_tags(city: str, stage: str, root: Path | None = None, data_version: str = "unversioned",
             **extra: Any) -> dict[str, str]:
    """Tags put on every MLflow run: city, stage, data version, git commit, plus extras (e.g. dagster_run_id)."""
    tags = {"city": city, "stage": stage, "data_version": data_version, "git_commit": git_commit(root)}
    tags.update({k: str(v) for k, v in extra.items() if v is not None})
    return tags


def artifact_location_for(tracking_uri: str) -> str | None:
    """Artifacts of a local ``sqlite:///`` store live beside it (``<db folder>/artifacts``); MLflow's
    default would be ``./mlruns`` in whatever folder the process runs in."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    d = Path(tracking_uri[len("sqlite:///"):]).parent / "artifacts"
    d.mkdir(parents=True, exist_ok=True)
    return d.resolve().as_uri()


def ensure_experiment(name: str, tracking_uri: str) -> str:
    """Create the experiment (artifacts beside a local store) if needed; return its id."""
    import mlflow

    init_mlflow_store(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return mlflow.create_experiment(name, artifact_location=artifact_location_for(tracking_uri))


@contextmanager
def mlflow_run(
    stage: str,
    city: str,
    tracking_uri: str,
    run_name: str | None = None,
    root: Path | None = None,
    **tags: Any,
) -> Iterator[Any]:
    """Start an MLflow run in experiment ``sig2gps-<stage>``, tagged for lineage."""
    import mlflow

    exp_id = ensure_experiment(f"sig2gps-{stage}", tracking_uri)
    with mlflow.start_run(experiment_id=exp_id, run_name=run_name or f"{city}-{stage}",
                          tags=run_tags(city, stage, root, **tags)) as run:
        yield run
