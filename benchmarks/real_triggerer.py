"""Real triggerer: N Kling waits held by one `airflow triggerer` process, as Airflow runs it.

    python benchmarks/real_triggerer.py --json real_triggerer.json       # 2,000 waits, about 4 minutes

The default N is 2,000, not the issue's 10,000: on this 2-core machine the triggerer's supervisor
process, not the event loop, is what runs out. It spends about 26 ms of CPU per wait (building the
workload, routing each trigger's log lines to its own file, one DB transaction per event), so
10,000 waits arriving within a 60-90 s job's span need far more than one core; a 10,000 attempt
started the last triggers some 170 s after the first, after the jobs had ended (see
docs/benchmarks.md).

One `airflow triggerer` (Airflow's own: its supervisor process, which reads and writes the
metadata DB and writes each trigger's log file, and its trigger-runner subprocess, whose event loop
runs the triggers) with `[triggerer] capacity` raised to hold every wait, on PostgreSQL, against
the emulator as a process of its own. Nothing else of Airflow runs during the measurement: no
scheduler, no worker, no api-server.

What is real and what is not. Starting N task processes on 2 cores only to defer them would take
hours, so the benchmark defers the task instances itself, through Airflow's ORM, exactly as the
execution API does when a task process reports ``TaskDeferred`` (``ti_update_state``): a
``Trigger`` row holding the trigger's serialized kwargs (``classpath, kwargs =
trigger.serialize()``, the Task SDK's ``serde`` form, stored as JSON as that route stores it), and
the task instance set ``deferred`` with its ``trigger_id``, ``next_method="execute_complete"``,
``next_kwargs`` and ``trigger_timeout``. The task instances are real: one run of a real DAG
(benchmarks/dags/kling_real_triggerer.py, a ``KlingGenerateOperator`` mapped over N literal
prompts, serialized by `airflow dags reserialize`), created by Airflow's ``trigger_dag``, which
expands the mapped task into N task instances; the triggerer reads that run and serialized DAG
when it builds each trigger's workload. Each wait is deferred as the operator defers by default: a
job is submitted to the emulator for the task instance's prompt, then ``KlingStatusTrigger`` gets
the job's ``submitted_at`` and the ``expected_seconds`` its submit announced, ``poll_interval=None``
(the adaptive schedule), the operator's 30-minute deadline and ``end_from_trigger=True``. So a
finished video ends the task in the triggerer (a ``TaskSuccessEvent``: the supervisor sets the
task instance ``success`` and pushes its XComs), which is why no scheduler is needed.

The deferrals arrive as tasks would defer: a helper process (Airflow's environment, its own
interpreter) submits each job and defers its task instance at an even rate over ``--spread`` (by
default two thirds of the shortest job), so every wait is held at once for a while before the
first job ends. Jobs last the vendor's 60-90 s, run ``--speed`` times faster (and announced so).

Figures:

- pick-up: from the first deferral until all N were held (the DB's ``trigger.triggerer_id``, sampled
  every 0.5 s) and until the runner had started all N (the "trigger ... starting" line in each
  trigger's log file), and per trigger, from the commit of its deferral to that line.
- CPU per poll: user + system CPU of every process of the triggerer (supervisor and runner;
  /proc/<pid>/stat) from the first deferral until the last task instance ended, divided by
  the status requests the emulator answered. So it includes Airflow's own work per wait (building
  the workload, the trigger's log file, the event, the task's end), not only the polls.
- RSS per wait: the runner's largest RSS while the most waits were held (all N, when the figure
  ``held at once`` says so), minus its RSS before the first deferral, over that number of waits. The
  baseline has the provider's trigger, hook and aiohttp imported already (the probe imports them),
  as benchmark 1's has; fixed costs such as the shared session count as per wait.
- loop lag: a probe trigger (``LoopLagProbe``, this module; one more trigger on the same loop, on
  its own task instance of the DAG) sleeps 20 ms at a time and notes how late it wakes, as
  benchmark 1's ticker does; the figures cover the same window as the CPU. Beside it, Airflow's own
  watchdog: the runner's ``block_watchdog`` sleeps 0.1 s and logs "Triggerer's async thread was
  blocked for X seconds" when the sleep took longer than ``[triggerer]
  blocked_main_thread_warning_threshold`` (0.2 s), i.e. a lag above 100 ms; the count and worst.
- outcomes: the task instances' states at the end (``success`` is the trigger's ``TaskSuccessEvent``).

Beside them, benchmark 1 (benchmarks/triggerer_density.py, our trigger on a fixed 5 s interval, in
one bare event loop) at the same N, run after this measurement, and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

BENCHMARKS = Path(__file__).resolve().parent
DAGS = BENCHMARKS / "dags"
DAG_ID = "kling_real_triggerer"
TASK_ID = "generate"
PROBE_TASK_ID = "lag_probe"
PROBE_CLASSPATH = "real_triggerer.LoopLagProbe"
API_KEY = "real-triggerer-benchmark-key"
SEED = 11
#: The vendor's job durations, in vendor seconds.
JOB_SECONDS = (60.0, 90.0)
#: The operator's default timeout, and the margin it adds to Airflow's trigger timeout.
WAIT_TIMEOUT = timedelta(minutes=30)
DEFER_SAFETY_MARGIN = timedelta(minutes=5)
#: How often the probe wakes, and the state sampler reads the DB and the runner's RSS.
LAG_TICK = 0.02
SAMPLE_SECONDS = 0.5
#: Submits in flight while the helper defers one batch.
SUBMIT_CONCURRENCY = 32
#: Airflow's watchdog warning in the triggerer's log, after the line's timestamp.
BLOCKED = re.compile(r"^(\S+) .*Triggerer's async thread was blocked for ([0-9.]+) seconds", re.MULTILINE)

#: The issue's targets; reported, never enforced.
RSS_TARGET_BYTES = 10 * 1024
LAG_P99_TARGET_MS = 50.0


class LoopLagProbe(BaseTrigger):
    """Runs in the triggerer beside the waits: notes how late a 20 ms sleep wakes, until a stop file
    appears in ``folder``, then writes its samples there and ends. It imports the provider's trigger,
    hook and aiohttp first, so the RSS baseline includes their code."""

    def __init__(self, folder: str, deadline: float, tick: float = LAG_TICK) -> None:
        super().__init__()
        self.folder = folder
        self.deadline = deadline
        self.tick = tick

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return PROBE_CLASSPATH, {"folder": self.folder, "deadline": self.deadline, "tick": self.tick}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        import aiohttp  # noqa: F401

        import airflow_provider_kling.hooks.kling
        import airflow_provider_kling.triggers.kling  # noqa: F401

        folder = Path(self.folder)
        (folder / "probe-started").write_text(str(os.getpid()))
        samples: list[tuple[float, float]] = []
        stop = folder / "probe-stop"
        while time.time() < self.deadline and not stop.exists():
            due = time.monotonic() + self.tick
            await asyncio.sleep(self.tick)
            samples.append((time.time(), time.monotonic() - due))
        (folder / "probe-lags.json").write_text(json.dumps(samples))
        yield TriggerEvent({"status": "stopped", "ticks": len(samples)})


# -- the helper: the DAG run, and the deferrals, in Airflow's environment ------------------------


def helper(arguments: argparse.Namespace) -> int:
    """Create the DAG run, defer the probe, say so; on "go" defer the N waits over the spread."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunTriggeredByType
    from sqlalchemy import select

    run_id = f"real_triggerer_{time.time_ns()}"
    with create_session() as session:
        trigger_dag(DAG_ID, triggered_by=DagRunTriggeredByType.CLI, run_id=run_id, session=session)
    with create_session() as session:
        rows = session.execute(
            select(TaskInstance.id, TaskInstance.task_id, TaskInstance.map_index).where(
                TaskInstance.dag_id == DAG_ID, TaskInstance.run_id == run_id
            )
        ).all()
        waits = {map_index: str(ti_id) for ti_id, task_id, map_index in rows if task_id == TASK_ID}
        [probe] = [str(ti_id) for ti_id, task_id, _ in rows if task_id == PROBE_TASK_ID]
        probe_trigger = LoopLagProbe(arguments.folder, deadline=time.time() + arguments.deadline)
        defer(session, probe, probe_trigger, {}, WAIT_TIMEOUT)
    say(arguments, {"run_id": run_id, "task_instances": len(waits)})
    if sys.stdin.readline().strip() != "go":
        return 1
    first, last = asyncio.run(defer_waits(waits, arguments))
    say(arguments, {"deferred": len(waits), "first": first, "last": last})
    return 0


