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


def test_importing_the_library_turns_telemetry_off() -> None:
    """No network at run time: MLflow, DVC, GX and Dagster telemetry and the HF hub are off in every process
    that imports ``ml`` (a user may still turn them on explicitly)."""
    import os

    code = ("import os, ml; print(','.join(os.environ[k] for k in ('MLFLOW_DISABLE_TELEMETRY', 'DO_NOT_TRACK', "
            "'DVC_NO_ANALYTICS', 'GX_ANALYTICS_ENABLED', 'HF_HUB_OFFLINE', 'DAGSTER_DISABLE_TELEMETRY')))")
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK", "DVC_NO_ANALYTICS",
                                                           "GX_ANALYTICS_ENABLED", "HF_HUB_OFFLINE",
                                                           "DAGSTER_DISABLE_TELEMETRY")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "true,true,1,false,1,1"
