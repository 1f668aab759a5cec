"""Notifications as a runner subscriber: the policy's channels hear when a run starts and how it ended.

Delivery never decides a run's outcome and never holds it up for long: each attempt has a
timeout, retries are bounded, and everything ends within DEADLINE_S. The start ping goes out in
the background and is waited for (briefly) before the end's, so a receiver never sees them in the
wrong order. Only what opsctl itself says is sent: outcome words, per-target errors and hints
(already free of row data and secrets), and opsctl's own warnings.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections import deque
from pathlib import Path

from opsctl.actions.events import Run
from opsctl.actions.outcome import Outcome, Problem
from opsctl.notify import Channel, CommandHook, Delivery, Event, Healthchecks, TargetLine, Webhook, deliver
from opsctl.notify.event import Kind
from opsctl.policy.fields import check_private_file
from opsctl.policy.notify import (
    CommandChannel,
    HealthchecksChannel,
    Notify,
    UrlChannel,
    WebhookChannel,
    channel_problem,
)

log = logging.getLogger(__name__)
DEADLINE_S = 30.0
START_DEADLINE_S = 10.0
_TAIL_LINES = 40


class Notifier:
    """Subscriber: sends the run's start and end to the channels that asked for them."""

    def __init__(self) -> None:
        self._tail = _LogTail()
        self._run_id = str(uuid.uuid4())
        self._start: threading.Thread | None = None
        self._began = False

    def started(self, run: Run) -> None:
        self._began = True
        if _wanted(run, "start"):  # one attempt, in the background: a slow endpoint never delays the work
            self._start = threading.Thread(target=send, args=(_notify(run), self._event(run, "start")),
                                           kwargs={"deadline_s": START_DEADLINE_S, "retries": 0}, daemon=True)
            self._start.start()

    def finished(self, run: Run, outcome: Outcome) -> None:
        facts = outcome.audit()
        targets = tuple(TargetLine(r.target, r.ok, r.error, r.hint) for r in outcome.target_results())
        kind: Kind = "success" if int(outcome.exit_code) == 0 else "failure"
        self._end(run, self._event(run, kind, code=int(outcome.exit_code), word=outcome.word, targets=targets,
                                   error=facts.error))

    def failed(self, run: Run, problem: Problem, word: str) -> None:
        if word != "skipped" and not self._began and not run.scheduled:
            self._tail.close()  # a person's command refused before it began (a typo, a busy lock): nothing ran
            return
        kind: Kind = "skipped" if word == "skipped" else "failure"
        self._end(run, self._event(run, kind, code=int(problem.exit_code), word=word, error=problem.message,
                                   hint=problem.hint))

    def _end(self, run: Run, event: Event) -> None:
        self._tail.close()
        if self._start is not None:  # the start ping first, or the receiver sees a run begin after it ended
            self._start.join(START_DEADLINE_S + 1)  # its one attempt is cut off at START_DEADLINE_S
        if _wanted(run, event.kind):
            send(_notify(run), event)

    def _event(self, run: Run, kind: Kind, *, code: int | None = None, word: str | None = None,
               targets: tuple[TargetLine, ...] = (), error: str | None = None, hint: str | None = None) -> Event:
        duration = None if kind == "start" else run.duration_s
        return Event(kind, run.command, run.policy or "", socket.gethostname(), self._run_id, run.started_at,
                     exit_code=code, outcome=word, duration_s=duration, targets=targets, error=error, hint=hint,
                     log_tail=self._tail.lines())


def _wanted(run: Run, kind: str) -> bool:
    return run.settings is not None and bool(channels_for(run.settings.notify, run.command, kind))


def _notify(run: Run) -> Notify:
    assert run.settings is not None  # noqa: S101 - _wanted checked it
    return run.settings.notify


def channels_for(notify: Notify, command: str, kind: str) -> list[CommandChannel | HealthchecksChannel |
                                                                     WebhookChannel]:
    """The policy's channels that want this kind of event of this command (a test goes to all)."""
    if kind == "test":
        return list(notify.channels)
    return [c for c in notify.channels if command in c.commands and kind in c.events]


def send(notify: Notify, event: Event, *, deadline_s: float = DEADLINE_S,
         retries: int | None = None) -> list[Delivery]:
    """Deliver the event to each channel that wants it; logs failures (never the URL), never raises."""
    wanted = channels_for(notify, event.command, event.kind)
    channels: list[Channel] = []
    failed: list[Delivery] = []
    for config in wanted:
        try:
            channels.append(channel_of(config))
        except (OSError, ValueError) as exc:
            failed.append(Delivery(describe(config), False, 0, f"cannot be used: {exc}"))
    started = time.monotonic()
    # A command channel has its own timeout, which may be longer than the one for URLs.
    longest = max((c.timeout.total_seconds() + 5 for c in wanted if isinstance(c, CommandChannel)), default=0)
    deliveries = failed + deliver(channels, event, timeout_s=min(notify.timeout.total_seconds(), deadline_s),
                                  retries=notify.retries if retries is None else retries,
                                  deadline_s=max(deadline_s, longest))
    for d in deliveries:
        if not d.ok:
            log.warning("notification to %s failed: %s", d.channel, d.error)
    log.debug("notifications sent in %.1f s", time.monotonic() - started)
    return deliveries


def channel_of(config: CommandChannel | HealthchecksChannel | WebhookChannel) -> Channel:
    """The channel that sends for this part of the policy (URLs and signing secrets read from their files)."""
    problem = channel_problem(config)
    if problem is not None:
        raise ValueError(problem)
    if isinstance(config, CommandChannel):
        return _TimedCommand(CommandHook(config.argv), config.timeout.total_seconds())
    url = _url(config)
    if isinstance(config, HealthchecksChannel):
        return Healthchecks(url)
    secret = _private_bytes(config.secret_file) if config.secret_file is not None else None
    return Webhook(url, secret)


def describe(config: CommandChannel | HealthchecksChannel | WebhookChannel) -> str:
    """A display form that holds no token: the kind, and the program's or the URL file's name."""
    if isinstance(config, CommandChannel):
        return f"command {Path(config.argv[0]).name}"
    return f"{config.kind} ({'URL from ' + str(config.url_file) if config.url_file else 'URL in the policy'})"


def _url(config: UrlChannel) -> str:
    if config.url is not None:
        return config.url
    assert config.url_file is not None  # noqa: S101 - the model requires one of them
    return _private_bytes(config.url_file).decode().strip()


def _private_bytes(path: Path) -> bytes:
    check_private_file(path)
    return path.read_bytes().strip()


class _TimedCommand:
    """A command channel with its own timeout (a program may need longer than one HTTP attempt)."""

    def __init__(self, hook: CommandHook, timeout_s: float) -> None:
        self.hook, self.timeout_s = hook, timeout_s
        self.display = hook.display

    def send(self, event: Event, timeout_s: float) -> None:  # noqa: ARG002 - its own timeout, not the URLs'
        self.hook.send(event, self.timeout_s)


class _LogTail(logging.Handler):
    """opsctl's own warnings and errors during the run, the newest few, for the notification's body."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._lines: deque[str] = deque(maxlen=_TAIL_LINES)
        self._logger = logging.getLogger("opsctl")
        self._logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._lines.append(f"{record.levelname.lower()}: {record.getMessage()}")
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is left out, never raised
            self.handleError(record)

    def lines(self) -> tuple[str, ...]:
        return tuple(self._lines)

    def close(self) -> None:
        self._logger.removeHandler(self)
        super().close()
