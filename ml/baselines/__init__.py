"""Baselines: one function per method, ``(ctx: SampleContext) -> (n_eval, 2)`` projected xy.

``SIGNALING_METHODS`` (signaling track; ``FOOTPRINT_METHODS`` need windows built with the city's
learned observation model, ``REFERENCE_METHODS`` are bounds that need the truth) and ``MR_METHODS`` (measurement-report track, from
``ml.baselines.mr`` when it is installed) map the DESIGN section 11 method keys to functions.
Peer map-matching engines (``fmm``, ``valhalla_meili``, ``leuven``: the optional ``peers`` extra)
are not in ``SIGNALING_METHODS``; :func:`peer_methods` returns those that can run here and why the
others cannot (``ml.evaluation.signaling_methods`` puts both together for the report).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ml.observation.context import SampleContext, TowerTable, build_sample_contexts
from ml.baselines.signaling import IndustrialHMMConfig, industrial_hmm, learned_hmm, mar, oracle_records

Method = Callable[[SampleContext], np.ndarray]

SIGNALING_METHODS: dict[str, Method] = {"mar": mar, "industrial_hmm": industrial_hmm}
# methods that read the city's cell footprints (windows built with a learned observation model)
FOOTPRINT_METHODS: dict[str, Method] = {"learned_hmm": learned_hmm}
# reference rows that need the truth: bounds shown beside the methods, never methods themselves
REFERENCE_METHODS: dict[str, Method] = {"oracle_records": oracle_records}

from ml.baselines.peers import PEER_KEYS, peer_methods  # noqa: E402 - needs SIGNALING_METHODS' modules only

from ml.baselines.mr import MR_METHODS  # noqa: E402

__all__ = [
    "SampleContext", "TowerTable", "build_sample_contexts", "IndustrialHMMConfig", "industrial_hmm", "mar",
    "Method", "SIGNALING_METHODS",
    "FOOTPRINT_METHODS", "REFERENCE_METHODS", "learned_hmm", "oracle_records", "MR_METHODS", "PEER_KEYS", "peer_methods",
]