def say(arguments: argparse.Namespace, message: dict[str, Any]) -> None:
    """A line to the parent on the report pipe (Airflow may print to stdout)."""
    os.write(arguments.report_fd, (json.dumps(message) + "\n").encode())


def defer(
    session: Any, ti_id: str, trigger: BaseTrigger, next_kwargs: dict[str, Any], timeout: timedelta
) -> None:
    """What the execution API's ti_update_state does with a TIDeferredStatePayload."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger
    from airflow.sdk.serde import serialize
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import update

    classpath, kwargs = trigger.serialize()
    row = Trigger(classpath=classpath, kwargs={}, queue=None, team_name=None)
    row.encrypted_kwargs = json.dumps(serialize(kwargs))  # the Task SDK sends serde's form, stored as JSON
    session.add(row)
    session.flush()
    session.execute(
        update(TaskInstance)
        .where(TaskInstance.id == ti_id)
        .values(
            state=TaskInstanceState.DEFERRED,
            trigger_id=row.id,
            next_method="execute_complete",
            next_kwargs=serialize(next_kwargs),
            trigger_timeout=datetime.now(timezone.utc) + timeout,
        )
    )


async def defer_waits(waits: dict[int, str], arguments: argparse.Namespace) -> tuple[float, float]:
    """Submit each task instance's job and defer it as the operator does, evenly over the spread."""
    import aiohttp
    from airflow.utils.session import create_session

    from airflow_provider_kling.core.dialects import ulazai
    from airflow_provider_kling.core.request import GenerationRequest
    from airflow_provider_kling.core.responses import SubmitResult
    from airflow_provider_kling.core.submission import Submission
    from airflow_provider_kling.triggers.kling import KlingStatusTrigger

    count = len(waits)
    indexes = sorted(waits)
    connector = aiohttp.TCPConnector(limit=SUBMIT_CONCURRENCY)
    async with aiohttp.ClientSession(headers=ulazai.auth_headers(API_KEY), connector=connector) as client:

        async def submit(index: int) -> tuple[int, GenerationRequest, SubmitResult, float]:
            request = GenerationRequest(f"real triggerer benchmark clip {index}")
            async with client.post(
                arguments.emulator + ulazai.SUBMIT_PATH, json=request.to_payload()
            ) as answer:
                submitted = ulazai.read_submit_body(await answer.json(), answer.status)
            return index, request, submitted, time.time()

        started = time.monotonic()
        first = time.time()
        done = 0
        deferred_at: dict[int, float] = {}
        while done < count:
            due = (
                math.ceil(count * (time.monotonic() - started) / arguments.spread)
                if arguments.spread
                else count
            )
            batch = indexes[done : min(count, max(done + 1, due))]
            jobs = await asyncio.gather(*(submit(index) for index in batch))
            with create_session() as session:
                for index, request, submitted, submitted_at in jobs:
                    trigger = KlingStatusTrigger(
                        kling_task_id=submitted.task_id,
                        deadline=submitted_at + WAIT_TIMEOUT.total_seconds(),
                        poll_interval=None,
                        submitted_at=submitted_at,
                        expected_seconds=submitted.estimated_seconds,
                        end_from_trigger=True,  # the operator's default (it pushes XCom, has no outlets)
                        credits_used=submitted.credits_used,
                        credits_remaining=submitted.credits_remaining,
                    )
                    job = Submission.accepted(
                        request.fingerprint(), 0, submitted, submitted_at, paid_before=0
                    )
                    next_kwargs = {"submission": job.to_json()}
                    defer(session, waits[index], trigger, next_kwargs, WAIT_TIMEOUT + DEFER_SAFETY_MARGIN)
            committed = time.time()
            deferred_at.update((index, committed) for index, *_ in jobs)
            done += len(batch)
            if done < count and arguments.spread:
                await asyncio.sleep(max(0.0, started + done * arguments.spread / count - time.monotonic()))
        Path(arguments.folder, "deferred.json").write_text(json.dumps(deferred_at))
        return first, time.time()


