"""Simulation: schemas, determinism, physical sanity (small world on the 2 km grid fixture)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.simulate import (
    SimulationConfig,
    calibration_report,
    simulate_measurement_reports,
    simulate_signaling,
    simulate_taxi_gps,
    simulate_towers,
)
from ml.simulate.mobility import RoutePlanner, drive
from ml.simulate.phones import build_device_days, device_radio, device_records
from ml.simulate.radio import RadioModel, connected_serving, idle_serving
from ml.simulate.tables import EVENTS, SCHEMAS, TS_DTYPE

SEED = 3
SMALL = dict(n_taxis=6, n_decoys=6, shift_hours=(2.5, 3.0), shift_start_hour=(6.0, 7.0),
             decoy_active_hours=(3.0, 4.0), decoy_start_hour=(5.0, 6.0), driver_extra_hours=(0.1, 0.3))


def simulate_all(net, cfg: SimulationConfig, seed: int) -> dict[str, pd.DataFrame]:
    towers, antennas = simulate_towers(net, cfg, seed)
    gps = simulate_taxi_gps(net, cfg, seed)
    signaling, truth = simulate_signaling(net, antennas, gps, cfg, seed)
    mr = simulate_measurement_reports(net, antennas, gps, signaling, truth, cfg, seed)
    return {"towers": towers, "antennas": antennas, "gps": gps, "signaling": signaling, "truth_links": truth,
            "mr": mr}


@pytest.fixture(scope="module")
def cfg() -> SimulationConfig:
    return SimulationConfig(**SMALL)


@pytest.fixture(scope="module")
def world(grid_net, cfg):
    return simulate_all(grid_net, cfg, SEED)


def assert_schema(name: str, df: pd.DataFrame) -> None:
    schema = SCHEMAS[name]
    assert list(df.columns) == list(schema), name
    for col, dtype in schema.items():
        if dtype == TS_DTYPE:
            assert str(df[col].dtype) == "datetime64[ns, UTC]", (name, col, df[col].dtype)
        elif dtype == "str":
            assert pd.api.types.is_string_dtype(df[col].dtype), (name, col, df[col].dtype)
        else:
            assert str(df[col].dtype) == dtype, (name, col, df[col].dtype)


@pytest.mark.parametrize("name", ["towers", "gps", "signaling", "truth_links", "mr"])
def test_schemas(world, name):
    assert len(world[name]) > 0
    assert_schema(name, world[name])


def test_determinism(grid_net, cfg, world):
    again = simulate_all(grid_net, cfg, SEED)
    for name, df in world.items():
        pd.testing.assert_frame_equal(df, again[name], check_exact=True, obj=name)
    other_gps = simulate_taxi_gps(grid_net, cfg, SEED + 1)
    assert not other_gps["lon"].equals(world["gps"]["lon"].iloc[: len(other_gps)].reset_index(drop=True))


def test_towers_are_three_sector_macro_sites(world, cfg):
    towers = world["antennas"]
    per_site = towers.groupby(["site_id", "layer"])
    assert (per_site.size() == 3).all()
    assert towers.groupby("site_id")["lon"].nunique().eq(1).all()
    assert towers.groupby("site_id")["height_m"].nunique().eq(1).all()
    tall = towers["overshoot"]
    assert towers.loc[~tall, "height_m"].between(*cfg.site_height_m).all()
    assert towers.loc[tall, "height_m"].between(*cfg.overshoot_height_m).all()
    assert towers.loc[~tall, "downtilt_deg"].between(*cfg.downtilt_deg).all()
    assert towers["azimuth_deg"].between(0, 360).all()
    assert towers["cell_id"].is_unique
    # sectors point roughly 120 degrees apart
    az = np.sort(towers.sort_values(["site_id", "layer", "cell_id"])["azimuth_deg"].to_numpy().reshape(-1, 3), axis=1)
    gaps = np.diff(np.concatenate([az, az[:, :1] + 360], axis=1), axis=1)
    assert np.all(np.abs(gaps - 120) < 60)


def test_gps_tracks_follow_roads(world, grid_net, cfg):
    gps = world["gps"]
    assert gps.groupby("vehicle_id")["ts"].apply(lambda s: s.is_monotonic_increasing).all()
    dt = gps.groupby("vehicle_id")["ts"].diff().dt.total_seconds().dropna()
    assert np.allclose(dt, cfg.gps_interval_s, atol=0.01)
    assert gps["speed_mps"].between(0, 30).all()
    assert (gps["speed_mps"] > 2).mean() > 0.25  # taxis move a good part of the shift
    xy = grid_net.projection.to_xy(gps["lon"].to_numpy(), gps["lat"].to_numpy())
    cand = grid_net.edge_candidates(xy[::7], radius_m=25.0, max_per_point=1)
    assert len(np.unique(cand.point)) / len(xy[::7]) > 0.98  # within GPS noise of a road


def test_signaling_records(world, cfg):
    sig, truth, towers = world["signaling"], world["truth_links"], world["towers"]
    assert set(sig["event"]) <= set(EVENTS) and {"handover", "data", "attach", "periodic"} <= set(sig["event"])
    assert sig["cell_id"].isin(towers["cell_id"]).all()
    assert sig.groupby("device_id")["ts"].apply(lambda s: s.is_monotonic_increasing).all()
    # ids are random: no vehicle id appears in a device id, and the id order says nothing of the kind
    assert truth["device_id"].is_unique and len(truth) == cfg.n_taxis + cfg.n_decoys
    vehicles = set(world["gps"]["vehicle_id"])
    assert not any(v[1:] in d for d in truth["device_id"] for v in vehicles)
    assert set(truth.loc[truth["kind"] == "driver", "vehicle_id"]) == vehicles
    assert truth.loc[truth["kind"] != "driver", "vehicle_id"].isna().all()
    # event-driven gaps: bursts of seconds and idle stretches of many minutes
    gaps = sig.groupby("device_id")["ts"].diff().dt.total_seconds().dropna()
    assert gaps.quantile(0.1) < 15 and gaps.quantile(0.9) > 300 and gaps.max() > 900


@pytest.fixture(scope="module")
def regular_world(grid_net):
    return simulate_all(grid_net, SimulationConfig.for_scenario("regular", **SMALL), SEED)


@pytest.mark.parametrize("scenario", ["layered", "regular"])
def test_measurement_reports_are_consistent(scenario, world, regular_world, cfg):
    world = world if scenario == "layered" else regular_world
    mr = world["mr"]
    assert mr["rsrp_dbm"].between(-140, -44).all()  # 3GPP TS 36.133 reporting range
    per_instant = mr.groupby(["device_id", "ts"])
    assert per_instant.size().max() <= 1 + cfg.mr_neighbours
    drivers = world["truth_links"].query("kind == 'driver'")["device_id"]
    assert set(mr["device_id"]) <= set(drivers)
    # the serving cell comes first and is close to the strongest of its layer (A3 hysteresis + noise); across
    # layers a stronger low-band cell is normal (the capacity layer is preferred while it is good enough)
    layer = (mr["cell_id"] % 256) // 16
    mr = mr.assign(layer=layer, serving_layer=layer.groupby([mr["device_id"], mr["ts"]]).transform("first"))
    same = mr[mr["layer"] == mr["serving_layer"]].groupby(["device_id", "ts"])["rsrp_dbm"]
    gap = same.max() - same.first()
    assert np.median(gap) < 1.0 and np.quantile(gap, 0.95) < cfg.a3_hysteresis_db + 4 * cfg.measurement_noise_db
    if scenario == "layered":
        assert mr["layer"].nunique() == 3 and mr["serving_layer"].nunique() >= 2
        return
    # one A3 trace serves everything: signaling cells agree with the MR serving cell at the enclosing MR instants
    sv = mr.drop_duplicates(["device_id", "ts"])[["device_id", "ts", "cell_id"]].sort_values("ts")
    sig = world["signaling"][world["signaling"]["device_id"].isin(drivers)].sort_values("ts")
    sig = sig[sig["event"] != "handover"]  # handover records sit exactly at changes
    before = pd.merge_asof(sig, sv, on="ts", by="device_id", direction="backward", tolerance=pd.Timedelta("5s"),
                           suffixes=("", "_mr")).dropna(subset=["cell_id_mr"])
    assert len(before) > 50
    assert (before["cell_id"] == before["cell_id_mr"]).mean() > 0.8


def test_layered_network_and_the_operators_table(world, regular_world, cfg):
    towers, antennas, sig = world["towers"], world["antennas"], world["signaling"]
    n_sites = antennas["site_id"].nunique()
    # every cell on its layer (cell id = site * 256 + 16 * layer + sector); the table holds the same cells
    assert ((antennas["cell_id"] % 256) // 16 == antennas["layer"]).all()
    assert set(antennas["layer"]) == {0, 1, 2} and towers["cell_id"].tolist() == antennas["cell_id"].tolist()
    assert antennas.groupby("layer")["site_id"].nunique().tolist() == [
        round(layer.site_share * n_sites) for layer in cfg.layer_list]
    assert antennas.drop_duplicates("site_id")["overshoot"].sum() == round(cfg.overshoot_site_share * n_sites)
    # the table is wrong about exactly the configured share of site positions and cell azimuths
    moved = (towers["lon"] != antennas["lon"]) | (towers["lat"] != antennas["lat"])
    assert towers.loc[moved, "site_id"].nunique() == round(cfg.table_position_error_share * n_sites)
    turned = (towers["azimuth_deg"] - antennas["azimuth_deg"]).abs() > 1e-9
    assert turned.sum() == round(cfg.table_azimuth_error_share * len(towers))
    # idle records (periodic updates) come from the preferred capacity layer more often than connected ones
    layer = (sig["cell_id"] % 256) // 16
    assert layer.nunique() == 3
    by_event = layer.eq(2).groupby(sig["event"]).mean()
    assert by_event["periodic"] > by_event["handover"]
    # the regular network: one layer, the operator's table is the truth
    rt, ra = regular_world["towers"], regular_world["antennas"]
    assert set(ra["layer"]) == {0} and (rt["lon"] == ra["lon"]).all() and (rt["azimuth_deg"] == ra["azimuth_deg"]).all()


def test_radio_rebuild_matches_signaling(world, grid_net, cfg):
    """MR rebuilds driver traces from public tables; they must equal the ones behind the records."""
    model = RadioModel(world["antennas"], grid_net.crs, cfg, SEED)
    truth = world["truth_links"]
    dd = build_device_days(grid_net, world["gps"], truth[truth["kind"] == "driver"].head(2), cfg, SEED, kinds=("driver",))
    sig = world["signaling"]
    for d in dd:
        trace = device_radio(model, d, cfg, SEED)
        _, _, cells = device_records(model, d, trace, cfg, SEED)
        rec = sig[sig["device_id"] == d.device_id]
        assert np.array_equal(model.cell_id[cells], rec["cell_id"].to_numpy())


def test_a3_produces_handovers_and_pingpongs(world, grid_net, cfg):
    model = RadioModel(world["antennas"], grid_net.crs, cfg, SEED)
    truth = world["truth_links"]
    n_ho, n_pp = 0, 0
    for d in build_device_days(grid_net, world["gps"], truth[truth["kind"] == "driver"], cfg, SEED, kinds=("driver",)):
        trace = device_radio(model, d, cfg, SEED)
        ct, cc = trace.change_t, trace.change_cell
        n_ho += len(ct) - 1
        n_pp += int(np.sum((cc[2:] == cc[:-2]) & (np.diff(ct)[1:] <= cfg.pingpong_window_s)))
    assert n_ho > 50 and 0 < n_pp < 0.5 * n_ho


def radio_stub(cell_layer, priorities=(0,), **cfg) -> SimpleNamespace:
    """What the mobility rules read of a RadioModel: its config, each cell's layer and the layers' priorities."""
    return SimpleNamespace(cfg=SimulationConfig(**cfg), cell_layer=np.asarray(cell_layer),
                           layer_priority=np.asarray(priorities), n_layers=len(priorities))


def a3_serving(t, cells, rsrp, hysteresis_db, time_to_trigger_s):
    model = radio_stub(np.zeros(int(cells.max()) + 1, dtype=int), a3_hysteresis_db=hysteresis_db,
                       a3_time_to_trigger_ms=time_to_trigger_s * 1000.0)
    return connected_serving(model, t, cells, rsrp)


def test_a3_rule_on_two_cells():
    t = np.arange(0.0, 30.0)
    cells = np.tile([0, 1], (len(t), 1))
    rsrp = np.column_stack([np.full(len(t), -90.0), np.where(t >= 10, -85.0, -95.0)])
    ct, cc = a3_serving(t, cells, rsrp, hysteresis_db=3.0, time_to_trigger_s=0.48)
    assert cc.tolist() == [0, 1] and ct[1] == 11.0  # condition at t=10 and t=11 spans the TTT
    ct, cc = a3_serving(t, cells, rsrp, hysteresis_db=6.0, time_to_trigger_s=0.48)
    assert cc.tolist() == [0]  # 5 dB better never beats a 6 dB hysteresis


def test_idle_camps_by_layer_priority_and_connected_moves_between_layers():
    # cell 0 on the low-priority coverage layer, strong; cell 1 on the high-priority capacity layer, weaker
    t = np.arange(0.0, 40.0)
    cells = np.tile([0, 1], (len(t), 1))
    capacity = np.where(t < 20, -104.0, -118.0)  # good enough, then below every threshold
    rsrp = np.column_stack([np.full(len(t), -80.0), capacity])
    model = radio_stub([0, 1], priorities=(2, 6))
    ct, cc = idle_serving(model, t, cells, rsrp)
    # idle: camps on the capacity layer although the coverage cell is 24 dB stronger, leaves when it fails
    assert cc[0] == 1 and cc.tolist() == [1, 0] and 20.0 <= ct[1] <= 22.0
    # connected from the coverage cell: A4 moves it up while the capacity cell is above -105 dBm
    ct, cc = connected_serving(model, t, cells, rsrp, start=0)
    assert cc.tolist() == [0, 1, 0]
    # and A5 brings it back once its cell is below threshold 1 (-112 dBm) with the coverage cell above threshold 2
    assert ct[2] >= 20.0


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.0, 6.0), st.sampled_from([0.0, 0.32, 0.64, 2.5]))
def test_a3_only_hands_over_to_stronger_cells(seed, hyst, ttt):
    rng = np.random.default_rng(seed)
    n, c = 200, 4
    t = np.cumsum(rng.uniform(0.5, 3.0, n))
    cells = np.tile(np.arange(c), (n, 1))
    rsrp = -90 + np.cumsum(rng.normal(0, 2.0, (n, c)), axis=0)
    ct, cc = a3_serving(t, cells, rsrp, hyst, ttt)
    assert np.all(np.diff(ct) > 0) and np.all(cc[1:] != cc[:-1])
    for time, new, old in zip(ct[1:], cc[1:], cc[:-1]):
        i = int(np.searchsorted(t, time))
        assert rsrp[i, new] > rsrp[i, old] + hyst
        others = np.delete(rsrp[i - 1], old)
        assert others.max() > rsrp[i - 1, old] + hyst  # the A3 condition held at the previous sample too


def test_kinematics_respect_limits(grid_net, cfg):
    planner = RoutePlanner(grid_net)
    rng = np.random.default_rng(0)
    pred = planner.tree(np.array([0]), rng, 0.3)
    dst = planner.pick_destination(0, rng, (1000.0, 1800.0))
    edges = planner.edges_of_path(grid_net.node_path(pred[0], dst))
    k = drive(grid_net, edges, 100.0, cfg, rng)
    assert k.t[0] == 100.0 and np.all(np.diff(k.t) >= 0)
    assert k.v[0] == 0 and k.v[-1] == 0
    assert k.v.max() <= grid_net.edge_speed_mps[edges].max() * cfg.speed_factor[1] + 1e-9
    dv = np.diff(k.v**2) / (2 * np.maximum(np.hypot(np.diff(k.x), np.diff(k.y)), 1e-9))
    moving = np.hypot(np.diff(k.x), np.diff(k.y)) > 1e-6
    assert dv[moving].max() <= cfg.accel_mps2 + 1e-6 and dv[moving].min() >= -cfg.decel_mps2 - 1e-6


def test_calibration_report(world, grid_net, cfg):
    rep = calibration_report(grid_net, world["towers"], world["gps"], world["signaling"], world["truth_links"],
                             pingpong_window_s=cfg.pingpong_window_s, mr=world["mr"])
    for key in ("records_per_device_day", "gap_s_median", "gap_s_p90", "handovers_per_km", "pingpong_share",
                "gps_to_serving_tower_median_m", "gps_to_serving_tower_p90_m", "inter_site_distance_median_m"):
        assert np.isfinite(rep[key]), key
        lo, hi = rep[f"{key}_reference"]
        assert lo < hi and rep[f"{key}_reference_source"]
    assert rep["handovers_per_km_method"] == "mr"
    assert 100 < rep["gps_to_serving_tower_median_m"] < 800
    # the field-study statistics (arXiv 2109.02154) against the operator's table, and records per layer
    rep = calibration_report(grid_net, world["towers"], world["gps"], world["signaling"], world["truth_links"],
                             mr=world["mr"])
    shares = [rep["ring_0_share"], rep["ring_le1_share"], rep["ring_le2_share"], rep["ring_le3_share"]]
    assert rep["nearest_site_share"] == rep["ring_0_share"] and shares == sorted(shares) and 0 < shares[0] < 1
    assert rep["nearest_site_share_reference"] == [0.2, 0.45] and "2109.02154" in rep["ring_le2_share_reference_source"]
    assert rep["gps_to_serving_site_over_spacing_median"] > 0
    assert sum(rep["record_share_by_layer"].values()) == pytest.approx(1.0) and len(rep["record_share_by_layer"]) == 3
    assert set(rep["record_share_by_layer_idle"]) <= {"layer0", "layer1", "layer2"}
    assert rep["coverage_layer_record_share"] == rep["record_share_by_layer"]["layer0"]


def test_site_ring_hops_on_a_grid_of_sites():
    from ml.simulate.calibration import site_ring_hops

    xy = np.array([[x, y] for y in range(5) for x in range(5)], dtype=float) * 400.0
    xy += np.random.default_rng(0).normal(0, 5.0, xy.shape)  # no four points on a circle
    hops = site_ring_hops(xy)
    # interior sites (the hull's near-collinear points may get long sliver edges)
    assert hops[12, 12] == 0 and hops[12, 13] == 1 and hops[6, 8] == 2 and hops[6, 16] == 2
    assert (hops == hops.T).all() and hops[12].max() <= 3 and (hops[12] == 2).sum() >= 8


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="shift_start_hour"):
        SimulationConfig(shift_start_hour=(10.0, 16.0), shift_hours=(8.0, 11.0))
    with pytest.raises(ValueError, match="decoy_mix"):
        SimulationConfig(decoy_mix={"alien": 1.0})


def test_scenario_reaches_the_simulation_config():
    from ml.config import stage_config

    regular = stage_config("simulation", "ci", scenario="regular")
    assert regular.layers == () and regular.mobility == "single_trace" and regular.n_taxis == 6  # sizes kept
    assert len(regular.layer_list) == 1 and regular.layer_list[0].carrier_ghz == regular.carrier_ghz
    assert stage_config("simulation", "ci").mobility == "idle_connected"
    assert stage_config("simulation", "ci", scenario="regular", shadowing_sigma_db=9.0).shadowing_sigma_db == 9.0
    with pytest.raises(ValueError, match="unknown scenario 'flat'"):
        stage_config("simulation", "ci", scenario="flat")
    with pytest.raises(ValueError, match="layer names must be unique"):
        SimulationConfig(layers=[{"name": "A", "carrier_ghz": 1.8, "n_subcarriers": 1200}] * 2)
