"""Triggerer density: N waits in one event loop, our trigger beside the HTTP provider's pattern and a floor.

    python benchmarks/triggerer_density.py --json /tmp/density.json

Each (variant, N) cell runs in a fresh child process, so neither memory nor CPU carries over from
the cell before. The child drives N waits the way Airflow's TriggerRunner drives triggers (each
wait's async generator in its own asyncio task, the first event ends it) in one event loop, against
the emulator running as a separate process. The variants:

- ``kling``: :class:`KlingStatusTrigger` with a fixed ``poll_interval`` (one aiohttp session shared
  by the loop). Its polls are counted by wrapping ``KlingHook.aget_status`` (one coroutine call more).
- ``http-provider``: ``HttpSensorTrigger``'s loop (a new ``aiohttp.ClientSession`` per poll, passed to
  ``HttpAsyncHook(method="GET").run``) reading the status JSON and stopping on completed or failed,
  as a ``BaseTrigger``; the key is sent as an Authorization header on an ``http`` connection.
- ``floor``: no Airflow code: one shared ``aiohttp.ClientSession``, and per wait a GET, the JSON
  parsed, then ``asyncio.sleep(interval)``.

Every cell polls the same job ids on the same schedule: before each cell the emulator is reset
(counters included) and, its seed fixed, given N fresh jobs with the same ids and durations, created
while the child waits, already imported. Jobs are created just before the waits start, so each job
is still running when its first poll comes, and each wait makes 3 or 4 polls (the waits start
spread evenly over the first interval, the jobs take 2.6 to 3 intervals from their creation); fewer
polls per job (the table's "per job") mean the loop fell behind the schedule. The emulator holds the
jobs running until every wait has had its first answer, so that however late a loaded
machine starts the last waits, all N are alive together; a job held past its own end ends at its
release. However late a wait starts, it ends at the first answer after its job's end:
``polls_after_ready`` is 1 for every job.

Figures per cell: polls counted by the client and by the emulator, the process's CPU (user and
system, all threads, from getrusage) from the first wait's start to the last one's end divided by
the polls, RSS per wait (the RSS once each of the N waits had had an answer, none ended, minus the
RSS before the first one started; fixed costs such as the connection pool count too, so small N
overstate it), how late a 20 ms ticker wakes (loop lag), the outcomes
and the wall time. The trigger's INFO log line per poll is off unless ``--trigger-logs``: the other
two variants log nothing while polling either.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any
from unittest import mock

import aiohttp
from airflow.providers.http.hooks.http import HttpAsyncHook
from airflow.triggers.base import BaseTrigger, TriggerEvent
from emulator_process import EmulatorProcess
from figures import percentile

from airflow_provider_kling.core.dialects import ulazai
from airflow_provider_kling.core.request import GenerationRequest
from airflow_provider_kling.core.responses import JobStatus
from airflow_provider_kling.hooks.kling import KlingHook
from airflow_provider_kling.triggers.kling import KlingStatusTrigger

VARIANTS = ("kling", "http-provider", "floor")
#: Our trigger again, its connection capped at --cap status polls a second (run at the largest size).
CAPPED = "kling-capped"
EXPECTED_OUTCOME = {"kling": "success", CAPPED: "success", "http-provider": "completed", "floor": "completed"}
FINISHED_STATUSES = frozenset({"completed", "failed"})

API_KEY = "density-benchmark-key"
HTTP_CONN_ID = "kling_http"
SEED = 6
#: Jobs last this many poll intervals from their creation, so each wait polls 3 or 4 times.
JOB_INTERVALS = (2.6, 3.0)
#: Submits in flight while the parent creates a cell's jobs.
SUBMIT_CONCURRENCY = 64
#: How often the lag ticker wakes.
LAG_TICK = 0.02

#: The issue's targets for ``kling``; reported, never enforced.
RSS_TARGET_BYTES = 10 * 1024
CPU_VS_HTTP_TARGET = 0.5
CPU_VS_FLOOR_TARGET = 1.3
LAG_P99_TARGET_MS = 50.0


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


# -- the child: one cell ---------------------------------------------------------------------------


@dataclass
class Progress:
    """What the waits and the ticker share while a cell runs."""

    size: int
    polls: int = 0
    #: The waits that have had an answer, by what each polls (its task id, path or URL).
    answered: set[str] = field(default_factory=set)
    started: int = 0
    ended: int = 0
    lags: list[float] = field(default_factory=list)
    #: When each wait saw its job end (Unix time), by task id: the parent reads the detection lag.
    finished_at: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Schedule:
    base_url: str
    interval: float
    deadline: float


#: A variant: given the schedule and the progress, a context holding what a wait for one task id is.
WaitFactory = Callable[[str], AsyncIterator[Any]]
Variant = Callable[[Schedule, Progress], AbstractAsyncContextManager[WaitFactory]]


@asynccontextmanager
async def kling_waits(schedule: Schedule, progress: Progress) -> AsyncIterator[WaitFactory]:
    get_status = KlingHook.aget_status

    async def counted_get_status(hook: KlingHook, task_id: str, **how: Any) -> JobStatus:
        status = await get_status(hook, task_id, **how)
        progress.polls += 1
        progress.answered.add(task_id)
        return status

    with mock.patch.object(KlingHook, "aget_status", counted_get_status):
        yield lambda task_id: KlingStatusTrigger(
            kling_task_id=task_id, deadline=schedule.deadline, poll_interval=schedule.interval
        ).run()


class HttpProviderStatusTrigger(BaseTrigger):
    """HttpSensorTrigger's loop, reading the status body: a new ClientSession and hook call per poll."""

    def __init__(self, endpoint: str, headers: dict[str, str], schedule: Schedule, progress: Progress):
        super().__init__()
        self.endpoint = endpoint
        self.headers = headers
        self.schedule = schedule
        self.progress = progress

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{__name__}.{type(self).__qualname__}", {"endpoint": self.endpoint}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = HttpAsyncHook(method="GET", http_conn_id=HTTP_CONN_ID)
        while time.time() < self.schedule.deadline:
            status = await self.poll(hook)
            self.progress.polls += 1
            self.progress.answered.add(self.endpoint)
            if status in FINISHED_STATUSES:
                yield TriggerEvent({"status": status})
                return
            await asyncio.sleep(self.schedule.interval)
        yield TriggerEvent({"status": "timeout"})

    async def poll(self, hook: HttpAsyncHook) -> str:
        async with aiohttp.ClientSession() as session:
            response = await hook.run(session=session, endpoint=self.endpoint, headers=self.headers)
            return str((await response.json())["data"]["status"])


