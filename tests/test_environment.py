"""The install step's dependency fix holds: Dagster's selection parser and DVC both work."""

import subprocess
import sys


def test_dagster_selection_parser_works() -> None:
    import dagster as dg

    sel = dg.AssetSelection.from_string("road_network*")
    assert sel is not None


def test_dvc_runs_without_hydra(tmp_path) -> None:
    run = lambda *a: subprocess.run([sys.executable, "-m", "dvc", *a], cwd=tmp_path, capture_output=True, text=True)
    assert run("init", "-q", "--no-scm").returncode == 0
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "t.txt").write_text("x")
    r = run("add", "-q", "data")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "data.dvc").is_file()