# -- the parent: the deployment, the measurement, the table ---------------------------------------


class StateSampler(threading.Thread):
    """Every 0.5 s: the task instances' states (and how many are held by the triggerer) and the RSS
    of the triggerer's processes. Notes the largest runner RSS at the most waits held."""

    def __init__(self, database: Any, run_id: str, runner: int, supervisor: int) -> None:
        super().__init__(daemon=True)
        self.database = database
        self.run_id = run_id
        self.runner = runner
        self.supervisor = supervisor
        self.stopping = threading.Event()
        self.samples: list[dict[str, Any]] = []
        self.error: BaseException | None = None

    def read(self) -> dict[str, Any]:
        from deployment import rss_bytes

        rows = self.database.execute(
            "SELECT ti.state, t.triggerer_id IS NOT NULL, count(*) FROM task_instance ti "
            "LEFT JOIN trigger t ON t.id = ti.trigger_id "
            "WHERE ti.dag_id = %s AND ti.run_id = %s AND ti.task_id = %s GROUP BY 1, 2",
            DAG_ID,
            self.run_id,
            TASK_ID,
        )
        states: Counter[str] = Counter()
        held = 0
        for state, assigned, count in rows:
            states[str(state)] += count
            held += count if state == "deferred" and assigned else 0
        return {
            "at": time.time(),
            "held": held,
            "deferred": states["deferred"],
            "ended": sum(count for state, count in states.items() if state not in ("None", "deferred")),
            "runner_rss": rss_bytes(self.runner),
            "supervisor_rss": rss_bytes(self.supervisor),
        }

    def run(self) -> None:
        try:
            while not self.stopping.wait(SAMPLE_SECONDS):
                self.samples.append(self.read())
        except BaseException as error:  # reported by the measurement, which then stops
            self.error = error

    @property
    def latest(self) -> dict[str, Any]:
        if self.error:
            raise RuntimeError("The state sampler failed") from self.error
        return self.samples[-1] if self.samples else {"held": 0, "deferred": 0, "ended": 0}