@asynccontextmanager
async def http_provider_waits(schedule: Schedule, progress: Progress) -> AsyncIterator[WaitFactory]:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    yield lambda task_id: HttpProviderStatusTrigger(
        ulazai.status_path(task_id), headers, schedule, progress
    ).run()


async def floor_poll(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as response:
        return str((await response.json())["data"]["status"])


async def floor_wait(
    session: aiohttp.ClientSession, url: str, schedule: Schedule, progress: Progress
) -> AsyncIterator[str]:
    while time.time() < schedule.deadline:
        status = await floor_poll(session, url)
        progress.polls += 1
        progress.answered.add(url)
        if status in FINISHED_STATUSES:
            yield status
            return
        await asyncio.sleep(schedule.interval)
    yield "timeout"


@asynccontextmanager
async def floor_waits(schedule: Schedule, progress: Progress) -> AsyncIterator[WaitFactory]:
    async with aiohttp.ClientSession(headers=ulazai.auth_headers(API_KEY)) as session:
        yield lambda task_id: floor_wait(
            session, schedule.base_url + ulazai.status_path(task_id), schedule, progress
        )


VARIANT_WAITS: dict[str, Variant] = {
    "kling": kling_waits,
    "http-provider": http_provider_waits,
    "floor": floor_waits,
    CAPPED: kling_waits,
}


async def drive(wait: AsyncIterator[Any], progress: Progress, task_id: str) -> str:
    """Run one wait as TriggerRunner runs a trigger, in its own task to its end; its first event counts."""
    try:
        events = [event async for event in wait]
    except Exception as error:
        return f"raised {type(error).__name__}"
    finally:
        progress.ended += 1
        progress.finished_at[task_id] = time.time()
    if not events:
        return "no event"
    return str(events[0].payload["status"] if isinstance(events[0], TriggerEvent) else events[0])


async def tick(progress: Progress) -> None:
    """Note how late the loop wakes us."""
    while True:
        due = time.monotonic() + LAG_TICK
        await asyncio.sleep(LAG_TICK)
        progress.lags.append(time.monotonic() - due)


async def measure(
    variant: str, task_ids: list[str], schedule: Schedule, parked: Callable[[], None]
) -> dict[str, Any]:
    """Run the waits; once all are parked (each has had an answer, its job held), note the RSS and
    call ``parked``, which lets the jobs end."""
    progress = Progress(size=len(task_ids))
    rss_before = rss_bytes()
    usage_before, wall_before = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    ticker = asyncio.create_task(tick(progress))
    async with VARIANT_WAITS[variant](schedule, progress) as start_wait:
        tasks = []
        for index, task_id in enumerate(task_ids):
            # Waits start as tasks defer: spread evenly over the first interval.
            delay = wall_before + index * schedule.interval / len(task_ids) - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(drive(start_wait(task_id), progress, task_id)))
            progress.started += 1
        while len(progress.answered) < len(task_ids) and progress.ended == 0:
            await asyncio.sleep(LAG_TICK)
        held, rss_parked = len(task_ids) - progress.ended, rss_bytes()
        parked()
        outcomes = Counter(await asyncio.gather(*tasks))
        usage, wall_seconds = resource.getrusage(resource.RUSAGE_SELF), time.monotonic() - wall_before
    ticker.cancel()
    user_seconds = usage.ru_utime - usage_before.ru_utime
    system_seconds = usage.ru_stime - usage_before.ru_stime
    lags_ms = [lag * 1000 for lag in progress.lags]
    polls = progress.polls
    return {
        "variant": variant,
        "size": len(task_ids),
        "polls": polls,
        "outcomes": dict(outcomes),
        "all_as_expected": outcomes[EXPECTED_OUTCOME[variant]] == len(task_ids),
        "cpu_seconds": user_seconds + system_seconds,
        "cpu_us_per_poll": (user_seconds + system_seconds) / polls * 1e6 if polls else None,
        "user_us_per_poll": user_seconds / polls * 1e6 if polls else None,
        "system_us_per_poll": system_seconds / polls * 1e6 if polls else None,
        "rss_before_bytes": rss_before,
        "waits_held": held,
        "rss_parked_bytes": rss_parked,
        "rss_bytes_per_wait": (rss_parked - rss_before) / held if held else None,
        "lag_p99_ms": percentile(lags_ms, 0.99),
        "lag_max_ms": max(lags_ms),
        "wall_seconds": wall_seconds,
        "finished_at": progress.finished_at,
    }


