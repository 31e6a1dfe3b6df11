"""HMM map-matching engine shared by the industrial baseline, the HMM-on-WCL baseline and the decoder.

Entry points: :func:`match_trajectory` (-> :class:`MatchResult`) and
:func:`interpolate_along_route` (positions at query times along a matched route).
"""

from ml.mapmatch.hmm import MatchResult, match_trajectory
from ml.mapmatch.route import edge_subline, interpolate_along_route, point_at_distance, polyline_cum_m

__all__ = [
    "MatchResult",
    "match_trajectory",
    "interpolate_along_route",
    "point_at_distance",
    "polyline_cum_m",
    "edge_subline",
]
