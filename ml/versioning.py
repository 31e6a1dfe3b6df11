"""DVC versioning of a city's data folder: one serialised ``dvc add`` and the resulting hash."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ml.tracking import data_version


class DataVersioningError(RuntimeError):
    pass


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    # DVC refuses concurrent commands; a file lock serialises ours across processes.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _dvc_env() -> dict[str, str]:
    # no network at run time: DVC otherwise starts a daemon that sends usage analytics
    return {**os.environ, "DVC_NO_ANALYTICS": "1"}


def _dvc(root: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True, env=_dvc_env())
    if proc.returncode != 0:
        raise DataVersioningError(f"`dvc {' '.join(args)}` failed in {root}:\n{proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def _has_default_remote(root: Path) -> bool:
    proc = subprocess.run([sys.executable, "-m", "dvc", "remote", "default"], cwd=root, capture_output=True, text=True,
                          env=_dvc_env())
    return proc.returncode == 0 and bool(proc.stdout.strip())


#: what DVC never versions: the temporaries of a write in progress (``ml.io``'s atomic writers)
DVC_IGNORE = (".*.tmp-*", ".*.old-*")


def ensure_dvc_repo(root: Path) -> None:
    """``dvc init`` if the folder is not a DVC repository yet (``--no-scm`` outside git), and a ``.dvcignore``
    that keeps the temporaries of writes in progress out of the versioned data."""
    if not (root / ".dvc").is_dir():
        _dvc(root, "init", "-q", *([] if (root / ".git").exists() else ["--no-scm"]))
    ignore = root / ".dvcignore"
    have = ignore.read_text().splitlines() if ignore.is_file() else []
    missing = [p for p in DVC_IGNORE if p not in have]
    if missing:
        ignore.write_text("\n".join([*have, *missing]) + "\n")


def version_data(root: Path, data_dir: Path, push: bool = True) -> str:
    """``dvc add`` one city's data folder (serialised across processes), push to the default remote if
    one is set, and return its hash. The pointer file is written beside the folder
    (``data/<city>/<profile>.dvc`` for ``data/<city>/<profile>/``)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataVersioningError(f"{data_dir}: nothing to version yet; materialise the raw assets first")
    rel = data_dir.resolve().relative_to(Path(root).resolve())
    with _exclusive_lock(root / ".dvc_lock"):
        ensure_dvc_repo(root)
        _dvc(root, "add", "-q", str(rel))
        pointer = data_dir.with_name(data_dir.name + ".dvc")
        if push and _has_default_remote(root):
            _dvc(root, "push", "-q", str(pointer.relative_to(root)))
    return data_version(pointer)
