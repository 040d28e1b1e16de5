"""Where videos may be fetched from: public addresses, plus what the connection allows.

A ``video_url`` comes from the server's answer, so a hostile or compromised server could point a
download at a service inside the worker's network (a metadata endpoint, a database, a loopback
admin port) and have its answer stored as the "video". By default only public addresses are
fetched; the API's own address and port are allowed too when the connection names them literally
(so the emulator on 127.0.0.1 or localhost works as it is: a name is not trusted, since whoever
runs its DNS could point it anywhere), and a connection can name more hosts or networks in its
``allowed_video_hosts`` extra.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from airflow_provider_kling.core.errors import KlingDownloadError, shorten

#: The connection extra (a form field in the UI) naming more hosts or networks videos may come from.
ALLOWED_VIDEO_HOSTS = "allowed_video_hosts"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class KlingVideoAddressError(KlingDownloadError):
    """The video's host is an address videos are not fetched from; nothing was connected to."""


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo server), which is where it goes."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    return address.teredo[1] if address.teredo is not None else None


def _kind(address: IPAddress) -> str | None:
    """What makes ``address`` internal (loopback, private...), or None for a public address."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return _kind(embedded)
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "site-local"
    for kind, flag in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("unspecified", address.is_unspecified),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    ):
        if flag:
            return kind
    return None if address.is_global else "non-public"


def parse_allowed(value: object) -> tuple[frozenset[str], tuple[IPNetwork, ...]]:
    """``allowed_video_hosts`` as host names and networks; ValueError naming a bad entry.

    Given as a comma- or space-separated string (``"videos.internal, 10.20.0.0/16"``) or a list.
    """
    if value is None or value == "":
        return frozenset(), ()
    if isinstance(value, str):
        entries = [entry for entry in re.split(r"[,\s]+", value) if entry]
    elif isinstance(value, (list, tuple)) and all(isinstance(entry, str) for entry in value):
        entries = [entry.strip() for entry in value if entry.strip()]
    else:
        raise ValueError(
            f"must be host names or networks, as a comma-separated text or a list (got {value!r})"
        )
    hosts: set[str] = set()
    networks: list[IPNetwork] = []
    for entry in entries:
        if re.fullmatch(r"[0-9a-fA-F:.]+(/\d+)?", entry) and any(ch.isdigit() for ch in entry):
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        elif re.fullmatch(r"[A-Za-z0-9.-]+", entry):
            hosts.add(entry.lower().rstrip("."))
        else:
            raise ValueError(f"{entry!r} is not a host name, IP address or network")
    return frozenset(hosts), tuple(networks)


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses a download may connect to. Public ones always; internal ones only when they
    are the API's own address and port (``api_endpoints``), or the connection allows the host or
    network."""

    api_endpoints: frozenset[tuple[str, int]] = frozenset()
    allowed_hosts: frozenset[str] = frozenset()
    allowed_networks: tuple[IPNetwork, ...] = field(default_factory=tuple)

    def check(self, host: str, port: int, addresses: Iterable[str]) -> None:
        """Raise :class:`KlingVideoAddressError` unless every address ``host`` resolved to is allowed
        (no address at all is refused: what cannot be checked is not fetched)."""
        name = host.lower().rstrip(".")
        if name in self.allowed_hosts:
            return
        checked = list(addresses)
        if not checked:
            raise KlingVideoAddressError(
                f"Refusing to fetch the video from {shorten(host, 100)}: its address could not be "
                f"checked (it does not resolve here). Name it in the Kling connection's "
                f"{ALLOWED_VIDEO_HOSTS!r} extra if it is yours."
            )
        for text in checked:
            address = ipaddress.ip_address(text.split("%", 1)[0])
            kind = _kind(address)
            if kind is None or (str(address), port) in self.api_endpoints:
                continue
            candidates = [address, *filter(None, [_embedded_ipv4(address)])]
            if any(candidate in network for candidate in candidates for network in self.allowed_networks):
                continue
            raise KlingVideoAddressError(
                f"Refusing to fetch the video from {shorten(host, 100)} ({address}, a {kind} address): "
                "videos are fetched only from public addresses or the API's own. If this host serves "
                f"your videos, name it (or its network) in the Kling connection's {ALLOWED_VIDEO_HOSTS!r} "
                "extra. Nothing was connected to."
            )
