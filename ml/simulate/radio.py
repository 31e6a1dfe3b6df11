"""Radio model shared by signaling and measurement reports: RSRP of nearby cells, idle camping and handovers.

RSRP (dBm, per resource element) of cell c at a UE position:

    P_tx(c) - 10 log10(n_subcarriers(layer)) + G_max + A(phi, theta) - PL(d_3D, f(layer)) + S_site(x) - L_phone + noise

* PL: 3GPP TR 38.901 UMa NLOS, ``13.54 + 39.08 log10(d_3D) + 20 log10(f_GHz) - 0.6 (h_UT - 1.5)``, at the
  cell's layer's carrier frequency (a low band reaches further).
* A(phi, theta): 3GPP TR 38.901 Table 7.3-1 element pattern ``-min(-(A_H(phi) + A_V(theta)), A_m)``, with
  ``A_H = -min(12 (phi / phi_3dB)^2, A_m)`` (65 deg beam, A_m = front-to-back) and, with
  ``vertical_pattern``, ``A_V = -min(12 ((theta - tilt) / theta_3dB)^2, SLA_V)`` for the elevation theta below the
  horizon and the cell's downtilt: a cell with little downtilt on a tall mast (overshooting) serves far.
* L_phone: the phone's own loss, drawn once per device-day (in-vehicle or indoor penetration, handset offset).
* S_site(x): log-normal shadowing, spatially correlated (Gaussian-filtered white noise with the
  configured decorrelation distance); a part common to all sites plus a per-site part. Both come
  from one periodic field read at a random offset per site (distinct offsets are effectively
  independent fields), so memory does not grow with the number of sites or the city size.
* noise: L3-filtered fast-fading residual, i.i.d. per measurement.

Serving cells (:func:`connected_serving`, :func:`idle_serving`): a connected phone hands over by A3 within its
layer (a neighbour better by the hysteresis for the time-to-trigger, which makes ping-pongs near cell borders),
A4 up to a higher-priority layer whose best cell is good enough (load balancing onto capacity layers) and A5 to
another layer when its own cell fails (TS 36.331); an idle phone camps on the highest-priority layer that is good
enough and reselects within a layer with Qhyst (TS 36.304). With ``mobility = 'single_trace'`` one A3 trace serves
every record (the regular network).
"""

from __future__ import annotations

from collections.abc import Callable
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
    """Radio state of one phone on its evaluation grid: the cells it measures and the cell it camps on (its
    serving cell in ``single_trace`` mobility)."""

    t: np.ndarray  # (n,) seconds
    cells: np.ndarray  # (n, C) cell indices (into RadioModel arrays), -1 = none
    rsrp: np.ndarray  # (n, C) measured RSRP (dBm), -inf where no cell
    serving: np.ndarray  # (n,) serving (idle: camped) cell index per sample
    change_t: np.ndarray  # (h,) times at which the serving cell changed (first entry: initial selection)
    change_cell: np.ndarray  # (h,) new serving cell index

    def serving_at(self, t: np.ndarray) -> np.ndarray:
        """Serving cell index at arbitrary times (the last change at or before ``t``)."""
        k = np.searchsorted(self.change_t, np.asarray(t, dtype=np.float64), side="right") - 1
        return self.change_cell[np.clip(k, 0, len(self.change_cell) - 1)]


