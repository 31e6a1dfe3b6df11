"""Atomic file and folder writes: a failed stage never leaves a half-written or overwritten output."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd


def write_parquet_atomic(df: pd.DataFrame, path: Path) -> Path:
    """Write a DataFrame to Parquet via a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".parquet.tmp", dir=path.parent)
    os.close(fd)
    try:
        df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_json_atomic(obj: Any, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default))
    os.replace(tmp, path)
    return path


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (pd.Timestamp,)):
        return o.isoformat()
    return str(o)


RENAME_EXCHANGE = 2  # linux/fs.h: renameat2 flag, swap the two paths atomically
_AT_FDCWD = -100
_NOT_SUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP}


def _renameat2() -> Any:
    """glibc's ``renameat2`` (2.28+), or None off Linux or where libc lacks it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # no libc handle / an older glibc: the caller falls back (documented)
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def exchange_paths(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (``renameat2(RENAME_EXCHANGE)``).

    Returns False, having changed nothing, where the system or the file system cannot do it
    (not Linux, glibc < 2.28, kernel < 3.15, or a file system without the flag); raises
    ``OSError`` for any other failure.
    """
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(str(a)), _AT_FDCWD, os.fsencode(str(b)), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in _NOT_SUPPORTED:
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def replace_dir_atomic(tmp_dir: Path, final_dir: Path) -> Path:
    """Put the fully written folder ``tmp_dir`` in place of ``final_dir``; the old one is then removed.

    ``tmp_dir`` must be on the same file system (a sibling, see :func:`atomic_dir`). A reader of
    ``final_dir`` sees the old folder or the new one, never a mix:

    * no ``final_dir`` yet: one ``rename``;
    * otherwise the two folders are exchanged in one ``renameat2(RENAME_EXCHANGE)`` call and the
      old one (now at ``tmp_dir``) is deleted;
    * fallback where the exchange is not supported (:func:`exchange_paths` returns False): the old
      folder is renamed aside, the new one renamed in, the old one deleted. A reader can then
      find ``final_dir`` missing for the instant between the two renames, but never half
      written, and a failure of the second rename puts the old folder back.
    """
    tmp_dir, final_dir = Path(tmp_dir), Path(final_dir)
    if not final_dir.exists() and not final_dir.is_symlink():
        os.rename(tmp_dir, final_dir)
        return final_dir
    if exchange_paths(tmp_dir, final_dir):
        shutil.rmtree(tmp_dir)
        return final_dir
    old = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.old-", dir=final_dir.parent))
    os.rename(final_dir, old / "d")
    try:
        os.rename(tmp_dir, final_dir)
    except BaseException:
        os.rename(old / "d", final_dir)
        shutil.rmtree(old, ignore_errors=True)
        raise
    shutil.rmtree(old)
    return final_dir


@contextmanager
def atomic_dir(final_dir: Path) -> Iterator[Path]:
    """Write a folder atomically: ``with atomic_dir(out) as tmp:`` write into ``tmp``.

    ``tmp`` is a fresh hidden sibling of ``final_dir``. When the block ends normally it replaces
    ``final_dir`` (:func:`replace_dir_atomic`); when it raises, ``tmp`` is deleted and
    ``final_dir`` (a previous complete folder, or nothing) is left exactly as it was.
    """
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.tmp-", dir=final_dir.parent))
    try:
        yield tmp
        replace_dir_atomic(tmp, final_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_table(path: Path, what: str) -> pd.DataFrame:
    """Read an upstream Parquet table with a clear error when it has not been materialised yet."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: table '{what}' not found; materialise its asset first")
    return pd.read_parquet(path)
