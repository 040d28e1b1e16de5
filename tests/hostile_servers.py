"""Hostile HTTP servers on loopback for tests: scripted answers, trickles, and what they received."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections.abc import Callable

Answer = Callable[[bytes, socket.socket], None]


class ScriptedServer(socketserver.ThreadingTCPServer):
    """A TCP server on loopback answering each request with the test's ``answer(request, sock)``,
    and recording what it received."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, answer: Answer, host: str = "127.0.0.1") -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.connections = 0
        super().__init__((host, 0), _ScriptedHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class _ScriptedHandler(socketserver.BaseRequestHandler):
    server: ScriptedServer

    def handle(self) -> None:
        self.server.connections += 1
        self.request.settimeout(5)
        received = b""
        try:
            while b"\r\n\r\n" not in received:
                chunk = self.request.recv(65536)
                if not chunk:
                    return
                received += chunk
            head, _, body = received.partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            while len(body) < length:
                body += self.request.recv(65536)
            self.server.requests.append(head + b"\r\n\r\n" + body)
            self.server.answer(head + b"\r\n\r\n" + body, self.request)
        except OSError:
            pass  # the client hung up, which is what a cut-off call does


def http_answer(status: str, body: bytes, **headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def answering(status: str, body: bytes, **headers: str) -> Answer:
    def answer(request: bytes, sock: socket.socket) -> None:
        sock.sendall(http_answer(status, body, **headers))

    return answer


class Trickle:
    """Sends its headers, then ``body`` one byte every ``gap`` seconds, counting what it sent:
    about 13 s for the status body below, far past every test budget."""

    def __init__(
        self, body: bytes, gap: float = 0.1, headers_too: bool = False, content_type: str = "application/json"
    ) -> None:
        self.body, self.gap, self.headers_too, self.content_type = body, gap, headers_too, content_type
        self.sent = 0

    def __call__(self, request: bytes, sock: socket.socket) -> None:
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: {self.content_type}\r\n"
            f"Content-Length: {len(self.body)}\r\n\r\n"
        )
        if self.headers_too:
            payload = head.encode() + self.body
        else:
            sock.sendall(head.encode())
            payload = self.body
        for index in range(len(payload)):
            sock.sendall(payload[index : index + 1])
            self.sent += 1
            time.sleep(self.gap)


STATUS_PROCESSING = json.dumps({"success": True, "data": {"status": "processing", "progress": 5}}).encode()
STATUS_COMPLETED = (
    b'{"success": true, "data": {"status": "completed", "video_url": "https://cdn.example.com/v.mp4"}}'
)


def echo_of(form: Callable[[str], str], status: str = "401 Unauthorized") -> Answer:
    """A server quoting our request's Authorization header back, in the given form."""

    def answer(request: bytes, sock: socket.socket) -> None:
        authorization = next(
            line.split(b":", 1)[1].strip().decode()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"authorization:")
        )
        body = json.dumps({"success": False, "error": f"Bad credentials: {form(authorization)}"})
        sock.sendall(http_answer(status, body.encode(), Content_Type="application/json"))

    return answer
