"""Typed configuration of the raw-data simulation (defaults = the ``demo`` profile).

Fields marked **size** are the ones the ``ci`` / ``gpu`` profiles override (fleet size, number of
decoys, days, shift length); every other field is a model parameter that profiles leave alone.
"""

from __future__ import annotations

import datetime as dt

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DECOY_KINDS: tuple[str, ...] = ("passenger", "pedestrian", "car", "stationary")
#: decoy kinds whose phone is inside a vehicle (in-vehicle penetration loss); ``stationary`` phones are indoors
IN_VEHICLE_KINDS: tuple[str, ...] = ("driver", "passenger", "car")
INDOOR_KINDS: tuple[str, ...] = ("stationary",)


class LayerConfig(BaseModel):
    """One carrier (frequency layer) of the network: every site that carries it has one cell per sector on it.

    Cell ids follow the LTE ECI layout, ``site_id * 256 + 16 * layer_index + sector``, so a record's layer is
    readable from its cell id. ``idle_priority`` is the SIB cellReselectionPriority (higher: phones camp on it
    whenever it is good enough). Sources of the defaults: docs/results/simulate.md.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    carrier_ghz: float = Field(gt=0.4, lt=7.0)
    n_subcarriers: int = Field(gt=0, description="RSRP is per resource element: 10 MHz LTE = 600, 20 MHz = 1200")
    power_offset_db: float = Field(0.0, ge=-10, le=10, description="cell power relative to the site's draw")
    site_share: float = Field(1.0, gt=0, le=1, description="share of sites carrying this layer")
    dense_sites_first: bool = Field(False, description="capacity layers go to the sites of the densest areas first")
    idle_priority: int = Field(0, ge=0, le=7)


class SimulationConfig(BaseModel):
    """Towers, taxi fleet, radio, phones and measurement reports of one simulated city.

    Sizes (overridden by profiles): ``n_taxis``, ``n_decoys``, ``n_days``, ``shift_hours``,
    ``shift_start_hour``. Everything else is physics or behaviour.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # ------------------------------------------------------------------ sizes (profiles override)
    start_date: dt.date = Field(dt.date(2024, 3, 4), description="first simulated day (UTC)")
    n_days: int = Field(1, ge=1, le=60, description="size: simulated days")
    n_taxis: int = Field(40, ge=1, le=5000, description="size: taxis in the fleet (one driver phone each)")
    n_decoys: int = Field(80, ge=0, le=20000, description="size: phones not linked to any taxi")
    shift_hours: tuple[float, float] = Field((8.0, 11.0), description="size: taxi shift length range, hours")
    shift_start_hour: tuple[float, float] = Field((5.0, 9.0), description="size: shift start range, UTC hour")

    # ------------------------------------------------------------------ towers
    isd_dense_m: float = Field(420.0, gt=50, description="inter-site distance where road density is highest")
    isd_sparse_m: float = Field(2000.0, gt=50, description="inter-site distance where road density is lowest")
    site_height_m: tuple[float, float] = (20.0, 40.0)
    tx_power_dbm: tuple[float, float] = Field((43.0, 46.0), description="total cell transmit power range")
    azimuth_jitter_deg: float = Field(15.0, ge=0, le=60)
    site_offset_m: float = Field(60.0, ge=0, description="how far from the nearest road a site may stand")

    # ------------------------------------------------------------------ taxi mobility
    gps_interval_s: float = Field(5.0, gt=0, le=120, description="taxi GPS sampling interval")
    gps_noise_m: float = Field(5.0, ge=0, le=50, description="typical (RMS radial) GPS error")
    trip_distance_m: tuple[float, float] = Field((700.0, 5000.0), description="straight-line trip length range")
    stop_s: tuple[float, float] = Field((20.0, 150.0), description="pick-up / drop-off stop between trips")
    break_probability: float = Field(0.1, ge=0, le=1, description="chance of a parking break before a trip")
    break_minutes: tuple[float, float] = (8.0, 40.0)
    route_noise_sigma: float = Field(0.35, ge=0, le=2, description="log-normal noise on edge travel times (route choice)")
    speed_factor: tuple[float, float] = Field((0.7, 1.05), description="per-trip fraction of the speed limit (traffic, driver)")
    accel_mps2: float = Field(1.4, gt=0)
    decel_mps2: float = Field(2.2, gt=0)
    turn_speed_mps: float = Field(5.0, gt=0, description="speed through a turn at an intersection")
    red_light_probability: tuple[float, float] = Field(
        (0.12, 0.35), description="chance of stopping at a minor / a major (both roads secondary or above) intersection"
    )
    red_light_s: tuple[float, float] = (5.0, 45.0)
    kinematic_step_m: float = Field(10.0, gt=0, description="arc-length step of the speed profile")

    # ------------------------------------------------------------------ radio (3GPP TR 38.901 UMa NLOS)
    layers: tuple[LayerConfig, ...] = Field(
        default_factory=lambda: DEFAULT_LAYERS,
        description="the network's carriers; empty: one carrier at carrier_ghz / n_subcarriers on every site "
                    "(the regular network of the scenarios 'regular' and 'hre_paper')")
    carrier_ghz: float = Field(1.8, gt=0.4, lt=7.0, description="the one carrier when layers is empty")
    n_subcarriers: int = Field(1200, gt=0, description="its RSRP resource elements: 20 MHz LTE = 1200")
    antenna_gain_dbi: float = 17.0
    beamwidth_deg: float = Field(65.0, gt=10, lt=180)
    front_to_back_db: float = Field(25.0, ge=10, le=40)
    ue_height_m: float = 1.5
    shadowing_sigma_db: float = Field(10.0, ge=0, le=12, description="3GPP TR 36.942 macro cells: 10 dB (the "
                                      "regular network: 7)")
    shadowing_decorrelation_m: float = Field(50.0, gt=5)
    shadowing_site_correlation: float = Field(0.5, ge=0, le=1, description="shadowing shared by all sites (cancels in handover decisions)")
    measurement_noise_db: float = Field(2.0, ge=0, le=8, description="L3-filtered fast-fading residual per measurement")
    n_candidate_sites: int = Field(7, ge=2, le=30, description="nearest sites whose cells a phone measures")
    rsrp_floor_dbm: float = Field(-140.0, description="RSRP below this is not measurable")

    # ------------------------------------------------------------------ masts, tilt, overshooting
    vertical_pattern: bool = Field(True, description="3GPP TR 38.901 vertical antenna pattern with downtilt "
                                   "(off: the horizontal pattern alone, the regular network)")
    vertical_beamwidth_deg: float = Field(10.0, gt=1, lt=60, description="theta_3dB of the vertical pattern")
    vertical_sidelobe_db: float = Field(30.0, ge=5, le=40, description="SLA_V of the vertical pattern")
    downtilt_deg: tuple[float, float] = Field((4.0, 10.0), description="electrical + mechanical downtilt range")
    overshoot_site_share: float = Field(0.15, ge=0, le=0.5, description="share of sites on tall masts with "
                                        "little downtilt: their cells serve far beyond their neighbours")
    overshoot_height_m: tuple[float, float] = (50.0, 80.0)
    overshoot_downtilt_deg: tuple[float, float] = (0.0, 1.0)
    overshoot_power_db: float = Field(6.0, ge=0, le=10, description="extra gain of the overshooting sites' cells "
                                      "(power, and the clearer path of a mast above the roofs)")

    # ------------------------------------------------------------------ the operator's tower table
    table_position_error_share: float = Field(0.12, ge=0, le=0.5, description="share of sites whose recorded "
                                              "position is not where the antennas stand")
    table_position_error_isd: tuple[float, float] = Field(
        (1.5, 5.0), description="range of those errors in local inter-site distances (a cell booked at a "
                                "neighbouring site, a moved site never updated): the error grows with the spacing")
    table_azimuth_error_share: float = Field(0.08, ge=0, le=0.5, description="share of cells whose recorded "
                                             "azimuth is wrong (swapped or rotated sectors)")
    table_azimuth_error_deg: tuple[float, float] = (40.0, 180.0)

    # ------------------------------------------------------------------ per phone
    vehicle_penetration_db: tuple[float, float] = Field(
        (9.0, 5.0), description="in-vehicle penetration loss, mean and sd (3GPP TR 38.901 7.4.3.2: N(9, 5) dB)")
    indoor_penetration: bool = Field(True, description="stationary phones indoors: TR 38.901 O2I low-loss model")
    handset_offset_sd_db: float = Field(2.0, ge=0, le=6, description="per-phone RSRP offset (antenna, body loss)")

    # ------------------------------------------------------------------ serving cell: idle and connected mode
    mobility: Literal["idle_connected", "single_trace"] = Field(
        "idle_connected", description="idle_connected: idle phones camp by layer priority (TS 36.304) and "
        "connected ones hand over by A3 within a layer and A4/A5 between layers (TS 36.331), so a record's cell "
        "depends on its event type; single_trace: one A3 trace serves every record (the regular network)")
    a3_hysteresis_db: float = Field(2.5, ge=0, le=10)
    a3_time_to_trigger_ms: float = Field(480.0, ge=0, le=5120)
    a4_threshold_dbm: float = Field(-105.0, description="connected: move up to a higher-priority layer whose "
                                    "best cell is above this (A4, load balancing onto capacity layers)")
    a5_threshold1_dbm: float = Field(-112.0, description="connected: leave the layer when the serving cell is "
                                     "below this (A5 threshold 1)")
    a5_threshold2_dbm: float = Field(-108.0, description="... for another layer's cell above this (threshold 2)")
    idle_thresh_high_dbm: float = Field(-110.0, description="idle: camp on a higher-priority layer whose best "
                                        "cell is above this (threshX-High over q-RxLevMin -124 dBm)")
    idle_thresh_serving_low_dbm: float = Field(-116.0, description="idle: look at lower-priority layers when "
                                               "the camped cell is below this (threshServingLow)")
    idle_thresh_low_dbm: float = Field(-114.0, description="... and reselect to one whose best is above this")
    idle_hysteresis_db: float = Field(4.0, ge=0, le=24, description="Qhyst of intra-layer reselection")
    idle_reselection_s: float = Field(1.0, ge=0, le=7, description="Treselection")
    radio_step_s: float = Field(1.0, gt=0, description="finest time step of the radio evaluation")
    radio_move_step_m: float = Field(8.0, gt=0, description="re-evaluate radio after this much movement")
    radio_max_step_s: float = Field(20.0, gt=0, description="re-evaluate radio at least this often")

    # ------------------------------------------------------------------ phones and events
    decoy_mix: dict[str, float] = Field(
        default_factory=lambda: {"passenger": 0.3, "pedestrian": 0.2, "car": 0.3, "stationary": 0.2},
        description="share of each decoy kind",
    )
    decoy_active_hours: tuple[float, float] = Field((8.0, 15.0), description="phone-on span of a decoy per day")
    decoy_start_hour: tuple[float, float] = (4.0, 9.0)
    driver_extra_hours: tuple[float, float] = Field((0.2, 1.5), description="driver phone on before/after the shift")
    data_sessions_per_h: float = Field(5.0, ge=0)
    driver_data_sessions_per_h: float = Field(7.0, ge=0, description="drivers run dispatch apps")
    data_burst_probability: float = Field(0.4, ge=0, le=1, description="a session triggers follow-ups seconds later")
    data_session_median_s: float = Field(30.0, gt=0)
    calls_per_h: float = Field(0.7, ge=0)
    call_mean_s: float = Field(90.0, gt=0)
    sms_per_h: float = Field(0.6, ge=0)
    connected_tail_s: float = Field(10.0, ge=0, description="RRC inactivity timer after a session")
    periodic_update_min: float = Field(54.0, gt=0, description="periodic TAU timer T3412")

    # ------------------------------------------------------------------ measurement reports
    mr_interval_s: float = Field(5.0, gt=0, le=60)
    mr_neighbours: int = Field(6, ge=0, le=16)
    mr_min_rsrp_dbm: float = Field(-124.0, description="neighbours below this are not reported")
    mr_per_site: bool = Field(
        False, description="one RSS per base station, its strongest beam (sector), instead of one per cell "
                           "(5G NR SS-RSRP of the best beam, as in the HRE paper); serving + mr_neighbours sites")

    # ------------------------------------------------------------------ calibration
    pingpong_window_s: float = Field(10.0, gt=0, description="A->B->A within this counts as ping-pong")

    @classmethod
    def for_scenario(cls, name: str, **overrides) -> "SimulationConfig":
        """The named scenario of :data:`SCENARIOS` (fields it does not set keep the defaults), plus ``overrides``."""
        if name not in SCENARIOS:
            raise ValueError(f"simulation scenario {name!r} unknown (known: {sorted(SCENARIOS)})")
        return cls(**{**SCENARIOS[name], **overrides})

    @model_validator(mode="after")
    def _check(self) -> "SimulationConfig":
        for name in ("shift_hours", "shift_start_hour", "site_height_m", "tx_power_dbm", "trip_distance_m",
                     "stop_s", "break_minutes", "speed_factor", "red_light_s", "decoy_active_hours",
                     "decoy_start_hour", "driver_extra_hours", "red_light_probability", "downtilt_deg",
                     "overshoot_height_m", "overshoot_downtilt_deg", "table_position_error_isd",
                     "table_azimuth_error_deg"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"simulation.{name}: lower bound {lo} exceeds upper bound {hi}")
        lo, hi = self.shift_start_hour
        if hi + self.shift_hours[1] > 24.0:
            raise ValueError("simulation.shift_start_hour + shift_hours must end within the UTC day (<= 24 h)")
        if self.decoy_start_hour[1] + self.decoy_active_hours[1] > 24.0:
            raise ValueError("simulation.decoy_start_hour + decoy_active_hours must end within the UTC day")
        unknown = set(self.decoy_mix) - set(DECOY_KINDS)
        if unknown:
            raise ValueError(f"simulation.decoy_mix: unknown kinds {sorted(unknown)} (known: {DECOY_KINDS})")
        if sum(self.decoy_mix.values()) <= 0:
            raise ValueError("simulation.decoy_mix: shares must sum to a positive number")
        if self.isd_dense_m > self.isd_sparse_m:
            raise ValueError("simulation.isd_dense_m must not exceed isd_sparse_m")
        if len(self.layers) > 16:
            raise ValueError("simulation.layers: at most 16 layers (the cell id holds 16 * layer + sector)")
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            raise ValueError(f"simulation.layers: layer names must be unique (got {names})")
        if self.layers and not any(layer.site_share == 1.0 for layer in self.layers):
            raise ValueError("simulation.layers: one layer must be on every site (site_share 1), or a site has no cell")
        return self

    @property
    def layer_list(self) -> tuple[LayerConfig, ...]:
        """The layers in force: ``layers``, or the one carrier of a regular network."""
        return self.layers or (LayerConfig(name="single", carrier_ghz=self.carrier_ghz,
                                           n_subcarriers=self.n_subcarriers),)


