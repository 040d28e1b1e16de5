"""The vendor's rate limit across two triggerers: no cap, a static cap per triggerer, the adaptive rate.

    python benchmarks/rate_limit.py --waits 60 --limit 15 --json rate-limit.json   # about 10 minutes

A production-shaped Airflow (PostgreSQL, Redis, two Celery workers, two triggerers) waits on jobs
the benchmark submits first, each wait a deferrable KlingStatusSensor polling every second, so the
waits ask for --waits polls a second (several times --limit). The emulator limits the account to
--limit requests in any one second and answers 429 with Retry-After: 1 beyond it. The modes run
one after the other in the same deployment, on the same waits, each through a connection of its
own:

- uncapped: ``adaptive_rate`` false and no cap: only the 429's pause slows the waits;
- static_cap: ``max_polls_per_second`` = --limit and ``adaptive_rate`` false (the setting before
  the adaptive rate existed): each triggerer keeps to the limit, so two send up to twice it;
- adaptive: no setting at all.

Per mode: the busiest second at the emulator (all requests it received in a second, refused ones
included), over the whole wait and after the first --settle seconds; the share of polls answered
429; the waits finished; and the detection lag (from a job's end to the first poll that saw it).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from deployment import production_airflow, wait_until
from emulator_process import EmulatorProcess
from figures import percentile, publish

from airflow_provider_kling.core.dialects.ulazai import SUBMIT_PATH, auth_headers

DAGS = Path(__file__).resolve().parent / "dags"
API_KEY = "rate-limit-benchmark-key"
MODES = ("uncapped", "static_cap", "adaptive")


def connection(url: str, mode: str, limit: float) -> str:
    extras: dict[str, dict[str, Any]] = {
        "uncapped": {"adaptive_rate": False},
        "static_cap": {"adaptive_rate": False, "max_polls_per_second": limit},
        "adaptive": {},
    }
    extra = extras[mode]
    return json.dumps({"conn_type": "kling", "host": url, "password": API_KEY, "extra": extra})


def submit_jobs(url: str, count: int, mode: str) -> list[str]:
    """``count`` jobs for ``mode``'s waits, sent one by one and again after a 429."""
    task_ids = []
    for index in range(count):
        body = {"prompt": f"rate-limit {mode} clip {index}", "generationMode": "text_to_video"}
        while True:
            answer = requests.post(url + SUBMIT_PATH, json=body, headers=auth_headers(API_KEY), timeout=30)
            if answer.status_code != 429:
                break
            time.sleep(float(answer.headers.get("Retry-After", 1)))
        answer.raise_for_status()
        task_ids.append(answer.json()["data"]["task_id"])
    return task_ids


def figures(traffic: dict[str, list[int]], jobs: list[dict[str, Any]], settle: float) -> dict[str, Any]:
    """The mode's figures from the emulator's per-second traffic and its jobs' polls."""
    first_poll = min(min(job["status_polls"], default=time.time()) for job in jobs)
    last_poll = max(max(job["status_polls"], default=0.0) for job in jobs)
    seconds = {
        int(second): counts for second, counts in traffic.items() if first_poll - 1 < int(second) <= last_poll
    }
    settled = {second: counts for second, counts in seconds.items() if second >= first_poll + settle}
    lags = [
        min(poll for poll in job["status_polls"] if poll >= job["ready_at"]) - job["ready_at"]
        for job in jobs
        if any(poll >= job["ready_at"] for poll in job["status_polls"])
    ]

    def share_refused(counts: dict[int, list[int]]) -> float:
        received = sum(received for received, _ in counts.values())
        return sum(refused for _, refused in counts.values()) / received if received else 0.0

    return {
        "busiest_second": max((received for received, _ in seconds.values()), default=0),
        "busiest_second_settled": max((received for received, _ in settled.values()), default=0),
        "share_429": share_refused(seconds),
        "share_429_settled": share_refused(settled),
        "requests": sum(received for received, _ in seconds.values()),
        "waits_detected": len(lags),
        "lag_median_s": statistics.median(lags) if lags else None,
        "lag_p90_s": percentile(lags, 0.9) if lags else None,
    }


