"""Peer map-matching engines on the signaling track: what users would run instead of our HMM.

``fmm`` (Fast Map Matching, ``fastmm``), ``valhalla_meili`` (Valhalla's Meili, ``pyvalhalla``)
and ``leuven`` (``leuvenmapmatching``) each get exactly what ``industrial_hmm`` gets (its cell
observations, their times, its cell-sized sigma, the same evaluation times) and the shared
interpolation along their matched route (:mod:`ml.baselines.peers.common`). They are an optional
extra, ``pip install -e ".[peers]"``; :func:`peer_methods` returns the ones that can run here
and one line per engine that cannot (nothing else is run in its place).
"""

from __future__ import annotations

import platform
from collections.abc import Callable

import numpy as np

from ml.observation.context import SampleContext
from ml.baselines.peers import fmm as _fmm
from ml.baselines.peers import leuven as _leuven
from ml.baselines.peers import valhalla_meili as _valhalla
from ml.baselines.peers.common import PeerMatchError, PeerRoute, PeerUnavailable, package_version

Method = Callable[[SampleContext], np.ndarray]

#: method keys, in report order
PEER_KEYS: tuple[str, ...] = ("fmm", "valhalla_meili", "leuven")
PEER_FUNCTIONS: dict[str, Method] = {"fmm": _fmm.fmm, "valhalla_meili": _valhalla.valhalla_meili,
                                     "leuven": _leuven.leuven}
_AVAILABLE = {"fmm": _fmm.available, "valhalla_meili": _valhalla.available, "leuven": _leuven.available}


def peer_status() -> dict[str, str | None]:
    """Per peer key: None when the engine can run here, else the one-line reason it cannot."""
    return {k: _AVAILABLE[k]() for k in PEER_KEYS}


def peer_methods() -> tuple[dict[str, Method], dict[str, str]]:
    """``(runnable methods by key, {key: skip line} for the others)``."""
    status = peer_status()
    return ({k: PEER_FUNCTIONS[k] for k in PEER_KEYS if status[k] is None},
            {k: why for k, why in status.items() if why is not None})


def engine_versions() -> dict[str, str | None]:
    """Versions of the peer engines (None where absent) and of the interpreter running them."""
    return {"fastmm": package_version("fastmm"), "leuvenmapmatching": package_version("leuvenmapmatching"),
            "rtree": package_version("rtree"), "pyvalhalla": _valhalla.version(), "python": platform.python_version()}


__all__ = ["PEER_KEYS", "PEER_FUNCTIONS", "peer_status", "peer_methods", "engine_versions", "PeerMatchError",
           "PeerRoute", "PeerUnavailable"]
