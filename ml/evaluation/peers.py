"""The signaling track's methods for the evaluation: our baselines plus the peer engines that can run.

Peer engines (``fmm``, ``valhalla_meili``, ``leuven``) come from the optional ``peers`` extra
(``pip install -e ".[peers]"``). Where one cannot run, the report says so in one line; nothing
runs in its place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from ml.baselines import FOOTPRINT_METHODS, REFERENCE_METHODS, SIGNALING_METHODS, SampleContext

Method = Callable[[SampleContext], np.ndarray]


def signaling_methods(include_peers: bool = True, footprints: bool = False,
                      references: bool = False) -> tuple[dict[str, Method], dict[str, str]]:
    """``(methods by key, {peer key: why it is skipped})`` for the signaling track.

    The project's own methods (``SIGNALING_METHODS``; with ``footprints`` also ``FOOTPRINT_METHODS``,
    whose windows must carry the city's learned observation model; with ``references`` the bounds of
    ``REFERENCE_METHODS``, which need the truth) come first, then the runnable peers in ``PEER_KEYS`` order.
    """
    methods: dict[str, Method] = dict(SIGNALING_METHODS)
    if footprints:
        methods.update(FOOTPRINT_METHODS)
    if references:
        methods.update(REFERENCE_METHODS)
    if not include_peers:
        return methods, {}
    from ml.baselines.peers import peer_methods

    peers, skipped = peer_methods()
    methods.update(peers)
    return methods, skipped


def peer_report_notes(present: Iterable[str]) -> dict[str, str]:
    """``{peer key: one report line}`` for each peer engine without predictions in ``present`` (method keys)."""
    from ml.baselines.peers import PEER_KEYS, peer_status

    have = set(present)
    status = peer_status()
    notes = {}
    for key in PEER_KEYS:
        if key in have:
            continue
        why = status[key] or f"{key} skipped: installed, but no predictions were made (materialise predictions again)"
        notes[key] = f"Peer engine {why}"
    return notes
