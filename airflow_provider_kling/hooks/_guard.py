"""Sync HTTP under guard: a whole-call time budget that cuts the socket, and an address check
before any connection is opened.

``requests`` bounds each read, not a call: a server that drips one byte a second keeps a read
alive for ever. Here every connection a guarded call uses registers with the call's
:class:`CallGuard`, whose timer shuts the socket down when the budget runs out, which ends any
blocked read at once. The same connections check the addresses they connect to against the
call's :class:`~airflow_provider_kling.core.addresses.AddressPolicy`, after resolving and before
connecting, and connect only to the address they checked, so DNS tricks cannot slip past.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3 import connection, connectionpool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from airflow_provider_kling.core.addresses import AddressPolicy

_calls = threading.local()


class CallGuard:
    """One blocking call's limits: when it must end, and where it may connect."""

    def __init__(self, seconds: float, addresses: AddressPolicy | None) -> None:
        self.seconds = seconds
        self.addresses = addresses
        self.expired = False
        self._done = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []

    def watch(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            _shut(sock)

    def expire(self) -> None:
        with self._lock:
            if self._done:  # the call ended first; its connections may serve the next call
                return
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)

    def finish(self) -> bool:
        """End the guard's watch; whether the budget ran out (and its sockets were cut) before."""
        with self._lock:
            self._done = True
            return self.expired


def _shut(sock: socket.socket) -> None:
    # socket.socket's own shutdown, also for a TLS socket: it wakes a read blocked in another
    # thread with end-of-file, and leaves the TLS object alone for that thread to fail cleanly.
    with suppress(OSError):  # already closed
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def current_guard() -> CallGuard | None:
    return getattr(_calls, "guard", None)


@contextmanager
def guarded(seconds: float, addresses: AddressPolicy | None = None) -> Iterator[CallGuard]:
    """Run the block's requests (made with a :func:`guarded_session`) under one budget and policy."""
    guard = CallGuard(max(seconds, 0.0), addresses)
    timer = threading.Timer(guard.seconds, guard.expire)
    timer.daemon = True
    timer.start()
    previous, _calls.guard = current_guard(), guard
    try:
        yield guard
    finally:
        guard.finish()
        timer.cancel()
        _calls.guard = previous


class _Guarded:
    """Mixed into urllib3's connections: each registers with the running call's guard."""

    host: str
    port: int
    timeout: Any
    source_address: Any
    socket_options: Any
    sock: socket.socket | None
    proxy: Any
    _dns_host: str

    def _new_conn(self) -> socket.socket:
        guard = current_guard()
        if guard is None or guard.addresses is None or getattr(self, "proxy", None) is not None:
            sock = super()._new_conn()  # type: ignore[misc]
        else:
            sock = self._checked_conn(guard, guard.addresses)
        if guard is not None:
            guard.watch(sock)
        return sock

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        guard = current_guard()
        if guard is not None:
            guard.watch(self.sock)  # the TLS socket that wraps the one _new_conn made

    def _checked_conn(self, guard: CallGuard, policy: AddressPolicy) -> socket.socket:
        """Resolve, check every address, then connect to a checked one only (not to the name again)."""
        host = self._dns_host.strip("[]")
        try:
            infos = socket.getaddrinfo(host, self.port, 0, socket.SOCK_STREAM)
        except (OSError, UnicodeError) as error:  # never a second, unchecked lookup
            raise NameResolutionError(host, self, error) from error  # type: ignore[arg-type]
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        policy.check(host, self.port, addresses)
        # urllib3 resolves _dns_host; TLS still checks the certificate against the host name.
        last_error: Exception | None = None
        for address in addresses:
            if guard.expired:
                break
            self._dns_host = address
            try:
                return super()._new_conn()  # type: ignore[misc]
            except (NewConnectionError, ConnectTimeoutError) as error:
                last_error = error
            finally:
                self._dns_host = host
        raise last_error or ConnectTimeoutError(self, f"Connection to {host} cut off: out of time")

    def request(self, *args: Any, **kwargs: Any) -> Any:
        guard = current_guard()
        if guard is not None:
            guard.watch(self.sock)  # a kept-alive connection: watched for this call too
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_Guarded, connection.HTTPConnection):
    pass


class _HTTPSConnection(_Guarded, connection.HTTPSConnection):
    pass


class _HTTPPool(connectionpool.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(connectionpool.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class _GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS pools have connections of their own
            manager.pool_classes_by_scheme = _POOLS
        return manager


def guarded_session() -> requests.Session:
    """A session whose connections obey :func:`guarded` blocks; outside one they act as usual."""
    session = requests.Session()
    for prefix in ("http://", "https://"):
        session.mount(prefix, _GuardedAdapter())
    return session