# The default network (sources in docs/results/simulate.md): a low-band coverage carrier on most sites, a mid-band
# carrier on every site and a high-band capacity carrier on 40 % of them (chosen at random: a small city is all
# "dense", and a capacity carrier on only some sites is what moves phones off their nearest site); idle phones
# prefer the high bands.
DEFAULT_LAYERS: tuple[LayerConfig, ...] = (
    LayerConfig(name="L800", carrier_ghz=0.8, n_subcarriers=600, site_share=0.7, idle_priority=2),
    LayerConfig(name="L1800", carrier_ghz=1.8, n_subcarriers=1200, site_share=1.0, idle_priority=4),
    LayerConfig(name="L2600", carrier_ghz=2.6, n_subcarriers=1200, site_share=0.4, idle_priority=6),
)
#: an NR layer a city config may add (``[simulation] layers``): n78 on the densest third of the sites
NR_LAYER = LayerConfig(name="NR3500", carrier_ghz=3.5, n_subcarriers=3276, site_share=0.35, dense_sites_first=True,
                       idle_priority=7)

# The regular network of every result before issue 27: one carrier, horizontal antenna pattern only, every
# record from one A3 trace, a correct tower table and no per-phone losses.
REGULAR_NETWORK: dict = {
    "layers": (),
    "shadowing_sigma_db": 7.0,
    "vertical_pattern": False,
    "overshoot_site_share": 0.0,
    "table_position_error_share": 0.0,
    "table_azimuth_error_share": 0.0,
    "vehicle_penetration_db": (0.0, 0.0),
    "indoor_penetration": False,
    "handset_offset_sd_db": 0.0,
    "mobility": "single_trace",
}

