"""sig2gps library: signaling-to-GPS reconstruction.

Organised by stage (``geo``, ``cities``, ``simulate``, ``pairing``, ``validation``, ``render``,
``decode``, ``models``, ``rewards``, ``baselines``, ``metrics``, ``report``). Nothing in ``ml``
imports dagster; ``dagster_project`` only orchestrates these functions.
"""

__version__ = "0.1.0"
