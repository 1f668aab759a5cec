"""Send one event to every channel at once, with retries, within a deadline; never raise.

A notification must not hold up or break the job it reports on: each channel runs in its own daemon
thread, and one still running at the deadline is reported as failed and left behind (a daemon thread
ends with opsctl). A failure one attempt later may not see (refused, reset, timeout, HTTP 5xx or 429)
is tried again after a short pause; any other failure is final.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from opsctl.errors import described
from opsctl.notify.channels import Channel, DeliveryFailed
from opsctl.notify.event import Event

log = logging.getLogger(__name__)

BACKOFF_S = (0.5, 1.0, 2.0)  # pause before the 2nd, 3rd, and every later attempt
_SHORTEST_ATTEMPT_S = 0.5  # an attempt with less time left than this is not started


@dataclass(frozen=True)
class Delivery:
    """How one channel fared: its display name, never its URL's path, and the last attempt's error."""

    channel: str
    ok: bool
    attempts: int
    error: str | None = None
    seconds: float = 0.0


def deliver(channels: Sequence[Channel], event: Event, *, timeout_s: float = 10, retries: int = 2,
            deadline_s: float = 30) -> list[Delivery]:
    """Send the event to every channel in parallel; one Delivery per channel, in order, within deadline_s."""
    deadline = time.monotonic() + deadline_s
    runs = [_Run(channel, event, timeout_s=timeout_s, retries=retries, deadline=deadline) for channel in channels]
    for run in runs:
        run.join(deadline)
    return [run.result(deadline_s) for run in runs]


class _Run:
    """One channel's attempts, in a daemon thread."""

    def __init__(self, channel: Channel, event: Event, *, timeout_s: float, retries: int, deadline: float) -> None:
        self._channel, self._event = channel, event
        self._timeout_s, self._retries, self._deadline = timeout_s, retries, deadline
        self._display = channel.display
        self._started = time.monotonic()
        self._attempts = 0
        self._done: Delivery | None = None
        self._thread = threading.Thread(target=self._run, name=f"notify {self._display}", daemon=True)
        try:
            self._thread.start()
        except RuntimeError as error:  # no thread to be had: the run still gets its answer
            self._done = self._failed(f"not sent ({described(error)})")

    def join(self, deadline: float) -> None:
        if self._thread.is_alive():
            self._thread.join(max(0.0, deadline - time.monotonic()))

    def result(self, deadline_s: float) -> Delivery:
        done = self._done  # read once: a thread left behind may still set it
        return done if done is not None else self._failed(f"no answer within {deadline_s:g} s")

    def _run(self) -> None:
        try:
            self._done = self._attempt_until_done()
        except Exception as error:  # noqa: BLE001 - a channel's bug is its own failure, never the job's
            log.warning("notification to %s failed unexpectedly: %s", self._display, described(error))
            self._done = self._failed(f"failed unexpectedly ({described(error)})")

    def _attempt_until_done(self) -> Delivery:
        while True:
            self._attempts += 1
            left = self._deadline - time.monotonic()
            try:
                self._channel.send(self._event, max(min(self._timeout_s, left), _SHORTEST_ATTEMPT_S / 10))
            except DeliveryFailed as failed:
                pause = BACKOFF_S[min(self._attempts, len(BACKOFF_S)) - 1]
                if not self._worth_retrying(failed, pause):
                    return self._failed(failed.message)
                log.debug("notification to %s: attempt %d failed (%s); again in %g s",
                          self._display, self._attempts, failed.message, pause)
                time.sleep(pause)
            else:
                return Delivery(self._display, True, self._attempts, None, self._seconds())

    def _worth_retrying(self, failed: DeliveryFailed, pause: float) -> bool:
        left = self._deadline - time.monotonic() - pause
        return failed.retryable and self._attempts <= self._retries and left >= _SHORTEST_ATTEMPT_S

    def _failed(self, error: str) -> Delivery:
        return Delivery(self._display, False, self._attempts, error, self._seconds())

    def _seconds(self) -> float:
        return round(time.monotonic() - self._started, 3)
