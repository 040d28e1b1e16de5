"""What Airflow's ProvidersManager reads about this provider (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from airflow_provider_kling import __version__


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-kling",
        "name": "Kling AI video",
        "description": "Generate videos with Kling (UlazAI's resale, or Kling's own API) from Airflow.",
        "versions": [__version__],
        "connection-types": [
            {
                "connection-type": "kling",
                "hook-class-name": "airflow_provider_kling.hooks.kling.KlingHook",
                "hook-name": "Kling AI video",
                # Declared here, not by hook methods (deprecated in Airflow 3.2): the UI reads it
                # without importing the hook. Airflow 3.1 ignores it and shows the plain form.
                "conn-fields": {
                    "api": {
                        "label": "Which Kling API",
                        # A text, as the other extras: with an enum, Airflow 3.3.2's form showed no label.
                        "schema": {"type": ["string", "null"]},
                        "description": "Empty or ulazai: UlazAI's Kling 2.6 API (password = API key). "
                        "klingai: Kling's own API (login = Access Key, password = Secret Key; Base URL "
                        "default https://api-singapore.klingai.com).",
                    },
                    "low_credit_warning": {
                        "label": "Warn below credits",
                        "schema": {"type": ["integer", "null"], "minimum": 0},
                        "description": "Log a warning when a submit leaves fewer credits than this.",
                    },
                    "max_polls_per_second": {
                        "label": "Max status polls per second",
                        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
                        "description": "Shared by every Kling wait on this connection in one triggerer "
                        "(a 429 pauses them all for its Retry-After). Empty: no cap.",
                    },
                    "adaptive_rate": {
                        "label": "Adapt to the vendor's rate limit",
                        "schema": {"type": ["boolean", "null"], "default": True},
                        "description": "After a 429, the waits on this connection in one triggerer slow "
                        "down and then find the rate the account allows, so that several triggerers "
                        "together stay under its limit. Off: only the 429's pause and the cap.",
                    },
                    "job_seconds": {
                        "label": "How long a job takes (seconds)",
                        "schema": {"type": ["string", "null"]},
                        "description": 'As "60-90": when to poll, where the API announces nothing (Kling\'s '
                        "own API). Empty: the documented 60-90 s.",
                    },
                    "allowed_video_hosts": {
                        "label": "Allowed video hosts",
                        "schema": {"type": ["string", "null"]},
                        "description": "Host names or networks (comma-separated, e.g. videos.internal, "
                        "10.20.0.0/16) videos may be downloaded from besides public addresses and the "
                        "API's own. Empty: those only.",
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "extra"],
                    "relabeling": {
                        "host": "Base URL",
                        "login": "Access Key (klingai)",
                        "password": "API key (ulazai) / Secret Key (klingai)",
                    },
                    "placeholders": {
                        "host": "https://ulazai.com",
                        "port": "443",
                        "login": "klingai only: your Access Key",
                        "password": "your UlazAI API key, or your Kling Secret Key",
                    },
                },
            }
        ],
        "extra-links": ["airflow_provider_kling.links.kling.KlingVideoLink"],
        "task-decorators": [
            {"class-name": "airflow_provider_kling.decorators.kling.kling_task", "name": "kling"}
        ],
        # The Kling gallery page (plugins/gallery.py) is not listed under "plugins": it loads through
        # its airflow.plugins entry point, and a second listing here is a second registration that
        # Airflow skips with a warning in every component's log.
    }
