"""Apache Airflow provider for the Kling 2.6 AI video API."""

from __future__ import annotations

__version__ = "0.1.0"

#: The connection every Kling hook, operator, sensor and trigger uses unless told otherwise.
DEFAULT_CONN_ID = "kling_default"
