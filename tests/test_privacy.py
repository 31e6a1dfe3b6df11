"""Private data kept private: raw device and vehicle ids never leave the user's own input files.

A city is imported whose device and vehicle ids are recognisable strings (``PHONE-ALICE-0001``,
``TAXI-BOB-0041``); the whole pipeline runs in-process through Dagster (ci profile) over a temporary
project root, Dagster instance and MLflow sqlite store; then every file the run left (MLflow store
and artifacts, the Dagster instance with its sqlite event logs, ``outputs/``, ``data/``, the DVC
cache, run logs) and everything printed or logged is searched for any raw id (and for the pseudonym
key itself). Files are searched as bytes (UTF-8, and UTF-16/32 as numpy string arrays hold text)
and, where a raw id could hide inside compression (Parquet pages, zip/npz/checkpoints, gzip, bzip2,
xz), also decoded. The import without ``SIG2GPS_PSEUDONYM_KEY`` must fail clearly (no
default key), and the UIs and model server must bind to 127.0.0.1.
"""

from __future__ import annotations

import bz2
import gzip
import io
import logging
import lzma
import re
import zipfile
from pathlib import Path

import dagster as dg
import pytest

from imported_city import KEY, simulate_raw_tables, step_failures, tree_digest, write_import_city
from ml.ingest import KEY_ENV_VAR

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"


@pytest.fixture(scope="module")
def raw():
    """Simulated ci-profile tables with recognisable raw ids, and those ids."""
    return simulate_raw_tables()


@pytest.fixture()
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A temporary project root, Dagster home and MLflow store; nothing of the repository's is touched."""
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.setenv("SIG2GPS_ROOT", str(root))
    monkeypatch.setenv(KEY_ENV_VAR, KEY)
    monkeypatch.setenv("SIG2GPS_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow_store' / 'mlflow.db'}")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "mlflow_store").mkdir()
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        yield root, instance, tmp_path


# --------------------------------------------------------------------------- searching
def _decoded(blob: bytes, depth: int = 0) -> list[bytes]:
    """``blob`` and, for compressed containers, what they hold (recursively, a few levels deep)."""
    out = [blob]
    if depth > 3 or len(blob) < 4:
        return out
    inner: list[bytes] = []
    try:
        if blob[:4] == b"PAR1":  # Parquet (also DVC's cache copies, which have no suffix)
            import pyarrow.csv as pacsv
            import pyarrow.parquet as pq

            table = pq.read_table(io.BytesIO(blob))
            buf = io.BytesIO()
            pacsv.write_csv(table, buf)
            inner += [buf.getvalue(), str(table.schema.metadata).encode()]
        elif blob[:4] == b"PK\x03\x04":  # zip: npz, torch checkpoints, MLflow model archives
            with zipfile.ZipFile(io.BytesIO(blob)) as z:
                inner += [z.read(n) for n in z.namelist()]
        elif blob[:2] == b"\x1f\x8b":
            inner.append(gzip.decompress(blob))
        elif blob[:3] == b"BZh":
            inner.append(bz2.decompress(blob))
        elif blob[:6] == b"\xfd7zXZ\x00":
            inner.append(lzma.decompress(blob))
    except Exception as exc:  # noqa: BLE001 - an unreadable container is searched as bytes only, and said so
        inner.append(f"(could not decode: {exc})".encode())
    for b in inner:
        out += _decoded(b, depth + 1)
    return out


def find_raw_ids(paths: list[Path], needles: list[str]) -> tuple[list[str], int]:
    """(``file: id`` for every raw id found, number of files searched) under the given files/folders."""
    # UTF-8, and UTF-16/32 as numpy string arrays (npy, npz) and some databases store text
    encoded = [(n, n.encode(enc)) for n in needles for enc in ("utf-8", "utf-16-le", "utf-32-le")]
    hits: list[str] = []
    n_files = 0
    for top in paths:
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for f in files:
            n_files += 1
            for blob in _decoded(f.read_bytes()):
                hits += [f"{f}: {n}" for n, b in encoded if b in blob]
    return sorted(set(hits)), n_files


