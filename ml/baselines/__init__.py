"""Baselines: one function per method, ``(ctx: SampleContext) -> (n_eval, 2)`` projected xy.

``SIGNALING_METHODS`` (signaling track) and ``MR_METHODS`` (measurement-report track, from
``ml.baselines.mr`` when it is installed) map the DESIGN section 11 method keys to functions.
Peer map-matching engines (``fmm``, ``valhalla_meili``, ``leuven``: the optional ``peers`` extra)
are not in ``SIGNALING_METHODS``; :func:`peer_methods` returns those that can run here and why the
others cannot (``ml.evaluation.signaling_methods`` puts both together for the report).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ml.baselines.context import SampleContext, TowerTable, build_sample_contexts
from ml.baselines.signaling import IndustrialHMMConfig, industrial_hmm, mar

Method = Callable[[SampleContext], np.ndarray]

SIGNALING_METHODS: dict[str, Method] = {"mar": mar, "industrial_hmm": industrial_hmm}

from ml.baselines.peers import PEER_KEYS, peer_methods  # noqa: E402 - needs SIGNALING_METHODS' modules only

from ml.baselines.mr import MR_METHODS  # noqa: E402

__all__ = [
    "SampleContext", "TowerTable", "build_sample_contexts", "IndustrialHMMConfig", "industrial_hmm", "mar",
    "Method", "SIGNALING_METHODS", "MR_METHODS", "PEER_KEYS", "peer_methods",
]
