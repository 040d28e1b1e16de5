"""Polling schedule: status requests per job and how late the end is seen, fixed 10 s vs adaptive.

    python benchmarks/polling_schedule.py --jobs 200 [--api klingai]

Jobs last the vendor's 60-90 s, run ``--speed`` times faster by the emulator (its own process, which announces
the sped-up range as ``estimated_time``, as the vendor announces its own). Side by side, against
the same emulator, every job is waited for by a real ``KlingStatusTrigger`` in one event loop:

- ``fixed 10 s``: the vendor sample's schedule, a poll at once and every 10 s (scaled by the speed);
- ``adaptive``: the operator's default, given the job's submit time and announced duration.

With ``--api klingai`` the emulator speaks Kling's own API, which announces no duration and reports
no progress: the adaptive wait then plans on the documented 60-90 s (scaled by the speed, as a
connection's ``job_seconds`` would say it) and spreads its polls over that range.

Detection lag is the time from the moment the emulator's job became done to the trigger's event.
Figures are in vendor seconds (measured seconds times the speed), so they read as on the real API.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

from airflow.sdk.log import configure_logging
from emulator_process import EmulatorProcess

from airflow_provider_kling.core.polling import VENDOR_EXPECTED_SECONDS
from airflow_provider_kling.core.request import GenerationRequest
from airflow_provider_kling.hooks.kling import KlingHook
from airflow_provider_kling.triggers.kling import KlingStatusTrigger

API_KEY = "polling-benchmark-key"
ACCESS_KEY = "polling-benchmark-access-key"
#: The vendor sample's interval.
VENDOR_INTERVAL = 10.0


@dataclass(frozen=True)
class ScheduleFigures:
    schedule: str
    jobs: int
    succeeded: int
    requests_per_job: float
    lag_median: float
    lag_p90: float
    lag_max: float


async def generate(
    schedule: str, index: int, hook: KlingHook, speed: float, api: str
) -> tuple[dict[str, Any], float]:
    """Submit one job and wait for it at once, as the operator does; the event and when it came."""
    submitted_at = time.time()
    request = GenerationRequest(f"{schedule} job {index}", api=api)
    submitted = await asyncio.to_thread(hook.submit, request)
    documented = tuple(seconds / speed for seconds in VENDOR_EXPECTED_SECONDS)
    timing: dict[str, Any] = (
        {"poll_interval": VENDOR_INTERVAL / speed}
        if schedule.startswith("fixed")
        else {"submitted_at": submitted_at, "expected_seconds": submitted.estimated_seconds or documented}
    )
    trigger = KlingStatusTrigger(
        kling_task_id=submitted.task_id, deadline=time.time() + 600 / speed, **timing
    )
    async for event in trigger.run():  # as the triggerer runs it
        return event.payload, time.time()
    raise AssertionError("a trigger ended without an event")


def measure(schedule: str, jobs: int, emulator: EmulatorProcess, speed: float, api: str) -> ScheduleFigures:
    emulator.control("/_emulator/reset", "POST")
    hook = KlingHook()

    async def all_jobs() -> list[tuple[dict[str, Any], float]]:
        return await asyncio.gather(*(generate(schedule, index, hook, speed, api) for index in range(jobs)))

    events = asyncio.run(all_jobs())
    done_at = {job["task_id"]: job for job in emulator.control("/_emulator/jobs")}
    lags = sorted(
        (seen_at - done_at[event["task_id"]]["ready_at"]) * speed
        for event, seen_at in events
        if event["status"] == "success"
    )
    polls = sum(len(job["status_polls"]) for job in done_at.values())
    return ScheduleFigures(
        schedule=schedule,
        jobs=jobs,
        succeeded=len(lags),
        requests_per_job=polls / jobs,
        lag_median=statistics.median(lags),
        lag_p90=lags[int(0.9 * (len(lags) - 1))],
        lag_max=lags[-1],
    )


def run(jobs: int, speed: float, api: str) -> list[ScheduleFigures]:
    options = ("--speed", str(speed), "--seed", "2026", "--credits", str(100 * jobs), "--api-key", API_KEY)
    with EmulatorProcess(*options, "--api", api, "--access-key", ACCESS_KEY) as emulator:
        connection: dict[str, Any] = {"conn_type": "kling", "host": emulator.url, "password": API_KEY}
        if api != "ulazai":
            connection |= {"login": ACCESS_KEY, "extra": {"api": api}}
        os.environ["AIRFLOW_CONN_KLING_DEFAULT"] = json.dumps(connection)
        return [measure(schedule, jobs, emulator, speed, api) for schedule in ("fixed 10 s", "adaptive")]


def table(figures: list[ScheduleFigures]) -> list[str]:
    fixed, adaptive = figures
    lines = [
        f"{'schedule':<12}{'jobs':>6}{'ok':>6}{'requests/job':>14}"
        f"{'lag median':>12}{'lag p90':>10}{'lag max':>10}   (lag in vendor seconds)"
    ]
    for row in figures:
        lines.append(
            f"{row.schedule:<12}{row.jobs:>6}{row.succeeded:>6}{row.requests_per_job:>14.2f}"
            f"{row.lag_median:>12.2f}{row.lag_p90:>10.2f}{row.lag_max:>10.2f}"
        )
    lines.append(
        f"adaptive/fixed: {adaptive.requests_per_job / fixed.requests_per_job:.0%} of the requests, "
        f"median lag {adaptive.lag_median:.2f} s vs {fixed.lag_median:.2f} s "
        "(target: at most 60% of the requests, median lag at most 1 s)"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200, help="jobs waited for under each schedule")
    parser.add_argument("--speed", type=float, default=10, help="how many times faster the emulator runs")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument(
        "--api", choices=("ulazai", "klingai"), default="ulazai", help="the API the emulator speaks"
    )
    arguments = parser.parse_args(argv)
    configure_logging(log_level="WARNING")  # the table, not a line per poll
    figures = run(arguments.jobs, arguments.speed, arguments.api)
    print("\n".join(table(figures)))
    if arguments.json:
        with open(arguments.json, "w") as out:
            json.dump([asdict(row) for row in figures], out, indent=2)
    return 0 if all(row.succeeded == row.jobs for row in figures) else 1


if __name__ == "__main__":
    raise SystemExit(main())
