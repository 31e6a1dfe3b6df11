"""City registry, road networks (OSM files, osmnx downloads, synthetic cities)."""

from ml.cities.config import (
    CityConfig,
    CityConfigError,
    RoadSource,
    ImportedTables,
    list_cities,
    load_city,
    write_city,
    project_root,
    resolve_path,
)
from ml.cities.network import ROAD_CLASSES, EdgeCandidates, RoadNetwork, road_class_of
from ml.cities.osm import RoadNetworkError, load_road_network, graph_from_osm_file, clean_osm_to_xml
from ml.cities.synthetic import write_synthetic_osm

__all__ = [
    "CityConfig", "CityConfigError", "RoadSource", "ImportedTables", "list_cities", "load_city", "write_city",
    "project_root", "resolve_path", "ROAD_CLASSES", "EdgeCandidates", "RoadNetwork", "road_class_of",
    "RoadNetworkError", "load_road_network", "graph_from_osm_file", "clean_osm_to_xml", "write_synthetic_osm",
]
