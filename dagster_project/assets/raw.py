"""Raw data per city (group ``raw``: towers, taxi GPS, signaling, measurement reports) and the pairing stage
(group ``pairing``: ``raw_pairs`` and the ``samples`` windows with their ``sample_truth``).

Simulated by default (``ml.simulate``), or imported from the files named in the city's TOML
(``ml.ingest``, with pseudonymised ids). Every table passes its Great Expectations suite before it
is written (see ``dagster_project.checks``).
"""

from dataclasses import dataclass

import dagster as dg
import pandas as pd

from ml.cities import CityConfig, RoadNetwork, load_city, load_road_network
from ml.io import read_table, write_json_atomic, write_parquet_atomic
from ml.paths import CityPaths
from ml.validation import ValidationContext
from dagster_project.checks import ge_check_spec, validate_then_write
from dagster_project.code_versions import code_version
from dagster_project.metadata import flat_metadata, table_asset_metadata
from dagster_project.partitions import cities_partitions
from dagster_project.resources import ComputeResource, PathsResource

# Stage seeds derive from the city seed so that the same city file gives the same data.
SEED_OFFSETS = {"towers": 1, "gps": 2, "signaling": 3, "mr": 4, "samples": 5}


@dataclass
class CityContext:
    city: CityConfig
    paths: CityPaths
    net: RoadNetwork

    def seed(self, stage: str) -> int:
        return self.city.seed * 1000 + SEED_OFFSETS[stage]

    def validation_context(self, **refs) -> ValidationContext:
        ctx = ValidationContext.from_road_network(self.net)
        return ctx.with_references(**refs) if refs else ctx

    def sample_contexts(self, split: str, with_mr: bool = False, observation=None) -> list:
        """The windows of ``split`` as the methods see them (``ml.observation.SampleContext``), with their truth
        (and ``observation``, an observation model, attached to each)."""
        from ml.observation import build_sample_contexts

        mr = read_table(self.paths.table("mr"), "mr") if with_mr and self.paths.table("mr").is_file() else None
        return build_sample_contexts(read_table(self.paths.table("samples"), "samples"),
                                     read_table(self.paths.table("signaling"), "signaling"),
                                     read_table(self.paths.table("towers"), "towers"), self.net,
                                     sample_truth=read_table(self.paths.sample_truth, "sample_truth"), mr=mr, split=split,
                                     observation=observation)

    def learned_observation(self, cfg):
        """The city's learned observation model (its ``cell_footprints`` read with ``cfg``)."""
        from ml.observation import LearnedObservationModel, TowerTable

        if not self.paths.footprints.is_file():
            raise dg.Failure(f"{self.paths.footprints}: cell footprints of '{self.city.name}' not materialised; "
                             "materialise cell_footprints first")
        towers = TowerTable(read_table(self.paths.table("towers"), "towers"), self.net.crs)
        return LearnedObservationModel(pd.read_parquet(self.paths.footprints), towers, cfg)

    def antennas(self) -> pd.DataFrame:
        """The simulated antennas (hidden truth written by ``cell_towers``) the radio simulation runs on."""
        if not self.paths.antennas.is_file():
            raise dg.Failure(f"{self.paths.antennas}: the simulated antennas are missing; materialise cell_towers "
                             "(it writes them beside towers.parquet)")
        return pd.read_parquet(self.paths.antennas)

    def imported(self, *tables: str) -> dict[str, pd.DataFrame]:
        """The city's own ``tables`` (pseudonymised): each asset reads just its file, so a bad file fails that
        asset once, with one message."""
        from ml.ingest import load_imported_tables

        return load_imported_tables(self.city, self.paths.root, only=list(tables))


def city_context(context: dg.AssetExecutionContext, paths: PathsResource, compute: ComputeResource) -> CityContext:
    """The partition's city, its folders for the run's profile and its road network."""
    city = load_city(context.partition_key, paths.root_path)
    cp = paths.city(city.name, compute.profile)
    if not (cp.roads_dir / "roads.npz").is_file():
        raise dg.Failure(f"{cp.roads_dir}: road network of '{city.name}' not materialised; materialise road_network first")
    return CityContext(city, cp, load_road_network(city, cache_dir=cp.roads_dir))


