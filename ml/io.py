"""Atomic file and folder writes: a failed stage never leaves a half-written or overwritten output."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd


class OutputWriteError(OSError):
    """An output could not be written (full disk, read-only or missing folder, a file where a folder
    should be). The message names the path, what happened and what to do; the previous file or folder
    at that path, if any, is unchanged."""


_WRITE_HINTS = {
    errno.ENOSPC: "free space on the file system that holds {folder}, then run again",
    errno.EDQUOT: "free space (disk quota exceeded) on the file system that holds {folder}, then run again",
    errno.EACCES: "make {folder} writable for this user, then run again",
    errno.EPERM: "make {folder} writable for this user, then run again",
    errno.EROFS: "{folder} is on a read-only file system; point the project root (SIG2GPS_ROOT) at a writable one",
    errno.ENOTDIR: "{blocking} is a file where a folder is needed; move it away, then run again",
    errno.EEXIST: "{blocking} is a file where a folder is needed; move it away, then run again",
    errno.EISDIR: "a folder stands where the file {path} should be; move it away, then run again",
}


def write_error(path: Path, exc: OSError, blocking: Path | None = None, kept: Path | None = None) -> OutputWriteError:
    """The clear form of ``exc``, raised while writing ``path``: path, what happened, what to do
    (``blocking``: the entry the error is about, when it is not ``path``)."""
    path = Path(path)
    code = exc.errno if exc.errno is not None else 0
    name = errno.errorcode.get(code, "")
    what = exc.strerror or str(exc)
    hint = _WRITE_HINTS.get(code, "check that {folder} exists and is writable, then run again")
    msg = (f"cannot write {path}: {what}{f' ({name})' if name else ''}; "
           f"{hint.format(folder=path.parent, path=path, blocking=blocking or path.parent)}. Nothing was replaced: the previous "
           f"{(kept or path).name}, if any, is unchanged.")
    return OutputWriteError(code, msg)


#: errors that can only come from writing, whoever raised them inside an atomic block
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


@contextmanager
def _clear_write_errors(path: Path, only: frozenset[int] | None = None, tmp: Path | None = None,
                        use_named: bool = False) -> Iterator[None]:
    """Raise OSErrors (those with an errno in ``only``, when given) as :class:`OutputWriteError` naming
    ``path``, the output as the caller named it, never a hidden temporary: an error about a file inside
    the temporary folder ``tmp`` names that file's place in ``path``; with ``use_named`` the file the
    error names (a file standing where a folder should be)."""
    try:
        yield
    except OutputWriteError:
        raise
    except OSError as exc:
        if only is not None and exc.errno not in only:
            raise
        named = Path(exc.filename) if isinstance(exc.filename, (str, os.PathLike)) else None
        where, blocking = Path(path), None
        if named is not None and use_named:
            blocking = next((q for q in (named, *named.parents) if q.exists() and not q.is_dir()), named)
        elif named is not None and tmp is not None and named != tmp and named.is_relative_to(tmp):
            where = where / named.relative_to(tmp)
        raise write_error(where, exc, blocking, kept=Path(path)) from exc


def temp_prefix(name: str) -> str:
    """Prefix of the hidden temporary sibling of an output ``name``: ``.<name>.tmp-<pid>-`` (the pid lets
    :func:`remove_stale_temps` tell a killed writer's leftovers from a live writer's files)."""
    return f".{name}.tmp-{os.getpid()}-"


_TEMP_RE = re.compile(r"^\..+\.(?:tmp|old)-(\d+)-")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(*folders: Path, recursive: bool = True) -> list[Path]:
    """Delete the temporary files and folders that writers killed mid-write left behind (hidden
    ``.<name>.tmp-<pid>-*`` / ``.<name>.old-<pid>-*`` entries whose process no longer runs) under
    ``folders``; a live writer's temporaries are kept. Returns what was removed."""
    removed: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        stack = [folder]
        while stack:
            d = stack.pop()
            try:
                entries = list(os.scandir(d))
            except OSError:
                continue
            for e in entries:
                m = _TEMP_RE.match(e.name)
                if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
                    p = Path(e.path)
                    if e.is_dir(follow_symlinks=False):
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        p.unlink(missing_ok=True)
                    removed.append(p)
                elif recursive and e.is_dir(follow_symlinks=False):
                    stack.append(Path(e.path))
    return removed


