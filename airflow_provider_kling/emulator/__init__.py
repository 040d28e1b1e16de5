"""An offline emulator of the Kling 2.6 API, to test DAGs without the vendor (moto for Kling).

In a test, ``with KlingEmulator(speed=60) as emulator:`` serves on a free loopback port and points
a Kling connection at ``emulator.base_url`` with ``emulator.api_key``. From a shell,
``kling-emulator --port 8088`` does the same until stopped. Neither needs Airflow.
"""

from __future__ import annotations

from airflow_provider_kling.emulator.config import (
    DEFAULT_API_KEY,
    EmulatorConfig,
    Fault,
    FaultKind,
    FaultRates,
)
from airflow_provider_kling.emulator.server import KlingEmulator

__all__ = ["DEFAULT_API_KEY", "EmulatorConfig", "Fault", "FaultKind", "FaultRates", "KlingEmulator"]
