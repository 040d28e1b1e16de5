from __future__ import annotations

pytest_plugins = ["airflow_provider_kling.emulator.pytest_plugin"]
