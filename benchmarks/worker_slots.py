"""Worker-slot time on a real Airflow: executor-slot seconds per generation, deferrable vs not,
beside a sensor waiting on known jobs and, as the baseline, a task that does nothing.

    python benchmarks/worker_slots.py --generations 8 --slots 4

One `airflow standalone` (SQLite, LocalExecutor with --slots worker processes, its `parallelism`)
and one emulator process. The DAGs in benchmarks/dags/ run one after the other:

- baseline: a trivial ``@task`` that returns at once, mapped --generations times: what a task start
  costs a slot with no work of its own, the floor of anything that runs on a worker at all;
- deferrable and non_deferrable: --generations prompts mapped onto KlingGenerateOperator;
- sensor: --generations KlingStatusSensor tasks (deferrable, start_from_trigger) waiting on jobs
  submitted to the emulator just before, their task_ids in the run's conf.

Every job lasts the same --job-seconds of vendor time, run --speed times faster (and so
announced); the generations poll on the operator's default adaptive schedule. A warm-up run (one
1 s task per worker) goes first: a fresh Airflow's first task starts take seconds longer, a cost a
long-running Airflow paid long ago; the table shows it on its own line.

Worker-slot seconds are measured from the operating system. A LocalExecutor worker titles itself
`airflow worker -- LocalExecutor: <task instance id>` from taking a task off its queue until the
task's supervisor returns, and `... <idle>` otherwise. A thread reads the workers' titles every
50 ms; a task instance's slot-seconds are the sampled time a worker was busy with it. That is all
that keeps the slot from another task: forking the task process, the start call to the api-server,
parsing the DAG, the operator's code, the wait (non-deferrable), reporting the state and the
supervisor's wind-down, once per task process run: once per deferrable generation (submit and
defer; the triggerer ends the task when the video is ready), and not at all for a sensor started
in the triggerer. It excludes time queued for a slot, time deferred in the triggerer, and the
scheduler's latency between a worker going idle and its next task. Each run's edges are uncertain
by up to 50 ms.

The metadata DB's start_date/duration cannot give this: Airflow keeps start_date across a deferral
(execution API `ti_run`), so duration spans the time deferred. Its audit log (table `log`) serves
as the cross-check: the api-server logs `running` when a task process starts its task, and
`deferred`/`success`/`failed` when it reports. Pairing each busy spell with its audit-log segment
splits the slot time into start-up (worker takes the task -> `running`), the time the task
reported running, and wind-down (state reported -> worker idle). The wind-down shows a Task SDK
trait: when a task process's sockets close before its exit can be reaped, the supervisor looks
again only after its select timeout, [workers] min_heartbeat_interval (5 s by default), so some
runs hold their slot ~5 s after the task ended. --min-heartbeat-interval shows its effect.

On 2 cores, task processes starting together also contend with the scheduler, triggerer,
api-server and SQLite for CPU: per-generation seconds are this machine's, not a constant.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests
from deployment import Deployment, airflow_env, answers, connection_env, free_port, wait_until
from emulator_process import EmulatorProcess
from figures import command, machine, publish

from airflow_provider_kling.core.dialects.ulazai import SUBMIT_PATH, auth_headers, read_submit_body
from airflow_provider_kling.core.request import GenerationRequest

DAGS = Path(__file__).resolve().parent / "dags"
MODES = ("deferrable", "non_deferrable", "sensor", "baseline")
#: The task (or tasks, as a LIKE pattern) each mode's DAG runs.
TASKS = {"warm_up": "warm_up", "deferrable": "generate", "non_deferrable": "generate"}
TASKS |= {"sensor": "sense_%", "baseline": "baseline"}
API_KEY = "worker-slot-benchmark-key"
WORKER_TITLE = "airflow worker -- LocalExecutor: "
SEGMENT_ENDS = ("deferred", "success", "failed", "up_for_retry", "up_for_reschedule", "skipped")
#: Airflow's default [workers] min_heartbeat_interval.
DEFAULT_MIN_HEARTBEAT_INTERVAL = 5
#: A deferrable generation's worker-slot seconds at most this many times the baseline task's.
TARGET_RATIO_TO_BASELINE = 1.3
#: (wall-clock time of a sample, seconds since the previous one, ids of the task instances being run)
Sample = tuple[float, float, frozenset[str]]


def normal_id(task_instance_id: str) -> str:
    """SQLite keeps a task instance's UUID as 32 hex digits; the process title has the dashes."""
    return task_instance_id.replace("-", "").lower()


