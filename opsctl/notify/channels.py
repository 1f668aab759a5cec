"""What a notification channel is: a display name that is safe to log, and one attempt to send."""

from __future__ import annotations

from typing import Protocol

from opsctl.notify.event import Event


class DeliveryFailed(Exception):
    """One attempt failed. The message names no URL path or query (they are capabilities) and no secret."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable  # a later attempt may succeed (refused, reset, timeout, HTTP 5xx or 429)


class Channel(Protocol):
    @property
    def display(self) -> str:
        """scheme://host[:port]/… for a URL (never its path: it holds a token), the program's name for a command."""

    def send(self, event: Event, timeout_s: float) -> None:
        """One attempt, over within about timeout_s; raises DeliveryFailed."""
