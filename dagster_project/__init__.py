"""Dagster orchestration for sig2gps: assets per city, resources, checks, sensors. No ML code here."""
