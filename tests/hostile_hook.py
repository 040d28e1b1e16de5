"""The hook as the hostile-server tests meet it: short budgets, quick retries, a key worth leaking."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_kling.core.api import Budgets, RetryPolicy
from airflow_provider_kling.hooks.kling import KlingHook

#: Short budgets, and reads that never time out on their own: only the total can end a trickle
#: (the tests of the budgets themselves).
TIGHT_BUDGETS = Budgets(connect=2.0, read=20.0, request=1.0, call=1.5, download=1.5)
#: Room enough for a busy machine, for the tests in which no budget should run out.
ROOMY_BUDGETS = Budgets(connect=10.0, read=20.0, request=30.0, call=60.0, download=60.0)
RETRIES = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.02)
#: A key with characters that URL-encoding and JSON escaping change, so every echoed form differs.
SECRET = "sk-live/Secret+Key=42"
ASSETS = Path(__file__).resolve().parent.parent / "airflow_provider_kling" / "emulator" / "assets"
VIDEO = (ASSETS / "clip-5s-silent.mp4").read_bytes()


def use_connection(
    monkeypatch: pytest.MonkeyPatch, host: str, api_key: str = SECRET, extra: dict[str, Any] | None = None
) -> None:
    connection = {"conn_type": "kling", "host": host, "password": api_key, "extra": extra or {}}
    monkeypatch.setenv("AIRFLOW_CONN_KLING_DEFAULT", json.dumps(connection))


def hook(budgets: Budgets = ROOMY_BUDGETS) -> KlingHook:
    made = KlingHook()
    made.budgets = budgets
    made.status_retry_policy = made.submit_retry_policy = RETRIES
    return made


def resolving(monkeypatch: pytest.MonkeyPatch, name: str, address: str) -> None:
    """DNS that answers ``address`` for ``name`` (a rebinding, or a vendor's zone pointing inside)."""
    real_getaddrinfo = socket.getaddrinfo

    def answer(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real_getaddrinfo(address if host == name else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", answer)
