"""Taxi fleet GPS: shifts of many hours mixing trips, stops and parking breaks."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from ml.cities.network import RoadNetwork
from ml.simulate.config import SimulationConfig
from ml.simulate.mobility import Knots, RoutePlanner, vehicle_day
from ml.simulate.tables import make_table, random_ids, seconds_to_ts

GPS_NOISE_CORRELATION = 0.8  # AR(1) coefficient between consecutive fixes (GPS error drifts slowly)


def day_epoch(cfg: SimulationConfig, day: int) -> np.datetime64:
    return np.datetime64(cfg.start_date, "D") + np.timedelta64(day, "D")


def gps_from_knots(knots: Knots, t_start: float, t_end: float, cfg: SimulationConfig,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixes every ``gps_interval_s`` with AR(1)-correlated noise of RMS radial error ``gps_noise_m``."""
    t = np.arange(t_start, t_end, cfg.gps_interval_s)
    xy = knots.position(t)
    sigma_axis = cfg.gps_noise_m / np.sqrt(2.0)
    innovation = rng.normal(0.0, sigma_axis * np.sqrt(1 - GPS_NOISE_CORRELATION**2), (len(t), 2))
    noise = lfilter([1.0], [1.0, -GPS_NOISE_CORRELATION], innovation, axis=0)
    speed = np.maximum(knots.speed(t) + rng.normal(0.0, 0.3, len(t)), 0.0)
    return t, xy + noise, speed


def simulate_taxi_gps(net: RoadNetwork, cfg: SimulationConfig, seed: int) -> pd.DataFrame:
    """GPS table of the taxi fleet (contract table ``gps``, sorted by vehicle_id, ts).

    Each taxi works one shift per day (start and length drawn from ``shift_start_hour`` and
    ``shift_hours``) from its home node; it chains trips to random destinations (routes by travel
    time with per-day random costs), stops to pick up / drop off and sometimes parks for a break.
    Fixes are reported every ``gps_interval_s`` with ~``gps_noise_m`` noise, also while parked.
    """
    rng = np.random.default_rng([seed, 202])
    planner = RoutePlanner(net)
    vehicle_ids = random_ids(rng, cfg.n_taxis, "v")
    homes = rng.integers(0, net.n_nodes, cfg.n_taxis)
    frames: list[dict[str, np.ndarray]] = []
    for day in range(cfg.n_days):
        epoch = day_epoch(cfg, day)
        for k, vid in enumerate(vehicle_ids):
            trng = np.random.default_rng([seed, 203, day, k])
            t_start = 3600.0 * trng.uniform(*cfg.shift_start_hour)
            t_end = t_start + 3600.0 * trng.uniform(*cfg.shift_hours)
            knots, _ = vehicle_day(planner, int(homes[k]), t_start, t_end, cfg, trng, cfg.stop_s,
                                   cfg.break_probability, cfg.break_minutes)
            t, xy, speed = gps_from_knots(knots, t_start, t_end, cfg, trng)
            lonlat = net.projection.to_lonlat(xy)
            frames.append({"vehicle_id": np.full(len(t), vid, dtype=object), "ts": seconds_to_ts(t, epoch),
                           "lon": lonlat[:, 0], "lat": lonlat[:, 1], "speed_mps": speed})
    cols = {c: np.concatenate([f[c] for f in frames]) for c in ("vehicle_id", "ts", "lon", "lat", "speed_mps")}
    df = make_table("gps", cols)
    return df.sort_values(["vehicle_id", "ts"], ignore_index=True, kind="stable")
