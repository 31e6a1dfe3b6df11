"""Measurement reports (MR): serving + strongest neighbours' RSRP at a fixed interval, for drivers' phones."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml.cities.network import RoadNetwork
from ml.simulate.config import SimulationConfig
from ml.simulate.phones import build_device_days, device_radio
from ml.simulate.radio import RadioModel, connected_serving
from ml.simulate.tables import make_table, seconds_to_ts
from ml.simulate.taxis import day_epoch

RSRP_REPORT_MIN_DBM = -140.0  # 3GPP TS 36.133 RSRP reporting range
RSRP_REPORT_MAX_DBM = -44.0


def per_site_best_beam(cells: np.ndarray, rsrp: np.ndarray, serving: np.ndarray,
                       n_sectors: int) -> tuple[np.ndarray, np.ndarray]:
    """Collapse (n, k * n_sectors) site-major cell columns to one column per site: its strongest sector.

    The serving site keeps the serving cell's id (so it stays first in the report) with the RSS of
    the site's strongest beam; other sites report their strongest sector's id. (``cfg.mr_per_site``.)
    """
    n = len(cells)
    c3 = cells.reshape(n, -1, n_sectors)
    r3 = rsrp.reshape(n, -1, n_sectors)
    best = np.argmax(np.where(c3 >= 0, r3, -np.inf), axis=2)[..., None]
    site_cell = np.take_along_axis(c3, best, axis=2)[..., 0]
    site_rsrp = np.take_along_axis(r3, best, axis=2)[..., 0]
    serves = (c3 == serving[:, None, None]).any(axis=2)
    return np.where(serves, serving[:, None], site_cell), site_rsrp


def simulate_measurement_reports(net: RoadNetwork, towers: pd.DataFrame, gps: pd.DataFrame,
                                 signaling: pd.DataFrame, truth_links: pd.DataFrame, cfg: SimulationConfig,
                                 seed: int) -> pd.DataFrame:
    """MR table (contract table ``mr``) for the drivers' phones during their taxi shifts.

    Every ``mr_interval_s`` one row for the serving cell (first) and one for each of up to
    ``mr_neighbours`` strongest other cells above ``mr_min_rsrp_dbm`` (with ``mr_per_site``: sites,
    each with the RSS of its strongest beam, :func:`per_site_best_beam`). The radio state is rebuilt
    with the same model and the same per-device random streams as :func:`simulate_signaling`
    (same ``seed``), so the serving cell here is the one the signaling records show. Reports are
    produced for the shifts (the windows evaluated later); decoys get none (too costly, not needed). With
    ``idle_connected`` mobility the reports' serving cell is a connection held through the shift (set up on the
    camped cell, then A3 / A4 / A5), so it can differ from the cell an idle record shows at the same moment.
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
        if cfg.mobility == "idle_connected" and len(rows):
            # reports come from a connected phone: the connection set up on the camped cell at the shift's start
            # hands over through the shift (an MDT-style continuous connection)
            ct, cc = connected_serving(model, trace.t[rows], cells, rsrp, start=int(serving[0]))
            serving = cc[np.searchsorted(ct, trace.t[rows], side="right") - 1]
        if cfg.mr_per_site:
            cells, rsrp = per_site_best_beam(cells, rsrp, serving, model.max_sectors)
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
