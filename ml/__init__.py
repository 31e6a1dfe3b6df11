"""sig2gps library: signaling-to-GPS reconstruction.

Organised by stage (``geo``, ``cities``, ``simulate``, ``pairing``, ``validation``, ``render``,
``decode``, ``models``, ``rewards``, ``baselines``, ``metrics``, ``report``). Nothing in ``ml``
imports dagster; ``dagster_project`` only orchestrates these functions.
"""

import os

__version__ = "0.1.0"

# No network at run time: the tools sig2gps drives would otherwise send usage telemetry from every
# process that imports them (MLflow, DVC, Great Expectations, Dagster) or fetch from the Hugging Face hub.
# setdefault, so that a user who wants them on can still say so.
for _name, _value in (("MLFLOW_DISABLE_TELEMETRY", "true"), ("DO_NOT_TRACK", "true"), ("DVC_NO_ANALYTICS", "1"),
                      ("GX_ANALYTICS_ENABLED", "false"), ("HF_HUB_OFFLINE", "1"),
                      ("DAGSTER_DISABLE_TELEMETRY", "1")):
    os.environ.setdefault(_name, _value)
