"""ml.io: atomic folder replacement (the one used by the render stage and the Dagster assets)."""

from __future__ import annotations

import os

import pytest

import ml.io as io
from ml.io import atomic_dir, exchange_paths, replace_dir_atomic


def _write(d, **files):
    for name, text in files.items():
        (d / name).write_text(text)


def _tree(d):
    return {p.name: p.read_text() for p in sorted(d.iterdir())}


def test_atomic_dir_creates_then_replaces(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.tmp-") and not out.exists()
        _write(tmp, a="1", b="2")
    assert _tree(out) == {"a": "1", "b": "2"}
    with atomic_dir(out) as tmp:
        _write(tmp, c="3")
        assert _tree(out) == {"a": "1", "b": "2"}  # readers see the old folder until the swap
    assert _tree(out) == {"c": "3"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary or old folder left


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames-fallback"])
def test_failure_while_writing_leaves_previous_folder_intact(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(io, "exchange_paths", lambda a, b: False)
    out = tmp_path / "out"
    with atomic_dir(out) as tmp:
        _write(tmp, a="old")
    inode = out.stat().st_ino
    with pytest.raises(RuntimeError, match="half way"):
        with atomic_dir(out) as tmp:
            _write(tmp, a="new", b="partial")
            raise RuntimeError("half way")
    assert _tree(out) == {"a": "old"} and out.stat().st_ino == inode
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    # and a failure with no previous folder leaves nothing
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "fresh") as tmp:
            _write(tmp, a="x")
            raise RuntimeError("boom")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_exchange_is_one_step_where_supported(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    _write(a, x="a"), _write(b, y="b")
    if not exchange_paths(a, b):
        pytest.skip("renameat2(RENAME_EXCHANGE) not available here; replace_dir_atomic uses the fallback")
    assert _tree(a) == {"y": "b"} and _tree(b) == {"x": "a"}


def test_replace_uses_the_exchange_and_never_removes_the_target(tmp_path, monkeypatch):
    """With the exchange, ``out`` exists at every step (no rename of it aside)."""
    out, new = tmp_path / "out", tmp_path / ".new"
    out.mkdir(), new.mkdir()
    _write(out, a="old"), _write(new, a="new")
    calls = []
    real_rename = os.rename
    monkeypatch.setattr(io, "exchange_paths", lambda a, b: calls.append((a, b)) or True)
    monkeypatch.setattr(io.os, "rename", lambda *a: pytest.fail(f"rename {a} while an exchange is available"))
    monkeypatch.setattr(io.shutil, "rmtree", lambda p, **k: calls.append(("rmtree", p)))
    replace_dir_atomic(new, out)
    assert calls == [(new, out), ("rmtree", new)]
    monkeypatch.setattr(io.os, "rename", real_rename)


def test_fallback_restores_the_old_folder_when_the_second_rename_fails(tmp_path, monkeypatch):
    out, new = tmp_path / "out", tmp_path / ".new"
    out.mkdir(), new.mkdir()
    _write(out, a="old"), _write(new, a="new")
    monkeypatch.setattr(io, "exchange_paths", lambda a, b: False)
    real_rename = os.rename

    def rename(src, dst):
        if str(src) == str(new):
            raise OSError("disk gone")
        real_rename(src, dst)

    monkeypatch.setattr(io.os, "rename", rename)
    with pytest.raises(OSError, match="disk gone"):
        replace_dir_atomic(new, out)
    assert _tree(out) == {"a": "old"} and _tree(new) == {"a": "new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".new", "out"]
