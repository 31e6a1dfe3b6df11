"""City registry, road network loading (real extracts, PBF, synthetic) and RoadNetwork primitives."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from conftest import REAL_EXTRACTS, shared_extract
from ml.cities import (
    CityConfig,
    CityConfigError,
    RoadSource,
    list_cities,
    load_city,
    load_road_network,
    write_city,
)
from ml.cities.osm import RoadNetworkError

# Plausible drivable-network sizes (nodes after SCC + simplification) for the shared extracts.
EXPECTED_NODES = {"aguascalientes": (400, 1500), "krems": (200, 1000), "bayreuth": (400, 2500), "campo_grande": (4000, 15000)}


def _osm_city(path: Path, name: str = "x") -> CityConfig:
    return CityConfig(name=name, roads=RoadSource(source="osm", path=str(path)))


@pytest.mark.real_city
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "campo_grande" else n  # 15k nodes: 4 s
                                  for n in sorted(REAL_EXTRACTS)])
def test_real_extract_loads_with_plausible_size(name: str) -> None:
    net = load_road_network(_osm_city(shared_extract(name)))
    lo, hi = EXPECTED_NODES[name]
    assert lo <= net.n_nodes <= hi, net.stats
    assert net.n_edges >= net.n_nodes
    assert nx.is_strongly_connected(net.to_networkx())
    assert net.crs.startswith("EPSG:32")
    km = net.stats["km_total"]
    assert 20 < km < 5000
    if name == "campo_grande":  # clipped extract: dangling references dropped and counted
        assert net.stats["dropped_refs"] > 0


@pytest.mark.real_city
def test_pbf_loads_like_xml(tmp_path: Path) -> None:
    import osmium

    src = shared_extract("aguascalientes")
    pbf = tmp_path / "aguascalientes.osm.pbf"
    with osmium.SimpleWriter(str(pbf)) as w:
        for obj in osmium.FileProcessor(str(src)):
            if obj.is_node():
                w.add_node(obj)
            elif obj.is_way():
                w.add_way(obj)
    xml_net = load_road_network(_osm_city(src))
    pbf_net = load_road_network(_osm_city(pbf))
    assert pbf_net.n_nodes == xml_net.n_nodes
    assert pbf_net.n_edges == xml_net.n_edges
    assert abs(pbf_net.stats["km_total"] - xml_net.stats["km_total"]) < 0.01


def test_clipped_extract_drops_and_counts_dangling_refs(tmp_path: Path) -> None:
    osm = tmp_path / "clipped.osm"
    nodes = "".join(f'<node id="{i}" lat="{48 + i * 0.001:.4f}" lon="11.0"/>' for i in range(1, 5))
    osm.write_text(
        f'<?xml version="1.0"?><osm version="0.6">{nodes}'
        '<way id="1"><nd ref="1"/><nd ref="2"/><nd ref="99"/><nd ref="3"/><nd ref="4"/>'
        '<tag k="highway" v="residential"/></way>'
        '<way id="2"><nd ref="98"/><nd ref="97"/><tag k="highway" v="primary"/></way></osm>'
    )
    from ml.cities import clean_osm_to_xml

    counts = clean_osm_to_xml(osm, tmp_path / "out.osm")
    assert counts["dropped_refs"] == 3 and counts["dropped_ways"] == 1 and counts["ways_kept"] == 2


@pytest.mark.parametrize("kind", ["grid", "radial", "organic"])
def test_synthetic_cities_are_connected_with_realistic_blocks(kind: str) -> None:
    net = load_road_network(CityConfig(name=f"s_{kind}", seed=1, roads=RoadSource(source="synthetic", kind=kind, size_km=3.0)))
    assert nx.is_strongly_connected(net.to_networkx())
    assert net.n_nodes > 80
    # realistic block sizes: typical street segment between intersections 80-350 m
    med = float(np.median(net.edge_length_m))
    assert 80.0 < med < 350.0, med
    # a road hierarchy: arterials and local streets
    classes = set(net.edge_class.tolist())
    assert len(classes) >= 2


def test_synthetic_is_deterministic() -> None:
    cfg = CityConfig(name="d", seed=4, roads=RoadSource(source="synthetic", kind="organic", size_km=2.0))
    a, b = load_road_network(cfg), load_road_network(cfg)
    assert np.array_equal(a.node_xy, b.node_xy) and np.array_equal(a.edge_u, b.edge_u)


def test_shipped_demo_cities_are_valid() -> None:
    names = list_cities()
    assert {"gridville", "ringtown"} <= set(names)
    kinds = {load_city(n).roads.kind for n in ("gridville", "ringtown")}
    assert len(kinds) == 2  # different morphologies


@pytest.mark.parametrize(
    "body, field, rule",
    [
        ('name = "bad"\n', "roads", "Field required"),
        ('name = "bad"\n[roads]\nsource = "osm"\n', "roads", "requires roads.path"),
        ('name = "bad"\n[roads]\nsource = "osm"\npath = "x.txt"\n', "roads", "must end with"),
        ('name = "bad"\n[roads]\nsource = "moon"\n', "roads.source", "Input should be"),
        ('name = "bad"\ncolour = 3\n[roads]\nsource = "synthetic"\nkind = "grid"\n', "colour", "unknown key"),
        ('name = "bad"\nseed = "x"\n[roads]\nsource = "synthetic"\nkind = "grid"\n', "seed", "valid integer"),
        ('name = "other"\n[roads]\nsource = "synthetic"\nkind = "grid"\n', "name", "must equal the file name"),
        ('name = "bad\n', "(file)", "not valid TOML"),
    ],
)
def test_bad_city_file_gets_clear_error(tmp_path: Path, body: str, field: str, rule: str) -> None:
    (tmp_path / "cities").mkdir()
    p = tmp_path / "cities" / "bad.toml"
    p.write_text(body)
    with pytest.raises(CityConfigError) as exc:
        load_city("bad", tmp_path)
    msg = str(exc.value)
    # the file as the user named it (city 'bad' -> cities/bad.toml), not the resolved absolute path
    assert msg.startswith("cities/bad.toml: ") and str(tmp_path) not in msg and rule in msg
    if field != "(file)":
        assert field in msg


def test_unknown_city_lists_known(tmp_path: Path) -> None:
    (tmp_path / "cities").mkdir()
    write_city(CityConfig(name="alpha", roads=RoadSource(source="synthetic", kind="grid")), tmp_path)
    with pytest.raises(CityConfigError, match="registered cities: alpha"):
        load_city("beta", tmp_path)


def test_write_city_round_trip_and_no_silent_overwrite(tmp_path: Path) -> None:
    cfg = CityConfig(name="town", seed=3, roads=RoadSource(source="bbox", bbox=(11.0, 48.0, 11.1, 48.1)))
    write_city(cfg, tmp_path)
    assert load_city("town", tmp_path) == cfg
    with pytest.raises(CityConfigError, match="already exists"):
        write_city(cfg, tmp_path)


def test_missing_osm_file_is_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RoadNetworkError, match="not found"):
        load_road_network(_osm_city(tmp_path / "nope.osm.gz"))


def test_download_without_network_is_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import osmnx as ox

    def offline(*a, **k):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(ox, "graph_from_place", offline)
    with pytest.raises(RoadNetworkError, match="could not download.*local extract"):
        load_road_network(CityConfig(name="p", roads=RoadSource(source="place", place="Krems, Austria")))


def test_cache_is_reused(tmp_path: Path) -> None:
    cfg = CityConfig(name="c", seed=2, roads=RoadSource(source="synthetic", kind="grid", size_km=1.5))
    a = load_road_network(cfg, cache_dir=tmp_path)
    assert (tmp_path / "roads.graphml").is_file() and (tmp_path / "roads.npz").is_file()
    b = load_road_network(cfg, cache_dir=tmp_path)
    assert np.array_equal(a.geom_xy, b.geom_xy) and b.stats["nodes"] == a.n_nodes


# ---------------------------------------------------------------- RoadNetwork primitives

def _brute_force_nearest(net, p):
    best = np.inf
    for e in range(net.n_edges):
        g = net.edge_geometry(e)
        a, b = g[:-1], g[1:]
        ab = b - a
        t = np.clip(((p - a) * ab).sum(1) / np.maximum((ab**2).sum(1), 1e-12), 0, 1)
        best = min(best, float(np.hypot(*(p - (a + t[:, None] * ab)).T).min()))
    return best


@settings(max_examples=25, deadline=None)
@given(u=st.floats(0.05, 0.95), v=st.floats(0.05, 0.95))
def test_edge_candidates_match_brute_force(grid_net, u: float, v: float) -> None:
    xmin, ymin, xmax, ymax = grid_net.bounds
    p = np.array([xmin + u * (xmax - xmin), ymin + v * (ymax - ymin)])
    c = grid_net.edge_candidates(p[None], radius_m=400.0, max_per_point=4)
    assert len(c.edge) > 0
    assert c.distance_m.min() == pytest.approx(_brute_force_nearest(grid_net, p), abs=1e-6)
    # offsets lie on the edge and the projected point is where the distance says
    assert np.all(c.offset_m >= -1e-9) and np.all(c.offset_m <= grid_net.edge_length_m[c.edge] + 1e-6)
    assert np.allclose(np.hypot(*(c.xy - p).T), c.distance_m)


def test_shortest_paths_agree_with_networkx(grid_net) -> None:
    G = grid_net.to_networkx()
    dist, pred = grid_net.shortest_paths_from(np.array([0, 5]))
    ref = nx.single_source_dijkstra_path_length(G, 5, weight="length")
    targets = list(ref)[:: max(1, len(ref) // 20)]
    for t in targets:
        assert dist[1, t] == pytest.approx(ref[t])
    path = grid_net.node_path(pred[1], targets[-1])
    assert path[0] == 5 and path[-1] == targets[-1]
    poly = grid_net.path_polyline(path)
    assert np.hypot(*np.diff(poly, axis=0).T).sum() == pytest.approx(dist[1, targets[-1]], rel=0.02)


def test_km_by_class_counts_two_way_streets_once(grid_net) -> None:
    km = sum(grid_net.km_by_class().values())
    assert km < grid_net.edge_length_m.sum() / 1000.0
    assert km > 0.45 * grid_net.edge_length_m.sum() / 1000.0


def test_a_truncated_compressed_extract_is_refused_when_the_city_is_added(tmp_path):
    import gzip

    from ml.cities.osm import check_osm_file

    good = tmp_path / "x.osm.gz"
    good.write_bytes(gzip.compress(b"<osm>" + b"<node/>" * 20000 + b"</osm>"))
    check_osm_file(good)
    bad = tmp_path / "cut.osm.gz"
    bad.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(ValueError, match=r"--osm cut.osm.gz: the compressed OSM extract is truncated"):
        check_osm_file(bad, display="--osm cut.osm.gz")
