"""Shared fixtures: small synthetic road networks, the real extracts in ../shared/cities, and one tiny
city materialised once for the session (``ci_city``)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

# Keep torch and BLAS from oversubscribing the 2-core machines tests run on.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_CITIES = Path(os.environ.get("SIG2GPS_SHARED_CITIES", REPO_ROOT.parent / "shared" / "cities"))
REAL_EXTRACTS = {
    "aguascalientes": "aguascalientes.osm.bz2",
    "krems": "krems.osm.gz",
    "bayreuth": "bayreuth.osm.gz",
    "campo_grande": "campo_grande.osm.gz",
}


def shared_extract(name: str) -> Path:
    """Path to a real OSM extract, skipping the test when ../shared/cities is absent."""
    p = SHARED_CITIES / REAL_EXTRACTS[name]
    if not p.is_file():
        pytest.skip(f"real extract {p} not available")
    return p


def _synthetic_network(kind: str, size_km: float, seed: int):
    from ml.cities import CityConfig, RoadSource, load_road_network

    cfg = CityConfig(name=f"test_{kind}", seed=seed, roads=RoadSource(source="synthetic", kind=kind, size_km=size_km))
    return load_road_network(cfg)


@pytest.fixture(scope="session")
def grid_net():
    """A 2 x 2 km synthetic grid city (about 200 nodes), projected to UTM."""
    return _synthetic_network("grid", 2.0, 5)


@pytest.fixture(scope="session")
def radial_net():
    return _synthetic_network("radial", 3.0, 6)


@pytest.fixture(scope="session")
def organic_net():
    return _synthetic_network("organic", 2.0, 7)


@pytest.fixture(scope="session")
def aguascalientes_net():
    from ml.cities import CityConfig, RoadSource, load_road_network

    path = shared_extract("aguascalientes")
    return load_road_network(CityConfig(name="aguascalientes", roads=RoadSource(source="osm", path=str(path))))


# ---------------------------------------------------------------------------------------------- ci_city
#: the tiny synthetic city every pipeline test uses (1.5 km grid, seed 3), materialised with the ci profile
CI_CITY, CI_PROFILE = "tinytown", "ci"


def write_ci_city(root: Path, name: str = CI_CITY, seed: int = 3) -> Path:
    """``cities/<name>.toml`` of the tiny synthetic city under ``root``, and an empty ``.dagster_home``."""
    from ml.cities import CityConfig, RoadSource, write_city

    write_city(CityConfig(name=name, seed=seed, roads=RoadSource(source="synthetic", kind="grid", size_km=1.5)), root)
    (root / ".dagster_home").mkdir(parents=True, exist_ok=True)
    return root


@dataclass(frozen=True)
class MaterialisedCity:
    """A project root where ``sig2gps run <city> --profile ci`` ran the whole city pipeline (``*``) once.

    The layout is a project's: ``cities/``, ``data/``, ``outputs/``, ``mlflow/`` (the MLflow store, sqlite),
    and the Dagster instance in ``.dagster_home`` (``DAGSTER_HOME`` of a child process run on it).
    ``instance`` is that instance, open for the session. Everything here is shared by every test of the
    session: READ it only. A test that writes (reruns an asset, injects a fault, corrupts a file) works on
    ``copy_to(its own tmp dir)``.
    """

    root: Path
    city: str
    profile: str
    run_id: str  # the Dagster run that materialised everything
    instance: object  # dg.DagsterInstance (dagster is imported lazily: most tests never need it)

    @property
    def home(self) -> Path:
        return self.root / ".dagster_home"

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow' / 'mlflow.db'}"

    @property
    def paths(self):
        from ml.paths import CityPaths

        return CityPaths(self.root, self.city, self.profile)

    def copy_to(self, dst: Path, mlflow: bool = False) -> Path:
        """A private copy of the project at ``dst`` (created; must not exist), Dagster instance included.

        The MLflow store is left out unless ``mlflow``: its runs and registered models name their artifact
        folders by absolute path, so a run logged in the copy's store would write into the shared root (the
        copy's assets make a fresh store on their first MLflow call). With ``mlflow=True`` the store is
        copied for reading (those absolute paths still point at the shared root's artifacts).
        """
        shutil.copytree(self.root, dst, symlinks=True,
                        ignore=None if mlflow else lambda d, names: ["mlflow"] if Path(d) == self.root else [])
        return dst


@pytest.fixture(scope="session")
def ci_city(tmp_path_factory: pytest.TempPathFactory):
    """The tiny city (``tinytown``, ci profile) with every asset of the city pipeline materialised, once per
    session, in-process (``run_city``, the code path of ``sig2gps run``) into its own root and Dagster
    instance. Read-only: see :class:`MaterialisedCity` (tests that change it use ``ci_city.copy_to``)."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    from dagster_project.runner import run_city

    root = write_ci_city(tmp_path_factory.mktemp("ci_city") / "project")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SIG2GPS_ROOT", str(root))
        for k in ("SIG2GPS_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            mp.delenv(k, raising=False)
        instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(root / ".dagster_home")))
        try:
            assert run_city(CI_CITY, selection="*", profile=CI_PROFILE, root=root, instance=instance,
                            raise_on_error=True)
            run_id = instance.get_runs(limit=1)[0].run_id
        finally:
            instance.dispose()  # everything on disk before anyone copies it
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(root / ".dagster_home"))) as instance:
        yield MaterialisedCity(root=root, city=CI_CITY, profile=CI_PROFILE, run_id=run_id, instance=instance)


#: the modules that read the session's ``ci_city``: under pytest-xdist they run on one worker, so the city is
#: materialised once (a module not listed here still works, on a worker that builds its own copy)
CI_CITY_MODULES = frozenset({"test_ci_city.py", "test_dagster.py", "test_faults.py"})


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``make test`` runs two pytest-xdist workers with ``--dist loadfile``: a module's tests stay on one worker
    (its module-scoped fixtures are built once), and the :data:`CI_CITY_MODULES` share one worker."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModulesScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "ci_city" if Path(module).name in CI_CITY_MODULES else module

    return ModulesScheduling(config, log)
