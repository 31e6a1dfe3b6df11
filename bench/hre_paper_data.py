"""Data of the ``hre_paper`` benchmark: long drives simulated in the HRE paper's regime on a real extract.

The simulation is the project's (:mod:`ml.simulate`) with the named scenario
``SimulationConfig.for_scenario("hre_paper")`` (5G NR per-base-station best-beam RSS, serving + 6
neighbour sites, every 0.2 s, dense sites, long drives; see ``ml/simulate/config.py``). Each taxi
shift of ``shift_hours`` is one drive; the driver's phone records the MR. Drives are cut into
consecutive windows of ``window_s`` seconds (the unit the MR methods run on, as the paper suggests
for long drives: "partition the entire trajectory into smaller segments").

The MR methods see one "cell" per base station (the paper's model: ``y_tq = beta_q + alpha_q log10 d``
per BS q): the contexts' tower table has one row per site (``cell_id = site_id``, no azimuth), and the
MR rows' cell ids are mapped to their site.

The paper's own tables (II: road mix; III, VI, VII: results) live here too, so that the runner
(:mod:`bench.hre_paper`) and the page writer (:mod:`bench.hre_paper_report`) both read them from
the data module and neither imports the other back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import SHARED_CITIES
from ml.observation.context import SampleContext, TowerTable
from ml.cities import CityConfig, RoadSource, load_road_network
from ml.cities.network import ROAD_CLASSES, RoadNetwork
from ml.simulate import (SimulationConfig, simulate_measurement_reports, simulate_signaling, simulate_taxi_gps,
                         simulate_towers)
from ml.simulate.tables import ts_to_seconds

# The paper's Table II road types, from OSM classes: highways = motorway/trunk, national and
# provincial (NP) = primary/secondary, urban = tertiary/residential, rural = the rest
# (unclassified, service, track, ...).
ROAD_TYPE_OF_CLASS = {"motorway": "highway", "trunk": "highway", "primary": "np", "secondary": "np",
                      "tertiary": "urban", "residential": "urban", "other": "rural"}
PAPER_TABLE_II = {"I": {"urban": 58.05, "highway": 12.24, "np": 21.17, "rural": 8.54},
                  "II": {"urban": 46.11, "highway": 25.35, "np": 24.11, "rural": 4.43}}
# The paper's result tables (QLE m, TME %), which the report sets beside ours: Table III (dataset I / II),
# Table VI (initialisation) and Table VII (map matching of MSR output).
PAPER_TABLE_III = {  # dataset I / II: QLE m, TME %
    "I": {"mar": (116.6, 74.14), "wcl": (85.2, 48.32), "hmm_wcl": (64.3, 32.11), "msr": (41.4, 8.93),
          "hre": (12.6, 0.34), "hrea": (10.1, 0.28)},
    "II": {"mar": (125.9, 76.24), "wcl": (88.6, 51.91), "hmm_wcl": (67.7, 37.44), "msr": (45.0, 9.75),
           "hre": (14.7, 0.37), "hrea": (12.4, 0.25)},
}
PAPER_TABLE_VI = {"mar": (38.4, 27.24), "wcl": (30.5, 19.54), "random_theta": (47.8, 35.22), "random_traj": (74.8, 28.18),
                  "msr": (12.6, 0.34), "gt_theta": (8.4, 0.27)}
PAPER_TABLE_VII = {"hmmm_on_msr": (40.1, 17.37), "hre": (12.6, 0.34)}
CITY_FILES = {"bayreuth": "bayreuth.osm.gz", "krems": "krems.osm.gz", "campo_grande": "campo_grande.osm.gz",
              "aguascalientes": "aguascalientes.osm.bz2"}


def load_city(name: str, cache: Path) -> RoadNetwork:
    path = SHARED_CITIES / CITY_FILES[name]
    if not path.is_file():
        raise FileNotFoundError(f"hre_paper: extract {path} not found (../shared/cities)")
    return load_road_network(CityConfig(name=name, seed=31, roads=RoadSource(source="osm", path=str(path))),
                             cache_dir=cache / name)


@dataclass
class Drives:
    """One simulation: towers, GPS truth and truth links; MR per report interval."""

    net: RoadNetwork
    cfg: SimulationConfig
    seed: int
    towers: pd.DataFrame
    gps: pd.DataFrame
    signaling: pd.DataFrame
    truth: pd.DataFrame

    def mr(self, interval_s: float) -> pd.DataFrame:
        cfg = self.cfg.model_copy(update={"mr_interval_s": float(interval_s)})
        return simulate_measurement_reports(self.net, self.towers, self.gps, self.signaling, self.truth, cfg, self.seed)


def simulate_drives(net: RoadNetwork, n_drives: int, drive_hours: float, seed: int, **overrides) -> Drives:
    cfg = SimulationConfig.for_scenario("hre_paper", n_taxis=n_drives, n_decoys=0,
                                        shift_hours=(drive_hours, drive_hours), **overrides)
    towers, _ = simulate_towers(net, cfg, seed)  # the regular network: the table is the antennas
    gps = simulate_taxi_gps(net, cfg, seed)
    signaling, truth = simulate_signaling(net, towers, gps, cfg, seed)
    return Drives(net, cfg, seed, towers, gps, signaling, truth)


def site_towers(towers: pd.DataFrame) -> pd.DataFrame:
    """One row per site (``cell_id = site_id``, azimuth NaN: the per-BS omnidirectional model)."""
    s = towers.groupby("site_id", sort=True).agg(lon=("lon", "mean"), lat=("lat", "mean")).reset_index()
    return s.assign(cell_id=s["site_id"].astype(np.int64), azimuth_deg=np.nan)[["cell_id", "site_id", "lon", "lat", "azimuth_deg"]]


def road_mix(net: RoadNetwork, xy: np.ndarray) -> dict[str, float]:
    """Share (%) of the distance driven along ``xy`` (1 s truth) on each Table II road type (nearest edge)."""
    seg = np.hypot(*np.diff(xy, axis=0).T)
    mid = (xy[1:] + xy[:-1]) / 2.0
    e = _nearest_edges(net, mid)
    cls = net.edge_class[e]
    out = {k: 0.0 for k in ("urban", "highway", "np", "rural")}
    for c in np.unique(cls):
        out[ROAD_TYPE_OF_CLASS[ROAD_CLASSES[c]]] += float(seg[cls == c].sum())
    tot = max(sum(out.values()), 1e-9)
    return {k: 100.0 * v / tot for k, v in out.items()}


def _nearest_edges(net: RoadNetwork, pts: np.ndarray) -> np.ndarray:
    from scipy.spatial import cKDTree

    seg = net.segments
    mid = (seg["a"] + seg["b"]) / 2.0
    # dense sampling of segments (every ~10 m) for a nearest-edge lookup
    n = np.maximum(1, np.ceil(seg["len"] / 10.0).astype(int))
    rep = np.repeat(np.arange(len(mid)), n)
    f = (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n) + 0.5) / np.repeat(n, n)
    p = seg["a"][rep] + f[:, None] * (seg["b"][rep] - seg["a"][rep])
    _, i = cKDTree(p).query(pts)
    return seg["edge"][rep[i]]


def drive_windows(d: Drives, mr: pd.DataFrame, window_s: float, eval_step_s: float = 1.0,
                  max_windows: int | None = None) -> list[SampleContext]:
    """Consecutive windows of ``window_s`` of every drive as MR contexts (truth: the 1 s GPS track)."""
    net, crs = d.net, d.net.crs
    st = site_towers(d.towers)
    table = TowerTable(st, crs)
    site_of_cell = dict(zip(d.towers["cell_id"].to_numpy(np.int64), d.towers["site_id"].to_numpy(np.int64)))
    drivers = d.truth[d.truth["kind"] == "driver"]
    epoch = np.datetime64(d.cfg.start_date, "D")
    out: list[SampleContext] = []
    for dev, veh in zip(drivers["device_id"], drivers["vehicle_id"]):
        g = d.gps[d.gps["vehicle_id"] == veh]
        if len(g) < 2:
            continue
        gt = ts_to_seconds(g["ts"], epoch)
        gxy = net.projection.to_xy(g["lon"].to_numpy(), g["lat"].to_numpy())
        m = mr[mr["device_id"] == dev]
        mt = ts_to_seconds(m["ts"], epoch)
        a, b = float(gt[0]), float(gt[-1])
        k = 0
        for w0 in np.arange(a, b - window_s + 1e-6, window_s):
            sel = (mt >= w0) & (mt < w0 + window_s)
            if sel.sum() < 10:
                continue
            mm = pd.DataFrame({"t": mt[sel] - w0, "cell_id": [site_of_cell[int(c)] for c in m["cell_id"].to_numpy()[sel]],
                               "rsrp_dbm": m["rsrp_dbm"].to_numpy(np.float64)[sel]})
            eval_t = np.arange(0.0, window_s, eval_step_s)
            truth = np.column_stack([np.interp(eval_t + w0, gt, gxy[:, 0]), np.interp(eval_t + w0, gt, gxy[:, 1])])
            ser = mm.groupby("t", sort=True).first().reset_index()
            sxy = table(ser["cell_id"].to_numpy())
            records = pd.DataFrame({"t": ser["t"].to_numpy(), "cell_id": ser["cell_id"].to_numpy(), "event": "periodic",
                                    "site_id": ser["cell_id"].to_numpy(), "x": sxy[:, 0], "y": sxy[:, 1]})
            out.append(SampleContext(
                sample_id=f"{dev}-{k:03d}", t0=pd.Timestamp(epoch) + pd.Timedelta(seconds=float(w0)),
                duration_s=float(window_s), eval_t=eval_t, truth_xy=truth, records=records, mr=mm,
                towers_xy=table, net=net, crs=crs, device_id=str(dev),
                extra={"drive": str(veh), "window": k, "truth_t": gt - w0, "truth_path_xy": gxy}))
            k += 1
            if max_windows is not None and len(out) >= max_windows:
                return out
    return out