@dg.asset(partitions_def=cities_partitions, group_name="raw", deps=["road_network"],
          code_version=code_version("raw"),
          check_specs=[ge_check_spec("cell_towers", "towers")], kinds={"pandas", "parquet"})
def cell_towers(context: dg.AssetExecutionContext, paths: PathsResource, compute: ComputeResource):
    """Cell towers: the operator's table of 3-sector macro sites on one or more layers (or imported); a simulated
    city also writes the hidden antennas the radio simulates (``antennas.parquet``: true positions, azimuths,
    layers, downtilts; the table may be wrong about some of them)."""
    cc = city_context(context, paths, compute)
    antennas = None
    if cc.city.data_source == "import":
        towers = cc.imported("towers")["towers"]
    else:
        from ml.simulate import simulate_towers

        towers, antennas = simulate_towers(cc.net, compute.stage_config("simulation", cc.city), seed=cc.seed("towers"))
    path = cc.paths.table("towers")
    yield from validate_then_write(context, [("towers", towers, path)], cc.validation_context())
    if antennas is not None:  # the hidden truth goes only beside a valid operator table
        write_parquet_atomic(antennas, cc.paths.antennas)
    yield dg.MaterializeResult(metadata={**table_asset_metadata(towers, path), "sites": int(towers["site_id"].nunique())})


@dg.asset(partitions_def=cities_partitions, group_name="raw", deps=["road_network"],
          code_version=code_version("raw"),
          check_specs=[ge_check_spec("taxi_gps", "gps")], kinds={"pandas", "parquet"})
def taxi_gps(context: dg.AssetExecutionContext, paths: PathsResource, compute: ComputeResource):
    """Taxi fleet GPS: shifts of trips, stops and parking; noisy fixes every few seconds (or imported)."""
    cc = city_context(context, paths, compute)
    if cc.city.data_source == "import":
        gps = cc.imported("gps")["gps"]
    else:
        from ml.simulate import simulate_taxi_gps

        gps = simulate_taxi_gps(cc.net, compute.stage_config("simulation", cc.city), seed=cc.seed("gps"))
    path = cc.paths.table("gps")
    yield from validate_then_write(context, [("gps", gps, path)], cc.validation_context())
    yield dg.MaterializeResult(metadata={**table_asset_metadata(gps, path), "vehicles": int(gps["vehicle_id"].nunique())})


@dg.multi_asset(
    specs=[dg.AssetSpec("signaling_records", deps=["cell_towers", "taxi_gps"], kinds={"pandas", "parquet"},
                        description="Event-driven signaling of drivers' phones and decoy devices."),
           dg.AssetSpec("truth_links", deps=["cell_towers", "taxi_gps"], kinds={"pandas", "parquet"}, skippable=True,
                        description="Hidden simulator truth (device -> vehicle), written beside the signaling; read "
                                    "only to score the pairing and calibrate. Absent for imported cities without one.")],
    check_specs=[ge_check_spec("signaling_records", "signaling")], partitions_def=cities_partitions, group_name="raw",
    code_version=code_version("raw"),
)
def signaling_records(context: dg.AssetExecutionContext, paths: PathsResource, compute: ComputeResource):
    """Event-driven signaling of drivers' phones and decoy devices, with the simulator's calibration report."""
    cc = city_context(context, paths, compute)
    towers = read_table(cc.paths.table("towers"), "towers")
    gps = read_table(cc.paths.table("gps"), "gps")
    truth = None
    if cc.city.data_source == "import":
        tables = cc.imported("signaling", "truth_links")
        signaling, truth = tables["signaling"], tables.get("truth_links")
    else:
        from ml.simulate import simulate_signaling

        signaling, truth = simulate_signaling(cc.net, cc.antennas(), gps, compute.stage_config("simulation", cc.city),
                                              seed=cc.seed("signaling"))
    items = [("signaling", signaling, cc.paths.table("signaling"))]
    if truth is not None:
        items.append(("truth_links", truth, cc.paths.truth_links))
    vctx = cc.validation_context(tower_cell_ids=towers["cell_id"].to_numpy())
    yield from validate_then_write(context, items, vctx, checked=["signaling"])
    meta = table_asset_metadata(signaling, cc.paths.table("signaling"))
    meta["devices"] = int(signaling["device_id"].nunique())
    yield dg.MaterializeResult(asset_key="signaling_records", metadata=meta)
    if truth is not None:
        yield dg.MaterializeResult(asset_key="truth_links", metadata=table_asset_metadata(truth, cc.paths.truth_links))


