"""What counts as a video worth keeping: the container's signature in its first bytes.

A Content-Type proves nothing (a page served without one, or a 0-byte body with ``video/mp4``),
so the bytes decide: an ISO base media file (MP4, MOV: a ``ftyp`` box first) or Matroska/WebM.
"""

from __future__ import annotations

#: Bytes needed to recognise a container.
SIGNATURE_BYTES = 12


def container_of(head: bytes) -> str | None:
    """The container ``head`` (a file's first bytes) begins, or None if it is none we keep."""
    if len(head) >= 8 and head[4:8] == b"ftyp":
        return "MP4 (ISO base media)"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "Matroska/WebM"
    return None


def describe(head: bytes) -> str:
    """What arrived instead of a video, for an error message."""
    if not head:
        return "an empty body (0 bytes)"
    return f"{len(head)}+ bytes starting {head[:SIGNATURE_BYTES]!r}, not an MP4 ('ftyp') or WebM signature"
