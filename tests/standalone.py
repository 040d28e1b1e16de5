"""The real Airflow that the end-to-end tests share: one a test process, started by the session
fixture ``standalone_airflow`` (tests/conftest.py) and stopped when the process ends.

Its api-server, scheduler, dag-processor and triggerer run each as a process of its own, on SQLite and
the LocalExecutor. (Not `airflow standalone`, which forces the simple auth manager: the gallery's
access tests need one that keeps a user from a DAG.) It has users who log in, one of them kept from
a DAG, and sends StatsD metrics to a listener on loopback.

Tests stay apart in it: each test file has a DAG folder of its own (a bundle) and an emulator of its
own, reached through a connection of its own, so that no test reads another's runs, jobs or metrics.
The connections are environment variables, as the secrets backend that tasks and triggers read first.
A test that kills or restarts a component starts a deployment of its own.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from deployment import Deployment, airflow_env, connection_env, free_port, wait_until
from emulator_process import EmulatorProcess

TESTS = Path(__file__).resolve().parent
#: The DAG folders, one bundle each: the examples (tests/test_end_to_end.py) and the task-end cases
#: (tests/test_task_end_differential.py).
BUNDLES = {
    "kling_examples": TESTS.parent / "example_dags",
    "kling_task_end_cases": TESTS / "task_end_dags",
    "kling_klingai_cases": TESTS / "klingai_dags",
}
#: The connection each folder's DAGs use, each to an emulator of its own, with a key no other part of
#: the setup could produce (so finding it anywhere means it leaked).
API_KEYS = {
    conn_id: f"{conn_id}-secret-{uuid.uuid4().hex}"
    for conn_id in ("kling_default", "kling_task_end", "kling_klingai")
}
#: The connections to Kling's own API (the others are UlazAI's), with their Access Keys.
ACCESS_KEYS = {"kling_klingai": f"kling_klingai-access-{uuid.uuid4().hex}"}
#: The users (simple auth manager roles). The outsider may not see kling_review
#: (tests/restricted_auth_manager.py); the reviewer answers its reviews.
USERS = {"admin": "admin", "reviewer": "user", "outsider": "viewer"}


def bundle_config(bundles: dict[str, Path]) -> str:
    """``[dag_processor] dag_bundle_config_list``: a local bundle for each folder, by its name."""
    local = "airflow.dag_processing.bundles.local.LocalDagBundle"
    return json.dumps(
        [{"name": name, "classpath": local, "kwargs": {"path": str(path)}} for name, path in bundles.items()]
    )


class StatsdListener:
    """A UDP socket on loopback that keeps every StatsD line Airflow sends it."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                datagram = self.socket.recv(65536)
            except OSError:  # closed
                return
            self.lines.extend(datagram.decode().splitlines())

    def kling(self) -> dict[str, str]:
        """The provider's metrics by name with tags (``name,tag=value,...``): their last value."""
        return dict(line.rsplit(":", 1) for line in list(self.lines) if line.startswith("airflow.kling."))

    def close(self) -> None:
        self.socket.close()


class Standalone(Deployment):
    """Airflow on SQLite and the LocalExecutor, its components started one by one."""

    COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")

    def __init__(
        self,
        home: Path,
        env: dict[str, str],
        passwords: dict[str, str],
        emulators: dict[str, EmulatorProcess],
    ) -> None:
        super().__init__(home, env)
        self.passwords = passwords
        self.emulators = emulators

    @property
    def scheduler_log(self) -> Path:
        return self.home / "scheduler.log"

    @property
    def kept_videos(self) -> Path:
        """Where the gallery may read kept videos from."""
        return Path(self.env["AIRFLOW__KLING__GALLERY_VIDEO_ROOTS"])

    def wait_for(self, condition: Callable[[], Any], seconds: float, what: str) -> None:
        """``wait_until``, quoting the scheduler's log if it gives up or the scheduler ends."""
        wait_until(condition, seconds, what, self.scheduler_log, self.processes["scheduler"])

    def as_user(self, user: str) -> str:
        """A token for one of ``USERS``."""
        return self.token(user, self.passwords[user])


def api_options(conn_id: str) -> tuple[str, ...]:
    """The emulator options of a connection to Kling's own API: that API, and the Access Key."""
    if conn_id not in ACCESS_KEYS:
        return ()
    return ("--api", "klingai", "--access-key", ACCESS_KEYS[conn_id])


@contextmanager
def started(home: Path, statsd_port: int) -> Iterator[Standalone]:
    passwords = {user: f"{user}-{uuid.uuid4().hex[:12]}" for user in USERS}
    (home / "passwords.json").write_text(json.dumps(passwords))
    for folder in ("kept-videos", "records"):
        (home / folder).mkdir()
    with ExitStack() as running:
        # The vendor's 60-90 s jobs in 15-22.5 s. Not faster: a task that resumes on a worker after a
        # trigger fires before the scheduler has taken in the deferring process's exit is failed by
        # Airflow 3.3.2's scheduler ("finished with state success, but the task instance's state
        # attribute is queued"), and with the test files beside it a busy machine's scheduler was
        # seen 8 s behind. The first poll comes 12 s after the submit. A seed each: two emulators on
        # one seed gave their jobs the same ids, and a gallery test that ran after the task-end cases
        # found a hidden DAG's job id on a case's row.
        emulators = {
            conn_id: running.enter_context(
                EmulatorProcess("--speed", "4", "--seed", str(seed), "--api-key", key, *api_options(conn_id))
            )
            for seed, (conn_id, key) in enumerate(API_KEYS.items(), start=7)
        }
        env = airflow_env(home, BUNDLES["kling_examples"], free_port()) | {
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": bundle_config(BUNDLES),
            "AIRFLOW__KLING__GALLERY_VIDEO_ROOTS": str(home / "kept-videos"),
            "KLING_TASK_END_RECORDS": str(home / "records"),
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__CORE__AUTH_MANAGER": "restricted_auth_manager.RestrictedAuthManager",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{role}" for u, role in USERS.items()),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            # Airflow's StatsD metrics, with tags in InfluxDB's line form so the tests can read them.
            "AIRFLOW__METRICS__STATSD_ON": "True",
            "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__STATSD_PORT": str(statsd_port),
            "AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED": "True",
        }
        for conn_id, emulator in emulators.items():
            access_key, job_seconds = ACCESS_KEYS.get(conn_id), "15-22.5" if conn_id in ACCESS_KEYS else None
            env |= connection_env(emulator.url, API_KEYS[conn_id], conn_id, access_key, job_seconds)
        env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env["PYTHONPATH"]])  # the auth manager
        airflow = Standalone(home, env, passwords, emulators)
        running.callback(airflow.stop)
        airflow.cli("db", "migrate")
        for component in Standalone.COMPONENTS:
            airflow.start_airflow(component, component)
        airflow.wait_for_api()
        yield airflow