@dg.asset(partitions_def=cities_partitions, group_name="raw", deps=["signaling_records"],
          code_version=code_version("raw"),
          check_specs=[ge_check_spec("measurement_reports", "mr")], kinds={"pandas", "parquet"})
def measurement_reports(context: dg.AssetExecutionContext, paths: PathsResource, compute: ComputeResource):
    """RSRP of the serving cell and up to six neighbours at a fixed interval (the HRE track's input).

    Also writes the simulator's calibration report (``outputs/<city>/calibration.json``): it needs
    the MR serving cells to count handovers per km without the bias of clustered handover records.
    """
    cc = city_context(context, paths, compute)
    towers = read_table(cc.paths.table("towers"), "towers")
    if cc.city.data_source == "import":
        mr = cc.imported("mr").get("mr")
        if mr is None:
            raise dg.Failure(f"cities/{cc.city.name}.toml: [imported] has no 'mr' table; the MR track needs one")
    else:
        from ml.simulate import simulate_measurement_reports

        gps = read_table(cc.paths.table("gps"), "gps")
        signaling = read_table(cc.paths.table("signaling"), "signaling")
        truth = read_table(cc.paths.truth_links, "truth_links")
        # the signaling's seed: the same radio world (shadowing, per-phone streams) as the records'
        mr = simulate_measurement_reports(cc.net, cc.antennas(), gps, signaling, truth,
                                          compute.stage_config("simulation", cc.city), seed=cc.seed("signaling"))
    path = cc.paths.table("mr")
    vctx = cc.validation_context(tower_cell_ids=towers["cell_id"].to_numpy())
    yield from validate_then_write(context, [("mr", mr, path)], vctx)
    meta = {**table_asset_metadata(mr, path), "devices": int(mr["device_id"].nunique())}
    if cc.paths.truth_links.is_file():
        from ml.simulate import calibration_report

        calib = calibration_report(cc.net, towers, read_table(cc.paths.table("gps"), "gps"),
                                   read_table(cc.paths.table("signaling"), "signaling"),
                                   pd.read_parquet(cc.paths.truth_links), mr=mr)
        write_json_atomic(calib, cc.paths.outputs / "calibration.json")
        meta.update({f"calibration.{k}": v for k, v in flat_metadata(calib).items() if not k.endswith("_source")})
        meta["calibration"] = dg.MetadataValue.path(str(cc.paths.outputs / "calibration.json"))
    yield dg.MaterializeResult(metadata=meta)


# pairing is its own stage of the method (paper section 4.1), so its two assets have their own group
@dg.asset(partitions_def=cities_partitions, group_name="pairing", deps=["signaling_records", "taxi_gps"],
          code_version=code_version("pairing"),
          check_specs=[ge_check_spec("raw_pairs", "pairs")], kinds={"pandas", "parquet"})
