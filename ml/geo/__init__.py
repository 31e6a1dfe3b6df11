"""Projections, distances and tile georeferencing shared by every stage."""

from ml.geo.projection import CityProjection, utm_crs_for
from ml.geo.distance import haversine_m, EARTH_RADIUS_M
from ml.geo.tile import Tile, choose_tile

__all__ = [
    "CityProjection",
    "utm_crs_for",
    "haversine_m",
    "EARTH_RADIUS_M",
    "Tile",
    "choose_tile",
]
