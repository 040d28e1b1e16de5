"""Running the task-end cases (tests/task_end_dags) on a real Airflow and comparing what their two runs
left behind: the helpers of tests/test_task_end_differential.py and tests/test_task_end_listener.py.

Each case runs twice: its Kling wait ending where the triggerer may end it (``<case>_triggerer``),
and ending on a worker (``<case>_worker``). Everything the two runs leave behind must be the same:
task states and rendered map indexes, XComs (as stored), task map rows, asset events, and what
callbacks and listeners were told; only the vendor's job ids and the account's balance differ.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable
from typing import Any

import requests
from dag_runs import task_logs_of
from deployment import Deployment, wait_until
from emulator_process import EmulatorProcess

#: The connection the cases' DAGs use.
CONN_ID = "kling_task_end"
#: More jobs than the cases make: every one is held until all are released.
EVERY_JOB = 1000
#: The states of a task instance that has ended, for now or for good.
ENDED = ("success", "failed", "skipped", "upstream_failed", "up_for_retry")
#: What the trigger logs when it ends the task itself.
ENDED_HERE = "(the task ends in the triggerer)"


def run_all(
    airflow: Deployment, emulator: EmulatorProcess, cases: dict[str, Any], token: str
) -> dict[str, str]:
    """Unpause and trigger both runs of every case at once (as the holder of ``token``); the run ids
    by DAG id, once every run has ended.

    ``emulator``'s jobs run until the scheduler has read how every deferred task's process ended.
    Airflow 3.3.2 fails a task that is already running again on a worker when the scheduler reads
    only then that its deferring process ended (apache/airflow#72716): a loaded machine's scheduler,
    25 s behind, did so in a load run.
    """
    dag_ids = [f"{case}_{where}" for case in cases for where in ("triggerer", "worker")]
    marks = ", ".join("?" * len(dag_ids))
    wait_until(
        lambda: (
            len(airflow.query(f"SELECT dag_id FROM dag WHERE dag_id IN ({marks})", *dag_ids)) == len(dag_ids)
        ),
        180,
        "the dag-processor to register the cases",
        airflow.home / "dag-processor.log",
    )
    for dag_id in dag_ids:
        unpaused = airflow.api("PATCH", f"/api/v2/dags/{dag_id}", token, json={"is_paused": False})
        assert unpaused.status_code == 200, unpaused.text
    emulator.control("/_emulator/hold", "POST", {"count": EVERY_JOB})
    runs = {dag_id: trigger_once(airflow, token, dag_id) for dag_id in dag_ids}
    waits = {f"{case}_triggerer": task_id for case, (task_id, _) in cases.items()}

    def all_deferrals_read() -> bool:
        scheduler_log = functools.cache(lambda: (airflow.home / "scheduler.log").read_text(errors="replace"))
        return all(
            deferral_read(airflow, dag, runs[dag], task_id, scheduler_log) for dag, task_id in waits.items()
        )

    wait_until(
        all_deferrals_read,
        420,
        "every wait to defer, and the scheduler to read how its process ended",
        airflow.home / "scheduler.log",
    )
    emulator.control("/_emulator/release", "POST", {})

    def all_ended() -> bool:
        states = [run_state(airflow, dag_id, run_id) for dag_id, run_id in runs.items()]
        return all(state in ("success", "failed") for state in states)

    wait_until(all_ended, 420, "every run to end", airflow.home / "scheduler.log")
    return runs


def deferral_read(
    airflow: Deployment, dag_id: str, run_id: str, task_id: str, scheduler_log: Callable[[], str]
) -> bool:
    """Whether every instance of the task is deferred, and the scheduler has read how the process of
    each that deferred on a worker ended (one started in the triggerer has no such process); or
    whether one has ended without deferring, which the comparison then shows. ``scheduler_log`` gives
    the scheduler's log, read once for all the tasks asked about together."""
    instances = airflow.query(
        "SELECT map_index, state, hostname FROM task_instance"
        " WHERE dag_id = ? AND run_id = ? AND task_id = ?",
        dag_id,
        run_id,
        task_id,
    )
    if any(state in ENDED for _, state, _ in instances):
        return True
    if not instances or any(state != "deferred" for _, state, _ in instances):
        return False
    return all(
        re.search(
            rf"TaskInstance Finished: dag_id={dag_id}, task_id={task_id}, run_id={re.escape(run_id)}, "
            rf"map_index={map_index}, .*\bstate=deferred, executor=",
            scheduler_log(),
        )
        for map_index, _, hostname in instances
        if hostname
    )


def trigger_once(airflow: Deployment, token: str, dag_id: str) -> str:
    """Trigger one run of ``dag_id``; its run_id. SQLite, written by every component at once, can
    refuse the api-server's write on a busy machine ("database is locked", a 500), or hold it past
    the request's time: then the run is looked for, and triggered again only if it does not exist."""
    said = "no answer"
    for _ in range(5):
        try:
            answer = airflow.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", token, json={"logical_date": None})
        except requests.Timeout as timed_out:
            said = str(timed_out)
        else:
            if answer.status_code == 200:
                return str(answer.json()["dag_run_id"])
            said = f"HTTP {answer.status_code}: {answer.text}"
        if existing := airflow.query("SELECT run_id FROM dag_run WHERE dag_id = ?", dag_id):
            return str(existing[0][0])
        time.sleep(1)
    raise AssertionError(f"Could not trigger {dag_id}: {said}")


def run_state(airflow: Deployment, dag_id: str, run_id: str) -> str | None:
    rows = airflow.query("SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", dag_id, run_id)
    return rows[0][0] if rows else None


def anonymous(value: Any, jobs: set[str], balances: set[int]) -> Any:
    """``value`` with what differs between two jobs of one request left out: the vendor's job ids
    (in any string) and the account's balance after each submit."""
    if isinstance(value, dict):
        return {key: anonymous(item, jobs, balances) for key, item in value.items()}
    if isinstance(value, list):
        return [anonymous(item, jobs, balances) for item in value]
    if isinstance(value, str) and jobs:
        return re.sub("|".join(map(re.escape, jobs)), "<job>", value)
    if isinstance(value, int) and not isinstance(value, bool) and value in balances:
        return "<balance>"
    return value


def stored(column: Any) -> Any:
    """A JSON column's value as SQLite returns it (its text, or a number as a number)."""
    return json.loads(column) if isinstance(column, (str, bytes)) else column


def records(airflow: Deployment, kind: str, dag_id: str) -> list[dict[str, Any]]:
    """What callbacks or listeners recorded of ``dag_id``'s tasks, in a stable order."""
    path = airflow.home / "records" / f"{kind}.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    entries = [json.loads(line) for line in lines]
    kept = [
        {k: v for k, v in entry.items() if k != "dag_id"} for entry in entries if entry["dag_id"] == dag_id
    ]
    return sorted(kept, key=json.dumps)


def what_the_run_left(airflow: Deployment, dag_id: str, run_id: str) -> dict[str, Any]:
    """Everything of one run a user or a downstream task can see, with job ids left out."""
    where = "dag_id = ? AND run_id = ?"
    xcoms = airflow.query(f"SELECT task_id, map_index, key, value FROM xcom WHERE {where}", dag_id, run_id)
    jobs = {stored(value) for _, _, key, value in xcoms if key == "task_id"}
    results = [stored(value) for _, _, key, value in xcoms if key == "return_value"]
    balances = {result.get("credits_remaining") for result in results if isinstance(result, dict)} - {None}
    events = airflow.query(
        "SELECT asset.uri, source_task_id, source_map_index, asset_event.extra FROM asset_event "
        "JOIN asset ON asset.id = asset_event.asset_id WHERE source_dag_id = ? AND source_run_id = ?",
        dag_id,
        run_id,
    )
    return {
        "run": run_state(airflow, dag_id, run_id),
        "tasks": sorted(
            airflow.query(
                f"SELECT task_id, map_index, state, rendered_map_index FROM task_instance WHERE {where}",
                dag_id,
                run_id,
            )
        ),
        "xcoms": sorted(
            (task, index, key, json.dumps(anonymous(stored(value), jobs, balances)))
            for task, index, key, value in xcoms
        ),
        "task_map": sorted(
            airflow.query(
                f"SELECT task_id, map_index, length, keys FROM task_map WHERE {where}", dag_id, run_id
            )
        ),
        "asset_events": sorted(
            (uri, task, index, json.dumps(anonymous(stored(extra), jobs, balances)))
            for uri, task, index, extra in events
        ),
        "callbacks": records(airflow, "callbacks", dag_id),
        "listener": records(airflow, "listener", dag_id),
    }


def ended_in_triggerer(airflow: Deployment, dag_id: str, run_id: str, task_id: str) -> int:
    """How many of the task's instances (map indexes) its trigger ended, as the trigger logs say."""
    folder = airflow.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    logs = [path.read_text(errors="replace") for path in folder.glob("**/*.trigger.*.log")]
    return sum(log.count(ENDED_HERE) for log in logs)


def compare(airflow: Deployment, runs: dict[str, str], case: str, task_id: str, ended_here: int) -> None:
    """Both runs of ``case`` left the same behind, and the triggerer's ended where it should."""
    by_triggerer, on_worker = f"{case}_triggerer", f"{case}_worker"
    ended_by_triggerer = what_the_run_left(airflow, by_triggerer, runs[by_triggerer])
    ended_on_worker = what_the_run_left(airflow, on_worker, runs[on_worker])
    assert ended_on_worker["run"] == "success", task_logs_of(airflow.home, on_worker, runs[on_worker])
    for part, expected in ended_on_worker.items():
        found = ended_by_triggerer[part]
        if isinstance(expected, list):
            only_triggerer = [item for item in found if item not in expected]
            only_worker = [item for item in expected if item not in found]
            difference = (
                f"only where the triggerer ended it: {only_triggerer}; only on a worker: {only_worker}"
            )
        else:
            difference = f"{found!r} where the triggerer ended it, {expected!r} on a worker"
        assert found == expected, f"{case}: the runs' {part} differ: {difference}"
    assert ended_in_triggerer(airflow, by_triggerer, runs[by_triggerer], task_id) == ended_here, task_logs_of(
        airflow.home, by_triggerer, runs[by_triggerer]
    )
