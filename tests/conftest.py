"""Shared fixtures: small synthetic road networks and the real extracts in ../shared/cities."""

from __future__ import annotations

import os
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
