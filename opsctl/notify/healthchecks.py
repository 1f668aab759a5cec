"""healthchecks.io pings (and a self-hosted Healthchecks): the check's URL, with the run's events as signals.

start -> URL/start, success -> URL, failure -> URL/<exit code> (URL/fail when the code is not 1..255),
skipped and test -> URL/log. Every ping carries ?rid=<run id>, so Healthchecks pairs a run's start with
its end and measures the run's duration.
"""

from __future__ import annotations

import urllib.parse

from opsctl.notify.event import Event
from opsctl.notify.transport import checked_url, post

_EXIT_CODES = range(1, 256)
_SUFFIX = {"start": "/start", "success": "", "skipped": "/log", "test": "/log"}


class Healthchecks:
    """A check's ping URL (https://hc-ping.com/<uuid> or <ping key>/<slug>); the text summary is the ping's body."""

    def __init__(self, url: str) -> None:
        self.display = checked_url(url)
        self._url = url

    def __repr__(self) -> str:
        return f"Healthchecks({self.display})"

    def send(self, event: Event, timeout_s: float) -> None:
        """One ping; raises DeliveryFailed."""
        post(self._ping_url(event), event.text().encode(), {"Content-Type": "text/plain; charset=utf-8"}, timeout_s)

    def _ping_url(self, event: Event) -> str:
        parts = urllib.parse.urlsplit(self._url)
        path = parts.path.rstrip("/") + _suffix(event)
        query = "&".join(filter(None, [parts.query, urllib.parse.urlencode({"rid": event.run_id})]))
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def _suffix(event: Event) -> str:
    if event.kind != "failure":
        return _SUFFIX[event.kind]
    # Healthchecks reads /0 as success and takes 1..255; any other code (none, -9) is a plain failure.
    code = event.exit_code
    return f"/{code}" if code in _EXIT_CODES else "/fail"