def _mkdir_parent(path: Path) -> None:
    with _clear_write_errors(path, use_named=True):
        path.parent.mkdir(parents=True, exist_ok=True)


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Write one file atomically: ``with atomic_file(p) as tmp:`` write ``tmp``; it then replaces ``p``
    in one rename. On an error (a full disk, say) ``tmp`` is deleted, ``p`` is left as it was and the
    error is an :class:`OutputWriteError` naming ``p``."""
    path = Path(path)
    _mkdir_parent(path)
    with _clear_write_errors(path):
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), dir=path.parent)
        os.close(fd)
    try:
        with _clear_write_errors(path, only=_WRITE_ERRNOS):
            yield Path(tmp)
        with _clear_write_errors(path):
            os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def write_parquet_atomic(df: pd.DataFrame, path: Path) -> Path:
    """Write a DataFrame to Parquet via a temporary file and an atomic rename."""
    path = Path(path)
    with atomic_file(path) as tmp:
        df.to_parquet(tmp, index=False)
    return path


def write_json_atomic(obj: Any, path: Path) -> Path:
    path = Path(path)
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default)
    with atomic_file(path) as tmp:
        tmp.write_text(text)
    return path


def write_text_atomic(text: str, path: Path) -> Path:
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_text(text)
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
    _check_not_a_file(final_dir)  # an exchange would swap a file for the folder and the file would be lost
    if not final_dir.exists() and not final_dir.is_symlink():
        os.rename(tmp_dir, final_dir)
        return final_dir
    if exchange_paths(tmp_dir, final_dir):
        shutil.rmtree(tmp_dir)
        return final_dir
    old = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.old-{os.getpid()}-", dir=final_dir.parent))
    os.rename(final_dir, old / "d")
    try:
        os.rename(tmp_dir, final_dir)
    except BaseException:
        os.rename(old / "d", final_dir)
        shutil.rmtree(old, ignore_errors=True)
        raise
    shutil.rmtree(old)
    return final_dir


def _check_not_a_file(final_dir: Path) -> None:
    if (final_dir.exists() or final_dir.is_symlink()) and not final_dir.is_dir():
        raise write_error(final_dir, OSError(errno.ENOTDIR, "a file is in the way of the output folder"),
                          blocking=final_dir)


@contextmanager
def atomic_dir(final_dir: Path) -> Iterator[Path]:
    """Write a folder atomically: ``with atomic_dir(out) as tmp:`` write into ``tmp``.

    ``tmp`` is a fresh hidden sibling of ``final_dir``. When the block ends normally it replaces
    ``final_dir`` (:func:`replace_dir_atomic`); when it raises, ``tmp`` is deleted and
    ``final_dir`` (a previous complete folder, or nothing) is left exactly as it was. A file system
    error (full disk, a file where the folder should be) is raised as :class:`OutputWriteError`, naming
    the path. A writer killed mid-way leaves ``tmp`` behind, hidden and named after its process, for
    :func:`remove_stale_temps` to delete; no reader takes it for output.
    """
    final_dir = Path(final_dir)
    _mkdir_parent(final_dir)
    _check_not_a_file(final_dir)
    with _clear_write_errors(final_dir):
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(final_dir.name), dir=final_dir.parent))
    try:
        with _clear_write_errors(final_dir, only=_WRITE_ERRNOS, tmp=tmp):
            yield tmp
        with _clear_write_errors(final_dir):
            replace_dir_atomic(tmp, final_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_table(path: Path, what: str) -> pd.DataFrame:
    """Read an upstream Parquet table with a clear error when it has not been materialised yet."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: table '{what}' not found; materialise its asset first")
    return pd.read_parquet(path)
