"""Measurement-report (MR) track baselines, as in "Trajectory Map-Matching in Urban Road Networks
Based on RSS Measurements" (Xing & Zhao): MaR, WCL, HMM on WCL, MSR, HRE, HREA.

Every method has the signature ``(ctx: SampleContext) -> np.ndarray`` of shape (n_eval, 2):
projected xy at ``ctx.eval_t``. They read ``ctx.mr`` (t, cell_id, rsrp_dbm), the tower lookup
(``ctx.tower_xy`` / ``ctx.towers``), ``ctx.net`` and ``ctx.eval_t``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ml.baselines.mr.hre import HREConfig, HREResult, hre, hre_track, hrea, speed_sigma_for_density
from ml.baselines.mr.simple import hmm_wcl, mar, msr, msr_smooth, wcl

MRMethod = Callable[[Any], np.ndarray]

MR_METHODS: dict[str, MRMethod] = {
    "mar": mar,
    "wcl": wcl,
    "hmm_wcl": hmm_wcl,
    "msr": msr,
    "hre": hre,
    "hrea": hrea,
}

__all__ = [
    "MR_METHODS", "MRMethod", "mar", "wcl", "hmm_wcl", "msr", "msr_smooth", "hre", "hrea", "hre_track",
    "HREConfig", "HREResult", "speed_sigma_for_density",
]
