"""Soak under faults: many generations (hook submit + trigger wait) against an emulator that misbehaves.

    python benchmarks/soak.py --generations 1000

The emulator runs jobs 60x faster and, at the same time, answers status polls with 10% 5xx, 3%
dropped connections, 3% unreadable bodies and 3% slow answers, rate-limits 5% of submits at random,
limits the account to ACCOUNT_RATE_LIMIT requests a second (429 with Retry-After beyond it, which
the waits' adaptive rate must find), and fails 5% of jobs. The invariants: exactly one job per generation, no
generation lost, and every generation ending completed or as a failure that names its cause.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field

from airflow_provider_kling.core.api import RetryPolicy
from airflow_provider_kling.core.errors import KlingError
from airflow_provider_kling.core.request import GenerationRequest
from airflow_provider_kling.emulator import EmulatorConfig, FaultRates, KlingEmulator
from airflow_provider_kling.hooks.kling import KlingHook
from airflow_provider_kling.triggers.kling import KlingStatusTrigger

STATUS_FAULTS = FaultRates(server_error=0.10, drop=0.03, garbage=0.03, slow=0.03)
#: Below what the waits' schedules ask for (100 waits polling every 0.25 s), so the limit binds.
ACCOUNT_RATE_LIMIT = 150
SUBMIT_FAULTS = FaultRates(rate_limit=0.05)
#: The hook's default tries, their waits scaled down like the emulator's clock.
STATUS_RETRIES = RetryPolicy(attempts=5, initial_wait=0.05, max_wait=0.5)
SUBMIT_RETRIES = RetryPolicy(attempts=3, initial_wait=0.05, max_wait=0.5)


@dataclass
class SoakReport:
    generations: int
    outcomes: Counter[str] = field(default_factory=Counter)
    causes: Counter[str] = field(default_factory=Counter)
    jobs_per_generation: Counter[int] = field(default_factory=Counter)
    requests: dict[str, int] = field(default_factory=dict)
    faults: dict[str, dict[str, int]] = field(default_factory=dict)
    refused_by_account_limit: int = 0
    seconds: float = 0.0

    #: Generations whose job count is not what their outcome says (1 if submitted, 0 if refused).
    wrong_job_counts: int = 0

    @property
    def lost(self) -> int:
        return self.generations - sum(self.outcomes.values())

    @property
    def invariants_hold(self) -> bool:
        return self.lost == 0 and self.wrong_job_counts == 0 and max(self.jobs_per_generation) == 1

    def lines(self) -> list[str]:
        return [
            f"generations            {self.generations}",
            f"outcomes               {dict(self.outcomes)}",
            f"failure causes         {dict(self.causes)}",
            f"jobs per generation    {dict(self.jobs_per_generation)}",
            f"wrong job counts       {self.wrong_job_counts}",
            f"generations lost       {self.lost}",
            f"requests               {self.requests}",
            f"faults injected        {self.faults}",
            f"account limit 429s     {self.refused_by_account_limit}",
            f"wall time              {self.seconds:.1f} s",
        ]


async def generate(index: int, hook: KlingHook, gate: asyncio.Semaphore) -> tuple[str, str]:
    """One generation as the operator runs it: submit once, then wait with the trigger's wait."""
    async with gate:
        try:
            submitted = await asyncio.to_thread(hook.submit, GenerationRequest(f"soak generation {index}"))
        except KlingError as error:
            return "submit failed", type(error).__name__
        trigger = KlingStatusTrigger(
            kling_task_id=submitted.task_id, deadline=time.time() + 120, poll_interval=0.25
        )
        trigger.hook = hook
        event = await trigger.wait()
        if event["status"] == "failed":
            return "failed", f"vendor said: {event['result']['message']}"
        return event["status"], event["error"] or event["status"]


async def soak(generations: int, emulator: KlingEmulator, concurrency: int) -> SoakReport:
    hook = KlingHook(status_retry_policy=STATUS_RETRIES, submit_retry_policy=SUBMIT_RETRIES)
    gate = asyncio.Semaphore(concurrency)
    started = time.monotonic()
    results = await asyncio.gather(*(generate(i, hook, gate) for i in range(generations)))
    report = SoakReport(generations=generations, seconds=time.monotonic() - started)
    for outcome, cause in results:
        report.outcomes[outcome] += 1
        if outcome != "success":
            report.causes[f"{outcome}: {cause}"] += 1
    jobs_by_prompt = Counter(job["request"]["prompt"] for job in emulator.jobs())
    jobs = [jobs_by_prompt[f"soak generation {i}"] for i in range(generations)]
    report.jobs_per_generation = Counter(jobs)
    # A refused submit (429 after its retries) creates no job; every other generation exactly one.
    report.wrong_job_counts = sum(
        count != (0 if outcome == "submit failed" else 1)
        for count, (outcome, _) in zip(jobs, results, strict=True)
    )
    stats = emulator.stats()
    report.requests = dict(stats["requests"])
    report.faults = {endpoint: dict(kinds) for endpoint, kinds in stats["faults_applied"].items() if kinds}
    report.refused_by_account_limit = sum(refused for _, refused in emulator.traffic().values())
    return report


def run_soak(
    generations: int, concurrency: int = 200, seed: int = 2026, account_rate_limit: float = ACCOUNT_RATE_LIMIT
) -> SoakReport:
    """Start a faulty emulator, point kling_default at it, and run the generations."""
    config = EmulatorConfig(
        speed=60,
        seed=seed,
        credits=100 * generations,
        job_failure_rate=0.05,
        status_faults=STATUS_FAULTS,
        submit_faults=SUBMIT_FAULTS,
        slow_seconds=0.5,
        retry_after=0.2,
        rate_limit=account_rate_limit,
    )
    with KlingEmulator(config) as emulator:
        os.environ["AIRFLOW_CONN_KLING_DEFAULT"] = json.dumps(
            {"conn_type": "kling", "host": emulator.base_url, "password": emulator.api_key}
        )
        return asyncio.run(soak(generations, emulator, concurrency))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=200, help="generations in flight at once")
    arguments = parser.parse_args(argv)
    logging.getLogger("airflow_provider_kling").setLevel(logging.ERROR)  # the table, not 10,000 log lines
    report = run_soak(arguments.generations, arguments.concurrency)
    print("\n".join(report.lines()))
    print("invariants hold" if report.invariants_hold else "INVARIANTS BROKEN")
    return 0 if report.invariants_hold else 1


if __name__ == "__main__":
    raise SystemExit(main())