def triggerer_processes(supervisor: int, runner: int) -> dict[str, int]:
    """The triggerer's processes by role: the supervisor, its trigger runner (where the probe runs),
    and any other (none with --skip-serve-logs)."""
    from deployment import session_pids

    roles = {"supervisor": supervisor, "runner": runner}
    for pid in session_pids(supervisor):
        if pid not in (supervisor, runner):
            roles[f"other {pid}"] = pid
    return roles


def cpu_of(pids: dict[str, int]) -> dict[str, float]:
    from deployment import cpu_seconds

    return {role: cpu_seconds(pid) or 0.0 for role, pid in pids.items()}


def trigger_starts(home: Path) -> dict[int, float]:
    """When the runner started each wait's trigger (Unix time) by map index, from each trigger's log."""
    starts = {}
    for log in (home / "logs" / f"dag_id={DAG_ID}").glob(f"run_id=*/task_id={TASK_ID}/**/*.trigger.*.log"):
        index = re.search(r"map_index=(\d+)", str(log))
        for line in log.read_text(errors="replace").splitlines():
            if "starting" in line and index:
                stamp = json.loads(line).get("timestamp")
                if stamp:
                    starts[int(index.group(1))] = datetime.fromisoformat(
                        stamp.replace("Z", "+00:00")
                    ).timestamp()
                break
    return starts


def percentile_or_none(values: list[float], share: float) -> float | None:
    from figures import percentile

    return percentile(values, share) if values else None


