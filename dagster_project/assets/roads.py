"""``road_network``: the city's drivable road graph, projected and cached."""


import dagster as dg

from ml.cities import load_city, load_road_network
from ml.cities.preview import plot_road_network
from ml.paths import roads_dir
from dagster_project.code_versions import code_version
from dagster_project.metadata import image_markdown
from dagster_project.partitions import cities_partitions
from dagster_project.resources import PathsResource


@dg.asset(partitions_def=cities_partitions, group_name="raw", kinds={"python", "osm"},
          code_version=code_version("road_network"))
def road_network(context: dg.AssetExecutionContext, paths: PathsResource) -> dg.MaterializeResult:
    """Drivable roads (largest strongly connected component, simplified, UTM) from the city's source.

    Written to ``data/<city>/roads/`` as GraphML (for GIS tools) and arrays (for the pipeline).
    """
    city = load_city(context.partition_key, paths.root_path)
    out = roads_dir(paths.root_path, city.name)  # one road network for every profile
    net = load_road_network(city, cache_dir=out, refresh=True)
    preview = plot_road_network(net, out / "preview.png",
                                title=f"{city.name} ({city.roads.source}{' synthetic' if city.roads.source == 'synthetic' else ''})")
    st = net.stats
    context.log.info(f"{city.name}: {st['nodes']} nodes, {st['edges']} edges, {st['km_total']} km, "
                     f"{st['dropped_refs']} dangling references dropped")
    return dg.MaterializeResult(
        metadata={
            "nodes": st["nodes"],
            "edges": st["edges"],
            "km_total": st["km_total"],
            **{f"km_{k}": v for k, v in st["km_by_class"].items() if v > 0},
            "dropped_refs": st["dropped_refs"],
            "dropped_ways": st["dropped_ways"],
            "load_s": st["load_s"],
            "crs": st["crs"],
            "path": dg.MetadataValue.path(str(out / "roads.graphml")),
            "preview": image_markdown(preview, f"{city.name} roads"),
        }
    )
