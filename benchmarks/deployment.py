"""Real Airflow on loopback, for the end-to-end tests and the benchmarks alike: its environment, its
processes (each in a process group of its own, stopped by its id) and waiting on what it does.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import requests


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop(
    *processes: subprocess.Popen[Any], ask: signal.Signals = signal.SIGTERM, seconds: float = 15
) -> None:
    """Stop processes we started, and their children, by their process group ids: all asked at once
    with ``ask`` (a triggerer takes about 10 s to stop its trigger runner, a scheduler about 5), then
    each waited for, within ``seconds`` in all, and killed if it is still running then (Airflow
    3.1.8's LocalExecutor scheduler sometimes waits for its idle workers until it is)."""
    running = [process for process in processes if process.poll() is None]
    for process in running:
        with suppress(ProcessLookupError):  # it ended since
            os.killpg(process.pid, ask)
    deadline = time.monotonic() + seconds
    for process in running:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def answers(url: str) -> bool:
    """Whether ``url`` answers 200 within 2 s (an api-server's health route, an emulator's stats)."""
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def wait_until(
    condition: Callable[[], Any],
    seconds: float,
    what: str,
    log: Path | None = None,
    process: subprocess.Popen[Any] | None = None,
) -> None:
    """Ask ``condition`` every 0.25 s for ``seconds``; give up sooner if ``process`` ends, and then
    quote the end of its ``log``. A SQLite read that meets a write in progress is asked again."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (process is None or process.poll() is None):
        try:
            if condition():
                return
        except sqlite3.OperationalError:  # the database is being written
            pass
        time.sleep(0.25)
    tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
    ended = f" (it exited with {process.returncode})" if process and process.poll() is not None else ""
    said = f" {log.name} ends:\n{tail}" if log and tail else ""
    raise TimeoutError(f"Gave up waiting for {what} after {seconds} s{ended}.{said}")


BENCHMARKS = Path(__file__).resolve().parent
#: What Airflow connects to its metadata database with (``[database] sql_alchemy_connect_args``
#: names this, read in each component): on SQLite, a write waits up to a minute for another's lock
#: instead of SQLite's 5 s, past which a busy machine's api-server answered 500 ("database is
#: locked") to a task's start or a triggered run. Nothing on PostgreSQL.
SQLITE_LOCK_WAIT = 60.0
SQLITE_CONNECT_ARGS = (
    {"timeout": SQLITE_LOCK_WAIT}
    if os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "sqlite").startswith("sqlite")
    else {}
)
#: How long a request to the api-server may take: longer than a write's wait for SQLite's lock, which
#: a request may sit behind (at 60 s, as long as that wait, a loaded machine's trigger request timed
#: out while the api-server was still writing the run).
API_TIMEOUT = 2 * SQLITE_LOCK_WAIT


def connection_env(
    kling_url: str,
    api_key: str,
    conn_id: str = "kling_default",
    access_key: str | None = None,
    job_seconds: str | None = None,
) -> dict[str, str]:
    """The environment variable that defines ``conn_id``: Kling at ``kling_url`` with ``api_key``;
    with an ``access_key``, Kling's own API (``api_key`` its Secret Key), its jobs taking
    ``job_seconds`` ("15-22.5")."""
    connection: dict[str, Any] = {"conn_type": "kling", "host": kling_url, "password": api_key}
    if access_key is not None:
        connection |= {"login": access_key, "extra": {"api": "klingai", "job_seconds": job_seconds}}
    return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(connection)}


def airflow_env(home: Path, dags: Path, api_port: int) -> dict[str, str]:
    """The environment of a throwaway Airflow on loopback (its connections: ``connection_env``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    return env | {
        # This folder's modules (SQLITE_CONNECT_ARGS) importable in every component.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCHMARKS), os.environ.get("PYTHONPATH")])),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "deployment.SQLITE_CONNECT_ARGS",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC": "deployment.SQLITE_CONNECT_ARGS",
        # Airflow starts its components as `airflow ...` commands: find this environment's first.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        # A task's calls to the api-server wait up to a minute (Airflow's default, 5 s, is for a machine
        # that is not running eight Airflows on two cores: a task then failed to start, "ReadTimeout").
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        # The DAG files never change while it runs: parsed once, not every 30 s (half the CPU an idle
        # deployment spends).
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
        # Log servers on free ports too: two deployments at once must not share one.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
    }


def debian_postgres_bin() -> Path | None:
    """The newest PostgreSQL server Debian installed (``/usr/lib/postgresql/<major>/bin``), if any."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name)
    )
    return found[-1].parent if found else None


def missing_servers() -> list[str]:
    """What the production-shaped deployment needs from Debian and this machine lacks."""
    missing = [] if debian_postgres_bin() else ["postgresql"]
    return missing + ([] if Path("/usr/bin/redis-server").exists() else ["redis-server"])


class Postgres:
    """A throwaway PostgreSQL cluster on loopback and a free port, tuned for tests (no fsync), in a
    folder of its own under the system's temporary folder (removed when it stops). Run as the
    ``postgres`` user when we are root: the server refuses to run as root, and that user could not
    enter a folder of pytest's."""

    def __init__(self) -> None:
        binaries = debian_postgres_bin()
        assert binaries, "PostgreSQL is not installed (apt-get install postgresql)"
        self.port = free_port()
        self.folder = folder = Path(tempfile.mkdtemp(prefix="kling-postgres-"))
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres", "postgres")
        data = folder / "data"
        initdb = [str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"]
        subprocess.run([*self.as_owner, *initdb], check=True, capture_output=True, cwd=folder)
        server = [
            str(binaries / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(folder),
            "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=400", "-c", "fsync=off",
            "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
        ]  # fmt: skip
        self.log = folder / "postgres.log"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [*self.as_owner, *server],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=folder,
            )
        wait_until(self._accepts, 60, "PostgreSQL to accept connections", self.log, self.process)
        self.execute("CREATE DATABASE airflow", database="postgres")

    def url(self, driver: str = "postgresql+psycopg2") -> str:
        return f"{driver}://postgres@127.0.0.1:{self.port}/airflow"

    def _accepts(self) -> bool:
        import psycopg2

        try:
            psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres").close()
        except psycopg2.OperationalError:
            return False
        return True

    def execute(self, sql: str, *parameters: Any, database: str = "airflow") -> list[tuple[Any, ...]]:
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=database)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, parameters)
                return list(cursor.fetchall()) if cursor.description else []
        finally:
            connection.close()

    def dump(self) -> str:
        """Every table of the airflow database, as SQL text."""
        binaries = debian_postgres_bin()
        assert binaries
        command = [
            str(binaries / "pg_dump"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "airflow",
        ]
        return subprocess.run(command, check=True, capture_output=True, text=True).stdout

    def stop(self) -> None:
        stop(self.process)
        shutil.rmtree(self.folder, ignore_errors=True)


class Redis:
    """A throwaway Redis on loopback and a free port, keeping nothing on disk."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.log = folder / "redis.log"
        command = [
            "/usr/bin/redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(folder),
        ]  # fmt: skip
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_until(self._answers, 30, "Redis to answer", self.log, self.process)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe:
                probe.sendall(b"PING\r\n")
                return probe.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        stop(self.process)


class Deployment:
    """Airflow's components as separate processes sharing one ``home`` and environment, each
    startable, killable and stoppable on its own (as an outage or a failover would)."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home
        self.env = env
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        # How each process was started, so that a killed one can be started again.
        self._commands: dict[str, tuple[list[str], dict[str, str]]] = {}

    @property
    def api_url(self) -> str:
        return self.env["AIRFLOW__API__BASE_URL"]

    def start(self, name: str, *command: str, env: dict[str, str] | None = None) -> None:
        self._commands[name] = (list(command), env or self.env)
        with (self.home / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                list(command),
                env=env or self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start_airflow(self, name: str, *arguments: str, **settings: str) -> None:
        """``airflow <arguments>`` as the process ``name``; ``settings`` are extra environment variables."""
        self.start(name, sys.executable, "-m", "airflow", *arguments, env=self.env | settings)

    def kill(self, name: str) -> None:
        """SIGKILL the process and its children, as a machine's crash would."""
        os.killpg(self.processes[name].pid, signal.SIGKILL)
        self.processes[name].wait(timeout=10)

    def restart(self, name: str) -> None:
        """Start the process ``name`` again as it was first started (after :meth:`kill`)."""
        command, env = self._commands[name]
        self.start(name, *command, env=env)

    def run_cli(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        """``airflow <arguments>`` run to its end, whatever its exit code. Allowed 600 s: on two
        cores running two suites at once, ``airflow providers list`` went past 180 s."""
        command = [sys.executable, "-m", "airflow", *arguments]
        return subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=600)

    def cli(self, *arguments: str) -> str:
        """``airflow <arguments>``'s output; the command must succeed."""
        done = self.run_cli(*arguments)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def token(self, username: str, password: str) -> str:
        """A JWT for ``username``, from the simple auth manager's login endpoint."""
        answer = requests.post(
            f"{self.api_url}/auth/token", json={"username": username, "password": password}, timeout=30
        )
        answer.raise_for_status()
        return str(answer.json()["access_token"])

    def api(self, method: str, path: str, token: str | None = None, **arguments: Any) -> requests.Response:
        """A request to the api-server, as the holder of ``token`` (None: anonymous)."""
        headers = ({"Authorization": f"Bearer {token}"} if token else {}) | arguments.pop("headers", {})
        return requests.request(
            method, f"{self.api_url}{path}", headers=headers, timeout=API_TIMEOUT, **arguments
        )

    def wait_for_api(self) -> None:
        """Until the api-server answers; at once, quoting its log, if it has ended."""
        wait_until(
            lambda: answers(f"{self.api_url}/api/v2/monitor/health"),
            180,
            "the api-server",
            self.home / "api-server.log",
            self.processes.get("api-server"),
        )

    def trigger(
        self,
        dag_id: str,
        registered: Callable[[str], bool],
        conf: dict[str, Any] | None = None,
        token: str | None = None,
    ) -> str:
        """Unpause and trigger ``dag_id`` (with ``conf``) through the REST API, as the holder of
        ``token``, once ``registered(dag_id)`` says the dag-processor has it; the run's id. (Not the
        ``airflow dags`` commands: each costs a busy test machine 3 s of CPU to start.)"""
        wait_until(lambda: registered(dag_id), 180, f"{dag_id} to register")
        unpaused = self.api("PATCH", f"/api/v2/dags/{dag_id}", token, json={"is_paused": False})
        assert unpaused.status_code == 200, unpaused.text
        run_id = f"{dag_id}_{time.time_ns()}"
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf or {}}
        triggered = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", token, json=body)
        assert triggered.status_code == 200, triggered.text
        return run_id

    def query(self, sql: str, *parameters: Any) -> list[tuple[Any, ...]]:
        """Rows from the SQLite metadata database in ``home`` (a standalone or LocalExecutor deployment)."""
        with sqlite3.connect(f"file:{self.home / 'airflow.db'}?mode=ro", uri=True, timeout=10) as db:
            return db.execute(sql, parameters).fetchall()

    def has_dag(self, dag_id: str) -> bool:
        """Whether the dag-processor has stored ``dag_id`` (SQLite, as ``query``)."""
        return bool(self.query("SELECT 1 FROM dag WHERE dag_id = ?", dag_id))

    def logs(self) -> str:
        """Every log under ``home``: the components' and the tasks'."""
        return "\n".join(
            path.read_text(errors="replace") for path in self.home.rglob("*.log") if path.is_file()
        )

    def stop(self) -> None:
        stop(*self.processes.values())


#: The processes of a production-shaped deployment, each started on its own.
WORKERS = ("worker-1", "worker-2")
TRIGGERERS = ("triggerer-1", "triggerer-2")


@contextmanager
def production_airflow(
    home: Path, dags: Path, kling_url: str, api_key: str, triggerer_capacity: int = 1000, **settings: str
) -> Iterator[tuple[Deployment, Postgres]]:
    """Airflow as production runs it, on one machine: PostgreSQL, Redis and the CeleryExecutor; the
    api-server, scheduler and dag-processor; two Celery workers (4 slots each) and two triggerers
    holding ``triggerer_capacity`` triggers each. ``settings`` are more environment variables.
    A killed worker's task or triggerer's waits are noticed within 20 s and 10 s."""
    database = Postgres()
    broker = Redis(home / "redis")
    env = (
        airflow_env(home, dags, free_port())
        | connection_env(kling_url, api_key)
        | {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database.url(),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": broker.url,
            "AIRFLOW__CELERY__RESULT_BACKEND": database.url("db+postgresql+psycopg2"),
            "AIRFLOW__CORE__PARALLELISM": "16",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
            # A killed worker's messages it had taken but not started go back to the queue after this
            # (Redis's default is an hour, past any test's wait). No task here runs that long on a
            # worker, so none is run twice by it.
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "60",
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
            # The tests and benchmarks drive it through the REST API as an admin, with no login.
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        }
    )
    airflow = Deployment(home, env | settings)
    try:
        airflow.cli("db", "migrate")
        for component in ("api-server", "scheduler", "dag-processor"):
            airflow.start_airflow(component, component)
        # The workers and triggerers once the api-server answers (their calls go through it): started
        # all at once, seven components shared two busy cores with their imports, and the api-server
        # took over 180 s to answer (a load run's red).
        airflow.wait_for_api()
        for worker in WORKERS:
            airflow.start_airflow(
                worker, "celery", "worker", "--concurrency", "4", "--celery-hostname", f"{worker}@%h",
                "--pid", str(home / f"{worker}.pid"),
                AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
            )  # fmt: skip
        for triggerer in TRIGGERERS:
            airflow.start_airflow(
                triggerer, "triggerer", "--capacity", str(triggerer_capacity),
                "--pid", str(home / f"{triggerer}.pid"),
                AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
            )  # fmt: skip
        yield airflow, database
    finally:
        airflow.stop()
        broker.stop()
        database.stop()


def process_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first); None once it ended."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def session_pids(session: int) -> list[int]:
    """The processes of one session: a process we started with ``start_new_session`` and its children."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        fields = process_stat(int(name))
        if fields is not None and int(fields[3]) == session:
            found.append(int(name))
    return found


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds a process has used so far (its own threads, not its children)."""
    fields = process_stat(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int | None:
    """A process's resident set size now."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return None