def run_mode(
    airflow: Any, database: Any, emulator: EmulatorProcess, mode: str, arguments: Any
) -> dict[str, Any]:
    task_ids = submit_jobs(emulator.url, arguments.waits, mode)
    dag_id = f"kling_rate_limit_{mode}"
    started = time.time()
    run_id = airflow.trigger(
        dag_id,
        lambda dag: bool(database.execute("SELECT 1 FROM dag WHERE dag_id = %s", dag)),
        conf={"task_ids": task_ids},
    )

    def run_state() -> str | None:
        rows = database.execute("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", dag_id, run_id)
        return rows[0][0] if rows else None

    wait_until(
        lambda: run_state() in ("success", "failed"), 1200, f"the {mode} run", airflow.home / "scheduler.log"
    )
    finished = database.execute(
        "SELECT count(*) FROM task_instance WHERE dag_id = %s AND run_id = %s AND task_id = 'wait' "
        "AND state = 'success'",
        dag_id,
        run_id,
    )[0][0]
    ours = set(task_ids)
    jobs = [job for job in emulator.control("/_emulator/jobs") if job["task_id"] in ours]
    return {
        "run_state": run_state(),
        "waits": arguments.waits,
        "waits_finished": finished,
        "wall_seconds": time.time() - started,
        **figures(emulator.control("/_emulator/traffic"), jobs, arguments.settle),
    }


def benchmark(arguments: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    job_seconds = str(arguments.job_seconds)
    emulator_options = (
        "--rate-limit", str(arguments.limit), "--retry-after", "1", "--api-key", API_KEY,
        "--credits", "100000000", "--seed", "5", "--min-seconds", job_seconds, "--max-seconds", job_seconds,
    )  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="kling-rate-limit-") as folder,
        EmulatorProcess(*emulator_options) as emulator,
    ):
        connections = {
            f"AIRFLOW_CONN_KLING_{mode.upper()}": connection(emulator.url, mode, arguments.limit)
            for mode in MODES
        }
        # Each triggerer may hold 60% of the waits, so that both hold some (and both send polls).
        capacity = arguments.waits * 6 // 10 + 1
        with production_airflow(Path(folder), DAGS, emulator.url, API_KEY, capacity, **connections) as (
            airflow,
            database,
        ):
            modes = {mode: run_mode(airflow, database, emulator, mode, arguments) for mode in MODES}
    return {
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "settings": vars(arguments) | {"triggerers": 2, "poll_interval_s": 1.0},
        "modes": modes,
        "benchmark_seconds": time.monotonic() - started,
    }


ROWS = [
    ("run state", "run_state", "{}"),
    ("waits finished", "waits_finished", "{}"),
    ("busiest second (requests)", "busiest_second", "{}"),
    ("  after settling", "busiest_second_settled", "{}"),
    ("polls answered 429", "share_429", "{:.1%}"),
    ("  after settling", "share_429_settled", "{:.1%}"),
    ("detection lag median (s)", "lag_median_s", "{:.1f}"),
    ("detection lag p90 (s)", "lag_p90_s", "{:.1f}"),
    ("wall time (s)", "wall_seconds", "{:.0f}"),
]


def print_report(report: dict[str, Any]) -> None:
    settings, modes = report["settings"], report["modes"]
    print(f"machine: {report['machine']}")
    print(f"command: {report['command']}")
    print(
        f"{settings['waits']} waits polling every second through 2 triggerers; the account allows "
        f"{settings['limit']:g} requests a second; 'after settling': from {settings['settle']:g} s on"
    )
    print(f"{'':28}" + "".join(f"{mode:>14}" for mode in MODES))
    for label, key, form in ROWS:
        cells = [form.format(modes[mode][key]) if modes[mode][key] is not None else "-" for mode in MODES]
        print(f"{label:28}" + "".join(f"{cell:>14}" for cell in cells))
    adaptive, limit = modes["adaptive"], settings["limit"]
    met = (
        adaptive["busiest_second_settled"] <= 1.1 * limit
        and adaptive["share_429_settled"] < 0.02
        and adaptive["waits_finished"] == settings["waits"]
    )
    verdict = "MET" if met else "MISSED"
    print(f"target (adaptive, settled): <= {1.1 * limit:g} a second, < 2% 429, every wait: {verdict}")
    print(f"benchmark wall time: {report['benchmark_seconds']:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waits", type=int, default=60, help="waits per mode, each polling every second")
    parser.add_argument("--limit", type=float, default=15, help="the account's requests a second")
    parser.add_argument("--job-seconds", type=float, default=120, help="how long each job runs")
    parser.add_argument("--settle", type=float, default=30, help="seconds before 'after settling' counts")
    parser.add_argument("--json", help="also write the figures to this file")
    arguments = parser.parse_args(argv)
    return publish(benchmark(arguments), print_report, arguments.json)


if __name__ == "__main__":
    raise SystemExit(main())
