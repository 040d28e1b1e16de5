"""Test set-up: a throwaway AIRFLOW_HOME (set before Airflow is imported) and the emulator fixtures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
# The helpers the benchmarks and the tests share (a real Airflow deployment, the built wheel).
sys.path.insert(0, str(REPO / "benchmarks"))

from hook_setup import connect  # noqa: E402
from hostile_servers import Answer, ScriptedServer  # noqa: E402

EXAMPLE_DAGS = REPO / "example_dags"
TEST_DAGS = REPO / "tests" / "dags"
LOCAL_BUNDLE = "airflow.dag_processing.bundles.local.LocalDagBundle"

# Never touch the developer's own Airflow: every test session gets its own home and SQLite database.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="kling-tests-airflow-home-")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
    [
        {
            "name": name,
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(path)},
        }
        for name, path in (("kling_examples", EXAMPLE_DAGS), ("kling_test_cases", TEST_DAGS))
    ]
)

pytest_plugins = ["airflow_provider_kling.emulator.pytest_plugin"]

#: The files that take longest, longest first (each waits on a real Airflow it starts; measured with
#: `pytest -n 3 --dist loadfile --durations=0`, their setup, call and teardown times added up). The
#: suite's processes take them first, so that the short files fill the gaps while they wait instead
#: of leaving one of them to end alone. A stale order is only slower, never wrong.
LONGEST_FILES_FIRST = (
    "test_restarts.py",
    "test_production.py",
    "test_end_to_end.py",
    "test_benchmark_rate_limit.py",
    "test_task_end_differential.py",
    "test_readme.py",
    "test_benchmark_worker_slots.py",
    "test_benchmark_real_triggerer.py",
    "test_hostile.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order the files longest first (run with xdist's ``--no-loadscope-reorder``)."""
    rank = {name: place for place, name in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture
def emulator(kling_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The emulator, reached through the ``kling_default`` connection (an ``AIRFLOW_CONN_*`` variable)."""
    connect(monkeypatch, kling_emulator)
    return kling_emulator


@pytest.fixture
def serve() -> Iterator[Callable[..., ScriptedServer]]:
    """Start hostile servers (``serve(answer, host="127.0.0.1")``); all stop when the test ends."""
    servers: list[ScriptedServer] = []

    def start(answer: Answer, host: str = "127.0.0.1") -> ScriptedServer:
        servers.append(ScriptedServer(answer, host))
        return servers[-1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A migrated metadata database, for tests that run DAGs with ``dag.test()``."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, env=os.environ
    )


@pytest.fixture(scope="module")
def example_dagbag() -> Any:
    from dag_runs import DagBag

    return DagBag(str(EXAMPLE_DAGS))


@pytest.fixture(scope="module")
def case_dagbag() -> Any:
    from dag_runs import DagBag

    return DagBag(str(TEST_DAGS))
