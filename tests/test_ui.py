"""The Dagster UI and the MLflow UI, driven in headless Chromium over a materialised ci-profile city.

Run with ``make test-ui`` (``pytest -m ui``); ``make test`` deselects this module. A session fixture
materialises every asset of a tiny synthetic city in-process (like tests/test_dagster.py) into a
temporary project root (a git repository, so runs carry a real commit) with its own DAGSTER_HOME and
MLflow sqlite store, then runs ``cell_towers`` once more on corrupted towers so that its Great
Expectations check fails. It starts ``dagster-webserver`` and ``mlflow ui`` on free 127.0.0.1 ports
and stops them at teardown. The browser is the system's Chromium (Debian's ``chromium`` package;
``SIG2GPS_CHROMIUM`` overrides the path) driven by Playwright; it resolves no host but 127.0.0.1.
Screenshots go to ``outputs/ui/``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ui, pytest.mark.timeout(420)]

REPO_ROOT = Path(__file__).resolve().parents[1]
SHOTS = REPO_ROOT / "outputs" / "ui"
CITY = "uitown"
BIN = Path(sys.executable).parent
WAIT_S = 30.0  # longest wait for one page element (a loaded 2-core machine renders slowly)
START_S = 180.0  # longest wait for a server to come up
# the viewport for the asset graph: large enough that Dagster draws full nodes (name, check status)
GRAPH_VIEWPORT = {"width": 3200, "height": 2600}
PAGE_VIEWPORT = {"width": 1600, "height": 1100}
NODE = '[class*="AssetNode_assetNodeContainer"]'  # a full asset node in Dagster's lineage graph
FAILED_CHECK = ("cell_towers", "towers_contract")  # the check the fixture's second run fails

# no proxies for the loopback servers
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post_json(url: str, payload: dict, timeout: float = 10.0) -> dict:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    with _LOCAL.open(req, timeout=timeout) as r:
        return json.loads(r.read())


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    log: Path
    url: str

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM to the server's own process group (it started code servers / workers), then SIGKILL."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        try:  # children left behind in the group
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def _start(name: str, cmd: list[str], cwd: Path, env: dict, log: Path, url: str) -> Server:
    f = log.open("w")
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    f.close()
    return Server(name, proc, log, url)


def _wait_until(server: Server, ready, what: str) -> object:
    """Poll ``ready()`` (truthy = done) every half second for at most START_S seconds."""
    deadline = time.monotonic() + START_S
    last = None
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.proc.returncode}:\n{server.tail()}")
        try:
            out = ready()
            if out:
                return out
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.5)
    raise RuntimeError(f"{server.name}: {what} not ready after {START_S:.0f} s (last: {last!r}):\n{server.tail()}")


def _dagster_location(server: Server) -> str | None:
    """The code location's name once it has loaded (None while loading; raises on a load error)."""
    q = ("{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus "
         "locationOrLoadError { __typename ... on PythonError { message } } } } } }")
    data = _post_json(server.url + "/graphql", {"query": q})["data"]["workspaceOrError"]
    entries = data.get("locationEntries") or []
    if not entries or any(e["loadStatus"] != "LOADED" for e in entries):
        return None
    err = [e for e in entries if (e.get("locationOrLoadError") or {}).get("__typename") == "PythonError"]
    if err:
        raise AssertionError(f"code location failed to load: {err[0]['locationOrLoadError']['message']}")
    return entries[0]["name"]


@dataclass
class UICity:
    root: Path
    home: Path
    dagster: str  # base URL
    mlflow: str  # base URL
    location: str  # Dagster code location name
    groups: dict[str, list[str]]  # group -> asset keys (definitions)
    checks: dict[str, list[str]]  # asset key -> its check names (definitions)
    failed_checks: set[tuple[str, str]]
    bad_run_id: str
    metadata: dict[str, dict]  # asset key -> latest materialisation metadata (entry values)
    gps_first_vehicle: str
    git_head: str
    data_version: str
    runs: dict[str, list[dict]] = field(default_factory=dict)  # experiment name -> top-level [{id, name, tags}]
    n_matching: dict[str, int] = field(default_factory=dict)  # experiment name -> all its runs (nested too)
    experiment_ids: dict[str, str] = field(default_factory=dict)
    model: str = ""
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> version


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "core.hooksPath=/dev/null", "-c", "user.name=sig2gps-ui-test",
                           "-c", "user.email=ui-test@localhost", *args], cwd=root, check=True,
                          capture_output=True, text=True).stdout.strip()


