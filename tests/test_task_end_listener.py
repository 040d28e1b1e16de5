"""With a listener plugin, a generation ends on a worker, and the listener hears of it.

Listeners are a setting of the whole deployment, so this case has a real Airflow of its own, with
the listener plugin of tests/task_end_plugins, and a file of its own, so that it runs beside the
files on the shared Airflow. Its two runs must leave the same behind (tests/task_end_runs.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from deployment import Deployment, airflow_env, connection_env, free_port
from emulator_process import EmulatorProcess
from task_end_runs import CONN_ID, compare, records, run_all

TESTS = Path(__file__).resolve().parent
DAGS = TESTS / "task_end_dags"
API_KEY = "task-end-listener-key"

#: The first test waits for its real Airflow to start too: on a machine running two suites at once,
#: that and the test took more than the default 300 s (as in the production-shaped tests).
pytestmark = pytest.mark.timeout(900)
ADMIN_PASSWORD = "task-end-admin"
LISTENED = {"plain": ("generate", 0)}  # a listener is told of each task's success on a worker


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


@pytest.fixture(scope="module")
def listening_airflow(
    listener_emulator: EmulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Deployment, dict[str, str]]]:
    running = listening_deployment(tmp_path_factory.mktemp("task-end-listening-airflow"), listener_emulator)
    try:
        yield running, run_all(running, listener_emulator, LISTENED, running.token("admin", ADMIN_PASSWORD))
    finally:
        running.stop()


def test_with_a_listener_the_generation_ends_on_a_worker_and_the_listener_hears_of_it(
    listening_airflow: tuple[Deployment, dict[str, str]],
) -> None:
    compare(*listening_airflow, "plain", *LISTENED["plain"])
    deployed, _ = listening_airflow
    assert {"task_id": "generate", "map_index": -1} in records(deployed, "listener", "plain_triggerer")
