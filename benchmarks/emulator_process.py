"""The emulator as a process of its own, so a benchmark's client and server share no CPU time or GIL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from types import TracebackType
from typing import Any


class EmulatorProcess:
    """The emulator CLI with ``--port 0`` and ``options``, on loopback; stopped by its process group."""

    def __init__(self, *options: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "airflow_provider_kling.emulator", "--port", "0", *options],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        banner = self.process.stdout.readline()
        if not banner.startswith("Kling emulator listening on "):
            self.stop()
            raise SystemExit(f"The emulator did not start: {banner!r}")
        self.url = banner.split()[-1]

    def control(self, path: str, method: str = "GET", body: Any = None) -> Any:
        """A control route's JSON answer, e.g. ``control("/_emulator/jobs")``; ``body`` is sent as JSON."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        return dict(self.control("/_emulator/stats"))

    def jobs(self) -> list[dict[str, Any]]:
        return list(self.control("/_emulator/jobs"))

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
