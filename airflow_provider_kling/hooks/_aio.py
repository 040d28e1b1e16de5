"""The hook's async half, on aiohttp: imported only when a wait polls, so a task that only submits
(in a worker) never loads aiohttp.

Everything a triggerer's waits share lives once per event loop: one aiohttp session, and per
connection its settings (read once a minute, not once per trigger) and its :class:`RequestPacer`.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from requests.utils import get_environ_proxies

from airflow_provider_kling.core import api
from airflow_provider_kling.core.errors import KlingTimeoutError, origin_of, transport_error
from airflow_provider_kling.core.pacing import RequestPacer

#: How long a loop reuses a connection's settings before reading them again (a changed key or cap
#: reaches running waits within this time; a 401 drops them at once).
SETTINGS_SECONDS = 60.0


class LoopShared:
    """What every Kling wait in one event loop shares, open while anyone holds it."""

    def __init__(self) -> None:
        self.session = aiohttp.ClientSession(
            timeout=client_timeout(api.BUDGETS),
            # No trust_env: it reads ~/.netrc and the proxy settings on every request, in threads,
            # and a netrc entry for the host clashes with our Authorization header. The proxy is
            # read once per base URL instead (proxy_for).
            trust_env=False,
        )
        self.holders = 0
        self.pacers: dict[str, RequestPacer] = {}
        self._settings: dict[str, tuple[asyncio.Future[Any], float]] = {}
        self._last_good: dict[str, Any] = {}
        self._proxies: dict[str, str | None] = {}

    def pacer(self, conn_id: str, cap: float | None, adaptive: bool) -> RequestPacer:
        """The connection's pacer, following its latest settings (a rate found so far is kept)."""
        pacer = self.pacers.get(conn_id)
        if pacer is None or (pacer.rate is not None) != adaptive:
            pacer = self.pacers[conn_id] = RequestPacer(cap, adaptive)
        pacer.cap = cap
        return pacer

    def known_settings(self, conn_id: str) -> Any | None:
        """A connection's settings if read less than SETTINGS_SECONDS ago: the common case, with no await."""
        cached = self._settings.get(conn_id)
        if cached is None or not cached[0].done() or cached[0].cancelled() or cached[0].exception():
            return None
        return cached[0].result() if time.monotonic() - cached[1] <= SETTINGS_SECONDS else None

    async def settings(self, conn_id: str, read: Callable[[], Awaitable[Any]]) -> Any:
        """A connection's settings, read by one caller while the others wait for the same answer.

        A refresh that fails (the secrets backend briefly down) keeps the waits on the settings
        they had; only a connection never read raises.
        """
        cached = self._settings.get(conn_id)
        if cached is None or time.monotonic() - cached[1] > SETTINGS_SECONDS:
            cached = self._settings[conn_id] = (asyncio.ensure_future(read()), time.monotonic())
        try:
            self._last_good[conn_id] = await asyncio.shield(cached[0])
        except Exception:
            if self._settings.get(conn_id) is cached:
                del self._settings[conn_id]  # the next poll reads again
            if conn_id not in self._last_good:
                raise
        return self._last_good[conn_id]

    def forget_settings(self, conn_id: str) -> None:
        """Read the connection again on the next poll (a 401: the key may have been changed)."""
        self._settings.pop(conn_id, None)
        self._last_good.pop(conn_id, None)

    def proxy_for(self, base_url: str) -> str | None:
        """The proxy the environment names for ``base_url`` (HTTPS_PROXY, ALL_PROXY, NO_PROXY...),
        read as the sync side's requests reads it."""
        if base_url not in self._proxies:
            proxies = get_environ_proxies(base_url)
            self._proxies[base_url] = proxies.get(urlsplit(base_url).scheme) or proxies.get("all")
        return self._proxies[base_url]

    async def get(
        self, base_url: str, path: str, headers: dict[str, str], budgets: api.Budgets
    ) -> tuple[int, bytes, Mapping[str, str]]:
        """GET ``base_url + path`` within ``budgets.request`` in all, following no redirect: the
        status, the body read no further than past the cap, the headers."""
        url = base_url + path
        try:
            async with self.session.get(
                url,
                headers=headers,
                proxy=self.proxy_for(base_url),
                allow_redirects=False,
                timeout=client_timeout(budgets),
            ) as response:
                body = bytearray()
                async for chunk in response.content.iter_chunked(api.READ_CHUNK_BYTES):
                    body += chunk
                    if len(body) > api.MAX_BODY_BYTES:  # enough to say it is too large
                        break
                return response.status, bytes(body), response.headers
        # "from None": aiohttp's errors keep the request, Authorization header included, in their
        # repr; the message names all that matters.
        except aiohttp.ClientConnectorError as error:
            raise transport_error(error, request_sent=False, url=url) from None
        except asyncio.TimeoutError:
            raise KlingTimeoutError(
                f"Kling: {origin_of(url)} did not deliver the status answer within its "
                f"{budgets.request:g} s budget (or {budgets.read:g} s of silence); cut off"
            ) from None
        except aiohttp.ClientError as error:
            raise transport_error(error, request_sent=True, url=url) from None


@lru_cache(maxsize=8)
def client_timeout(budgets: api.Budgets) -> aiohttp.ClientTimeout:
    """One request's limits: ``total`` covers connect, headers and the whole body."""
    return aiohttp.ClientTimeout(total=budgets.request, connect=budgets.connect, sock_read=budgets.read)


_shared_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopShared] = (
    weakref.WeakKeyDictionary()
)


@asynccontextmanager
async def shared_for_loop() -> AsyncIterator[LoopShared]:
    """This event loop's :class:`LoopShared`; it closes when its last holder leaves, so nothing leaks.

    Hold it around a polling loop (as the trigger does) so that it outlives single calls.
    """
    loop = asyncio.get_running_loop()
    shared = _shared_by_loop.get(loop)
    if shared is None:
        shared = _shared_by_loop[loop] = LoopShared()
    shared.holders += 1
    try:
        yield shared
    finally:
        shared.holders -= 1
        if shared.holders == 0:
            del _shared_by_loop[loop]
            await shared.session.close()
