import dagster as dg

# One partition per registered city (cities/<name>.toml), kept in sync by a sensor and the CLI.
cities_partitions = dg.DynamicPartitionsDefinition(name="cities")

# Operator-scale tables (dagster_project.assets.operator): one partition per city and day, so months of
# signaling are materialised and backfilled incrementally; models stay per city.
days_partitions = dg.DailyPartitionsDefinition(start_date="2024-03-04")
city_days_partitions = dg.MultiPartitionsDefinition({"city": cities_partitions, "day": days_partitions})