def measure(arguments: argparse.Namespace, home: Path) -> dict[str, Any]:
    from deployment import (
        Deployment,
        Postgres,
        airflow_env,
        connection_env,
        free_port,
        session_pids,
        stop,
        wait_until,
    )
    from emulator_process import EmulatorProcess

    waits, speed = arguments.waits, arguments.speed
    spread = arguments.spread if arguments.spread is not None else JOB_SECONDS[0] / speed * 2 / 3
    emulator = EmulatorProcess(
        *("--seed", str(SEED), "--api-key", API_KEY, "--speed", f"{speed}", "--job-failure-rate", "0"),
        *("--min-seconds", f"{JOB_SECONDS[0]}", "--max-seconds", f"{JOB_SECONDS[1]}"),
        *("--credits", str(100 * waits)),
    )
    database: Postgres | None = None
    airflow: Deployment | None = None
    deferrer: subprocess.Popen[str] | None = None
    sampler: StateSampler | None = None
    probe_folder = home / "probe"
    probe_folder.mkdir()
    try:
        database = Postgres()
        env = (
            airflow_env(home, DAGS, free_port())
            | connection_env(emulator.url, API_KEY)
            | {
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database.url(),
                "AIRFLOW__TRIGGERER__CAPACITY": str(waits + 1),  # and the probe
                "AIRFLOW__TRIGGERER__MAX_TRIGGER_TO_SELECT_PER_LOOP": str(arguments.select_per_loop),
                "KLING_BENCH_WAITS": str(waits),
                "PYTHONDONTWRITEBYTECODE": "1",  # no __pycache__ in benchmarks/
            }
        )
        airflow = Deployment(home, env)
        setup_started = time.monotonic()
        airflow.cli("db", "migrate")
        airflow.cli("dags", "reserialize")
        report_read, report_write = os.pipe()
        with (home / "deferrer.log").open("w") as deferrer_log:
            deferrer = subprocess.Popen(
                [
                    *(sys.executable, __file__, "--helper", "--waits", str(waits)),
                    *("--spread", f"{spread}", "--emulator", emulator.url, "--folder", str(probe_folder)),
                    *("--deadline", f"{arguments.deadline}", "--report-fd", str(report_write)),
                ],
                env=env,
                stdin=subprocess.PIPE,
                stdout=deferrer_log,
                stderr=subprocess.STDOUT,
                pass_fds=(report_write,),
                text=True,
                start_new_session=True,
            )
        os.close(report_write)
        report = os.fdopen(report_read)
        assert deferrer.stdin is not None
        prepared_line = report.readline()
        if not prepared_line:
            raise SystemExit(f"The deferrer failed:\n{(home / 'deferrer.log').read_text()[-3000:]}")
        prepared = json.loads(prepared_line)
        if prepared["task_instances"] != waits:
            raise SystemExit(f"The DAG run has {prepared['task_instances']} task instances, not {waits}")
        # --skip-serve-logs: Airflow's log server binds every interface (host ""); nothing reads it here.
        airflow.start_airflow("triggerer", "triggerer", "--capacity", str(waits + 1), "--skip-serve-logs")
        triggerer = airflow.processes["triggerer"]
        log = home / "triggerer.log"
        wait_until((probe_folder / "probe-started").exists, 180, "the probe trigger to start", log, triggerer)
        runner = int((probe_folder / "probe-started").read_text())
        setup_seconds = time.monotonic() - setup_started
        time.sleep(3)  # the runner settles with the probe alone
        pids = triggerer_processes(triggerer.pid, runner)
        if runner not in session_pids(triggerer.pid):
            raise SystemExit(f"The probe runs in pid {runner}, not in the triggerer's session: {pids}")
        sampler = StateSampler(database, prepared["run_id"], runner, triggerer.pid)
        baseline = sampler.read()
        cpu_before = cpu_of(pids)
        emulator_before = emulator.stats()["requests"]["status"]
        started = time.time()
        deferrer.stdin.write("go\n")
        deferrer.stdin.flush()
        sampler.start()
        budget = spread + 3 * JOB_SECONDS[1] / speed + arguments.deadline_margin

        def all_ended() -> bool:
            if deferrer.poll() not in (None, 0):  # the waits it failed to defer will never end
                raise SystemExit(f"The deferrer failed:\n{(home / 'deferrer.log').read_text()[-3000:]}")
            return bool(sampler.latest["ended"] >= waits)

        wait_until(all_ended, budget, f"all {waits} waits to end", log, triggerer)
        ended = time.time()
        cpu_after = cpu_of(pids)
        emulator_stats = emulator.stats()
        deferred = json.loads(report.readline() or "{}")
        report.close()
        deferrer.wait(timeout=60)
        (probe_folder / "probe-stop").write_text("stop")
        wait_until((probe_folder / "probe-lags.json").exists, 60, "the probe's samples", log, triggerer)
        time.sleep(2 * SAMPLE_SECONDS)
        sampler.stopping.set()
        sampler.join()
        outcomes = dict(
            database.execute(
                "SELECT coalesce(state, 'none'), count(*) FROM task_instance "
                "WHERE dag_id = %s AND run_id = %s AND task_id = %s GROUP BY 1",
                DAG_ID,
                prepared["run_id"],
                TASK_ID,
            )
        )
        stop(triggerer)
        jobs = emulator.jobs()
    finally:
        if sampler is not None:
            sampler.stopping.set()
        if deferrer is not None:
            stop(deferrer)
        if airflow is not None:
            airflow.stop()
        if database is not None:
            database.stop()
        emulator.stop()
    probe = [(at, lag * 1000) for at, lag in json.loads((probe_folder / "probe-lags.json").read_text())]
    lags = [lag for at, lag in probe if started <= at <= ended]
    triggerer_log = (home / "triggerer.log").read_text(errors="replace")
    blocked = [
        float(seconds)
        for stamp, seconds in BLOCKED.findall(triggerer_log)
        if started <= datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() <= ended
    ]
    starts = trigger_starts(home)
    deferred_file = probe_folder / "deferred.json"
    deferred_at = (
        {int(i): at for i, at in json.loads(deferred_file.read_text()).items()}
        if deferred_file.exists()
        else {}
    )
    pick_up = [starts[i] - deferred_at[i] for i in starts if i in deferred_at]
    samples = sampler.samples if sampler else []
    peak_held = max((s["held"] for s in samples), default=0)
    at_peak = [
        s["runner_rss"] for s in samples if s["held"] == peak_held and s["ended"] == 0 and s["runner_rss"]
    ]
    parked_rss = max(at_peak) if at_peak else None
    all_held = next(
        (s["at"] for s in samples if s["held"] + s["ended"] >= waits and s["deferred"] + s["ended"] >= waits),
        None,
    )
    cpu = {role: cpu_after[role] - cpu_before[role] for role in pids}
    polls = emulator_stats["requests"]["status"] - emulator_before
    polls_per_job = [len(job["status_polls"]) for job in jobs]
    detection = [
        min(polled for polled in job["status_polls"] if polled >= job["ready_at"]) - job["ready_at"]
        for job in jobs
        if any(polled >= job["ready_at"] for polled in job["status_polls"])
    ]
    total_cpu = sum(cpu.values())
    return {
        "waits": waits,
        "speed": speed,
        "job_seconds": [seconds / speed for seconds in JOB_SECONDS],
        "spread_seconds": spread,
        "select_per_loop": arguments.select_per_loop,
        "setup_seconds": setup_seconds,
        "deferrals": deferred,
        "measured_seconds": ended - started,
        "outcomes": outcomes,
        "all_finished": outcomes.get("success", 0) == waits,
        "jobs_at_emulator": len(jobs),
        "polls": polls,
        "polls_per_job": {
            "min": min(polls_per_job, default=0),
            "max": max(polls_per_job, default=0),
            "mean": sum(polls_per_job) / len(polls_per_job) if polls_per_job else None,
        },
        "peak_polls_per_second": max(
            Counter(int(p) for job in jobs for p in job["status_polls"]).values(), default=0
        ),
        "peak_held": peak_held,
        "all_held_after_seconds": all_held - started if all_held else None,
        "last_deferral_after_seconds": deferred["last"] - started if deferred else None,
        "triggers_started_seen": len(starts),
        "all_started_after_seconds": max(starts.values()) - started if len(starts) == waits else None,
        "pick_up_median_s": percentile_or_none(pick_up, 0.5),
        "pick_up_p99_s": percentile_or_none(pick_up, 0.99),
        "pick_up_max_s": max(pick_up, default=None),
        "cpu_seconds": cpu,
        "cpu_us_per_poll": total_cpu / polls * 1e6 if polls else None,
        "cpu_us_per_poll_by_process": {role: seconds / polls * 1e6 for role, seconds in cpu.items()}
        if polls
        else {},
        "runner_rss_before_bytes": baseline["runner_rss"],
        "runner_rss_parked_bytes": parked_rss,
        "rss_bytes_per_wait": (parked_rss - baseline["runner_rss"]) / peak_held
        if parked_rss and peak_held
        else None,
        "supervisor_rss_before_bytes": baseline["supervisor_rss"],
        "supervisor_rss_max_bytes": max((s["supervisor_rss"] or 0 for s in samples), default=None),
        "lag_samples": len(lags),
        "lag_p50_ms": percentile_or_none(lags, 0.5),
        "lag_p99_ms": percentile_or_none(lags, 0.99),
        "lag_max_ms": max(lags, default=None),
        "blocked_warnings": len(blocked),
        "blocked_worst_seconds": max(blocked, default=None),
        "detection_lag_median_s": percentile_or_none(detection, 0.5),
        "detection_lag_p99_s": percentile_or_none(detection, 0.99),
        "load_average_1min": os.getloadavg()[0],
    }


