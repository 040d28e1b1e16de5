"""How tests reach the API: a connection in the environment and a hook with quick retries.

No Airflow import at module level: conftest imports this before it has set AIRFLOW_HOME.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_provider_kling.core.api import Budgets, RetryPolicy

if TYPE_CHECKING:
    from airflow_provider_kling.emulator import KlingEmulator
    from airflow_provider_kling.hooks.kling import KlingHook

#: Runs each test of a file (``pytestmark = both_apis``) on each API, through the ``api`` fixture.
both_apis = pytest.mark.parametrize("api", ["ulazai", "klingai"], indirect=True)


def current_unit() -> str:
    """The unit of the API the running test's requests are for (the ``api`` fixture's)."""
    from airflow_provider_kling.core.dialects import DIALECTS
    from airflow_provider_kling.core.request import GenerationRequest

    return DIALECTS[GenerationRequest.__init__.__kwdefaults__["api"]].credit_unit


def only_on(api: str) -> pytest.MarkDecorator:
    """Marks a test of a ``both_apis`` file as about one API's ways (its bodies, prices, paths)."""
    return pytest.mark.only_on(api)


#: Short budgets, and reads that never time out on their own: only the total can end a trickle
#: (the tests of the budgets themselves).
TIGHT_BUDGETS = Budgets(connect=2.0, read=20.0, request=1.0, call=1.5, download=1.5)
#: Room enough for a busy machine, for the tests in which no budget should run out.
ROOMY_BUDGETS = Budgets(connect=10.0, read=20.0, request=30.0, call=60.0, download=60.0)
#: The default policy's three tries in hundredths of a second instead of seconds.
QUICK_RETRIES = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.02)
#: One try: for tests about what a single request meets.
ONE_TRY = RetryPolicy(attempts=1)
#: A key with characters that URL-encoding and JSON escaping change, so every echoed form differs.
SECRET = "sk-live/Secret+Key=42"
ASSETS = Path(__file__).resolve().parent.parent / "airflow_provider_kling" / "emulator" / "assets"
VIDEO = (ASSETS / "clip-5s-silent.mp4").read_bytes()


def use_connection(
    monkeypatch: pytest.MonkeyPatch,
    host: str,
    api_key: str = SECRET,
    extra: dict[str, Any] | None = None,
    conn_id: str = "kling_default",
    login: str | None = None,
    api: str = "ulazai",
) -> None:
    """The connection ``conn_id`` as an ``AIRFLOW_CONN_*`` JSON variable, as users may set it; on
    another ``api`` than UlazAI's, with its ``api`` extra and a ``login`` (an Access Key)."""
    connection = {"conn_type": "kling", "host": host, "password": api_key, "extra": extra or {}}
    if api != "ulazai":
        connection["extra"] = {"api": api, **connection["extra"]}
        connection["login"] = login or "an-access-key"
    elif login is not None:
        connection["login"] = login
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))


def connect(
    monkeypatch: pytest.MonkeyPatch,
    emulator: KlingEmulator,
    conn_id: str = "kling_default",
    api_key: str | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """``conn_id`` pointed at ``emulator`` in the API it speaks, with its key (on ``klingai``: its
    Access Key and Secret Key) unless ``api_key`` is given. Where the API announces no job's
    duration, the connection says how long the emulator's jobs take, as a user who knows would."""
    api = emulator.config.api
    login = emulator.access_key if api != "ulazai" else None
    if api != "ulazai":
        extra = {"job_seconds": emulator.config.estimated_time, **(extra or {})}
    use_connection(monkeypatch, emulator.base_url, api_key or emulator.api_key, extra, conn_id, login, api)


def quick_hook(
    budgets: Budgets = ROOMY_BUDGETS, retries: RetryPolicy = QUICK_RETRIES, conn_id: str = "kling_default"
) -> KlingHook:
    """A hook whose calls (submits included) retry ``retries`` within ``budgets``."""
    from airflow_provider_kling.hooks.kling import KlingHook

    return KlingHook(conn_id, status_retry_policy=retries, submit_retry_policy=retries, budgets=budgets)


@contextmanager
def one_slot_taken_for(
    seconds: float, factory: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[KlingEmulator]:
    """An emulator of Kling's own API, ``kling_default`` pointed at it, whose account may run one job
    at a time: another task's job holds that slot for ``seconds`` (a 1303 asks to wait 0.5 s)."""
    from airflow_provider_kling.core.request import GenerationRequest

    emulator: KlingEmulator = factory(api="klingai", concurrency=1, retry_after=0.5)
    connect(monkeypatch, emulator)
    emulator.hold(1)
    running = quick_hook().submit(GenerationRequest("another task's fox", api="klingai"))
    releaser = threading.Timer(seconds, emulator.release, args=([running.task_id],))
    releaser.start()
    try:
        yield emulator
    finally:
        releaser.cancel()


def resolving(monkeypatch: pytest.MonkeyPatch, name: str, address: str) -> None:
    """DNS that answers ``address`` for ``name`` (a rebinding, or a vendor's zone pointing inside)."""
    real_getaddrinfo = socket.getaddrinfo

    def answer(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real_getaddrinfo(address if host == name else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", answer)


def release_the_held_job(context: Any) -> None:
    """``on_retry_callback`` of the retry case DAGs: the first try has ended at its deadline on a job
    the test held running (``emulator.hold``); let the job end, so that the retry finds it done,
    however late a loaded machine runs the retry."""
    from airflow.sdk import Connection

    emulator = Connection.get("kling_default").host
    requests.post(f"{emulator}/_emulator/release", timeout=10).raise_for_status()
