"""Which URLs the provider uses at all: http(s) with a host, one rule for every place that asks."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit


def is_http_url(value: Any) -> bool:
    """Whether ``value`` is an http(s) URL with a host: the only URLs sent to the API or fetched."""
    if not isinstance(value, str):
        return False
    parts = urlsplit(value.strip())
    return parts.scheme in ("http", "https") and bool(parts.hostname)