def test_the_search_finds_ids_in_compressed_files(tmp_path: Path) -> None:
    """The search itself: a raw id inside snappy Parquet, npz and gzip is found (a byte search alone would miss it)."""
    import numpy as np
    import pandas as pd

    ids = [f"PHONE-ALICE-{i:04d}" for i in range(200)]
    pd.DataFrame({"device_id": ids * 3}).to_parquet(tmp_path / "t.parquet")
    np.savez_compressed(tmp_path / "a.npz", ids=np.array(ids))
    (tmp_path / "x.gz").write_bytes(gzip.compress("\n".join(ids).encode()))
    hits, n = find_raw_ids([tmp_path], ["PHONE-ALICE-0123"])
    assert n == 3 and len(hits) == 3, hits


# --------------------------------------------------------------------------- the whole pipeline
@pytest.mark.slow
def test_no_raw_id_anywhere_after_the_whole_pipeline(isolated, raw, capfd: pytest.CaptureFixture,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    from dagster_project.runner import run_city

    root, instance, tmp = isolated
    tables, raw_ids = raw
    write_import_city(root, "private", "csv", tables)
    caplog.set_level(logging.DEBUG)
    assert run_city("private", selection="*", profile="ci", root=root, instance=instance, raise_on_error=True)
    console = capfd.readouterr()

    # the run did produce everything the search must cover
    produced = {
        "evaluation report": list((root / "outputs").rglob("evaluation.json")),
        "run log": list((root / "outputs").rglob("run_*.log")),
        "signaling table": list((root / "data").rglob("signaling.parquet")),
        "DVC cache": [p for p in (root / ".dvc" / "cache").rglob("*") if p.is_file()] if (root / ".dvc").is_dir() else [],
        "MLflow store": list((tmp / "mlflow_store").glob("mlflow.db")),
        "MLflow artifacts": [p for p in (tmp / "mlflow_store").rglob("*") if p.is_file() and p.suffix != ".db"],
        "Dagster sqlite storage": list(Path(instance.root_directory).rglob("*.db")),
    }
    assert all(produced.values()), {k: len(v) for k, v in produced.items()}
    events = instance.get_records_for_run(instance.get_runs(limit=1)[0].run_id).records
    assert len(events) > 100  # the event log really holds the run

    # the search would see them: the user's input files hold the raw ids
    positive, _ = find_raw_ids([root / "incoming"], raw_ids)
    assert {h.split(": ")[1] for h in positive} == set(raw_ids)

    searched = [p for p in root.iterdir() if p.name != "incoming"]  # data, outputs, cities, .dvc, data.dvc, ...
    searched += [tmp / "mlflow_store", Path(instance.root_directory)]
    hits, n_files = find_raw_ids(searched, raw_ids + [KEY])  # the pseudonym key is never written either
    assert n_files > 50
    assert not hits, f"{len(hits)} raw ids found, e.g.\n" + "\n".join(hits[:20])
    printed = console.out + console.err + caplog.text
    assert len(printed) > 1000
    leaked = [r for r in raw_ids + [KEY] if r in printed]
    assert not leaked, f"raw ids printed or logged: {leaked[:10]}"
    # the ids were pseudonymised, not dropped: the pipeline saw every device and vehicle
    import pandas as pd

    sig = pd.read_parquet(produced["signaling table"][0])
    assert sig["device_id"].nunique() == tables["signaling"]["device_id"].nunique()
    assert sig["device_id"].str.fullmatch(r"[0-9a-f]{20}").all()


# --------------------------------------------------------------------------- no default key
@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_missing_pseudonym_key_is_a_clear_error(isolated, raw, monkeypatch: pytest.MonkeyPatch, value) -> None:
    """Without SIG2GPS_PSEUDONYM_KEY the import fails (no default key), naming the variable and how to set it;
    nothing is written."""
    from dagster_project.runner import run_city
    from ml.ingest import PseudonymKeyError, load_imported_tables
    from ml.cities import load_city

    root, instance, _ = isolated
    tables, raw_ids = raw
    write_import_city(root, "nokey", "parquet", tables)
    assert run_city("nokey", selection="road_network", profile="ci", root=root, instance=instance, raise_on_error=True)
    before = tree_digest(root / "data")
    if value is None:
        monkeypatch.delenv(KEY_ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(KEY_ENV_VAR, value)
    with pytest.raises(PseudonymKeyError) as info:
        load_imported_tables(load_city("nokey", root), root)
    msg = str(info.value)
    assert f"environment variable {KEY_ENV_VAR} is not set" in msg and "cities/nokey.toml [imported]" in msg
    assert "secrets.token_hex" in msg  # says how to make one

    assert not run_city("nokey", selection="cell_towers,taxi_gps", profile="ci", root=root, instance=instance)
    failures = step_failures(instance, instance.get_runs(limit=1)[0].run_id)
    assert len(failures) == 2 and all(f"{KEY_ENV_VAR} is not set" in f for f in failures), failures
    assert tree_digest(root / "data") == before
    assert instance.get_latest_materialization_event(dg.AssetKey("cell_towers")) is None


# --------------------------------------------------------------------------- loopback only
def make_recipes(makefile: str) -> dict[str, str]:
    """Target -> its recipe (continuation lines joined) from Makefile text."""
    recipes: dict[str, str] = {}
    target = None
    for line in makefile.replace("\\\n", " ").splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", line)
        if m:
            target = m.group(1)
            recipes[target] = ""
        elif line.startswith("\t") and target:
            recipes[target] += line.strip() + "\n"
        elif line.strip() and not line.startswith("#"):
            target = None
    return recipes


_SERVER = re.compile(r"(dagster(?:-webserver)? dev|dagster-webserver|mlflow (?:ui|server)|mlflow models serve)\b[^\n]*")


def host_problems(text: str, where: str) -> list[str]:
    """Server commands in ``text`` that do not bind to 127.0.0.1 (``-h``/``--host``), or that bind elsewhere."""
    problems = []
    commands = [m.group(0) for m in _SERVER.finditer(text)]
    for cmd in commands:
        hosts = re.findall(r"(?:^|\s)(?:-h|--host)(?:\s+|=)[\"']?([^\s\"']+)", cmd)
        if hosts != [LOOPBACK]:
            problems.append(f"{where}: `{cmd.strip()}` binds to {hosts or 'the default host'}, not {LOOPBACK}")
    if re.search(r"0\.0\.0\.0|--host\s*=?\s*::(?:\s|$)", text):
        problems.append(f"{where}: binds to all interfaces")
    return problems


def loopback_problems(makefile: str, readme: str) -> list[str]:
    recipes = make_recipes(makefile)
    problems = []
    for target in ("ui", "mlflow-ui", "serve"):
        recipe = recipes.get(target, "")
        if not _SERVER.search(recipe):
            problems.append(f"Makefile target '{target}' starts no server (recipe: {recipe!r})")
        problems += host_problems(recipe, f"Makefile target '{target}'")
    documented = [m.group(0) for m in re.finditer(r"mlflow models serve[^\n`]*", readme)]
    if not documented:
        problems.append("README.md documents no `mlflow models serve` command")
    for cmd in documented:
        problems += host_problems(cmd, "README.md")
    return problems


def test_servers_bind_to_loopback() -> None:
    """`make ui`, `make mlflow-ui`, `make serve` and the README's `mlflow models serve` bind to 127.0.0.1."""
    makefile = (REPO / "Makefile").read_text()
    readme = (REPO / "README.md").read_text()
    assert loopback_problems(makefile, readme) == []
    # and the check itself catches a server left on all interfaces or on the default host
    assert loopback_problems(makefile.replace("-h 127.0.0.1 -p 3000", "-h 0.0.0.0 -p 3000"), readme)
    assert loopback_problems(makefile, readme.replace("-h 127.0.0.1 -p 5001", "-p 5001"))