def title(pid: str) -> str:
    """A process's title (setproctitle writes it over the command line); empty once it has ended."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def session_of(pid: str) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])
    except OSError:
        return None


class SlotSampler(threading.Thread):
    """Samples which task instances the LocalExecutor's workers in one session are busy with."""

    def __init__(self, session: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.session = session
        self.interval = interval
        self.samples: list[Sample] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        previous = time.monotonic()
        workers: list[str] = []
        while not self.stopping.wait(self.interval):
            if len(self.samples) % 20 == 0:  # looking through all of /proc each time would cost 5% of a core
                workers = self.worker_pids()
            # A set: a task process just forked shows its worker's title for a moment, and counts once.
            titles = (title(pid) for pid in workers)
            busy = {normal_id(t.removeprefix(WORKER_TITLE)) for t in titles if t.startswith(WORKER_TITLE)}
            busy.discard("<idle>")
            now = time.monotonic()
            self.samples.append((time.time(), now - previous, frozenset(busy)))
            previous = now

    def worker_pids(self) -> list[str]:
        """The standalone's workers: another Airflow on this machine runs in its own session."""
        return [
            pid
            for pid in filter(str.isdigit, os.listdir("/proc"))
            if title(pid).startswith(WORKER_TITLE) and session_of(pid) == self.session
        ]

    def wait_idle(self, seconds: float, log: Path) -> None:
        """Wait until no worker is busy, so a run's wind-down is counted and runs never overlap."""
        seen = len(self.samples)
        wait_until(lambda: len(self.samples) > seen and not self.samples[-1][2], seconds, "idle workers", log)


def busy_spells(samples: list[Sample], ids: set[str]) -> dict[str, list[list[float]]]:
    """Each task instance's spells of keeping a worker busy, as [from, to] wall-clock times.

    A sample credits the time since the previous one, so the spells' lengths add up to the
    sampled slot-seconds exactly.
    """
    spells: dict[str, list[list[float]]] = {}
    previous: frozenset[str] = frozenset()
    for at, seconds, busy in samples:
        for ti in busy & ids:
            if ti in previous:
                spells[ti][-1][1] = at
            else:
                spells.setdefault(ti, []).append([at - seconds, at])
        previous = busy
    return spells


class Airflow(Deployment):
    """``airflow standalone`` on the harness's deployment, and what the benchmark asks of it."""

    @property
    def log(self) -> Path:
        return self.home / "standalone.log"

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.processes["standalone"]

    def run(self, sampler: SlotSampler, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Trigger a run (with ``conf``), wait for it to end and for the workers to go idle; its run_id."""
        # With simple_auth_manager_all_admins the API needs no token.
        answer = self.api(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}}
        )
        answer.raise_for_status()
        run_id = str(answer.json()["dag_run_id"])
        wait_until(lambda: self.run_state(dag_id, run_id) in ("success", "failed"), 600, dag_id, self.log)
        sampler.wait_idle(60, self.log)
        return run_id

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        rows = self.query("SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", dag_id, run_id)
        return rows[0][0] if rows else None

    def slot_time(self, samples: list[Sample], dag_id: str, run_id: str, tasks: str) -> dict[str, Any]:
        """What the run's task instances of ``tasks`` (a task_id, or a LIKE pattern of them) took of
        the workers, and what the audit log says."""
        keys = (dag_id, run_id, tasks)
        where = "dag_id = ? AND run_id = ? AND task_id LIKE ?"
        columns = "id, task_id, map_index, state"
        instances = self.query(f"SELECT {columns} FROM task_instance WHERE {where}", *keys)
        ids = {normal_id(str(ti_id)): (task_id, map_index) for ti_id, task_id, map_index, _ in instances}
        spells = busy_spells(samples, set(ids))
        segments: dict[tuple[str, int], list[tuple[float, float]]] = {}
        started: dict[tuple[str, int], float] = {}
        for task_id, map_index, event, at in self.query(
            "SELECT task_id, map_index, event, (julianday(dttm) - 2440587.5) * 86400 FROM log "
            f"WHERE {where} ORDER BY dttm, id",
            *keys,
        ):
            instance = (task_id, map_index)
            if event == "running":
                started[instance] = at
            elif event in SEGMENT_ENDS and instance in started:
                segments.setdefault(instance, []).append((started.pop(instance), at))
        start_up = reported = wind_down = 0.0
        longest_wind_down = 0.0
        for ti, instance in ids.items():
            spelled, logged = spells.get(ti, []), segments.get(instance, [])
            if len(spelled) != len(logged):
                continue  # not paired: the two counts in the table differ then
            for (busy_from, busy_to), (running, ended) in zip(spelled, logged, strict=True):
                start_up += running - busy_from
                reported += ended - running
                wind_down += busy_to - ended
                longest_wind_down = max(longest_wind_down, busy_to - ended)
        count = len(instances)
        slot_seconds = sum(to - since for ti_spells in spells.values() for since, to in ti_spells)
        [(wall,)] = self.query(
            "SELECT (julianday(end_date) - julianday(start_date)) * 86400 FROM dag_run "
            "WHERE dag_id = ? AND run_id = ?",
            dag_id,
            run_id,
        )
        return {
            "run_state": self.run_state(dag_id, run_id),
            "task_instances": count,
            "succeeded": sum(state == "success" for *_, state in instances),
            "worker_slot_seconds": slot_seconds,
            "worker_slot_seconds_per_task": slot_seconds / count,
            "start_up_seconds_per_task": start_up / count,
            "reported_running_seconds_per_task": reported / count,
            "wind_down_seconds_per_task": wind_down / count,
            "longest_wind_down_seconds": longest_wind_down,
            "task_process_runs_audit_log": sum(map(len, segments.values())),
            "busy_spells_sampled": sum(map(len, spells.values())),
            "peak_slots_busy": max((len(busy & spells.keys()) for *_, busy in samples), default=0),
            "wall_seconds": wall,
            "not_succeeded": self.why_not_succeeded(dag_id, run_id, instances),
        }

    def why_not_succeeded(
        self, dag_id: str, run_id: str, instances: list[tuple[Any, ...]]
    ) -> list[dict[str, Any]]:
        """Each task instance that did not succeed, with the end of its task logs: why a run failed."""
        failed = []
        for _, _, map_index, state in instances:
            if state == "success":
                continue
            folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
            logs = sorted(folder.glob("task_id=*/**/attempt=*.log"))
            if map_index is not None and map_index >= 0:
                logs = [log for log in logs if f"map_index={map_index}" in str(log)] or logs
            tails = {str(log.relative_to(self.home)): log.read_text(errors="replace")[-3000:] for log in logs}
            failed.append({"map_index": map_index, "state": state, "log_tails": tails})
        return failed


def start_airflow(home: Path, emulator_url: str, arguments: argparse.Namespace) -> Airflow:
    env = (
        airflow_env(home, DAGS, free_port())
        | connection_env(emulator_url, API_KEY)
        | {
            "PYTHONDONTWRITEBYTECODE": "1",  # no __pycache__ in benchmarks/dags
            "AIRFLOW__CORE__PARALLELISM": str(arguments.slots),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "KLING_BENCH_GENERATIONS": str(arguments.generations),
            "KLING_BENCH_SLOTS": str(arguments.slots),
        }
    )
    if arguments.min_heartbeat_interval is not None:
        env["AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL"] = str(arguments.min_heartbeat_interval)
    airflow = Airflow(home, env)
    airflow.start_airflow("standalone", "standalone")
    return airflow


def submit_jobs(emulator: EmulatorProcess, count: int) -> list[str]:
    """Jobs for the sensors to wait on, submitted as any client would."""
    task_ids = []
    for index in range(count):
        answer = requests.post(
            f"{emulator.url}{SUBMIT_PATH}",
            json=GenerationRequest(f"worker-slot benchmark sensed clip {index}").to_payload(),
            headers=auth_headers(API_KEY),
            timeout=30,
        )
        answer.raise_for_status()
        task_ids.append(read_submit_body(answer.json()).task_id)
    return task_ids


def benchmark(arguments: argparse.Namespace) -> dict[str, Any]:
    dag_ids = {mode: f"kling_worker_slots_{mode}" for mode in ("warm_up", *MODES)}  # warm-up first
    with tempfile.TemporaryDirectory(prefix="kling-worker-slots-") as folder:
        home = Path(folder)
        job_seconds = str(arguments.job_seconds)
        emulator = EmulatorProcess(
            *("--seed", "7", "--speed", str(arguments.speed), "--api-key", API_KEY, "--credits", "100000000"),
            *("--min-seconds", job_seconds, "--max-seconds", job_seconds),
        )
        airflow = None
        sampler = None
        try:
            airflow = start_airflow(home, emulator.url, arguments)
            health = f"{airflow.api_url}/api/v2/monitor/health"
            wait_until(lambda: answers(health), 240, "the api-server to answer", airflow.log, airflow.process)
            registered = f"SELECT 1 FROM dag WHERE dag_id IN ({', '.join('?' * len(dag_ids))})"
            wait_until(
                lambda: len(airflow.query(registered, *dag_ids.values())) == len(dag_ids),
                180,
                "the dag-processor to register the DAGs",
                airflow.log,
            )
            sampler = SlotSampler(session=airflow.process.pid)
            sampler.start()
            runs = {}
            jobs = {}
            for mode, dag_id in dag_ids.items():
                sensed = submit_jobs(emulator, arguments.generations) if mode == "sensor" else None
                conf = {"task_ids": sensed} if sensed else None
                jobs_before = len(emulator.control("/_emulator/jobs"))
                runs[mode] = airflow.run(sampler, dag_id, conf)
                jobs[mode] = emulator.control("/_emulator/jobs")[jobs_before:]
            sampler.stopping.set()
            sampler.join()
            samples = sampler.samples
            warm_up = airflow.slot_time(samples, dag_ids["warm_up"], runs["warm_up"], TASKS["warm_up"])
            modes = {
                mode: airflow.slot_time(samples, dag_ids[mode], runs[mode], TASKS[mode])
                | {
                    "jobs_created": len(jobs[mode]),
                    "distinct_prompts_submitted": len({job["request"]["prompt"] for job in jobs[mode]}),
                }
                for mode in MODES
            }
        finally:
            if sampler is not None:
                sampler.stopping.set()
            if airflow is not None:
                airflow.stop()
            emulator.stop()
    measured = sum(seconds * len(busy) for _, seconds, busy in samples)
    attributed = sum(figures["worker_slot_seconds"] for figures in (warm_up, *modes.values()))
    return {
        "settings": {
            "generations": arguments.generations,
            "slots": arguments.slots,
            "job_seconds": arguments.job_seconds / arguments.speed,
            "min_heartbeat_interval_seconds": arguments.min_heartbeat_interval
            or DEFAULT_MIN_HEARTBEAT_INTERVAL,
            "sample_interval_seconds": sampler.interval,
        },
        "warm_up": warm_up,
        "modes": modes,
        "unattributed_worker_seconds": measured - attributed,
        "ratio_non_deferrable_to_deferrable": modes["non_deferrable"]["worker_slot_seconds_per_task"]
        / modes["deferrable"]["worker_slot_seconds_per_task"],
        "ratio_deferrable_to_baseline": modes["deferrable"]["worker_slot_seconds_per_task"]
        / modes["baseline"]["worker_slot_seconds_per_task"],
    }


ROWS = (
    ("run state", "run_state", "{}"),
    ("tasks (succeeded)", "succeeded", "{}"),
    ("jobs created at the emulator", "jobs_created", "{}"),
    ("distinct prompts submitted", "distinct_prompts_submitted", "{}"),
    ("worker-slot s, total", "worker_slot_seconds", "{:.1f}"),
    ("worker-slot s / task", "worker_slot_seconds_per_task", "{:.2f}"),
    ("  start-up: taken -> running", "start_up_seconds_per_task", "{:.2f}"),
    ("  task reported running", "reported_running_seconds_per_task", "{:.2f}"),
    ("  wind-down: reported -> idle", "wind_down_seconds_per_task", "{:.2f}"),
    ("longest wind-down, s", "longest_wind_down_seconds", "{:.2f}"),
    ("task process runs (audit log)", "task_process_runs_audit_log", "{}"),
    ("busy spells (sampled)", "busy_spells_sampled", "{}"),
    ("peak slots busy", "peak_slots_busy", "{}"),
    ("run wall time, s", "wall_seconds", "{:.1f}"),
)


def print_report(report: dict[str, Any]) -> None:
    settings, modes, warm_up = report["settings"], report["modes"], report["warm_up"]
    print(f"machine: {report['machine']}")
    print(f"command: {report['command']}")
    print(
        f"{settings['generations']} generations, {settings['slots']} executor slots, jobs of "
        f"{settings['job_seconds']:.1f} s, polled adaptively, "
        f"[workers] min_heartbeat_interval {settings['min_heartbeat_interval_seconds']:g} s\n"
    )
    print(f"{'':34} " + " ".join(f"{mode.replace('_', '-'):>14}" for mode in MODES))
    for label, key, form in ROWS:
        print(f"{label:34} " + " ".join(f"{form.format(modes[mode][key]):>14}" for mode in MODES))
    ratio = report["ratio_non_deferrable_to_deferrable"]
    print(f"\nratio non-deferrable / deferrable, slot s per generation: {ratio:.1f}")
    to_baseline = report["ratio_deferrable_to_baseline"]
    verdict = "met" if to_baseline <= TARGET_RATIO_TO_BASELINE else "MISSED"
    print(
        f"ratio deferrable / baseline task, slot s per task: {to_baseline:.2f} "
        f"(target at most {TARGET_RATIO_TO_BASELINE}: {verdict})"
    )
    print(
        f"warm-up before them ({warm_up['task_instances']} x a 1 s task, cold api-server and workers): "
        f"{warm_up['worker_slot_seconds_per_task']:.2f} s of slot per task, "
        f"{warm_up['start_up_seconds_per_task']:.2f} s of it start-up"
    )
    print(f"worker-busy seconds on no task of these runs: {report['unattributed_worker_seconds']:.2f}")
    print(f"benchmark wall time: {report['benchmark_seconds']:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=8, help="mapped generations per DAG run")
    parser.add_argument("--slots", type=int, default=4, help="LocalExecutor worker processes (parallelism)")
    parser.add_argument("--speed", type=float, default=6, help="how much faster than the vendor's jobs run")
    parser.add_argument("--job-seconds", type=float, default=75, help="every job's length in vendor time")
    parser.add_argument(
        "--min-heartbeat-interval",
        type=float,
        help="Airflow's [workers] min_heartbeat_interval, which bounds a worker's wind-down stall "
        f"(default: Airflow's {DEFAULT_MIN_HEARTBEAT_INTERVAL} s)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    arguments = parser.parse_args(argv)
    started = time.monotonic()
    report = benchmark(arguments)
    report["benchmark_seconds"] = time.monotonic() - started
    report["machine"], report["command"] = machine(), command()
    return publish(report, print_report, arguments.json)


if __name__ == "__main__":
    raise SystemExit(main())
