"""A real HTTP(S) server on a loopback port for the notification tests: records requests, misbehaves on demand.

Each path can be told how to answer: a status (always, or N times before 200), a redirect, no answer at
all (read the request, then wait until the server stops), a closed connection, or a trickle of header
bytes that never ends. Paths not told anything answer 200.
"""

from __future__ import annotations

import ssl
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.support.certs import ServerFiles

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Recorded:
    """One request as the server saw it; header names are lower case."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class Behaviour:
    """How a path answers. `times`: answer `status` that many times, then 200 (None: always)."""

    status: int = 200
    times: int | None = None
    location: str | None = None
    hang: bool = False
    close: bool = False
    trickle: bool = False
    served: int = field(default=0)


class WebhookServer:
    def __init__(self, tls: ServerFiles | None = None) -> None:
        self.requests: list[Recorded] = []
        self.stopping = threading.Event()
        self._behaviours: dict[str, Behaviour] = {}
        self._lock = threading.Lock()
        self._httpd = _HTTPServer(self)
        self._scheme = "http"
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(tls.cert, tls.key)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
            self._scheme = "https"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"{self._scheme}://{LOOPBACK}:{self._httpd.server_address[1]}"

    def start(self) -> WebhookServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()  # wakes the handlers that hang or trickle
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def answer(self, path: str, status: int, times: int | None = None, location: str | None = None) -> None:
        self._behaviours[path] = Behaviour(status=status, times=times, location=location)

    def hang(self, path: str) -> None:
        self._behaviours[path] = Behaviour(hang=True)

    def close(self, path: str) -> None:
        self._behaviours[path] = Behaviour(close=True)

    def trickle(self, path: str) -> None:
        self._behaviours[path] = Behaviour(trickle=True)

    def to(self, path: str) -> list[Recorded]:
        """The requests received on one path, in order."""
        with self._lock:
            return [request for request in self.requests if request.path == path]

    def record(self, request: Recorded) -> Behaviour:
        with self._lock:
            self.requests.append(request)
            behaviour = self._behaviours.get(request.path, Behaviour())
            behaviour.served += 1
            return behaviour


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a handler that hangs must not hold up stop()

    def __init__(self, owner: WebhookServer) -> None:
        super().__init__((LOOPBACK, 0), _Handler)
        self.owner = owner


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def log_message(self, *_: object) -> None:
        pass  # the test output stays readable

    def _serve(self) -> None:
        owner = self.server.owner
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = urllib.parse.urlsplit(self.path)
        behaviour = owner.record(Recorded(self.command, parts.path, urllib.parse.parse_qs(parts.query),
                                          {name.lower(): value for name, value in self.headers.items()}, body))
        if behaviour.hang:
            owner.stopping.wait(60)
            self.close_connection = True
        elif behaviour.close:
            self.close_connection = True
        elif behaviour.trickle:
            self._trickle(owner.stopping)
        else:
            self._answer(behaviour)

    def _answer(self, behaviour: Behaviour) -> None:
        failing = behaviour.times is None or behaviour.served <= behaviour.times
        self.send_response(behaviour.status if failing else 200)
        if behaviour.location and failing:
            self.send_header("Location", behaviour.location)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    def _trickle(self, stopping: threading.Event) -> None:
        self.close_connection = True
        try:
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while not stopping.wait(0.1):
                self.wfile.write(b"z")
        except OSError:
            pass  # the client gave up: that is the point
