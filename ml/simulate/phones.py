"""Phones: who carries them where (drivers and decoys), and their event-driven signaling records.

Every random draw for a device-day comes from a stream seeded by (seed, purpose, device id, day),
so the measurement-report stage can rebuild exactly the same driver timelines and serving cells
from the public tables (gps, truth_links) without any hidden state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml.cities.network import RoadNetwork
from ml.simulate.config import DECOY_KINDS, IN_VEHICLE_KINDS, INDOOR_KINDS, SimulationConfig
from ml.simulate.mobility import Knots, RoutePlanner, vehicle_day
from ml.simulate.radio import RadioModel, RadioTrace, connected_serving, radio_trace
from ml.simulate.tables import EVENTS, make_table, random_ids, seconds_to_ts, stable_int, ts_to_seconds
from ml.simulate.taxis import day_epoch

DAY_S = 86400.0
STREAM_TIMELINE, STREAM_RADIO, STREAM_EVENTS, STREAM_POPULATION, STREAM_PHONE = 303, 304, 305, 306, 307


@dataclass
class DeviceDay:
    """Where one phone is during one day (knots in seconds since that day's 00:00 UTC)."""

    device_id: str
    kind: str
    day: int
    knots: Knots
    vehicle_id: str | None = None
    mr_span: tuple[float, float] | None = None  # drivers: the taxi's GPS span (measurement reports)


def device_rng(seed: int, stream: int, device_id: str, day: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, stable_int(device_id), day])


# ---------------------------------------------------------------------------------------- taxi tracks
def taxi_tracks(gps: pd.DataFrame, crs: str, cfg: SimulationConfig) -> dict[tuple[str, int], Knots]:
    """Per (vehicle, day index) the GPS track as knots (projected metres, seconds in the day)."""
    from ml.geo import CityProjection

    if len(gps) == 0:
        return {}
    epoch = np.datetime64(cfg.start_date, "D")
    sec = ts_to_seconds(gps["ts"], epoch)
    day = np.floor(sec / DAY_S).astype(np.int64)
    xy = CityProjection(crs).to_xy(gps["lon"].to_numpy(), gps["lat"].to_numpy())
    vid = gps["vehicle_id"].to_numpy(dtype=object)
    speed = gps["speed_mps"].to_numpy(np.float64)
    order = np.lexsort((sec, day, vid))
    vid, day, sec, xy, speed = vid[order], day[order], sec[order], xy[order], speed[order]
    brk = np.flatnonzero((vid[1:] != vid[:-1]) | (day[1:] != day[:-1])) + 1
    out: dict[tuple[str, int], Knots] = {}
    for a, b in zip(np.concatenate([[0], brk]), np.concatenate([brk, [len(vid)]])):
        d = int(day[a])
        out[(str(vid[a]), d)] = Knots(sec[a:b] - d * DAY_S, xy[a:b, 0], xy[a:b, 1], speed[a:b])
    return out


# ---------------------------------------------------------------------------------------- population
def device_population(gps_vehicles: list[str], cfg: SimulationConfig, seed: int) -> pd.DataFrame:
    """Device ids (random), kinds and, for drivers, their taxi: the hidden truth_links table."""
    rng = np.random.default_rng([seed, STREAM_POPULATION])
    shares = np.array([cfg.decoy_mix.get(k, 0.0) for k in DECOY_KINDS], dtype=np.float64)
    raw = shares / shares.sum() * cfg.n_decoys
    counts = np.floor(raw).astype(int)
    counts[np.argsort(-(raw - counts))[: cfg.n_decoys - counts.sum()]] += 1  # largest remainder
    kinds = ["driver"] * len(gps_vehicles) + [k for k, c in zip(DECOY_KINDS, counts) for _ in range(c)]
    vehicles = list(gps_vehicles) + [None] * int(counts.sum())
    ids = random_ids(rng, len(kinds), "d")
    df = make_table("truth_links", {"device_id": ids, "vehicle_id": vehicles, "kind": kinds})
    return df.sort_values("device_id", ignore_index=True)