class RadioModel:
    """Deterministic mean RSRP (path loss, antenna, shadowing) of the towers table's cells."""

    def __init__(self, towers: pd.DataFrame, crs: str, cfg: SimulationConfig, seed: int) -> None:
        """``towers``: the simulated antennas (``simulate_towers(...)[1]``: where the cells really are, with
        their layer and downtilt); the operator's towers table will do only for a regular network."""
        if len(towers) == 0:
            raise ValueError("towers table is empty: the radio model needs at least one cell")
        if cfg.vertical_pattern and "downtilt_deg" not in towers.columns:
            raise ValueError("RadioModel: simulation.vertical_pattern needs the simulated antennas (antennas.parquet, "
                             "with downtilt_deg), not the operator's towers table")
        self.cfg = cfg
        self.cell_id = towers["cell_id"].to_numpy(np.int64)
        layers = cfg.layer_list
        self.cell_layer = ((self.cell_id % 256) // 16).astype(np.int64)
        if self.cell_layer.max() >= len(layers):
            raise ValueError(f"towers: cell ids name layer {int(self.cell_layer.max())} but simulation.layers has "
                             f"{len(layers)} (cell_id = site_id * 256 + 16 * layer + sector)")
        self.n_layers = len(layers)
        self.layer_priority = np.array([layer.idle_priority for layer in layers], dtype=np.int64)
        self.layer_freq_db = 20.0 * np.log10(np.array([layer.carrier_ghz for layer in layers]))
        self.cell_tilt = (np.radians(towers["downtilt_deg"].to_numpy(np.float64)) if cfg.vertical_pattern
                          else np.zeros(len(towers)))
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
        n_sc = np.array([layer.n_subcarriers for layer in layers], dtype=np.float64)[self.cell_layer]
        self.cell_eirp = towers["tx_power_dbm"].to_numpy(np.float64) - 10 * np.log10(n_sc) + cfg.antenna_gain_dbi
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
        shadow = self.shadowing_db(xy, sites)
        bearing = np.arctan2(d[..., 0], d[..., 1])  # clockwise from north, like azimuths
        cells = self.site_cells[sites]  # (n, k, m)
        valid = cells >= 0
        cz = np.where(valid, cells, 0)
        path_loss = (13.54 + 39.08 * np.log10(d3))[..., None] + self.layer_freq_db[self.cell_layer[cz]] \
            - 0.6 * (cfg.ue_height_m - 1.5)
        off = np.degrees((bearing[..., None] - self.cell_azimuth[cz] + np.pi) % (2 * np.pi) - np.pi)
        gain = -np.minimum(12.0 * (off / cfg.beamwidth_deg) ** 2, cfg.front_to_back_db)
        if cfg.vertical_pattern:
            elevation = np.arctan2(self.site_height[sites] - cfg.ue_height_m, d2)[..., None]  # below the horizon
            tilt_off = np.degrees(elevation - self.cell_tilt[cz])
            vertical = -np.minimum(12.0 * (tilt_off / cfg.vertical_beamwidth_deg) ** 2, cfg.vertical_sidelobe_db)
            gain = -np.minimum(-(gain + vertical), cfg.front_to_back_db)
        rsrp = self.cell_eirp[cz] + gain - path_loss + shadow[..., None]
        rsrp = np.where(valid, rsrp, -np.inf)
        n = len(xy)
        return cells.reshape(n, -1), rsrp.reshape(n, -1)

    def measure(self, xy: np.ndarray, rng: np.random.Generator,
                loss_db: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`mean_rsrp` plus the i.i.d. measurement noise, less the phone's own loss per layer
        (``loss_db`` (n_layers,), :func:`phone_loss_db`); unmeasurable cells get -inf."""
        cells, rsrp = self.mean_rsrp(xy)
        if loss_db is not None:
            rsrp = rsrp - np.asarray(loss_db, dtype=np.float64)[self.cell_layer[np.where(cells >= 0, cells, 0)]]
        rsrp = rsrp + rng.normal(0.0, self.cfg.measurement_noise_db, rsrp.shape)
        rsrp[rsrp < self.cfg.rsrp_floor_dbm] = -np.inf
        return cells, rsrp


def _sustained(cond: np.ndarray, tb: np.ndarray, carry_start: float | None,
               hold_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Samples where ``cond`` has held, without a break, for at least ``hold_s`` (and over at least two samples:
    one sample cannot prove a condition lasted); also each sample's run start (``carry_start``: the start of a
    run that began in the previous block)."""
    idx = np.arange(len(tb))
    last_false = np.maximum.accumulate(np.where(~cond, idx, -1))
    run_start = np.where(last_false >= 0, tb[np.minimum(last_false + 1, len(tb) - 1)],
                         carry_start if carry_start is not None else tb[0])
    return cond & ((tb - run_start >= hold_s) & (tb > run_start)), run_start


def _group_best(rsrp: np.ndarray, cells: np.ndarray, group: np.ndarray,
                n_groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per sample and group (layer) of columns: the strongest and second strongest cell, ``(best value, best
    cell, second value, second cell)``, each (n, n_groups); -inf where there is none. Computed once per trace,
    so a mobility rule reads slices instead of searching the columns again at every change."""
    n = len(rsrp)
    rows = np.arange(n)
    bv, sv = np.full((n, n_groups), -np.inf), np.full((n, n_groups), -np.inf)
    bc, sc = np.full((n, n_groups), -1, dtype=np.int64), np.full((n, n_groups), -1, dtype=np.int64)
    for g in range(n_groups):
        m = np.where(group == g, rsrp, -np.inf)
        j = m.argmax(axis=1)
        bv[:, g], bc[:, g] = m[rows, j], cells[rows, j]
        m[rows, j] = -np.inf
        j = m.argmax(axis=1)
        sv[:, g], sc[:, g] = m[rows, j], cells[rows, j]
    return bv, bc, sv, sc


def _keyed_best(values: np.ndarray, cells: np.ndarray, allowed: np.ndarray,
                key_offset: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Over the allowed groups (bool (n_groups,) or (n, n_groups)), the group best with the largest
    ``key_offset + value``: ``(found (n,), its value, its cell)``."""
    key = np.where(allowed, values + (0.0 if key_offset is None else key_offset), -np.inf)
    g = key.argmax(axis=1)
    rows = np.arange(len(values))
    return np.isfinite(key[rows, g]), values[rows, g], cells[rows, g]


#: a mobility rule: (serving cell, first sample, end sample) -> (condition (nb,), target cell index (nb,))
Rule = Callable[[int, int, int], tuple[np.ndarray, np.ndarray]]


def _serving_process(t: np.ndarray, rules: list[Rule], hold_s: float, start: int) -> tuple[np.ndarray, np.ndarray]:
    """Run a serving-cell state machine over a measurement grid ``t``: from ``start``, the first sample where some
    rule's condition has held for ``hold_s`` changes the serving cell to that rule's target (the first rule in
    ``rules`` wins a tie). Vectorised over blocks of samples; the Python loop runs once per change or block."""
    n = len(t)
    serving = int(start)
    change_t, change_cell = [float(t[0])], [serving]
    i = 0
    carry: list[float | None] = [None] * len(rules)
    while i < n:
        end = min(n, i + A3_BLOCK)
        tb = t[i:end]
        first, targets, new_carry = [], [], []
        for k, rule in enumerate(rules):
            cond, target = rule(serving, i, end)
            fired, run_start = _sustained(cond, tb, carry[k], hold_s)
            hit = np.flatnonzero(fired)
            first.append(int(hit[0]) if len(hit) else len(tb))
            targets.append(target)
            new_carry.append(float(run_start[-1]) if cond[-1] else None)
        j = min(first)
        if j < len(tb):
            serving = int(targets[first.index(j)][j])
            change_t.append(float(tb[j]))
            change_cell.append(serving)
            i += j + 1
            carry = [None] * len(rules)
        else:
            carry = new_carry
            i = end
    return np.asarray(change_t), np.asarray(change_cell, dtype=np.int64)


def _serving_rsrp(cells: np.ndarray, rsrp: np.ndarray) -> Callable[[int, int, int], np.ndarray]:
    """``rs(serving, lo, hi)``: the serving cell's RSRP over samples [lo, hi) (-inf where not measured), kept for
    the block's rules to share."""
    last: dict = {}

    def rs(s: int, lo: int, hi: int) -> np.ndarray:
        if last.get("key") != (s, lo, hi):
            last["key"], last["value"] = (s, lo, hi), np.where(cells[lo:hi] == s, rsrp[lo:hi], -np.inf).max(axis=1)
        return last["value"]

    return rs


def _column_layers(model: "RadioModel", cells: np.ndarray) -> np.ndarray:
    return np.where(cells >= 0, model.cell_layer[np.where(cells >= 0, cells, 0)], -1)


def connected_serving(model: "RadioModel", t: np.ndarray, cells: np.ndarray, rsrp: np.ndarray,
                      start: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Connected-mode serving cell over a measurement grid: ``(change times, new serving cell indices)``.

    ``start``: the cell the connection is set up on (default: the strongest cell of the first sample). Then, in
    this order of precedence: A3, a neighbour on the serving layer stronger than the serving cell by the
    hysteresis for the time-to-trigger (a serving cell that is no longer measured counts as -inf: the link fails
    and the phone re-selects); A5, the serving cell below threshold 1 and another layer's cell above threshold 2;
    A4, a higher-priority layer's best cell above the A4 threshold (load balancing onto capacity layers).
    """
    cfg = model.cfg
    if len(t) == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    nl, layer_of, prio = model.n_layers, model.cell_layer, model.layer_priority.astype(np.float64)
    bv, bc, sv, sc = _group_best(rsrp, cells, _column_layers(model, cells), nl)
    hyst = cfg.a3_hysteresis_db

    rs = _serving_rsrp(cells, rsrp)

    def a3(s: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        L = layer_of[s]
        is_s = bc[lo:hi, L] == s
        best = np.where(is_s, sv[lo:hi, L], bv[lo:hi, L])
        return (best > rs(s, lo, hi) + hyst) & np.isfinite(best), np.where(is_s, sc[lo:hi, L], bc[lo:hi, L])

    other_layers = ~np.eye(nl, dtype=bool)
    a5_best = [_keyed_best(bv, bc, other_layers[L] & (bv > cfg.a5_threshold2_dbm)) for L in range(nl)]
    a4_best = [_keyed_best(bv, bc, (prio > prio[L]) & (bv > cfg.a4_threshold_dbm), 1000.0 * prio)
               for L in range(nl)]

    def a5(s: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        found, _, cell = a5_best[layer_of[s]]
        return (rs(s, lo, hi) < cfg.a5_threshold1_dbm) & found[lo:hi], cell[lo:hi]

    def a4(s: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        found, _, cell = a4_best[layer_of[s]]
        return found[lo:hi], cell[lo:hi]

    if start is None:
        start = int(cells[0, int(np.argmax(rsrp[0]))])
    return _serving_process(t, [a3] if nl == 1 else [a3, a5, a4], cfg.a3_time_to_trigger_ms / 1000.0, start)


def idle_serving(model: "RadioModel", t: np.ndarray, cells: np.ndarray,
                 rsrp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Idle-mode camping over a measurement grid (TS 36.304 priority-based reselection): ``(change times, cells)``.

    The phone first camps on the highest-priority layer whose best cell is above ``idle_thresh_high_dbm`` (else
    the strongest cell). Then, held for ``idle_reselection_s``, in this order: a higher-priority layer's best above
    ``idle_thresh_high_dbm``; the camped cell below ``idle_thresh_serving_low_dbm`` and a lower-priority layer's
    best above ``idle_thresh_low_dbm``; an equal-priority cell better than the camped one by ``idle_hysteresis_db``
    (Qhyst); a camped cell no longer measured: the best cell by priority.
    """
    cfg = model.cfg
    if len(t) == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    nl, layer_of, prio = model.n_layers, model.cell_layer, model.layer_priority.astype(np.float64)
    bv, bc, sv, sc = _group_best(rsrp, cells, _column_layers(model, cells), nl)
    by_prio = 1000.0 * prio
    higher_best = [_keyed_best(bv, bc, (prio > prio[L]) & (bv > cfg.idle_thresh_high_dbm), by_prio) for L in range(nl)]
    lower_best = [_keyed_best(bv, bc, (prio < prio[L]) & (bv > cfg.idle_thresh_low_dbm), by_prio) for L in range(nl)]
    any_best = _keyed_best(bv, bc, np.isfinite(bv), by_prio)
    same_prio = [np.flatnonzero(prio == prio[L]) for L in range(nl)]

    rs = _serving_rsrp(cells, rsrp)

    def higher(s: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        found, _, cell = higher_best[layer_of[s]]
        return found[lo:hi], cell[lo:hi]

    def lower(s: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        found, _, cell = lower_best[layer_of[s]]
        return (rs(s, lo, hi) < cfg.idle_thresh_serving_low_dbm) & found[lo:hi], cell[lo:hi]

    def same(s: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        ls = same_prio[layer_of[s]]
        is_s = bc[lo:hi, ls] == s
        vals = np.where(is_s, sv[lo:hi, ls], bv[lo:hi, ls])
        cand = np.where(is_s, sc[lo:hi, ls], bc[lo:hi, ls])
        g = vals.argmax(axis=1)
        rows = np.arange(hi - lo)
        best = vals[rows, g]
        return (best > rs(s, lo, hi) + cfg.idle_hysteresis_db) & np.isfinite(best), cand[rows, g]

    def lost(s: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        found, _, cell = any_best
        return ~np.isfinite(rs(s, lo, hi)) & found[lo:hi], cell[lo:hi]

    first_high = _keyed_best(bv[:1], bc[:1], bv[:1] > cfg.idle_thresh_high_dbm, by_prio)
    start = int(first_high[2][0]) if first_high[0][0] else int(cells[0, int(np.argmax(rsrp[0]))])
    return _serving_process(t, [higher, lower, same, lost], cfg.idle_reselection_s, start)


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
                forced_t: np.ndarray | None = None, loss_db: np.ndarray | None = None) -> RadioTrace:
    """Evaluate a phone along its knots: measurement grid, RSRP of nearby cells (less the phone's own
    ``loss_db`` per layer), and its serving cell: the A3 trace (``single_trace``) or the idle camping
    (``idle_connected``, where connected stretches are run from it by :func:`connected_serving`)."""
    t = radio_grid(knots.t, knots.position, cfg, forced_t)
    cells, rsrp = model.measure(knots.position(t), rng, loss_db)
    if cfg.mobility == "single_trace":
        change_t, change_cell = connected_serving(model, t, cells, rsrp)
    else:
        change_t, change_cell = idle_serving(model, t, cells, rsrp)
    k = np.searchsorted(change_t, t, side="right") - 1
    return RadioTrace(t, cells, rsrp, change_cell[np.clip(k, 0, None)], change_t, change_cell)