def run_cell(variant: str, interval: float, base_url: str, report_fd: int) -> int:
    """The child: say it is ready, read the task ids from stdin, measure (saying when the waits are
    parked), report one JSON line."""
    with os.fdopen(report_fd, "w") as report:
        print("ready", file=report, flush=True)
        task_ids = json.loads(sys.stdin.readline())
        gc.collect()
        schedule = Schedule(base_url=base_url, interval=interval, deadline=time.time() + 10 * interval + 60)
        result = asyncio.run(
            measure(variant, task_ids, schedule, lambda: print("parked", file=report, flush=True))
        )
        print(json.dumps(result), file=report, flush=True)
    return 0


# -- the parent: the emulator, the cells, the table ------------------------------------------------


class Emulator(EmulatorProcess):
    """The emulator as its own process, reset and given fresh jobs before each cell."""

    def __init__(self, interval: float, max_jobs: int) -> None:
        shortest, longest = (share * interval for share in JOB_INTERVALS)
        super().__init__(
            *("--seed", str(SEED), "--api-key", API_KEY, "--speed", "1"),
            *("--min-seconds", f"{shortest}", "--max-seconds", f"{longest}"),
            *("--credits", str(60 * max_jobs), "--job-failure-rate", "0"),
        )

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def create_jobs(self, count: int) -> list[str]:
        """Reset the emulator (jobs, counters, its seeded ids) and create ``count`` jobs, held running
        until :meth:`release_jobs`."""
        self.control("/_emulator/reset", "POST")
        self.control("/_emulator/hold", "POST", {"count": count})
        return asyncio.run(self._submit(count))

    def release_jobs(self) -> None:
        self.control("/_emulator/release", "POST", {})

    async def _submit(self, count: int) -> list[str]:
        payload = GenerationRequest("triggerer density benchmark").to_payload()
        connector = aiohttp.TCPConnector(limit=SUBMIT_CONCURRENCY)
        async with aiohttp.ClientSession(
            headers=ulazai.auth_headers(API_KEY), connector=connector
        ) as session:

            async def submit() -> str:
                async with session.post(self.url + ulazai.SUBMIT_PATH, json=payload) as response:
                    body = await response.json()
                    if response.status != 201:
                        raise SystemExit(f"The emulator refused a submit: {response.status} {body}")
                    return str(body["data"]["task_id"])

            return await asyncio.gather(*(submit() for _ in range(count)))


