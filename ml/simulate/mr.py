"""Measurement reports (MR): serving + strongest neighbours' RSRP at a fixed interval, for drivers' phones."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml.cities.network import RoadNetwork
from ml.simulate.config import SimulationConfig
from ml.simulate.phones import build_device_days, device_radio
from ml.simulate.radio import RadioModel
from ml.simulate.tables import make_table, seconds_to_ts
from ml.simulate.taxis import day_epoch

RSRP_REPORT_MIN_DBM = -140.0  # 3GPP TS 36.133 RSRP reporting range
RSRP_REPORT_MAX_DBM = -44.0


def simulate_measurement_reports(net: RoadNetwork, towers: pd.DataFrame, gps: pd.DataFrame,
                                 signaling: pd.DataFrame, truth_links: pd.DataFrame, cfg: SimulationConfig,
                                 seed: int) -> pd.DataFrame:
    """MR table (contract table ``mr``) for the drivers' phones during their taxi shifts.

    Every ``mr_interval_s`` one row for the serving cell (first) and one for each of up to
    ``mr_neighbours`` strongest other cells above ``mr_min_rsrp_dbm``. The radio state is rebuilt
    with the same model and the same per-device random streams as :func:`simulate_signaling`
    (same ``seed``), so the serving cell here is the one the signaling records show. Reports are
    produced for the shifts (the windows evaluated later); decoys get none (too costly, not needed).
    """
    known = set(signaling["device_id"].unique()) if len(signaling) else set()
    drivers = truth_links[(truth_links["kind"] == "driver") & truth_links["device_id"].isin(known)]
    model = RadioModel(towers, net.crs, cfg, seed)
    frames = []
    for dd in build_device_days(net, gps, drivers, cfg, seed, kinds=("driver",)):
        trace = device_radio(model, dd, cfg, seed)
        a, b = dd.mr_span
        mr_t = np.arange(np.ceil(a / cfg.mr_interval_s), np.floor(b / cfg.mr_interval_s) + 1) * cfg.mr_interval_s
        rows = np.searchsorted(trace.t, mr_t)
        cells, rsrp, serving = trace.cells[rows], trace.rsrp[rows], trace.serving[rows]
        is_serving = cells == serving[:, None]
        ok = np.isfinite(np.where(is_serving, rsrp, -np.inf).max(axis=1))  # serving measurable
        neighbour = (~is_serving) & (cells >= 0) & (rsrp >= cfg.mr_min_rsrp_dbm)
        key = np.where(is_serving, np.inf, np.where(neighbour, rsrp, -np.inf))
        order = np.argsort(-key, axis=1, kind="stable")[:, : 1 + cfg.mr_neighbours]
        take = np.take_along_axis(np.isfinite(key) | is_serving, order, axis=1) & ok[:, None]
        take &= np.take_along_axis(np.isfinite(rsrp), order, axis=1)
        r_idx, c_rank = np.nonzero(take)
        col = order[r_idx, c_rank]
        frames.append(pd.DataFrame({
            "device_id": dd.device_id,
            "ts": seconds_to_ts(mr_t[r_idx], day_epoch(cfg, dd.day)),
            "cell_id": model.cell_id[cells[r_idx, col]],
            # reported RSRP is quantised to the 3GPP TS 36.133 range (-140 to -44 dBm)
            "rsrp_dbm": np.clip(rsrp[r_idx, col], RSRP_REPORT_MIN_DBM, RSRP_REPORT_MAX_DBM),
        }))
    if not frames:
        return make_table("mr", {"device_id": [], "ts": [], "cell_id": [], "rsrp_dbm": []})
    cols = pd.concat(frames, ignore_index=True)
    # np.nonzero is row-major, so within an instant the serving cell comes first, then by RSRP
    return make_table("mr", {c: cols[c].to_numpy() for c in ("device_id", "ts", "cell_id", "rsrp_dbm")})