def raw_pairs(context: dg.AssetExecutionContext, paths: PathsResource, compute: ComputeResource):
    """(device, taxi) pairs by mobility, time coverage and distance consistency (paper section 4.1)."""
    from ml.pairing import pair_devices, pairing_quality

    cc = city_context(context, paths, compute)
    towers = read_table(cc.paths.table("towers"), "towers")
    gps = read_table(cc.paths.table("gps"), "gps")
    signaling = read_table(cc.paths.table("signaling"), "signaling")
    pairs = pair_devices(signaling, towers, gps, compute.stage_config("pairing", cc.city))
    if pairs.empty:
        raise dg.Failure(f"{cc.city.name}: pairing accepted no (device, taxi) pair; check the pairing thresholds "
                         f"in cities/{cc.city.name}.toml [pairing] or the input data")
    path = cc.paths.table("pairs")
    vctx = cc.validation_context(device_ids=signaling["device_id"].unique(), vehicle_ids=gps["vehicle_id"].unique())
    yield from validate_then_write(context, [("pairs", pairs, path)], vctx)
    meta = table_asset_metadata(pairs, path)
    if cc.paths.truth_links.is_file():
        quality = pairing_quality(pairs, pd.read_parquet(cc.paths.truth_links))
        write_json_atomic(quality, cc.paths.outputs / "pairing.json")
        meta.update({f"pairing.{k}": v for k, v in flat_metadata(quality).items()})
    yield dg.MaterializeResult(metadata=meta)


@dg.multi_asset(
    specs=[dg.AssetSpec("samples", deps=["raw_pairs", "measurement_reports"], kinds={"pandas", "parquet"},
                        description="Fixed-duration windows of accepted pairs, split by (day, device), with their tiles."),
           dg.AssetSpec("sample_truth", deps=["raw_pairs", "measurement_reports"], kinds={"pandas", "parquet"},
                        description="Ground-truth positions of every window at the evaluation interval.")],
    check_specs=[ge_check_spec("samples", "samples")], partitions_def=cities_partitions, group_name="pairing",
    code_version=code_version("pairing"),
)
def samples(context: dg.AssetExecutionContext, paths: PathsResource, compute: ComputeResource):
    """Fixed-duration windows of accepted pairs, split by (day, device), with their tiles and ground truth."""
    from ml.pairing import cut_samples

    cc = city_context(context, paths, compute)
    towers = read_table(cc.paths.table("towers"), "towers")
    gps = read_table(cc.paths.table("gps"), "gps")
    signaling = read_table(cc.paths.table("signaling"), "signaling")
    pairs = read_table(cc.paths.table("pairs"), "pairs")
    rcfg = compute.stage_config("render", cc.city)  # the one owner of tile sizes and margin
    s, truth = cut_samples(pairs, signaling, towers, gps, cc.net.crs, compute.stage_config("samples", cc.city),
                           seed=cc.seed("samples"), zoom_sizes_m=rcfg.zoom_sizes_m, margin_m=rcfg.margin_m)
    if s.empty:
        raise dg.Failure(f"{cc.city.name}: no sample window met the record and movement thresholds")
    vctx = cc.validation_context(device_ids=signaling["device_id"].unique(), vehicle_ids=gps["vehicle_id"].unique(),
                                 sample_ids=s["sample_id"].unique())
    yield from validate_then_write(context, [("samples", s, cc.paths.table("samples")),
                                             ("sample_truth", truth, cc.paths.sample_truth)], vctx, checked=["samples"])
    counts = s["split"].value_counts().to_dict()
    yield dg.MaterializeResult(asset_key="samples", metadata={
        **table_asset_metadata(s, cc.paths.table("samples")), **{f"n_{k}": int(v) for k, v in counts.items()},
        "tile_leave_share": tile_leave_share(s, truth, cc.net.projection)})
    yield dg.MaterializeResult(asset_key="sample_truth", metadata=table_asset_metadata(truth, cc.paths.sample_truth))


def tile_leave_share(samples_df: pd.DataFrame, truth: pd.DataFrame, projection) -> float:
    """Share of windows whose true path leaves the tile (chosen from signaling only): the video
    method cannot draw those parts, so this bounds what it can reach."""
    xy = projection.to_xy(truth["lon"].to_numpy(), truth["lat"].to_numpy())
    tiles = samples_df.set_index("sample_id").loc[truth["sample_id"]]
    x0, y0, size = (tiles[c].to_numpy() for c in ("tile_x0", "tile_y0", "tile_size_m"))
    inside = (xy[:, 0] >= x0) & (xy[:, 0] <= x0 + size) & (xy[:, 1] >= y0) & (xy[:, 1] <= y0 + size)
    left = pd.Series(~inside).groupby(truth["sample_id"].to_numpy()).any()
    return round(float(left.mean()), 4) if len(left) else 0.0
