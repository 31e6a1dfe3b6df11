"""The result of one check: passed or not, why in one line, and the numbers behind it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

#: how many offending items (tensors, methods, sample ids) a description and its metadata list by name
SHOWN = 5


@dataclass(frozen=True)
class CheckOutcome:
    """``passed``; ``description``: what was checked and, on failure, what is wrong and where (file, field,
    rule); ``metadata``: JSON-able numbers and strings (counts, the bound, the first offenders)."""

    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def failed(cls, description: str, **metadata: Any) -> CheckOutcome:
        return cls(False, description, dict(metadata))


def first(items: Iterable[Any], n: int = SHOWN) -> str:
    """The first ``n`` items as ``a, b, c (+k more)``: enough to find the problem, short enough for a UI row."""
    items = [str(i) for i in items]
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more
