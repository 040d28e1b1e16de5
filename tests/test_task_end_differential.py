"""The same result whichever process ends the task, on a real Airflow.

Each case of tests/task_end_dags runs twice, its wait ending in the triggerer and on a worker, and
the two runs must leave the same behind (tests/task_end_runs.py). Each case also says where its wait
ended (from the trigger's log), so that a case meant to end in the triggerer cannot pass by ending
on a worker.

The cases run on the Airflow the end-to-end tests share (tests/standalone.py). Listeners are a
setting of the whole deployment: the case with a listener has a deployment and a file of its own
(tests/test_task_end_listener.py).
"""

from __future__ import annotations

import pytest
from standalone import Standalone
from task_end_runs import CONN_ID, compare, run_all

#: The first test waits for its real Airflow to start too: on a machine running two suites at once,
#: that and the test took more than the default 300 s (as in the production-shaped tests).
pytestmark = pytest.mark.timeout(900)

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


@pytest.fixture(scope="module")
def airflow(standalone_airflow: Standalone) -> tuple[Standalone, dict[str, str]]:
    return standalone_airflow, run_all(
        standalone_airflow,
        standalone_airflow.emulators[CONN_ID],
        ENDED_IN_TRIGGERER,
        standalone_airflow.as_user("admin"),
    )


@pytest.mark.parametrize("case", list(ENDED_IN_TRIGGERER))
def test_the_same_result_whichever_process_ends_the_task(
    airflow: tuple[Standalone, dict[str, str]], case: str
) -> None:
    compare(*airflow, case, *ENDED_IN_TRIGGERER[case])
