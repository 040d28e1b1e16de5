"""Test set-up: a throwaway AIRFLOW_HOME (set before Airflow is imported) and the emulator fixtures."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
# The helpers the benchmarks and the tests share (a real Airflow deployment, the built wheel).
sys.path.insert(0, str(REPO / "benchmarks"))

from hook_setup import connect  # noqa: E402
from hostile_servers import Answer, ScriptedServer  # noqa: E402
from standalone import Standalone, StatsdListener, bundle_config, started  # noqa: E402

EXAMPLE_DAGS = REPO / "example_dags"
TEST_DAGS = REPO / "tests" / "dags"

# Never touch the developer's own Airflow: every test session gets its own home and SQLite database.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="kling-tests-airflow-home-")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = bundle_config(
    {"kling_examples": EXAMPLE_DAGS, "kling_test_cases": TEST_DAGS}
)

pytest_plugins = ["airflow_provider_kling.emulator.pytest_plugin"]

#: The files whose tests use the real Airflow they share (``standalone_airflow``): one test process
#: runs them all, so that it starts once.
SHARED_AIRFLOW_FILES = ("test_end_to_end.py", "test_task_end_differential.py")

#: The files that take longest, most of it waiting on a real Airflow and the emulator's jobs, longest
#: first (seconds each, about, on the 2-core machine): test processes start them before the rest,
#: so that their waits overlap the other files' work instead of ending the run alone.
LONGEST_FIRST = (
    "test_production.py",  # 390, both APIs
    "test_restarts.py",  # 350, both APIs
    "standalone_airflow",  # 250, SHARED_AIRFLOW_FILES
    "test_benchmark_rate_limit.py",  # 180
    "test_task_end_listener.py",  # 100
    "test_benchmark_real_triggerer.py",  # 95
    "test_benchmark_worker_slots.py",  # 85
    "test_readme.py",  # 80
    "test_release.py",  # 70, on Airflow 3.3.2 only
    "test_hostile.py",  # 65
    "test_lineage.py",  # 60 on Airflow 3.3.2, 35 on 3.1.8
    "test_operator.py",  # 45
    "test_operator_state.py",  # 45
    "test_example_dags.py",  # 35
    "test_benchmark_density.py",  # 35
    "test_soak.py",  # 25
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse a test on the shared Airflow in a file not listed with those that share it: it would
    start a second one in another test process. Leave out the runs of a test on both APIs
    (``both_apis``) for an API its ``only_on`` marker does not name."""
    kept = [item for item in items if api_fits(item)]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept
    for item in items:
        if (
            "standalone_airflow" in getattr(item, "fixturenames", ())
            and item.path.name not in SHARED_AIRFLOW_FILES
        ):
            raise pytest.UsageError(
                f"{item.nodeid} uses standalone_airflow: add its file to SHARED_AIRFLOW_FILES"
            )


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With ``--dist loadfile``: each file whole in one test process, and the files on the shared
    Airflow together in one. (xdist's own ``loadgroup`` cannot do it on pytest 9.2: it renames test
    ids through an attribute pytest no longer reads.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class FilesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "standalone_airflow" if Path(path).name in SHARED_AIRFLOW_FILES else path

        def _assign_work_unit(self, node: Any) -> None:
            # Before the first assignment, the files that wait longest go to the front.
            if not getattr(self, "_longest_first", False):
                rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
                order = sorted(self.workqueue, key=lambda scope: rank.get(Path(scope).name, len(rank)))
                self.workqueue = OrderedDict((scope, self.workqueue[scope]) for scope in order)
                self._longest_first = True
            super()._assign_work_unit(node)

    return FilesTogether(config, log)


def api_fits(item: pytest.Item) -> bool:
    """Whether a test's run is for an API its ``only_on`` marker names (any, without one)."""
    marker = item.get_closest_marker("only_on")
    callspec = getattr(item, "callspec", None)
    if marker is None or callspec is None or "api" not in callspec.params:
        return True
    return callspec.params["api"] in marker.args


@pytest.fixture(autouse=True)
def api(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The API the test's emulator speaks: each of them in a file marked ``both_apis``, else UlazAI's.
    A request the test makes without naming an API is for this one, as the operator's requests are
    for the connection's."""
    from airflow_provider_kling.core.request import GenerationRequest

    name: str = getattr(request, "param", "ulazai")
    monkeypatch.setitem(GenerationRequest.__init__.__kwdefaults__, "api", name)
    return name


@pytest.fixture
def kling_emulator(kling_emulator_factory: Any, api: str) -> Any:
    """The plugin's emulator (a job takes 1-1.5 s), speaking the test's API."""
    return kling_emulator_factory(api=api)


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
def statsd() -> Iterator[StatsdListener]:
    """A StatsD server on loopback: what the shared Airflow's components send it."""
    listener = StatsdListener()
    yield listener
    listener.close()


@pytest.fixture(scope="session")
def standalone_airflow(
    statsd: StatsdListener, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Standalone]:
    """The real Airflow the end-to-end tests share (tests/standalone.py), started once a test process."""
    with started(tmp_path_factory.mktemp("standalone-airflow"), statsd.port) as airflow:
        yield airflow


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A migrated metadata database, for tests that run DAGs with ``dag.test()``."""
    reuse_the_in_process_api()
    migrate = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, env=os.environ
    )
    assert migrate.returncode == 0, (
        f"airflow db migrate exited {migrate.returncode}:\n{migrate.stdout[-3000:]}\n{migrate.stderr[-3000:]}"
    )


@pytest.fixture(scope="module")
def example_dagbag() -> Any:
    from dag_runs import DagBag

    return DagBag(str(EXAMPLE_DAGS))


@pytest.fixture(scope="module")
def case_dagbag() -> Any:
    from dag_runs import DagBag

    return DagBag(str(TEST_DAGS))


def reuse_the_in_process_api() -> None:
    """Build ``dag.test()``'s in-process execution API once a test process, as Airflow 3.2+ does.

    Airflow 3.1 builds a new one (a FastAPI app with Cadwyn's versioned routes, about 2 CPU-seconds)
    for every task that ``dag.test()`` runs; apache/airflow#65235 made ``in_process_api_server`` an
    ``lru_cache`` and dropped the DAG bag a trigger's run would otherwise inherit. This applies that
    change to Airflow 3.1.8, whose pass ran several hundred such builds.
    """
    from airflow.api_fastapi.common.dagbag import dag_bag_from_app
    from airflow.sdk.execution_time import supervisor

    if hasattr(supervisor.in_process_api_server, "cache_clear"):
        return  # Airflow 3.2+
    server = functools.lru_cache(maxsize=1)(supervisor.in_process_api_server)
    supervisor.in_process_api_server = server
    api_client = supervisor.InProcessTestSupervisor._api_client

    def api_client_without_a_stale_dag_bag(dag: Any = None) -> Any:
        if dag is None:
            server().app.dependency_overrides.pop(dag_bag_from_app, None)
        return api_client(dag)

    supervisor.InProcessTestSupervisor._api_client = staticmethod(api_client_without_a_stale_dag_bag)
