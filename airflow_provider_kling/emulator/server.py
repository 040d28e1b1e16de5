"""Running the emulator: the listening site, and an in-process server on a background thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from airflow_provider_kling.emulator.app import create_app
from airflow_provider_kling.emulator.config import EmulatorConfig, FaultKind
from airflow_provider_kling.emulator.state import EmulatorState

#: Pending connections the kernel queues, so a burst of thousands of clients is not refused.
LISTEN_BACKLOG = 4096
#: Seconds in-flight answers (a slow fault's among them) get at shutdown before they are cut.
SHUTDOWN_TIMEOUT = 1.0

T = TypeVar("T")


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@asynccontextmanager
async def serving(config: EmulatorConfig) -> AsyncIterator[tuple[EmulatorState, str]]:
    """Listen on the configured address; yields the state and the base URL, with the real port."""
    state = EmulatorState(config)
    runner = web.AppRunner(create_app(state), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port, backlog=LISTEN_BACKLOG)
        await site.start()
        yield state, _url(config.host, runner.addresses[0][1])
    finally:
        await runner.cleanup()
        state.flush()


class KlingEmulator:
    """The emulator on a free loopback port, served by a background thread: moto for Kling.

    ``KlingEmulator(speed=60, seed=1)`` takes :class:`EmulatorConfig` fields as keyword overrides.
    Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, config: EmulatorConfig | None = None, **overrides: Any) -> None:
        self.config = replace(config or EmulatorConfig(), **overrides)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._state: EmulatorState | None = None
        self._base_url: str | None = None
        self._failure: BaseException | None = None

    @property
    def base_url(self) -> str:
        """E.g. ``http://127.0.0.1:54321``: what a Kling connection's host should be."""
        if self._base_url is None:
            raise RuntimeError("The Kling emulator is not running")
        return self._base_url

    @property
    def api_key(self) -> str:
        """The first configured key (``kling-emulator-key`` unless told otherwise); on ``klingai``, the
        Secret Key of :attr:`access_key`."""
        return self.config.api_keys[0]

    @property
    def access_key(self) -> str:
        """On ``klingai``: the Access Key of :attr:`api_key`, what a connection's login should be."""
        return next(iter(self.config.key_pairs))

    def start(self) -> KlingEmulator:
        if self._thread is not None:
            raise RuntimeError("The Kling emulator is already running")
        ready = threading.Event()
        self._failure = None
        self._thread = threading.Thread(target=self._run, args=(ready,), name="kling-emulator", daemon=True)
        self._thread.start()
        ready.wait()
        if self._base_url is None:
            self._thread.join()
            self._thread = None
            assert self._failure is not None
            raise self._failure
        return self

    def stop(self) -> None:
        """Stop serving and write the state file; in-flight answers get a moment, then are cut."""
        if self._thread is None:
            return
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join()
        self._thread = None
        self._base_url = None
        if self._failure is not None:
            raise RuntimeError("The Kling emulator failed while stopping") from self._failure

    def __enter__(self) -> KlingEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._serve(ready))
        except BaseException as failure:
            self._failure = failure
        finally:
            ready.set()
            self._loop = self._stopping = self._state = None

    async def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        async with serving(self.config) as (state, base_url):
            self._state, self._base_url = state, base_url
            ready.set()
            await self._stopping.wait()

    def _on_loop(self, action: Callable[[EmulatorState], T]) -> T:
        """Run ``action`` on the server's loop, where the state lives, and wait for its result."""
        loop, state = self._loop, self._state
        if loop is None or state is None:
            raise RuntimeError("The Kling emulator is not running")

        async def call() -> T:
            return action(state)

        return asyncio.run_coroutine_threadsafe(call(), loop).result()

    # The same controls as the /_emulator/ routes.

    def stats(self) -> dict[str, Any]:
        """Requests, responses by status code, and faults per endpoint; jobs created; credits per key."""
        return self._on_loop(EmulatorState.stats)

    def jobs(self) -> list[dict[str, Any]]:
        """Every job with its timing, ``request`` body and ``status_polls``: when its status was asked.

        A poll a fault intercepted never reached the job, so it is not among them.
        """
        return self._on_loop(EmulatorState.jobs)

    def video_requests(self) -> list[dict[str, Any]]:
        """The last 100 requests to the video route (``VIDEO_REQUESTS_KEPT``), oldest first: each one's
        ``path`` and every header it carried, as [name, value] pairs.

        Recorded verbatim, credentials included (the emulator keeps everything it receives), so a test
        can check what a video host was really sent rather than what a client meant to send.
        """
        return self._on_loop(EmulatorState.video_requests)

    def traffic(self) -> dict[str, list[int]]:
        """Per second (Unix time, whole): [API requests received from the accounts, refused by the
        ``rate_limit``], the last hour of them."""
        return self._on_loop(EmulatorState.traffic)

    def inject(self, endpoint: str, kind: FaultKind | str, count: int = 1, **timing: float | None) -> int:
        """Give the next ``count`` requests to ``endpoint`` this fault; returns how many are queued there.
        ``timing``: the fault's ``retry_after`` or ``delay``, as :meth:`EmulatorState.inject` takes them."""
        return self._on_loop(lambda state: state.inject(endpoint, kind, count, **timing))

    def hold(self, count: int) -> int:
        """Keep the next ``count`` jobs running until :meth:`release`; returns how many are still to
        be held."""
        return self._on_loop(lambda state: state.hold(count))

    def release(self, task_ids: list[str] | None = None) -> int:
        """Let the held jobs of ``task_ids``, or all, end at their own time (at once if it has passed,
        their ``ready_at`` then the release); returns how many were held."""
        return self._on_loop(lambda state: state.release(task_ids))

    def set_credits(self, api_key: str, credits: int) -> None:
        self._on_loop(lambda state: state.set_credits(api_key, credits))

    def reset(self) -> None:
        """No jobs, counters, queued faults or recorded video requests; full credits; seeded generators
        restarted."""
        self._on_loop(EmulatorState.reset)
