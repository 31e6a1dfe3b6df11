"""Per-network caches: things computed once per ``RoadNetwork`` object and released with it.

``RoadNetwork`` is an unhashable dataclass, so caches are keyed by the object's id and hold a
weak reference to it (an entry dies with its network, and a new network at a recycled id never
sees a stale entry).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from ml.cities.network import RoadNetwork

T = TypeVar("T")
_ENTRIES: dict[tuple[int, str], tuple[weakref.ref, Any]] = {}


def _drop(key: tuple[int, str]) -> Callable[[weakref.ref], None]:
    return lambda _r: _ENTRIES.pop(key, None)


def cached(net: RoadNetwork, name: str, factory: Callable[[RoadNetwork], T] | None = None) -> T | None:
    """The network's ``name`` entry; built with ``factory(net)`` when missing (None without a factory)."""
    key = (id(net), name)
    hit = _ENTRIES.get(key)
    if hit is not None and hit[0]() is net:
        return hit[1]
    if factory is None:
        return None
    value = factory(net)
    _ENTRIES[key] = (weakref.ref(net, _drop(key)), value)
    return value


def set_cached(net: RoadNetwork, name: str, value: Any) -> None:
    """Install ``value`` as the network's ``name`` entry (None removes it)."""
    key = (id(net), name)
    if value is None:
        _ENTRIES.pop(key, None)
    else:
        _ENTRIES[key] = (weakref.ref(net, _drop(key)), value)