def density(waits: int, interval: float, home: Path) -> dict[str, Any] | None:
    """Benchmark 1 (our trigger in one bare event loop, fixed interval) at the same N: its kling cell."""
    output = home / "density.json"
    command = [sys.executable, str(BENCHMARKS / "triggerer_density.py"), "--sizes", str(waits)]
    command += ["--interval", f"{interval}", "--cap", "0", "--json", str(output)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        print(f"benchmark 1 failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}", file=sys.stderr)
        return None
    cells = json.loads(output.read_text())["cells"]
    kling: dict[str, Any] = next(cell for cell in cells if cell["variant"] == "kling")
    return kling


def shown(value: float | None, form: str = "{:,.1f}") -> str:
    return "-" if value is None else form.format(value)


def mib(size: float | None) -> str:
    return shown(size / 2**20 if size else None)


def ratio(ours: float | None, theirs: float | None) -> str:
    return f"{ours / theirs:.2f}" if ours is not None and theirs else "-"


def print_report(report: dict[str, Any]) -> None:
    real, beside = report["real"], report.get("benchmark_1")
    print(f"machine: {report['machine']}")
    print(f"command: {report['command']}")
    print(
        f"{real['waits']:,} waits on one `airflow triggerer` (capacity {real['waits'] + 1:,}, "
        f"max_trigger_to_select_per_loop {real['select_per_loop']}), PostgreSQL; jobs of "
        f"{real['job_seconds'][0]:g}-{real['job_seconds'][1]:g} s (60-90 s at speed {real['speed']:g}), "
        f"polled adaptively; deferred evenly over {real['spread_seconds']:.1f} s\n"
    )
    rows = [
        ("task instances ended success", f"{real['outcomes'].get('success', 0):,} / {real['waits']:,}"),
        (
            "other outcomes",
            ", ".join(f"{k} {v}" for k, v in real["outcomes"].items() if k != "success") or "none",
        ),
        ("waits held at once (peak)", f"{real['peak_held']:,}"),
        ("status polls at the emulator", f"{real['polls']:,}"),
        (
            "polls per job min-max (mean)",
            f"{real['polls_per_job']['min']}-{real['polls_per_job']['max']} "
            f"({shown(real['polls_per_job']['mean'], '{:.2f}')})",
        ),
        ("busiest second at the emulator", f"{real['peak_polls_per_second']:,} polls"),
        ("last deferral after, s", shown(real["last_deferral_after_seconds"])),
        ("all N held after, s (DB)", shown(real["all_held_after_seconds"])),
        ("all N started after, s (logs)", shown(real["all_started_after_seconds"])),
        (
            "pick-up per trigger median/p99/max, s",
            f"{shown(real['pick_up_median_s'], '{:.2f}')} / {shown(real['pick_up_p99_s'], '{:.2f}')} / "
            f"{shown(real['pick_up_max_s'], '{:.2f}')}",
        ),
        (
            "detection lag median / p99, s",
            f"{shown(real['detection_lag_median_s'], '{:.2f}')} / "
            f"{shown(real['detection_lag_p99_s'], '{:.2f}')}",
        ),
        (
            "Airflow 'blocked' warnings (worst)",
            f"{real['blocked_warnings']} ({shown(real['blocked_worst_seconds'], '{:.2f} s')})",
        ),
        (
            "runner RSS before / at peak, MiB",
            f"{mib(real['runner_rss_before_bytes'])} / {mib(real['runner_rss_parked_bytes'])}",
        ),
        (
            "supervisor RSS before / max, MiB",
            f"{mib(real['supervisor_rss_before_bytes'])} / {mib(real['supervisor_rss_max_bytes'])}",
        ),
        ("CPU s by process", ", ".join(f"{k} {v:.1f}" for k, v in real["cpu_seconds"].items())),
        ("measured wall time, s", shown(real["measured_seconds"])),
    ]
    for label, text in rows:
        print(f"{label:40} {text}")
    print()
    kling = beside or {}
    print(f"{'':28} {'real triggerer':>15} {'benchmark 1':>12} {'ratio':>6}  target")
    comparisons = [
        ("CPU per poll, us", real["cpu_us_per_poll"], kling.get("cpu_us_per_poll"), ""),
        ("  of it the runner, us", real["cpu_us_per_poll_by_process"].get("runner"), None, ""),
        ("  of it the supervisor, us", real["cpu_us_per_poll_by_process"].get("supervisor"), None, ""),
        (
            "RSS per wait, bytes",
            real["rss_bytes_per_wait"],
            kling.get("rss_bytes_per_wait"),
            f"<= {RSS_TARGET_BYTES:,}: {'met' if report['targets_met']['rss_per_wait'] else 'MISSED'}",
        ),
        ("loop lag p50, ms", real["lag_p50_ms"], None, ""),
        (
            "loop lag p99, ms",
            real["lag_p99_ms"],
            kling.get("lag_p99_ms"),
            f"< {LAG_P99_TARGET_MS:g}: {'met' if report['targets_met']['lag_p99'] else 'MISSED'}",
        ),
        ("loop lag max, ms", real["lag_max_ms"], kling.get("lag_max_ms"), ""),
    ]
    for label, ours, theirs, target in comparisons:
        print(f"{label:28} {shown(ours):>15} {shown(theirs):>12} {ratio(ours, theirs):>6}  {target}")
    every = "met" if report["targets_met"]["all_finished"] else "MISSED"
    print(f"every wait finished: {every}")
    if beside:
        print(
            f"benchmark 1: our trigger in one bare event loop at the same N, a fixed "
            f"{beside['interval']:g} s interval, {beside['polls']:,} polls, {beside['outcomes']}"
        )
    print(f"benchmark wall time: {report['benchmark_seconds']:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waits", type=int, default=2_000, help="task instances deferred at once (N)")
    parser.add_argument(
        "--speed", type=float, default=1, help="how much faster than the vendor's 60-90 s jobs run"
    )
    parser.add_argument(
        "--spread", type=float, help="seconds over which the waits defer (default: 2/3 of the shortest job)"
    )
    parser.add_argument(
        "--select-per-loop", type=int, default=1000,
        help="[triggerer] max_trigger_to_select_per_loop (Airflow's default 50 caps intake near 50 a second)",
    )  # fmt: skip
    parser.add_argument(
        "--deadline-margin", type=float, default=300, help="seconds to wait past the longest job's end"
    )
    parser.add_argument(
        "--density-interval", type=float, default=5.0, help="benchmark 1's poll interval (its default 5 s)"
    )
    parser.add_argument("--no-density", action="store_true", help="do not run benchmark 1 beside")
    parser.add_argument("--keep", type=Path, help="keep the Airflow home (logs) in this new folder")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--helper", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--emulator", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--report-fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, default=3600, help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.helper:
        return helper(arguments)

    from figures import command, machine, publish

    started, about = time.monotonic(), machine()  # the load average at the start
    with tempfile.TemporaryDirectory(prefix="kling-real-triggerer-") as folder:
        home = arguments.keep or Path(folder)
        home.mkdir(parents=True, exist_ok=True)
        real = measure(arguments, home)
        beside = None if arguments.no_density else density(arguments.waits, arguments.density_interval, home)
    report: dict[str, Any] = {
        "machine": about,
        "command": command(),
        "real": real,
        "benchmark_1": beside,
        "targets": {"rss_bytes_per_wait": RSS_TARGET_BYTES, "lag_p99_ms": LAG_P99_TARGET_MS},
        "targets_met": {
            "all_finished": real["all_finished"],
            "rss_per_wait": real["rss_bytes_per_wait"] is not None
            and real["rss_bytes_per_wait"] <= RSS_TARGET_BYTES,
            "lag_p99": real["lag_p99_ms"] is not None and real["lag_p99_ms"] < LAG_P99_TARGET_MS,
        },
        "benchmark_seconds": time.monotonic() - started,
    }
    return publish(report, print_report, arguments.json)


if __name__ == "__main__":
    raise SystemExit(main())
