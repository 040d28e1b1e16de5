"""Pytest fixtures serving the emulator for one test.

Enable with ``pytest_plugins = ["airflow_provider_kling.emulator.pytest_plugin"]`` in a conftest.py.
``kling_emulator`` is ready to use; ``kling_emulator_factory(**overrides)`` starts differently
configured ones (e.g. ``kling_emulator_factory(job_failure_rate=1.0)``). All stop when the test ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import pytest

from airflow_provider_kling.emulator.config import EmulatorConfig
from airflow_provider_kling.emulator.server import KlingEmulator

#: The vendor's 60-90 s, run 60 times faster: a job takes 1-1.5 s. Seeded, so ids repeat run to run.
TEST_DEFAULTS: dict[str, Any] = {"min_seconds": 60.0, "max_seconds": 90.0, "speed": 60.0, "seed": 2026}


class KlingEmulatorFactory(Protocol):
    def __call__(self, config: EmulatorConfig | None = None, **overrides: Any) -> KlingEmulator: ...


@pytest.fixture
def kling_emulator_factory() -> Iterator[KlingEmulatorFactory]:
    """Start emulators; without a config they use TEST_DEFAULTS, and keyword overrides apply on top."""
    started: list[KlingEmulator] = []

    def start(config: EmulatorConfig | None = None, **overrides: Any) -> KlingEmulator:
        emulator = (
            KlingEmulator(config, **overrides)
            if config is not None
            else KlingEmulator(**{**TEST_DEFAULTS, **overrides})
        )
        started.append(emulator.start())
        return emulator

    yield start
    for emulator in reversed(started):
        emulator.stop()


@pytest.fixture
def kling_emulator(kling_emulator_factory: KlingEmulatorFactory) -> KlingEmulator:
    """A running emulator whose jobs finish in 1-1.5 s, on the default key with 10000 credits."""
    return kling_emulator_factory()
