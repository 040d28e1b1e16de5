"""What Airflow's ProvidersManager reads about this provider (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from airflow_provider_kling import __version__


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-kling",
        "name": "Kling AI video",
        "description": "Generate videos with the Kling 2.6 API (as sold by UlazAI) from Airflow.",
        "versions": [__version__],
        "connection-types": [
            {"connection-type": "kling", "hook-class-name": "airflow_provider_kling.hooks.kling.KlingHook"}
        ],
    }