def driver_day(device_id: str, vehicle_id: str, day: int, track: Knots, cfg: SimulationConfig, seed: int) -> DeviceDay:
    """The driver's phone: in the taxi during the shift, still at its start / end a while before / after."""
    rng = device_rng(seed, STREAM_TIMELINE, device_id, day)
    pre, post = 3600.0 * rng.uniform(*cfg.driver_extra_hours, 2)
    a, b = float(track.t[0]), float(track.t[-1])
    start, end = max(0.0, a - pre), min(DAY_S - 1.0, b + post)
    first, last = np.array([track.x[0], track.y[0]]), np.array([track.x[-1], track.y[-1]])
    knots = Knots.concat([Knots.still(start, a, first), track, Knots.still(b, end, last)])
    return DeviceDay(device_id, "driver", day, knots, vehicle_id, (a, b))


def decoy_day(device_id: str, kind: str, day: int, home_node: int, planner: RoutePlanner,
              tracks_today: list[Knots], cfg: SimulationConfig, seed: int) -> DeviceDay:
    """A phone not linked to any taxi: passenger, pedestrian, other car or stationary user."""
    rng = device_rng(seed, STREAM_TIMELINE, device_id, day)
    net = planner.net
    start = 3600.0 * rng.uniform(*cfg.decoy_start_hour)
    end = start + 3600.0 * rng.uniform(*cfg.decoy_active_hours)
    home = net.node_xy[home_node]
    if kind == "pedestrian":
        knots, _ = vehicle_day(planner, home_node, start, end, cfg, rng, stop_s=(600.0, 4800.0),
                               break_probability=0.0, break_minutes=(0.0, 0.0),
                               walking_speed=rng.uniform(1.1, 1.5), dist_range=(300.0, 1500.0), batch=8)
    elif kind == "car":
        busy = rng.random() < 0.5  # delivery vans move for hours, commuters mostly park
        knots, _ = vehicle_day(planner, home_node, start, end, cfg, rng,
                               stop_s=(60.0, 600.0) if busy else (1800.0, 10800.0),
                               break_probability=0.1, break_minutes=cfg.break_minutes, batch=8 if busy else 4)
    elif kind == "passenger" and tracks_today:
        knots = _passenger_knots(start, end, home, tracks_today, rng)
    else:  # stationary (or a passenger on a day without taxis)
        ang = rng.uniform(0, 2 * np.pi)
        knots = Knots.still(start, end, home + rng.uniform(0, 50) * np.array([np.cos(ang), np.sin(ang)]))
    return DeviceDay(device_id, kind, day, knots)


def _passenger_knots(start: float, end: float, home: np.ndarray, tracks: list[Knots],
                     rng: np.random.Generator) -> Knots:
    """Waits, rides a random taxi for 5-25 min, maybe takes transit and a second taxi, waits again."""
    parts: list[Knots] = []
    t, pos = start, home
    for _ in range(1 + int(rng.random() < 0.5)):
        tk = tracks[int(rng.integers(len(tracks)))]
        lo = max(t + (1800.0 if parts else 0.0), float(tk.t[0]))
        hi = min(end, float(tk.t[-1])) - 300.0
        if hi <= lo:
            continue
        r0 = rng.uniform(lo, hi)
        r1 = min(r0 + 60.0 * rng.uniform(5, 25), float(tk.t[-1]), end)
        ride = tk.clip(r0, r1)
        pickup = np.array([ride.x[0], ride.y[0]])
        # walk / transit from where the passenger was to the pick-up point, then wait there
        arrive = min(r0, t + np.hypot(*(pickup - pos)) / 6.0)
        parts.append(Knots(np.array([t, arrive, r0]), np.array([pos[0], pickup[0], pickup[0]]),
                           np.array([pos[1], pickup[1], pickup[1]]), np.zeros(3)))
        parts.append(ride)
        t, pos = r1, ride.end_xy
    parts.append(Knots.still(t, end, pos))
    return Knots.concat(parts)


