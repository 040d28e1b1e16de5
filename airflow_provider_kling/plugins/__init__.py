"""Airflow plugins the provider registers through its metadata (installing the package is enough)."""
