"""DVC versioning of ``data/``: one serialised ``dvc add data`` and the resulting hash."""

from __future__ import annotations

import fcntl
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


def _dvc(root: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DataVersioningError(f"`dvc {' '.join(args)}` failed in {root}:\n{proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def _has_default_remote(root: Path) -> bool:
    proc = subprocess.run([sys.executable, "-m", "dvc", "remote", "default"], cwd=root, capture_output=True, text=True)
    return proc.returncode == 0 and bool(proc.stdout.strip())


def ensure_dvc_repo(root: Path) -> None:
    """``dvc init`` if the folder is not a DVC repository yet (``--no-scm`` outside git)."""
    if (root / ".dvc").is_dir():
        return
    _dvc(root, "init", "-q", *([] if (root / ".git").exists() else ["--no-scm"]))


def version_data(root: Path, push: bool = True) -> str:
    """Run ``dvc add data`` (serialised), push to the default remote if one is set, return the hash."""
    if not (root / "data").is_dir():
        raise DataVersioningError(f"{root / 'data'}: nothing to version yet; materialise the raw assets first")
    with _exclusive_lock(root / ".dvc_lock"):
        ensure_dvc_repo(root)
        _dvc(root, "add", "-q", "data")
        if push and _has_default_remote(root):
            _dvc(root, "push", "-q", "data.dvc")
    return data_version(root)