def build_device_days(net: RoadNetwork, gps: pd.DataFrame, truth_links: pd.DataFrame, cfg: SimulationConfig,
                      seed: int, kinds: tuple[str, ...] | None = None) -> list[DeviceDay]:
    """Timelines of all (or only ``kinds``) phones for every simulated day."""
    tracks = taxi_tracks(gps, net.crs, cfg)
    days = sorted({d for _, d in tracks}) or list(range(cfg.n_days))
    planner = RoutePlanner(net)
    rng = np.random.default_rng([seed, STREAM_POPULATION, 1])
    home_of = {dev: int(h) for dev, h in zip(truth_links["device_id"], rng.integers(0, net.n_nodes, len(truth_links)))}
    out: list[DeviceDay] = []
    for row in truth_links.itertuples(index=False):
        if kinds is not None and row.kind not in kinds:
            continue
        for day in days:
            if row.kind == "driver":
                track = tracks.get((row.vehicle_id, day))
                if track is not None and len(track.t) >= 2:
                    out.append(driver_day(row.device_id, row.vehicle_id, day, track, cfg, seed))
            else:
                today = [k for (v, d), k in tracks.items() if d == day]
                out.append(decoy_day(row.device_id, row.kind, day, home_of[row.device_id], planner, today, cfg, seed))
    return out


def o2i_low_loss_db(carrier_ghz: float) -> float:
    """Outdoor-to-indoor loss (dB): the wall of 3GPP TR 38.901 Table 7.4.3-2's low-loss model (30 % glass, 70 %
    concrete) plus its indoor term, 0.5 dB/m, over 12.5 m (the middle of the 0-25 m depth range; 38.901 draws the
    depth per link): 16.7 / 17.9 / 18.5 dB at 0.8 / 1.8 / 2.6 GHz."""
    glass, concrete = 2.0 + 0.2 * carrier_ghz, 5.0 + 4.0 * carrier_ghz
    return 5.0 - 10.0 * np.log10(0.3 * 10 ** (-glass / 10.0) + 0.7 * 10 ** (-concrete / 10.0)) + 0.5 * 12.5


def phone_loss_db(dd: DeviceDay, cfg: SimulationConfig, seed: int) -> np.ndarray | None:
    """The phone's own loss per layer (dB, subtracted from every RSRP), drawn once per device-day: in-vehicle
    penetration for phones in a vehicle, outdoor-to-indoor for stationary phones, and a handset offset. None when
    the config has none of them (the regular network)."""
    layers = cfg.layer_list
    mean, sd = cfg.vehicle_penetration_db
    if mean == 0 and sd == 0 and not cfg.indoor_penetration and cfg.handset_offset_sd_db == 0:
        return None
    rng = device_rng(seed, STREAM_PHONE, dd.device_id, dd.day)
    loss = np.full(len(layers), rng.normal(0.0, cfg.handset_offset_sd_db))
    if dd.kind in IN_VEHICLE_KINDS:
        loss += max(0.0, rng.normal(mean, sd))
    elif dd.kind in INDOOR_KINDS and cfg.indoor_penetration:
        loss += np.array([o2i_low_loss_db(layer.carrier_ghz) for layer in layers])
    return loss


def device_radio(model: RadioModel, dd: DeviceDay, cfg: SimulationConfig, seed: int) -> RadioTrace:
    """Radio trace of a device-day; drivers are also evaluated at every MR instant of their shift."""
    forced = None
    if dd.mr_span is not None:
        a, b = dd.mr_span
        forced = np.arange(np.ceil(a / cfg.mr_interval_s), np.floor(b / cfg.mr_interval_s) + 1) * cfg.mr_interval_s
    return radio_trace(model, dd.knots, cfg, device_rng(seed, STREAM_RADIO, dd.device_id, dd.day), forced,
                       loss_db=phone_loss_db(dd, cfg, seed))


# ---------------------------------------------------------------------------------------- events
def _poisson_times(rng: np.random.Generator, rate_per_h: float, a: float, b: float) -> np.ndarray:
    n = rng.poisson(rate_per_h * max(b - a, 0.0) / 3600.0)
    return np.sort(rng.uniform(a, b, n))


