import dagster as dg

# One partition per registered city (cities/<name>.toml), kept in sync by a sensor and the CLI.
cities_partitions = dg.DynamicPartitionsDefinition(name="cities")