def cell_env(emulator: Emulator, trigger_logs: bool, cap: float | None = None) -> dict[str, str]:
    kling_connection: dict[str, Any] = {"conn_type": "kling", "host": emulator.url, "password": API_KEY}
    if cap:
        kling_connection["extra"] = json.dumps({"max_polls_per_second": cap})
    env = os.environ | {
        "AIRFLOW_CONN_KLING_DEFAULT": json.dumps(kling_connection),
        f"AIRFLOW_CONN_{HTTP_CONN_ID.upper()}": json.dumps({"conn_type": "http", "host": emulator.url}),
    }
    if not trigger_logs:
        env["AIRFLOW__LOGGING__NAMESPACE_LEVELS"] = "airflow_provider_kling=WARNING"
    return env


def measure_cell(
    emulator: Emulator,
    variant: str,
    size: int,
    interval: float,
    log: Path,
    trigger_logs: bool,
    cap: float | None = None,
) -> dict[str, Any]:
    """One cell in a fresh child; the emulator's jobs are created once the child has imported."""
    report_read, report_write = os.pipe()
    with log.open("wb") as log_file:
        child = subprocess.Popen(
            [
                *(sys.executable, __file__, "--cell", variant, "--interval", str(interval)),
                *("--emulator", emulator.url, "--report-fd", str(report_write)),
            ],
            stdin=subprocess.PIPE,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            pass_fds=(report_write,),
            env=cell_env(emulator, trigger_logs, cap if variant == CAPPED else None),
            text=True,
        )
    os.close(report_write)
    assert child.stdin is not None
    with os.fdopen(report_read) as report:
        if report.readline().strip() != "ready":
            child.wait()
            raise SystemExit(f"The {variant} cell did not start:\n{log.read_text()[-3000:]}")
        created = time.monotonic()
        task_ids = emulator.create_jobs(size)
        creation_seconds = time.monotonic() - created
        emulator_cpu = emulator.cpu_seconds()
        child.stdin.write(json.dumps(task_ids) + "\n")
        child.stdin.close()
        try:
            if report.readline().strip() == "parked":
                emulator.release_jobs()
        except BaseException:
            child.kill()  # its waits would poll held jobs until their deadline
            raise
        line = report.readline()
    if child.wait() != 0 or not line:
        raise SystemExit(f"The {variant} cell with {size} waits failed:\n{log.read_text()[-3000:]}")
    result: dict[str, Any] = json.loads(line)
    jobs = emulator.control("/_emulator/jobs")
    polls_per_job = [len(job["status_polls"]) for job in jobs]
    # The emulator notes a poll at the moment its answer is for: at or after ready_at, it said "done".
    polls_after_ready = [sum(polled >= job["ready_at"] for polled in job["status_polls"]) for job in jobs]
    finished_at = result.pop("finished_at")
    lags = [finished_at[job["task_id"]] - job["ready_at"] for job in jobs if job["task_id"] in finished_at]
    per_second = Counter(int(polled) for job in jobs for polled in job["status_polls"])
    return result | {
        "interval": interval,
        "job_creation_seconds": creation_seconds,
        "emulator_status_requests": emulator.control("/_emulator/stats")["requests"]["status"],
        "emulator_cpu_seconds": emulator.cpu_seconds() - emulator_cpu,
        "polls_per_job": {"min": min(polls_per_job), "max": max(polls_per_job)},
        "polls_after_ready": {"min": min(polls_after_ready), "max": max(polls_after_ready)},
        "cap_per_second": cap if variant == CAPPED else None,
        "emulator_max_requests_per_second": max(per_second.values()),
        "detection_lag_median_s": percentile(lags, 0.5),
        "detection_lag_p99_s": percentile(lags, 0.99),
        "load_average_1min": os.getloadavg()[0],
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def compare(cells: list[dict[str, Any]], size: int) -> dict[str, Any]:
    """The kling cell of one size against the other two, and against the issue's targets."""
    by_variant = {cell["variant"]: cell for cell in cells if cell["size"] == size}
    kling, http, floor = (by_variant[name] for name in VARIANTS)
    cpu_vs_http = ratio(kling["cpu_us_per_poll"], http["cpu_us_per_poll"])
    cpu_vs_floor = ratio(kling["cpu_us_per_poll"], floor["cpu_us_per_poll"])
    rss = kling["rss_bytes_per_wait"]
    return {
        "size": size,
        "cpu_vs_http_provider": cpu_vs_http,
        "cpu_vs_floor": cpu_vs_floor,
        "rss_vs_http_provider": ratio(rss, http["rss_bytes_per_wait"]),
        "rss_vs_floor": ratio(rss, floor["rss_bytes_per_wait"]),
        "targets_met": {
            "rss_per_wait": rss is not None and rss <= RSS_TARGET_BYTES,
            "cpu_vs_http_provider": cpu_vs_http is not None and cpu_vs_http <= CPU_VS_HTTP_TARGET,
            "cpu_vs_floor": cpu_vs_floor is not None and cpu_vs_floor <= CPU_VS_FLOOR_TARGET,
            "lag_p99": kling["lag_p99_ms"] < LAG_P99_TARGET_MS,
            "all_finished": kling["all_as_expected"],
        },
    }


def shown(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def row(label: object, texts: tuple[str, ...], widths: tuple[int, ...]) -> str:
    return f"{label!s:>6} " + " ".join(f"{text:>{width}}" for text, width in zip(texts, widths, strict=True))


CELL_COLUMNS = (
    "variant",
    "polls",
    "server",
    "per job",
    "CPU us/poll",
    "user",
    "system",
    "RSS B/wait",
    "lag p99 ms",
    "lag max ms",
    "as expected",
    "wall s",
    "server CPU s",
)
CELL_WIDTHS = (14, 6, 6, 7, 11, 6, 6, 10, 10, 10, 11, 6, 12)
COMPARISON_COLUMNS = ("CPU/poll vs http", "vs floor", "RSS KiB/wait", "RSS vs http", "vs floor", "lag p99 ms")
COMPARISON_WIDTHS = (18, 13, 14, 12, 9, 12, 10)
RATE_COLUMNS = ("variant", "cap/s", "max req/s", "lag median s", "lag p99 s")
RATE_WIDTHS = (14, 6, 10, 13, 10)
TARGETS = (
    f"<= {CPU_VS_HTTP_TARGET}",
    f"<= {CPU_VS_FLOOR_TARGET}",
    f"<= {RSS_TARGET_BYTES // 1024}",
    "",
    "",
    f"< {LAG_P99_TARGET_MS:g}",
    "yes",
)


def print_tables(cells: list[dict[str, Any]], comparisons: list[dict[str, Any]]) -> None:
    print(row("N", CELL_COLUMNS, CELL_WIDTHS))
    for cell in cells:
        figures = (
            cell["variant"],
            str(cell["polls"]),
            str(cell["emulator_status_requests"]),
            f"{cell['polls_per_job']['min']}-{cell['polls_per_job']['max']}",
            shown(cell["cpu_us_per_poll"]),
            shown(cell["user_us_per_poll"], 0),
            shown(cell["system_us_per_poll"], 0),
            shown(cell["rss_bytes_per_wait"], 0),
            shown(cell["lag_p99_ms"]),
            shown(cell["lag_max_ms"]),
            f"{cell['outcomes'].get(EXPECTED_OUTCOME[cell['variant']], 0)}/{cell['size']}",
            shown(cell["wall_seconds"]),
            shown(cell["emulator_cpu_seconds"]),
        )
        print(row(cell["size"], figures, CELL_WIDTHS))
    print()
    print("kling against the others and the issue's targets (met / MISSED: reported, not enforced)")
    print(row("N", (*COMPARISON_COLUMNS, "all done"), COMPARISON_WIDTHS))
    print(row("target", TARGETS, COMPARISON_WIDTHS))
    for comparison in comparisons:
        kling = next(c for c in cells if c["size"] == comparison["size"] and c["variant"] == "kling")
        met = {name: "met" if ok else "MISSED" for name, ok in comparison["targets_met"].items()}
        rss = kling["rss_bytes_per_wait"]
        ratios = (
            f"{shown(comparison['cpu_vs_http_provider'], 2)} {met['cpu_vs_http_provider']}",
            f"{shown(comparison['cpu_vs_floor'], 2)} {met['cpu_vs_floor']}",
            f"{shown(rss / 1024 if rss else None)} {met['rss_per_wait']}",
            shown(comparison["rss_vs_http_provider"], 2),
            shown(comparison["rss_vs_floor"], 2),
            f"{shown(kling['lag_p99_ms'])} {met['lag_p99']}",
            f"{'yes' if kling['all_as_expected'] else 'no'} {met['all_finished']}",
        )
        print(row(comparison["size"], ratios, COMPARISON_WIDTHS))
    print()
    print("status requests a second at the emulator (busiest second), and how late each wait saw its job end")
    print(row("N", RATE_COLUMNS, RATE_WIDTHS))
    for cell in cells:
        rates = (
            cell["variant"],
            shown(cell["cap_per_second"], 0),
            str(cell["emulator_max_requests_per_second"]),
            shown(cell["detection_lag_median_s"], 2),
            shown(cell["detection_lag_p99_s"], 2),
        )
        print(row(cell["size"], rates, RATE_WIDTHS))


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "airflow": version("apache-airflow"),
        "http_provider": version("apache-airflow-providers-http"),
        "aiohttp": aiohttp.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="1000,5000,10000", help="numbers of concurrent waits, comma separated"
    )
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between a wait's polls")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument(
        "--trigger-logs", action="store_true", help="keep the trigger's INFO log line per poll (to a file)"
    )
    parser.add_argument(
        "--cap",
        type=float,
        default=500,
        help="also run our trigger at the largest size with its connection capped at this many polls/s",
    )
    parser.add_argument("--cell", choices=(*VARIANTS, CAPPED), help=argparse.SUPPRESS)
    parser.add_argument("--emulator", help=argparse.SUPPRESS)
    parser.add_argument("--report-fd", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.cell:
        return run_cell(arguments.cell, arguments.interval, arguments.emulator, arguments.report_fd)

    sizes = [int(size) for size in arguments.sizes.split(",")]
    about = machine()
    print(", ".join(f"{name} {value}" for name, value in about.items()))
    print(
        f"poll interval {arguments.interval:g} s, jobs {JOB_INTERVALS[0]}-{JOB_INTERVALS[1]} intervals, "
        f"load average {os.getloadavg()[0]:.2f} (other work on the machine moves every CPU figure)"
    )
    started = time.monotonic()
    cells = []
    emulator = Emulator(arguments.interval, max(sizes))
    try:
        with tempfile.TemporaryDirectory(prefix="triggerer-density-") as logs:
            for size in sizes:
                for variant in VARIANTS:
                    log = Path(logs) / f"{variant}-{size}.log"
                    cells.append(
                        measure_cell(emulator, variant, size, arguments.interval, log, arguments.trigger_logs)
                    )
            if arguments.cap:
                log = Path(logs) / f"{CAPPED}-{max(sizes)}.log"
                cells.append(
                    measure_cell(
                        emulator,
                        CAPPED,
                        max(sizes),
                        arguments.interval,
                        log,
                        arguments.trigger_logs,
                        arguments.cap,
                    )
                )
    finally:
        emulator.stop()
    comparisons = [compare(cells, size) for size in sizes]
    print_tables(cells, comparisons)
    print(f"total wall time {time.monotonic() - started:.0f} s, load average {os.getloadavg()[0]:.2f}")
    if arguments.json:
        figures = {
            "machine": about,
            "settings": {
                "sizes": sizes,
                "interval": arguments.interval,
                "job_intervals": JOB_INTERVALS,
                "trigger_logs": arguments.trigger_logs,
            },
            "targets": {
                "rss_bytes_per_wait": RSS_TARGET_BYTES,
                "cpu_vs_http_provider": CPU_VS_HTTP_TARGET,
                "cpu_vs_floor": CPU_VS_FLOOR_TARGET,
                "lag_p99_ms": LAG_P99_TARGET_MS,
            },
            "cells": cells,
            "comparisons": comparisons,
        }
        arguments.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