def device_records(model: RadioModel, dd: DeviceDay, trace: RadioTrace, cfg: SimulationConfig,
                   seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Event-driven records of one device-day: (times, event names, serving cell indices).

    Data sessions (Poisson, some in bursts), calls, SMS, periodic updates every T3412, an attach
    when the phone comes on, and a handover record for every serving-cell change while the phone
    is connected (during a session plus the RRC inactivity tail). Idle-mode reselections leave no
    record, which is why gaps range from seconds to many minutes.

    Cells: with ``single_trace`` mobility every record takes the trace's serving cell. With ``idle_connected``,
    idle events (attach, periodic update) take the camped cell; a connection is set up on the camped cell at its
    first session and hands over from there (:func:`ml.simulate.radio.connected_serving`), so the records inside
    a connected stretch take the connected cell and the handover records its changes.
    """
    rng = device_rng(seed, STREAM_EVENTS, dd.device_id, dd.day)
    a, b = float(dd.knots.t[0]), float(dd.knots.t[-1])
    rate = cfg.driver_data_sessions_per_h if dd.kind == "driver" else cfg.data_sessions_per_h
    data = _poisson_times(rng, rate, a, b)
    burst = data[rng.random(len(data)) < cfg.data_burst_probability]
    follow = burst + rng.exponential(20.0, len(burst)) + 3.0
    data = np.sort(np.concatenate([data, follow[follow < b]]))
    data_dur = cfg.data_session_median_s * rng.lognormal(0.0, 1.0, len(data))
    calls = _poisson_times(rng, cfg.calls_per_h, a, b)
    call_dur = rng.exponential(cfg.call_mean_s, len(calls))
    sms = _poisson_times(rng, cfg.sms_per_h, a, b)
    period = 60.0 * cfg.periodic_update_min
    periodic = a + rng.uniform(0, period) + period * np.arange(int((b - a) // period) + 1)
    periodic = periodic[periodic < b]
    # connected-mode intervals: handovers inside them are recorded
    starts = np.concatenate([data, calls, sms])
    ends = np.concatenate([data + data_dur, calls + call_dur, sms]) + cfg.connected_tail_s
    order = np.argsort(starts)
    starts, reach = starts[order], np.maximum.accumulate(ends[order])
    if cfg.mobility == "single_trace":
        ho_t = trace.change_t[1:]
        k = np.searchsorted(starts, ho_t, side="right") - 1
        connected = (k >= 0) & (ho_t <= reach[np.clip(k, 0, None)]) if len(starts) else np.zeros(len(ho_t), bool)
        ho_t = ho_t[connected]
    else:
        ho_t, ho_cell, conn_t, conn_cell = _connected_stretches(model, trace, starts, reach)
    times = np.concatenate([[a], periodic, data, calls, sms, ho_t])
    names = np.concatenate([["attach"], np.full(len(periodic), "periodic"), np.full(len(data), "data"),
                            np.full(len(calls), "call"), np.full(len(sms), "sms"), np.full(len(ho_t), "handover")])
    cells = trace.serving_at(times)
    if cfg.mobility != "single_trace":
        cells = _connected_cells(times, names, cells, ho_t, ho_cell, conn_t, conn_cell, starts, reach)
    keep = (times >= a) & (times <= b)
    order = np.argsort(times[keep], kind="stable")
    return times[keep][order], names[keep][order], cells[keep][order]


def _connected_stretches(model: RadioModel, trace: RadioTrace, starts: np.ndarray,
                         reach: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Connected mobility of every connected stretch (sessions merged while their ends overlap): each set up on
    the camped cell at its start. Returns the handovers (times, new cells) and every stretch's serving-cell
    changes including its set-up (times, cells), for looking up the connected cell of a record."""
    ho_t, ho_c, all_t, all_c = [], [], [], []
    if len(starts) == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0, dtype=np.int64)
    new = np.r_[True, starts[1:] > reach[:-1]]  # a session after the previous stretch ended opens a new one
    s_idx = np.flatnonzero(new)
    e_idx = np.r_[s_idx[1:] - 1, len(starts) - 1]
    for s, e in zip(starts[s_idx], reach[e_idx]):
        setup = int(trace.serving_at(np.array([s]))[0])
        lo, hi = np.searchsorted(trace.t, s, side="left"), np.searchsorted(trace.t, e, side="right")
        if hi - lo >= 2:
            ct, cc = connected_serving(model, trace.t[lo:hi], trace.cells[lo:hi], trace.rsrp[lo:hi], start=setup)
        else:
            ct, cc = np.array([s]), np.array([setup])
        ct = ct.copy()
        ct[0] = s
        ho_t.append(ct[1:])
        ho_c.append(cc[1:])
        all_t.append(ct)
        all_c.append(cc)
    return (np.concatenate(ho_t), np.concatenate(ho_c).astype(np.int64), np.concatenate(all_t),
            np.concatenate(all_c).astype(np.int64))