def _materialise(root: Path, home: Path) -> dict:
    """Every asset of CITY, then cell_towers on corrupted towers (its check fails); what the UIs should show."""
    import dagster as dg
    import pandas as pd

    import ml.simulate
    from dagster_project.definitions import defs
    from dagster_project.runner import run_city

    facts: dict = {}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert run_city(CITY, selection="*", profile="ci", root=root, instance=instance, raise_on_error=True)
        good = ml.simulate.simulate_towers

        def corrupted(*a, **k):  # the approach of test_dagster's bad-input test
            t, antennas = good(*a, **k)
            t.loc[t.index[:3], "lat"] = 10.0
            return t, antennas

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(ml.simulate, "simulate_towers", corrupted)
            assert not run_city(CITY, selection="cell_towers", profile="ci", root=root, instance=instance)
        facts["bad_run_id"] = instance.get_runs(limit=1)[0].run_id

        graph = defs.resolve_asset_graph()
        groups: dict[str, list[str]] = {}
        for key in graph.get_all_asset_keys():
            groups.setdefault(graph.get(key).group_name, []).append(key.to_user_string())
        checks: dict[str, list[str]] = {}
        for ck in graph.asset_check_keys:
            checks.setdefault(ck.asset_key.to_user_string(), []).append(ck.name)
        failed = set()
        for asset, names in checks.items():
            for name in names:
                key = dg.AssetCheckKey(dg.AssetKey(asset), name)
                rec = instance.event_log_storage.get_latest_asset_check_execution_by_key([key]).get(key)
                if rec is not None and rec.status.value == "FAILED":
                    failed.add((asset, name))
        metadata = {}
        for a in ("road_network", "taxi_gps"):
            mat = instance.get_latest_materialization_event(dg.AssetKey(a)).asset_materialization
            metadata[a] = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
        facts.update(groups={g: sorted(v) for g, v in groups.items()},
                     checks={a: sorted(v) for a, v in checks.items()}, failed_checks=failed, metadata=metadata)
    facts["gps_first_vehicle"] = str(pd.read_parquet(metadata["taxi_gps"]["path"])["vehicle_id"].iloc[0])
    return facts


def _mlflow_facts(root: Path) -> dict:
    import mlflow

    from ml.paths import CityPaths
    from ml.tracking import data_version

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    runs, exp_ids, n_matching = {}, {}, {}
    for stage in ("sft", "gdpo", "evaluation"):
        exp = client.get_experiment_by_name(f"sig2gps-{stage}")
        assert exp is not None, f"no MLflow experiment sig2gps-{stage}"
        exp_ids[exp.name] = exp.experiment_id
        # the list counts every run but shows the evaluation's per-method runs folded under their parent:
        # the top-level runs are the ones whose rows are checked
        found = client.search_runs([exp.experiment_id])
        n_matching[exp.name] = len(found)
        runs[exp.name] = [{"id": r.info.run_id, "name": r.info.run_name, "tags": dict(r.data.tags)}
                          for r in found if "mlflow.parentRunId" not in r.data.tags]
    model = f"sig2gps-video-{CITY}"
    aliases = {a: str(v) for a, v in client.get_registered_model(model).aliases.items()}
    return {"runs": runs, "n_matching": n_matching, "experiment_ids": exp_ids, "model": model, "aliases": aliases,
            "data_version": data_version(CityPaths(root, CITY, "ci").data_version_file)}


