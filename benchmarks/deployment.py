"""Real Airflow on loopback, for the end-to-end tests and the benchmarks alike: its environment, its
processes (each in a process group of its own, stopped by its id) and waiting on what it does.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop(process: subprocess.Popen[Any]) -> None:
    """Stop a process we started, and its children, by its process group id."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
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
    said = f" {log.name} ends:\n{tail}" if tail else ""
    raise TimeoutError(f"Gave up waiting for {what} after {seconds} s{ended}.{said}")


def airflow_env(home: Path, dags: Path, api_port: int, kling_url: str, api_key: str) -> dict[str, str]:
    """The environment of a throwaway Airflow on loopback, with kling_default pointing at ``kling_url``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    return env | {
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
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        # Log servers on free ports too: two deployments at once must not share one.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW_CONN_KLING_DEFAULT": json.dumps(
            {"conn_type": "kling", "host": kling_url, "password": api_key}
        ),
    }