def _connected_cells(times: np.ndarray, names: np.ndarray, idle_cells: np.ndarray, ho_t: np.ndarray,
                     ho_cell: np.ndarray, conn_t: np.ndarray, conn_cell: np.ndarray, starts: np.ndarray,
                     reach: np.ndarray) -> np.ndarray:
    """Each record's cell: handover records their new cell; session records inside a connected stretch the
    stretch's serving cell at that time (the set-up cell for the session that opens it); idle records (attach,
    periodic) the camped cell, unless they fall inside a connected stretch (then the connected cell)."""
    cells = idle_cells.copy()
    is_ho = names == "handover"
    cells[is_ho] = ho_cell
    if len(starts) and len(conn_t):
        k = np.searchsorted(starts, times, side="right") - 1
        inside = (k >= 0) & (times <= reach[np.clip(k, 0, None)]) & ~is_ho
        j = np.searchsorted(conn_t, times[inside], side="right") - 1
        cells[inside] = conn_cell[np.clip(j, 0, None)]
    return cells


def simulate_signaling(net: RoadNetwork, towers: pd.DataFrame, gps: pd.DataFrame, cfg: SimulationConfig,
                       seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Signaling records of drivers' phones and decoys, and the hidden truth links.

    Returns ``(signaling, truth_links)`` (contract tables). Drivers' phones ride in the taxis of
    ``gps`` (one per taxi); decoys are passengers (in a taxi for part of a trip), pedestrians,
    other cars and stationary users. Device ids are random hex strings that reveal nothing.
    """
    vehicles = sorted(gps["vehicle_id"].astype(str).unique()) if len(gps) else []
    truth = device_population(vehicles, cfg, seed)
    return signaling_of_population(net, RadioModel(towers, net.crs, cfg, seed), gps, truth, cfg, seed), truth


def signaling_of_population(net: RoadNetwork, model: RadioModel, gps: pd.DataFrame, truth_links: pd.DataFrame,
                            cfg: SimulationConfig, seed: int) -> pd.DataFrame:
    """Signaling records (contract table ``signaling``) of the phones of ``truth_links`` in radio world ``model``.

    Split from :func:`simulate_signaling` so that an operator-sized day (``ml.scale``) can simulate its
    population shard by shard in one radio world (one ``RadioModel``, the city's shadowing).
    """
    frames = []
    for dd in build_device_days(net, gps, truth_links, cfg, seed):
        trace = device_radio(model, dd, cfg, seed)
        times, names, cells = device_records(model, dd, trace, cfg, seed)
        frames.append(pd.DataFrame({
            "device_id": dd.device_id,
            "ts": seconds_to_ts(times, day_epoch(cfg, dd.day)),
            "cell_id": model.cell_id[cells],
            "event": names,
        }))
    cols = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        {"device_id": [], "ts": np.zeros(0, "datetime64[ns]"), "cell_id": [], "event": []})
    signaling = make_table("signaling", {c: cols[c].to_numpy() for c in ("device_id", "ts", "cell_id", "event")})
    assert set(signaling["event"].unique()) <= set(EVENTS)
    return signaling.sort_values(["device_id", "ts"], ignore_index=True, kind="stable")
