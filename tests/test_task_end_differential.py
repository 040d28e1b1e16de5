"""The same result whichever process ends the task, on a real Airflow.

Each case of tests/task_end_dags runs twice: its Kling wait ending where the triggerer may end it,
and ending on a worker. Everything the two runs leave behind must be the same: task states and
rendered map indexes, XComs (as stored), task map rows, asset events, and what callbacks and
listeners were told; only the vendor's job ids and the account's balance differ. Each case also
says where its wait ended (from the trigger's log), so that a case meant to end in the triggerer
cannot pass by ending on a worker.

The cases run on the Airflow the end-to-end tests share (tests/standalone.py). Listeners are a
setting of the whole deployment, so one of its own, with a listener plugin, runs the ``plain`` case.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dag_runs import task_logs_of
from deployment import Deployment, airflow_env, connection_env, free_port, wait_until
from emulator_process import EmulatorProcess
from standalone import Standalone

TESTS = Path(__file__).resolve().parent
DAGS = TESTS / "task_end_dags"
API_KEY = "task-end-differential-key"
ADMIN_PASSWORD = "task-end-admin"
#: The connection the cases' DAGs use.
CONN_ID = "kling_task_end"
#: How many of each case's waiting task instances (map indexes) the triggerer ended in the
#: ``_triggerer`` run; the others went back to a worker (task_end.WORKER_END says why).
ENDED_IN_TRIGGERER = {
    "multiple_outputs": ("generate", 1),
    "key_access": ("generate", 1),
    "expand": ("generate", 0),  # the worker records the task map the downstream maps over
    "map_result": ("generate", 2),  # a mapped task's downstream maps over its map indexes
    "mapped_generations": ("generate", 2),
    "labelled_generations": ("generate", 0),  # the map index is rendered again after execution
    "callback": ("generate", 0),
    "outlets": ("generate", 0),
    "sensor_multiple_outputs": ("wait", 1),
    "sensor_expand": ("wait", 0),
}
LISTENED = {"plain": ("generate", 0)}  # a listener is told of each task's success on a worker
#: What the trigger logs when it ends the task itself.
ENDED_HERE = "(the task ends in the triggerer)"


@pytest.fixture(scope="module")
def listener_emulator() -> Iterator[EmulatorProcess]:
    """The listening deployment's emulator (the shared one has its own), as slow as the shared one's
    and for the same reason (tests/standalone.py): its task resumes on a worker."""
    with EmulatorProcess("--speed", "4", "--api-key", API_KEY) as running:
        yield running


def listening_deployment(home: Path, emulator: EmulatorProcess) -> Deployment:
    """Airflow's components, each a process, running tests/task_end_dags against ``emulator``, with
    the listener plugin of tests/task_end_plugins."""
    (home / "records").mkdir()
    (home / "passwords.json").write_text(json.dumps({"admin": ADMIN_PASSWORD}))
    env = airflow_env(home, DAGS, free_port()) | connection_env(emulator.url, API_KEY, CONN_ID)
    env |= {
        "KLING_TASK_END_RECORDS": str(home / "records"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(TESTS / "task_end_plugins"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
    }
    airflow = Deployment(home, env)
    airflow.cli("db", "migrate")
    for component in ("api-server", "scheduler", "dag-processor", "triggerer"):
        airflow.start_airflow(component, component)
    airflow.wait_for_api()
    return airflow


def run_all(airflow: Deployment, cases: dict[str, Any], token: str) -> dict[str, str]:
    """Unpause and trigger both runs of every case at once (as the holder of ``token``); the run ids
    by DAG id, once every run has ended."""
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
    runs = {dag_id: trigger_once(airflow, token, dag_id) for dag_id in dag_ids}

    def all_ended() -> bool:
        states = [run_state(airflow, dag_id, run_id) for dag_id, run_id in runs.items()]
        return all(state in ("success", "failed") for state in states)

    wait_until(all_ended, 420, "every run to end", airflow.home / "scheduler.log")
    return runs


def trigger_once(airflow: Deployment, token: str, dag_id: str) -> str:
    """Trigger one run of ``dag_id``; its run_id. SQLite, written by every component at once, can
    refuse the api-server's write on a busy machine ("database is locked", a 500): then the run is
    looked for, and triggered again only if it does not exist."""
    for _ in range(5):
        answer = airflow.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", token, json={"logical_date": None})
        if answer.status_code == 200:
            return str(answer.json()["dag_run_id"])
        if existing := airflow.query("SELECT run_id FROM dag_run WHERE dag_id = ?", dag_id):
            return str(existing[0][0])
        time.sleep(1)
    raise AssertionError(f"Could not trigger {dag_id}: HTTP {answer.status_code}: {answer.text}")


def run_state(airflow: Deployment, dag_id: str, run_id: str) -> str | None:
    rows = airflow.query("SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", dag_id, run_id)
    return rows[0][0] if rows else None


@pytest.fixture(scope="module")
def airflow(standalone_airflow: Standalone) -> tuple[Deployment, dict[str, str]]:
    return standalone_airflow, run_all(
        standalone_airflow, ENDED_IN_TRIGGERER, standalone_airflow.as_user("admin")
    )


@pytest.fixture(scope="module")
def listening_airflow(
    listener_emulator: EmulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Deployment, dict[str, str]]]:
    running = listening_deployment(tmp_path_factory.mktemp("task-end-listening-airflow"), listener_emulator)
    try:
        yield running, run_all(running, LISTENED, running.token("admin", ADMIN_PASSWORD))
    finally:
        running.stop()


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


@pytest.mark.parametrize("case", list(ENDED_IN_TRIGGERER))
def test_the_same_result_whichever_process_ends_the_task(
    airflow: tuple[Deployment, dict[str, str]], case: str
) -> None:
    compare(*airflow, case, *ENDED_IN_TRIGGERER[case])


def test_with_a_listener_the_generation_ends_on_a_worker_and_the_listener_hears_of_it(
    listening_airflow: tuple[Deployment, dict[str, str]],
) -> None:
    compare(*listening_airflow, "plain", *LISTENED["plain"])
    deployed, _ = listening_airflow
    assert {"task_id": "generate", "map_index": -1} in records(deployed, "listener", "plain_triggerer")
