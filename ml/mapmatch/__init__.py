"""HMM map-matching engine shared by the industrial baseline, the HMM-on-WCL baseline and the decoder.

Entry points: :func:`match_trajectory` (-> :class:`MatchResult`),
:func:`interpolate_along_route` (positions at query times along a matched route) and
:func:`viterbi` (the HMM decoder both use, also used by the road-state HMMs of the MR baselines).
"""

from ml.mapmatch.hmm import MatchResult, ViterbiPath, match_trajectory, viterbi
from ml.mapmatch.route import edge_subline, interpolate_along_route, point_at_distance, polyline_cum_m

__all__ = [
    "MatchResult",
    "match_trajectory",
    "viterbi",
    "ViterbiPath",
    "interpolate_along_route",
    "point_at_distance",
    "polyline_cum_m",
    "edge_subline",
]