@pytest.fixture(scope="session")
def ui_city(tmp_path_factory: pytest.TempPathFactory) -> UICity:
    from ml.cities import CityConfig, RoadSource, write_city

    base = tmp_path_factory.mktemp("ui")
    root, home, logs = base / "project", base / "dagster_home", base / "logs"
    for d in (root, home, logs):
        d.mkdir()
    shutil.copy(REPO_ROOT / ".dagster_home" / "dagster.yaml", home / "dagster.yaml")
    write_city(CityConfig(name=CITY, seed=3, roads=RoadSource(source="synthetic", kind="grid", size_km=1.5)), root)
    _git(root, "init", "-q")
    _git(root, "add", "cities")
    _git(root, "commit", "-q", "-m", "a city for the UI tests")
    git_head = _git(root, "rev-parse", "HEAD")

    env_over = {"SIG2GPS_ROOT": str(root), "DAGSTER_HOME": str(home), "GX_ANALYTICS_ENABLED": "false",
                "HF_HUB_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
                # mlflow ui would also start a job runner with seven task consumers the pages do not need
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env_over.items():
            mp.setenv(k, v)
        for k in ("SIG2GPS_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            mp.delenv(k, raising=False)
        facts = _materialise(root, home)
        facts.update(_mlflow_facts(root))

    env = {k: v for k, v in os.environ.items() if k not in ("SIG2GPS_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI")}
    env.update(env_over)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    dport, mport = _free_port(), _free_port()
    servers = [
        _start("dagster-webserver", [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(dport),
                                     "-m", "dagster_project.definitions"],
               root, env, logs / "dagster-webserver.log", f"http://127.0.0.1:{dport}"),
        _start("mlflow ui", [str(BIN / "mlflow"), "ui", "--backend-store-uri", f"sqlite:///{root / 'mlflow' / 'mlflow.db'}",
                             "--default-artifact-root", str(root / "mlflow" / "artifacts"),
                             "-h", "127.0.0.1", "-p", str(mport)],
               root, env, logs / "mlflow-ui.log", f"http://127.0.0.1:{mport}"),
    ]
    try:
        dagster, mlflow_ui = servers
        location = _wait_until(dagster, lambda: _dagster_location(dagster), "code location")
        # the community sign-up dialog Dagster shows once per instance on 127.0.0.1 would cover the pages
        _post_json(dagster.url + "/graphql", {"query": "mutation { setNuxSeen }"})
        _wait_until(mlflow_ui, lambda: _LOCAL.open(mlflow_ui.url + "/health", timeout=5).read().strip() == b"OK",
                    "/health")
        yield UICity(root=root, home=home, dagster=dagster.url, mlflow=mlflow_ui.url, location=location,
                     git_head=git_head, **facts)
    finally:
        for s in servers:
            s.stop()


def _chromium() -> str:
    path = os.environ.get("SIG2GPS_CHROMIUM") or next(
        (p for p in (shutil.which(n) for n in ("chromium", "chromium-browser")) if p), None)
    if not path:
        pytest.fail("no Chromium found: `make test-ui` installs Debian's chromium (apt-get install chromium), "
                    "or set SIG2GPS_CHROMIUM to a Chromium binary")
    return path


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_S * 1000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):  # this run's screenshots only
        old.unlink()
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=_chromium(), headless=True,
                               # every host name but the loopback servers fails to resolve: no network
                               args=["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                                     "--no-first-run", "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.fixture()
def new_page(browser, request: pytest.FixtureRequest):
    """A page factory (one browser context per test). When the test fails, each page's last state is saved as
    ``outputs/ui/FAILED-<test>-<n>.png``."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    failed_before = request.session.testsfailed
    pages = []

    def make(viewport=PAGE_VIEWPORT):
        ctx = browser.new_context(viewport=viewport)
        ctx.set_default_timeout(WAIT_S * 1000)
        pages.append(ctx.new_page())
        return pages[-1]

    yield make
    for i, page in enumerate(pages):
        if request.session.testsfailed > failed_before:
            try:
                shot(page, f"FAILED-{request.node.name}-{i}")
            except Exception:  # the page may be gone with the failure
                pass
        page.context.close()


def shot(page, name: str) -> Path:
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def _metadata_row(page, key: str):
    """The row of the asset page's metadata table whose key cell is exactly ``key``."""
    return page.locator("tr").filter(has=page.locator("td").first.get_by_text(key, exact=True))


# ------------------------------------------------------------------------------------------------ Dagster


def test_asset_graph_shows_every_asset_and_its_checks(ui_city: UICity, new_page) -> None:
    """Each group's lineage graph draws a node for every asset of the group, with its check status."""
    from playwright.sync_api import expect
    from test_dagster import ALL_ASSETS, ALL_CHECKS

    all_assets = {a for assets in ui_city.groups.values() for a in assets}
    assert set(ALL_ASSETS) <= all_assets, "the definitions lack assets the README lists"
    assert {(a, c) for a, cs in ui_city.checks.items() for c in cs} >= set(ALL_CHECKS)

    def status(asset: str) -> str:
        names = ui_city.checks.get(asset, [])
        if not names:
            return "–"
        return f"{sum((asset, n) != FAILED_CHECK for n in names)} / {len(names)} Passed"

    page = new_page(GRAPH_VIEWPORT)
    shown: set[str] = set()
    for group, assets in sorted(ui_city.groups.items()):
        page.goto(f"{ui_city.dagster}/locations/{ui_city.location}/asset-groups/{group}")
        nodes = page.locator(NODE)
        # every node drawn in full (name, latest event, "Asset checks" row), not the zoomed-out label
        expect(nodes, f"group {group}: {len(assets)} full asset nodes (GRAPH_VIEWPORT too small?)").to_have_count(
            len(assets))
        for asset in assets:
            node = nodes.filter(has=page.get_by_text(asset, exact=True))
            expect(node, f"{group}: a node for {asset}").to_have_count(1)
            # the live data loaded: a latest event (not "–"), and the check status: all passed but FAILED_CHECK
            expect(node, asset).to_contain_text(re.compile(r"Latest event\s*(?!–)\S"))
            expect(node, asset).to_contain_text(re.compile(r"Asset checks\s*" + re.escape(status(asset))))
        shot(page, f"dagster-graph-{group}")
        names = {t.splitlines()[0].strip() for t in nodes.all_inner_texts()}
        assert names == set(assets), (group, sorted(names))
        shown |= names
    assert shown == all_assets
    assert ui_city.failed_checks == {FAILED_CHECK}  # what the instance holds agrees


def test_asset_page_shows_metadata_and_preview(ui_city: UICity, new_page) -> None:
    """road_network: its figures and the map preview (an image); taxi_gps: its row count and table preview."""
    from playwright.sync_api import expect

    page = new_page()
    meta = ui_city.metadata["road_network"]
    page.goto(f"{ui_city.dagster}/assets/road_network")
    expect(page.get_by_text("Latest materialization")).to_be_visible()
    for key in ("nodes", "edges", "km_total", "crs"):
        expect(_metadata_row(page, key)).to_contain_text(str(meta[key]))
    assert str(meta["path"]).startswith(str(ui_city.root / "data" / CITY))
    expect(_metadata_row(page, "path")).to_contain_text(str(meta["path"]))
    expect(page.get_by_text(CITY, exact=True).first).to_be_visible()  # the partition of the latest materialisation
    shot(page, "dagster-asset-road_network")
    _metadata_row(page, "preview").get_by_text("Show Markdown").click()
    dialog = page.get_by_role("dialog")
    img = dialog.locator("img")
    expect(img).to_have_attribute("alt", f"{CITY} roads")
    expect(img).to_have_attribute("src", re.compile(r"^data:image/png;base64,"))
    page.wait_for_function("img => img.complete && img.naturalWidth > 100 && img.naturalHeight > 100",
                           arg=img.element_handle(), timeout=WAIT_S * 1000)
    shot(page, "dagster-asset-road_network-preview")

    gps = ui_city.metadata["taxi_gps"]
    page.goto(f"{ui_city.dagster}/assets/taxi_gps")
    expect(_metadata_row(page, "preview")).to_be_visible()
    if "dagster/row_count" in gps:  # Dagster's standard table metadata: shown in the Status and Columns sections
        expect(page.get_by_text("Row count", exact=True).locator("xpath=..")).to_contain_text(
            f"{gps['dagster/row_count']:,}")
        columns = [c.name for c in gps["dagster/column_schema"].columns]
        section = page.locator("table").filter(has_text="Column name")
        expect(section).to_have_count(1)
        for col in columns:
            expect(section.get_by_text(col, exact=True).first).to_be_visible()
    else:
        expect(_metadata_row(page, "rows")).to_contain_text(str(gps["rows"]))
    preview = _metadata_row(page, "preview")
    for col in ("vehicle_id", "ts", "lon", "lat"):
        expect(preview.get_by_text(col, exact=True).first).to_be_visible()
    expect(preview).to_contain_text(ui_city.gps_first_vehicle)
    shot(page, "dagster-asset-taxi_gps")


def test_checks_show_their_latest_result_and_the_failed_check_as_failed(ui_city: UICity, new_page) -> None:
    """Every check is listed on its asset's Checks tab as blocking with its latest result: Passed, but
    towers_contract (failed in the last run) Failed with the rule that failed; that run shows as failed."""
    from playwright.sync_api import expect

    page = new_page()
    for asset, names in sorted(ui_city.checks.items()):
        page.goto(f"{ui_city.dagster}/assets/{asset}?view=checks")
        expect(page.get_by_text(f"Checks ({len(names)})")).to_be_visible()
        for name in names:
            # the visible one: the page may also hold the name in an element that is not shown (yet)
            page.get_by_text(name, exact=True).locator("visible=true").first.click()
            failed = (asset, name) == FAILED_CHECK
            result = page.get_by_text("Evaluation result").locator("xpath=..")
            expect(result, f"{asset}/{name}").to_contain_text("Failed" if failed else "Passed")
            expect(page.get_by_text("This is a blocking asset check")).to_be_visible()
            if failed:
                expect(page.get_by_text(re.compile(r"towers\.lat \[inside_city_bbox\]: 3 row\(s\) fail"))).to_be_visible()
        shot(page, f"dagster-checks-{asset}")

    page.goto(f"{ui_city.dagster}/runs/{ui_city.bad_run_id}")
    expect(page.get_by_text("Failure", exact=True).first).to_be_visible()
    expect(page.get_by_text("inside_city_bbox").first).to_be_visible()
    shot(page, "dagster-run-failed-check")
    assert ui_city.failed_checks == {FAILED_CHECK}


# ------------------------------------------------------------------------------------------------ MLflow


def test_mlflow_lists_the_runs_with_city_data_version_and_git_tags(ui_city: UICity, new_page) -> None:
    """Each stage's experiment lists its runs, found by their city and data-version tags; each run's page shows
    the city, data version and git commit it was made from."""
    from playwright.sync_api import expect

    assert ui_city.data_version not in ("", "unversioned")
    page = new_page()
    for exp, runs in ui_city.runs.items():
        assert runs, f"no runs in {exp}"
        query = f"tags.city = '{CITY}' and tags.data_version = '{ui_city.data_version}'"
        page.goto(f"{ui_city.mlflow}/#/experiments/{ui_city.experiment_ids[exp]}/runs?workflowType=machine_learning"
                  f"&searchFilter={urllib.parse.quote(query)}")
        expect(page.get_by_text(f"{ui_city.n_matching[exp]} matching run")).to_be_visible()
        for r in runs:
            expect(page.get_by_role("link", name=r["name"], exact=True).first).to_be_visible()
        shot(page, f"mlflow-runs-{exp}")
        for r in runs:
            page.goto(f"{ui_city.mlflow}/#/experiments/{ui_city.experiment_ids[exp]}/runs/{r['id']}")
            expect(page.get_by_text(r["id"], exact=True).first).to_be_visible()
            text = page.inner_text("body")
            tags = re.search(r"\nTags\n(.*?)(\nRegistered models|\Z)", text, re.S)
            assert tags, (exp, r["id"], text[:2000])
            shown = dict(re.findall(r"(\S+)\n:\s*(\S+)", tags.group(1)))
            assert shown.get("city") == CITY, (exp, shown)
            assert shown.get("data_version") == ui_city.data_version, (exp, shown)
            assert shown.get("git_commit", "").startswith(ui_city.git_head), (exp, shown, ui_city.git_head)
            assert shown.get("stage") == exp.removeprefix("sig2gps-"), (exp, shown)
            shot(page, f"mlflow-run-{exp}")


def test_mlflow_shows_the_registered_model_with_its_aliases(ui_city: UICity, new_page) -> None:
    from playwright.sync_api import expect

    assert set(ui_city.aliases) >= {"sft", "gdpo"}
    page = new_page()
    page.goto(f"{ui_city.mlflow}/#/models")
    expect(page.get_by_role("link", name=ui_city.model, exact=True)).to_be_visible()
    shot(page, "mlflow-models")
    page.goto(f"{ui_city.mlflow}/#/models/{ui_city.model}")
    for alias, version in ui_city.aliases.items():
        row = page.get_by_role("row").filter(has=page.get_by_text(f"Version {version}", exact=True))
        expect(row).to_contain_text(re.compile(rf"@\s*{re.escape(alias)}\b"))
    shot(page, "mlflow-model-versions")