# Named scenarios: field overrides of SimulationConfig (``SimulationConfig.for_scenario(name)``).
# Sizes (n_taxis, shift_hours, ...) are set by the caller; a scenario fixes the physics and behaviour.
SCENARIOS: dict[str, dict] = {
    # today's default: the layered, irregular network (the fields' defaults)
    "layered": {},
    # the network of every result before issue 27, kept so old results can be reproduced
    "regular": dict(REGULAR_NETWORK),
    # The regime of Xing & Zhao, "Trajectory Map-Matching in Urban Road Networks Based on RSS
    # Measurements" (HRE, HREA; ../shared/papers/hre-rss-map-matching.txt), section V-A: a phone in a
    # car records the RSS of the strongest beam of every 5G NR base station it hears, serving + 6
    # neighbours ("one primary cell and six neighbouring cells, a total of seven RSS measurements"),
    # every delta = 0.2 s, along 142-161 km drives of 2.9-3.5 h at 13.3-13.8 m/s mean speed with peaks of
    # 105.7-110.5 km/h (above the 80 km/h = 22.2 m/s limit), on urban (46-58 %), national/provincial
    # (21-24 %), highway (12-25 %) and rural (4-9 %) roads (Table II), in cities with "tens of thousands
    # of 5G NR BSs". The paper gives no inter-site distance; tens of thousands of sites over an urban
    # core of ~1,000-2,000 km^2 is ~10-30 sites/km^2, a hexagonal ISD of ~200-340 m: 250 m where roads
    # are densest, up to 500 m where they are sparsest. Sweep the interval with mr_interval_s (0.2, 1, 5 s).
    "hre_paper": {
        **REGULAR_NETWORK,
        "isd_dense_m": 250.0,
        "isd_sparse_m": 500.0,
        "site_height_m": (15.0, 30.0),
        "tx_power_dbm": (46.0, 49.0),
        "carrier_ghz": 3.5,  # NR band n78
        "n_subcarriers": 3276,  # 100 MHz at 30 kHz SCS: 273 PRB x 12 (SS-RSRP is per resource element)
        "n_candidate_sites": 9,
        "mr_interval_s": 0.2,
        "mr_neighbours": 6,
        "mr_per_site": True,
        # long drives: chained trips of 3-9 km straight line, short stops, no parking breaks
        "trip_distance_m": (3000.0, 9000.0),
        "stop_s": (5.0, 30.0),
        "break_probability": 0.0,
        # per-trip fraction of the limit: motorways (120 km/h here) peak at ~114 km/h = 31.7 m/s, the
        # paper's 105.7-110.5 km/h peaks; 100 km/h national roads at up to 26 m/s (> 22.2 m/s)
        "speed_factor": (0.8, 0.95),
        "gps_interval_s": 1.0,  # ground truth every second
        "gps_noise_m": 3.0,
    },
}
