"""Keep the ``cities`` dynamic partitions in sync with the ``cities/`` folder."""


import dagster as dg

from ml.cities.config import list_cities
from dagster_project.partitions import cities_partitions


def city_partition_requests(instance: dg.DagsterInstance) -> tuple[list[str], list[str]]:
    """(to_add, to_remove) so that partitions equal the registered cities."""
    registered = set(list_cities())
    existing = set(instance.get_dynamic_partitions(cities_partitions.name))
    return sorted(registered - existing), sorted(existing - registered)


def sync_city_partitions(instance: dg.DagsterInstance) -> tuple[list[str], list[str]]:
    """Apply the sync directly (used by the CLI and ``make demo``)."""
    add, remove = city_partition_requests(instance)
    if add:
        instance.add_dynamic_partitions(cities_partitions.name, add)
    for key in remove:
        instance.delete_dynamic_partition(cities_partitions.name, key)
    return add, remove


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def city_registry_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    """Add a partition for each new ``cities/*.toml`` and remove those whose file is gone."""
    add, remove = city_partition_requests(context.instance)
    if not add and not remove:
        return dg.SkipReason("city partitions already match cities/")
    reqs = []
    if add:
        reqs.append(cities_partitions.build_add_request(add))
    if remove:
        reqs.append(cities_partitions.build_delete_request(remove))
    context.log.info(f"cities added: {add}, removed: {remove}")
    return dg.SensorResult(dynamic_partitions_requests=reqs)
