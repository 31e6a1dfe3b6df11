"""Load drivable road networks from OSM files (XML, gzip, bzip2, PBF) or osmnx downloads.

pyosmium reads every file format and lets us repair clipped extracts (ways that reference nodes
outside the file are split at the missing nodes, and the dropped references counted); the cleaned
drivable ways are written as plain OSM XML and handed to osmnx, which builds, simplifies and
projects the graph. Synthetic cities go through the same path.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from xml.sax.saxutils import quoteattr

import networkx as nx
import numpy as np

from ml.cities.config import CityConfig, resolve_path
from ml.cities.network import DEFAULT_SPEED_KPH, RoadNetwork
from ml.geo import utm_crs_for

log = logging.getLogger(__name__)

# Same exclusions as osmnx's "drive" network type (osmnx.graph._get_network_filter).
_EXCLUDED_HIGHWAY = frozenset(
    "abandoned bridleway bus_guideway construction corridor cycleway elevator escalator footway no path "
    "pedestrian planned platform proposed raceway razed service steps track bus_stop busway via_ferrata".split()
)
_KEPT_TAGS = ("highway", "oneway", "maxspeed", "name", "lanes", "junction", "ref", "bridge", "tunnel")


class RoadNetworkError(RuntimeError):
    """The road network could not be loaded; the message names the source and the reason."""


def check_osm_file(path: Path, display: str | None = None) -> None:
    """Raise ``ValueError`` naming the file when a compressed extract (``.gz``, ``.bz2``) is truncated or damaged.

    Reads the compressed stream to its end (seconds for a city extract), so that ``sig2gps city add`` rejects
    the file at once instead of the first ``road_network`` run. Plain ``.osm`` and ``.osm.pbf`` files are
    checked when they are parsed.
    """
    import bz2
    import gzip

    name = str(path).lower()
    opener = gzip.open if name.endswith(".gz") else bz2.open if name.endswith(".bz2") else None
    if opener is None:
        return
    try:
        with opener(path, "rb") as f:
            while f.read(1 << 20):
                pass
    except (EOFError, OSError) as exc:
        raise ValueError(f"{display or path}: the compressed OSM extract is truncated or damaged ({exc}); "
                         "rule: a complete OSM file (download or copy it again)") from exc


def is_drivable(tags: dict[str, str]) -> bool:
    hw = tags.get("highway")
    if not hw or hw in _EXCLUDED_HIGHWAY:
        return False
    if tags.get("area") == "yes" or tags.get("motor_vehicle") == "no" or tags.get("motorcar") == "no":
        return False
    if tags.get("access") == "private":
        return False
    return True


def clean_osm_to_xml(src: Path, dst: Path, display: str | None = None) -> dict[str, int]:
    """Read any OSM file with pyosmium, keep drivable ways, split them at missing nodes, write XML.

    Returns counts: ``ways_read``, ``ways_kept``, ``dropped_refs`` (node references not in the
    file), ``dropped_ways`` (ways left with fewer than two nodes), ``nodes_written``. ``display``
    names the file in messages (default: ``src``).
    """
    import osmium

    shown = display or str(src)
    if not src.is_file():
        raise RoadNetworkError(f"{shown}: OSM file not found")
    locs: dict[int, tuple[float, float]] = {}
    ways: list[tuple[int, list[int], dict[str, str]]] = []
    ways_read = 0
    try:
        for obj in osmium.FileProcessor(str(src), osmium.osm.NODE | osmium.osm.WAY):
            if obj.is_node():
                if obj.location.valid():
                    locs[obj.id] = (obj.location.lon, obj.location.lat)
            elif obj.is_way():
                ways_read += 1
                tags = {t.k: t.v for t in obj.tags}
                if is_drivable(tags):
                    ways.append((obj.id, [n.ref for n in obj.nodes], {k: tags[k] for k in _KEPT_TAGS if k in tags}))
    except RuntimeError as exc:  # pyosmium raises RuntimeError on corrupt input
        raise RoadNetworkError(f"{shown}: cannot read OSM data (rule: a complete, uncorrupted OSM file; "
                               f"truncated or damaged?): {str(exc).replace(str(src), shown)}") from None

    dropped_refs = dropped_ways = 0
    pieces: list[tuple[int, list[int], dict[str, str]]] = []
    next_id = -1
    for wid, refs, tags in ways:
        run: list[int] = []
        runs: list[list[int]] = []
        for r in refs:
            if r in locs:
                run.append(r)
            else:
                dropped_refs += 1
                if len(run) >= 2:
                    runs.append(run)
                run = []
        if len(run) >= 2:
            runs.append(run)
        if not runs:
            dropped_ways += 1
        for i, rr in enumerate(runs):
            # a split way gets fresh negative ids after its first piece so ids stay unique
            pieces.append((wid if i == 0 else next_id, rr, tags))
            next_id -= 1 if i else 0
    used = sorted({r for _, rr, _ in pieces for r in rr})
    with open(dst, "w", encoding="utf-8") as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?>\n<osm version="0.6" generator="sig2gps">\n')
        for nid in used:
            lon, lat = locs[nid]
            f.write(f'<node id="{nid}" lat="{lat:.7f}" lon="{lon:.7f}"/>\n')
        for wid, rr, tags in pieces:
            f.write(f'<way id="{wid}">')
            f.write("".join(f'<nd ref="{r}"/>' for r in rr))
            f.write("".join(f"<tag k={quoteattr(k)} v={quoteattr(v)}/>" for k, v in tags.items()))
            f.write("</way>\n")
        f.write("</osm>\n")
    return {
        "ways_read": ways_read,
        "ways_kept": len(pieces),
        "dropped_refs": dropped_refs,
        "dropped_ways": dropped_ways,
        "nodes_written": len(used),
    }


def finish_graph(G: nx.MultiDiGraph) -> nx.MultiDiGraph:
    """Largest strongly connected component, speeds and travel times, projected to UTM."""
    import osmnx as ox

    if len(G) == 0:
        raise RoadNetworkError("the OSM data holds no drivable roads")
    G = ox.truncate.largest_component(G, strongly=True)
    hwy = {k: v for k, v in DEFAULT_SPEED_KPH.items() if k != "other"}
    G = ox.routing.add_edge_speeds(G, hwy_speeds=hwy, fallback=DEFAULT_SPEED_KPH["other"])
    G = ox.routing.add_edge_travel_times(G)
    xs = np.fromiter((d["x"] for _, d in G.nodes(data=True)), float)
    ys = np.fromiter((d["y"] for _, d in G.nodes(data=True)), float)
    crs = utm_crs_for(float(np.median(xs)), float(np.median(ys)))
    return ox.projection.project_graph(G, to_crs=crs)


def graph_from_osm_file(path: Path, display: str | None = None) -> tuple[nx.MultiDiGraph, dict[str, int]]:
    """Build the projected drivable graph from a local OSM file of any supported format.

    ``display`` names the file in messages (the path as the city file gives it; default ``path``).
    """
    import osmnx as ox

    shown = display or str(path)
    with tempfile.TemporaryDirectory() as tmp:
        clean = Path(tmp) / "drivable.osm"
        counts = clean_osm_to_xml(Path(path), clean, shown)
        if counts["ways_kept"] == 0:
            raise RoadNetworkError(f"{shown}: no drivable ways (read {counts['ways_read']} ways)")
        G = ox.graph_from_xml(clean, simplify=True, retain_all=True, bidirectional=False)
    return finish_graph(G), counts


def graph_from_download(place: str | None = None, bbox: tuple[float, float, float, float] | None = None) -> nx.MultiDiGraph:
    """Download a drivable network with osmnx (needs network access)."""
    import osmnx as ox

    what = f"place '{place}'" if place else f"bbox {bbox}"
    try:
        if place:
            G = ox.graph_from_place(place, network_type="drive", simplify=True, retain_all=True)
        else:
            G = ox.graph_from_bbox(bbox, network_type="drive", simplify=True, retain_all=True)
    except Exception as exc:  # noqa: BLE001 - osmnx raises many kinds; all mean "could not download"
        raise RoadNetworkError(
            f"could not download the road network for {what} with osmnx ({type(exc).__name__}: {exc}). "
            "Without network access, use a local extract: roads.source = 'osm' with roads.path."
        ) from exc
    return finish_graph(G)


def load_road_network(city: CityConfig, cache_dir: Path | None = None, refresh: bool = False) -> RoadNetwork:
    """Load (or build and cache) the city's road network as a :class:`RoadNetwork`.

    The cache is ``<cache_dir>/roads.graphml`` (osmnx GraphML, for people and GIS tools) and
    ``<cache_dir>/roads.npz`` (the arrays, for the pipeline). Statistics in ``network.stats``:
    nodes, edges, km_by_class, dropped_refs, dropped_ways, load_s.
    """
    import osmnx as ox

    npz = cache_dir / "roads.npz" if cache_dir else None
    if npz is not None and npz.is_file() and not refresh:
        import json

        net = RoadNetwork.load_npz(npz)
        meta = cache_dir / "roads.json"
        net.stats = json.loads(meta.read_text()) if meta.is_file() else {}
        return net

    t0 = time.perf_counter()
    counts: dict[str, int] = {"dropped_refs": 0, "dropped_ways": 0}
    src = city.roads
    if src.source == "osm":
        G, counts = graph_from_osm_file(resolve_path(src.path), f"cities/{city.name}.toml: roads.path '{src.path}'")
    elif src.source == "synthetic":
        from ml.cities.synthetic import write_synthetic_osm

        with tempfile.TemporaryDirectory() as tmp:
            xml = Path(tmp) / f"{city.name}.osm"
            write_synthetic_osm(xml, kind=src.kind, size_km=src.size_km, center_lon=src.center_lon,
                                center_lat=src.center_lat, seed=city.seed)
            G, counts = graph_from_osm_file(xml)
    else:
        G = graph_from_download(place=src.place, bbox=src.bbox)
    load_s = time.perf_counter() - t0
    net = RoadNetwork.from_graph(G)
    net.stats = {
        "nodes": net.n_nodes,
        "edges": net.n_edges,
        "km_total": round(sum(net.km_by_class().values()), 3),
        "km_by_class": {k: round(v, 3) for k, v in net.km_by_class().items()},
        "dropped_refs": int(counts.get("dropped_refs", 0)),
        "dropped_ways": int(counts.get("dropped_ways", 0)),
        "load_s": round(load_s, 3),
        "crs": net.crs,
    }
    if cache_dir is not None:
        import json

        cache_dir.mkdir(parents=True, exist_ok=True)
        # write to temporary names first so a failure never leaves a half-written cache
        tmp_graphml = cache_dir / "roads.graphml.tmp"
        ox.io.save_graphml(G, tmp_graphml)
        net.save_npz(cache_dir / "roads.tmp.npz")
        (cache_dir / "roads.json.tmp").write_text(json.dumps(net.stats, indent=2))
        tmp_graphml.replace(cache_dir / "roads.graphml")
        (cache_dir / "roads.tmp.npz").replace(cache_dir / "roads.npz")
        (cache_dir / "roads.json.tmp").replace(cache_dir / "roads.json")
    log.info("road network %s: %d nodes, %d edges in %.1fs", city.name, net.n_nodes, net.n_edges, load_s)
    return net
