"""A CI-sized soak: 100 generations through hook and trigger against an emulator injecting every fault.

The full-size run is `python benchmarks/soak.py --generations 1000` (figures in docs/reliability.md).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def load_soak() -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "soak.py"
    spec = importlib.util.spec_from_file_location("soak", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def report() -> Any:
    with pytest.MonkeyPatch.context() as patch:  # the soak sets the connection
        patch.setenv("AIRFLOW_CONN_KLING_DEFAULT", "")
        yield load_soak().run_soak(generations=100, concurrency=100)


def test_every_fault_kind_was_injected(report: Any) -> None:
    assert set(report.faults["status"]) == {"server_error", "rate_limit", "drop", "garbage", "slow"}
    assert report.faults["submit"] == {"rate_limit": report.requests["submit"] - 100}


def test_exactly_one_job_per_submitted_generation_and_none_per_refused_one(report: Any) -> None:
    assert report.wrong_job_counts == 0
    assert max(report.jobs_per_generation) == 1


def test_no_generation_is_lost(report: Any) -> None:
    assert report.lost == 0


def test_every_generation_ends_completed_or_failed_with_its_cause(report: Any) -> None:
    assert set(report.outcomes) <= {"success", "failed", "submit failed"}
    assert report.outcomes["success"] >= 80
    named = ("failed: vendor said: ", "submit failed: KlingRateLimitError")
    assert all(cause.startswith(named) for cause in report.causes), report.causes
