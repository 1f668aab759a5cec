"""One HTTP POST for the URL channels: no redirects, verified TLS, a hard time limit, errors in safe words.

A notification URL is a capability (a healthchecks UUID, a webhook token): nothing here puts its path
or query into a message. Redirects are not followed: a redirect could carry a signed body to another
host. The environment's proxy settings (https_proxy, no_proxy) apply, as they do for curl.
"""

from __future__ import annotations

import errno
import http.client
import socket
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from contextlib import suppress
from http import HTTPStatus
from typing import Any

from opsctl import __version__
from opsctl.errors import described
from opsctl.notify.channels import DeliveryFailed

USER_AGENT = f"opsctl/{__version__}"

# Failures a later attempt may not see: the network or the name server was briefly away.
_TRANSIENT = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ETIMEDOUT, socket.EAI_AGAIN})
_DELIVERED = range(200, 300)
_REDIRECT = range(300, 400)
_TRY_LATER = frozenset({HTTPStatus.TOO_MANY_REQUESTS, *range(500, 600)})
_CLOSED = "connection closed without an answer"
_KNOWN: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str, bool], ...] = (
    (ConnectionRefusedError, "connection refused", True),
    (ConnectionError, _CLOSED, True),  # reset, aborted, broken pipe; http.client.RemoteDisconnected too
    ((ssl.SSLEOFError, ssl.SSLZeroReturnError), _CLOSED, True),
    (http.client.HTTPException, "the answer is not valid HTTP", False),
)


def checked_url(url: str) -> str:
    """The display form of an http(s) URL, scheme://host[:port]/…; ValueError (naming no part of it) otherwise."""
    if not url.isascii() or any(char.isspace() or not char.isprintable() for char in url):
        raise ValueError("a notification URL must be ASCII without spaces (percent-encode other characters)")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("a notification URL must start with https:// or http://")
    if not parts.hostname:
        raise ValueError("a notification URL must name a host")
    if "@" in parts.netloc:
        raise ValueError("a notification URL must not carry a user name or password (put the token in the URL's path)")
    try:
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        raise ValueError("the port of a notification URL must be a number from 1 to 65535") from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}{port}/…"


def post(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> None:
    """POST once; return on HTTP 2xx, raise DeliveryFailed otherwise. Lasts about timeout_s at most."""
    request = urllib.request.Request(url, data=body, headers={"User-Agent": USER_AGENT, **headers},  # noqa: S310 - checked_url let only http(s) through
                                     method="POST")
    with Watchdog(timeout_s) as watchdog:
        try:
            with _opener(watchdog, tls=request.type == "https").open(request, timeout=timeout_s) as response:
                status: int = response.status
        except (OSError, http.client.HTTPException, ValueError) as error:
            # `from None`: the original exception may quote the URL; it must not reach a log by its chain.
            raise failure(error, timeout_s, expired=watchdog.expired) from None
    if watchdog.expired:  # the headers were cut short by the shutdown, not ended by the server
        raise DeliveryFailed(f"no answer within {timeout_s:g} s", retryable=True)
    check_status(status)


def check_status(status: int) -> None:
    """2xx is delivered; a redirect is a mistake in the URL; 5xx and 429 may pass later, other codes will not."""
    if status in _DELIVERED:
        return
    if status in _REDIRECT:
        raise DeliveryFailed(f"answered HTTP {status}, a redirect, which opsctl does not follow: "
                             "use the address it points to", retryable=False)
    raise DeliveryFailed(f"answered HTTP {status}", retryable=status in _TRY_LATER)


def failure(error: BaseException, timeout_s: float, *, expired: bool) -> DeliveryFailed:
    """An attempt's exception in words that hold no part of the URL, and whether to try again."""
    cause = error.reason if isinstance(error, urllib.error.URLError) and isinstance(error.reason, Exception) else error
    if expired or isinstance(cause, TimeoutError):
        return DeliveryFailed(f"no answer within {timeout_s:g} s", retryable=True)
    if isinstance(cause, ssl.SSLCertVerificationError):
        return DeliveryFailed(f"TLS certificate not trusted ({cause.verify_message})", retryable=False)
    for kinds, words, retryable in _KNOWN:
        if isinstance(cause, kinds):
            return DeliveryFailed(words, retryable=retryable)
    if isinstance(cause, socket.gaierror):
        return DeliveryFailed(f"cannot resolve the host name ({cause.strerror})", retryable=cause.errno in _TRANSIENT)
    if isinstance(cause, OSError) and cause.strerror:  # the system's words: they never quote the URL
        return DeliveryFailed(described(cause), retryable=cause.errno in _TRANSIENT)
    return DeliveryFailed(f"cannot send ({described(cause)})", retryable=False)


class Watchdog:
    """Shuts an attempt's sockets when its time is up.

    A socket timeout bounds each read, not the attempt: a server that trickles a byte a second would
    hold it for ever. Shutting the socket down wakes the blocked read at once.
    """

    def __init__(self, timeout_s: float) -> None:
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(timeout_s, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._timer.cancel()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    # The plain socket's shutdown, even on a TLS socket: SSLSocket.shutdown would drop the TLS state under
    # the reading thread's feet. A closed or detached socket has no descriptor left: nothing to shut.
    with suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _WatchedHTTP(http.client.HTTPConnection):
    watchdog: Watchdog | None = None

    def connect(self) -> None:
        super().connect()  # for HTTPS: the TCP connection (and proxy tunnel), before the TLS handshake
        if self.watchdog:
            self.watchdog.watch(self.sock)


class _WatchedHTTPS(http.client.HTTPSConnection, _WatchedHTTP):
    def connect(self) -> None:
        super().connect()
        if self.watchdog:
            self.watchdog.watch(self.sock)  # the TLS socket: the plain one was detached by the handshake


def _connections(watchdog: Watchdog, tls: ssl.SSLContext | None) -> Callable[..., http.client.HTTPConnection]:
    def connection(host: str, /, **options: Any) -> http.client.HTTPConnection:
        made = _WatchedHTTPS(host, context=tls, **options) if tls else _WatchedHTTP(host, **options)
        made.watchdog = watchdog
        return made
    return connection


class _HTTP(urllib.request.HTTPHandler):
    def __init__(self, watchdog: Watchdog) -> None:
        super().__init__()
        self._watchdog = watchdog

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_connections(self._watchdog, None), req)


class _HTTPS(urllib.request.HTTPSHandler):
    def __init__(self, watchdog: Watchdog) -> None:
        # Made per attempt, not cached: it follows SSL_CERT_FILE / SSL_CERT_DIR as they are now.
        self._tls = ssl.create_default_context()
        super().__init__(context=self._tls)
        self._watchdog = watchdog

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_connections(self._watchdog, self._tls), req)


def _opener(watchdog: Watchdog, *, tls: bool) -> urllib.request.OpenerDirector:
    # Built by hand to leave out the redirect handler and the error processor: the status is judged above.
    # The TLS handler only for https: loading the system's CA certificates takes tens of milliseconds.
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), _HTTPS(watchdog) if tls else _HTTP(watchdog)):
        opener.add_handler(handler)
    return opener
