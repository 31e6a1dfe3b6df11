"""Radio model shared by signaling and measurement reports: RSRP of nearby cells and A3 handover.

RSRP (dBm, per resource element) of cell c at a UE position:

    P_tx(c) - 10 log10(n_subcarriers) + G_max + A(phi) - PL(d_3D) + S_site(x) + noise

* PL: 3GPP TR 38.901 UMa NLOS, ``13.54 + 39.08 log10(d_3D) + 20 log10(f_GHz) - 0.6 (h_UT - 1.5)``.
* A(phi): 3GPP sector pattern ``-min(12 (phi / phi_3dB)^2, A_m)`` (65 deg beam, A_m = front-to-back).
* S_site(x): log-normal shadowing, spatially correlated (Gaussian-filtered white noise with the
  configured decorrelation distance); a part common to all sites plus a per-site part. Both come
  from one periodic field read at a random offset per site (distinct offsets are effectively
  independent fields), so memory does not grow with the number of sites or the city size.
* noise: L3-filtered fast-fading residual, i.i.d. per measurement.

The serving cell follows the A3 event: a neighbour replaces the serving cell when it has been
better by more than the hysteresis for the time-to-trigger, which makes ping-pongs occur near
cell borders, as in real networks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter
from scipy.spatial import cKDTree

from ml.geo import CityProjection
from ml.simulate.config import SimulationConfig

FIELD_CELLS = 1024  # periodic shadowing field side, in grid cells
A3_BLOCK = 256  # samples examined per vectorised A3 step


@dataclass
class RadioTrace:
    """Radio state of one phone on its evaluation grid."""

    t: np.ndarray  # (n,) seconds
    cells: np.ndarray  # (n, C) cell indices (into RadioModel arrays), -1 = none
    rsrp: np.ndarray  # (n, C) measured RSRP (dBm), -inf where no cell
    serving: np.ndarray  # (n,) serving cell index per sample
    change_t: np.ndarray  # (h,) times at which the serving cell changed (first entry: initial selection)
    change_cell: np.ndarray  # (h,) new serving cell index

    def serving_at(self, t: np.ndarray) -> np.ndarray:
        """Serving cell index at arbitrary times (the last change at or before ``t``)."""
        k = np.searchsorted(self.change_t, np.asarray(t, dtype=np.float64), side="right") - 1
        return self.change_cell[np.clip(k, 0, len(self.change_cell) - 1)]


class RadioModel:
    """Deterministic mean RSRP (path loss, antenna, shadowing) of the towers table's cells."""

    def __init__(self, towers: pd.DataFrame, crs: str, cfg: SimulationConfig, seed: int) -> None:
        if len(towers) == 0:
            raise ValueError("towers table is empty: the radio model needs at least one cell")
        self.cfg = cfg
        self.cell_id = towers["cell_id"].to_numpy(np.int64)
        site_codes, cell_site = np.unique(towers["site_id"].to_numpy(np.int64), return_inverse=True)
        self.cell_site = cell_site
        xy = CityProjection(crs).to_xy(towers["lon"].to_numpy(), towers["lat"].to_numpy())
        self.cell_xy = xy
        n_sites = len(site_codes)
        self.site_xy = np.zeros((n_sites, 2))
        self.site_xy[cell_site] = xy
        self.site_height = np.zeros(n_sites)
        self.site_height[cell_site] = towers["height_m"].to_numpy(np.float64)
        self.cell_azimuth = np.radians(towers["azimuth_deg"].to_numpy(np.float64))
        self.cell_eirp = (towers["tx_power_dbm"].to_numpy(np.float64) - 10 * np.log10(cfg.n_subcarriers)
                          + cfg.antenna_gain_dbi)
        # site -> its cells, padded with -1 (imported tables may have 1..n sectors)
        order = np.argsort(cell_site, kind="stable")
        counts = np.bincount(cell_site, minlength=n_sites)
        self.max_sectors = int(counts.max())
        self.site_cells = np.full((n_sites, self.max_sectors), -1, dtype=np.int64)
        rank = np.arange(len(order)) - np.repeat(np.cumsum(counts) - counts, counts)
        self.site_cells[cell_site[order], rank] = order
        self.site_tree = cKDTree(self.site_xy)
        self.n_candidate_sites = min(cfg.n_candidate_sites, n_sites)
        # shadowing: one periodic unit-variance field, sampled at a random offset per site
        rng = np.random.default_rng([seed, 404])
        self.field_step = cfg.shadowing_decorrelation_m / 4.0
        white = rng.standard_normal((FIELD_CELLS, FIELD_CELLS))
        # Gaussian filter sigma s gives correlation exp(-d^2 / 4 s^2): 1/e at the decorrelation distance
        field = gaussian_filter(white, cfg.shadowing_decorrelation_m / 2.0 / self.field_step, mode="wrap")
        self.field = (field / field.std()).astype(np.float32)
        period = FIELD_CELLS * self.field_step
        self.site_offset = rng.uniform(0, period, (n_sites, 2))
        self.common_offset = rng.uniform(0, period, 2)

    # ------------------------------------------------------------------ field lookup
    def _field_at(self, xy: np.ndarray) -> np.ndarray:
        """Bilinear interpolation of the periodic field at (..., 2) positions."""
        g = xy / self.field_step
        i0 = np.floor(g).astype(np.int64)
        f = g - i0
        i0 %= FIELD_CELLS
        i1 = (i0 + 1) % FIELD_CELLS
        F = self.field
        fx, fy = f[..., 0], f[..., 1]
        return ((1 - fx) * (1 - fy) * F[i0[..., 0], i0[..., 1]] + fx * (1 - fy) * F[i1[..., 0], i0[..., 1]]
                + (1 - fx) * fy * F[i0[..., 0], i1[..., 1]] + fx * fy * F[i1[..., 0], i1[..., 1]])

    def shadowing_db(self, xy: np.ndarray, sites: np.ndarray) -> np.ndarray:
        """(n, k) shadowing of ``sites`` (n, k) at positions ``xy`` (n, 2)."""
        rho = self.cfg.shadowing_site_correlation
        common = self._field_at(xy + self.common_offset)[:, None]
        own = self._field_at(xy[:, None, :] + self.site_offset[sites])
        return self.cfg.shadowing_sigma_db * (np.sqrt(rho) * common + np.sqrt(1.0 - rho) * own)

    # ------------------------------------------------------------------ RSRP
    def mean_rsrp(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cells of the nearest sites and their RSRP without measurement noise: (n, C) each.

        ``C = n_candidate_sites * max_sectors``; missing sectors are cell -1 with RSRP -inf.
        """
        cfg = self.cfg
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        k = self.n_candidate_sites
        _, sites = self.site_tree.query(xy, k=k)
        sites = sites.reshape(len(xy), k)
        d = xy[:, None, :] - self.site_xy[sites]  # site -> UE
        d2 = np.hypot(d[..., 0], d[..., 1])
        d3 = np.sqrt(d2**2 + (self.site_height[sites] - cfg.ue_height_m) ** 2)
        d3 = np.maximum(d3, 10.0)
        path_loss = (13.54 + 39.08 * np.log10(d3) + 20.0 * np.log10(cfg.carrier_ghz)
                     - 0.6 * (cfg.ue_height_m - 1.5))
        shadow = self.shadowing_db(xy, sites)
        bearing = np.arctan2(d[..., 0], d[..., 1])  # clockwise from north, like azimuths
        cells = self.site_cells[sites]  # (n, k, m)
        valid = cells >= 0
        cz = np.where(valid, cells, 0)
        off = np.degrees((bearing[..., None] - self.cell_azimuth[cz] + np.pi) % (2 * np.pi) - np.pi)
        gain = -np.minimum(12.0 * (off / cfg.beamwidth_deg) ** 2, cfg.front_to_back_db)
        rsrp = self.cell_eirp[cz] + gain - path_loss[..., None] + shadow[..., None]
        rsrp = np.where(valid, rsrp, -np.inf)
        n = len(xy)
        return cells.reshape(n, -1), rsrp.reshape(n, -1)

    def measure(self, xy: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`mean_rsrp` plus the i.i.d. measurement noise; unmeasurable cells get -inf."""
        cells, rsrp = self.mean_rsrp(xy)
        rsrp = rsrp + rng.normal(0.0, self.cfg.measurement_noise_db, rsrp.shape)
        rsrp[rsrp < self.cfg.rsrp_floor_dbm] = -np.inf
        return cells, rsrp


def a3_serving(t: np.ndarray, cells: np.ndarray, rsrp: np.ndarray, hysteresis_db: float,
               time_to_trigger_s: float) -> tuple[np.ndarray, np.ndarray]:
    """A3 handover over a phone's measurement grid: (change times, new serving cell indices).

    The first sample selects the strongest cell. Then a neighbour takes over when it has been
    stronger than the serving cell by more than the hysteresis at consecutive samples spanning at
    least the time-to-trigger (a serving cell that is no longer measured counts as -inf, i.e. the
    link fails and the phone re-selects). Vectorised over blocks of samples; the Python loop runs
    once per handover or block.
    """
    n = len(t)
    if n == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    first = int(np.argmax(rsrp[0]))
    serving = int(cells[0, first])
    change_t, change_cell = [float(t[0])], [serving]
    i = 0
    carry_start: float | None = None
    while i < n:
        end = min(n, i + A3_BLOCK)
        c, r, tb = cells[i:end], rsrp[i:end], t[i:end]
        is_s = c == serving
        rs = np.where(is_s, r, -np.inf).max(axis=1)
        other = np.where(is_s | (c < 0), -np.inf, r)
        best_col = other.argmax(axis=1)
        best = other[np.arange(len(tb)), best_col]
        cond = (best > rs + hysteresis_db) & np.isfinite(best)
        idx = np.arange(len(tb))
        last_false = np.maximum.accumulate(np.where(~cond, idx, -1))
        run_start = np.where(last_false >= 0, tb[np.minimum(last_false + 1, len(tb) - 1)],
                             carry_start if carry_start is not None else tb[0])
        # a single sample cannot prove the condition lasted: require a second one (TTT >= 0)
        fired = cond & ((tb - run_start >= time_to_trigger_s) & (tb > run_start))
        hit = np.flatnonzero(fired)
        if len(hit):
            j = int(hit[0])
            serving = int(c[j, best_col[j]])
            change_t.append(float(tb[j]))
            change_cell.append(serving)
            i += j + 1
            carry_start = None
        else:
            carry_start = float(run_start[-1]) if cond[-1] else None
            i = end
    return np.asarray(change_t), np.asarray(change_cell, dtype=np.int64)


def radio_grid(knots_t: np.ndarray, position, cfg: SimulationConfig, forced_t: np.ndarray | None = None) -> np.ndarray:
    """Times at which a phone is evaluated: every ``radio_step_s`` while it moves more than
    ``radio_move_step_m`` per step, at least every ``radio_max_step_s``, plus ``forced_t``."""
    t0, t1 = float(knots_t[0]), float(knots_t[-1])
    fine = np.arange(np.ceil(t0), t1, cfg.radio_step_s)
    if len(fine) == 0:
        fine = np.array([t0])
    xy = position(fine)
    step = np.concatenate([[0.0], np.hypot(*np.diff(xy, axis=0).T)])
    dist = np.cumsum(step)
    keep = np.ones(len(fine), dtype=bool)
    keep[1:] = (np.floor(dist[1:] / cfg.radio_move_step_m) != np.floor(dist[:-1] / cfg.radio_move_step_m)) | (
        np.floor(fine[1:] / cfg.radio_max_step_s) != np.floor(fine[:-1] / cfg.radio_max_step_s))
    grid = fine[keep]
    if forced_t is not None and len(forced_t):
        grid = np.union1d(grid, forced_t)
    return grid


def radio_trace(model: RadioModel, knots, cfg: SimulationConfig, rng: np.random.Generator,
                forced_t: np.ndarray | None = None) -> RadioTrace:
    """Evaluate a phone along its knots: measurement grid, RSRP of nearby cells, A3 serving cell."""
    t = radio_grid(knots.t, knots.position, cfg, forced_t)
    cells, rsrp = model.measure(knots.position(t), rng)
    change_t, change_cell = a3_serving(t, cells, rsrp, cfg.a3_hysteresis_db, cfg.a3_time_to_trigger_ms / 1000.0)
    k = np.searchsorted(change_t, t, side="right") - 1
    return RadioTrace(t, cells, rsrp, change_cell[np.clip(k, 0, None)], change_t, change_cell)
