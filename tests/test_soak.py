"""A CI-sized soak: 200 generations through hook and trigger against an emulator injecting every fault.

The full-size run is `python benchmarks/soak.py --generations 1000` (figures in docs/reliability.md).
"""

from __future__ import annotations

from typing import Any

import pytest
import soak

#: Enough polls that each fault kind, at 3% of them or more, is all but sure to be drawn.
GENERATIONS = 200
#: The account's requests a second: below what 100 waits polling every 0.25 s send even on a busy
#: machine (at the full soak's 150, a run beside another suite never reached it, and drew no 429).
ACCOUNT_RATE_LIMIT = 40


@pytest.fixture(scope="module")
def report() -> Any:
    with pytest.MonkeyPatch.context() as patch:  # the soak sets the connection
        patch.setenv("AIRFLOW_CONN_KLING_DEFAULT", "")
        yield soak.run_soak(generations=GENERATIONS, concurrency=100, account_rate_limit=ACCOUNT_RATE_LIMIT)


def test_every_fault_kind_was_injected(report: Any) -> None:
    assert set(report.faults["status"]) == {"server_error", "drop", "garbage", "slow"}
    assert report.refused_by_account_limit > 0
    assert set(report.faults["submit"]) == {"rate_limit"}


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
