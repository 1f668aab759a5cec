"""What a notification says: one run's start or end, as JSON for machines and as a calm text for people.

Both forms are bounded: a channel may refuse a large body (healthchecks.io keeps 100 kB, chat webhooks
less), and a notification that is refused says nothing at all. The head of the text (what happened, to
which target, what to do) is kept whole; the log tail gives up its oldest lines first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

MAX_BODY = 10_000  # bytes of UTF-8, for text(); to_json() keeps its log tail within the same budget
SCHEMA = 1  # bumped only when a key changes meaning or goes away; receivers may check it
CUT = "[cut]"
_MAX_LINE = 1_000  # bytes per log line: one endless line must not push every other line out
_MAX_FIELD = 2_000  # bytes per error or hint

_MINUTE = 60

Kind = Literal["start", "success", "failure", "skipped", "test"]

_STATE = {"start": "started", "success": "succeeded", "failure": "FAILED", "skipped": "skipped"}
# An outcome that only repeats the kind is left out of the first line ("FAILED (failed, exit 1)").
_PLAIN_OUTCOME = {"start": (), "success": ("ok",), "failure": ("failed",), "skipped": ("skipped",)}


@dataclass(frozen=True)
class TargetLine:
    """One target's part in the run: ok, or failed with an error and what to do."""

    name: str
    ok: bool
    error: str | None = None
    hint: str | None = None


@dataclass(frozen=True)
class Event:
    """A run's start or end (or a test), as every channel sends it."""

    kind: Kind
    command: str  # backup, prune, check, verify, drill, or "test"
    policy: str
    host: str
    run_id: str  # a uuid4 string, the same for a run's start and its end
    started_at: str  # ISO 8601 UTC
    exit_code: int | None = None
    outcome: str | None = None  # opsctl's word: ok, failed, partial, refused, interrupted, skipped...
    duration_s: float | None = None
    targets: tuple[TargetLine, ...] = ()
    error: str | None = None
    hint: str | None = None
    log_tail: tuple[str, ...] = ()

    @property
    def failed_targets(self) -> tuple[str, ...]:
        """Names of the targets that failed, in the run's order."""
        return tuple(target.name for target in self.targets if not target.ok)

    def to_json(self) -> dict[str, Any]:
        """The event as a JSON object with stable keys (schema 1); sent_at is the time of this call."""
        lines, cut = _tail_within(self.log_tail, MAX_BODY)
        return {"schema": SCHEMA, "kind": self.kind, "command": self.command, "policy": self.policy,
                "host": self.host, "run_id": self.run_id, "started_at": self.started_at,
                "sent_at": datetime.now(UTC).isoformat(timespec="seconds"), "exit_code": self.exit_code,
                "outcome": self.outcome, "duration_s": self.duration_s,
                "targets": [asdict(_clipped_target(target)) for target in self.targets],
                "error": _clip_optional(self.error), "hint": _clip_optional(self.hint),
                "log_tail": lines, "log_lines_cut": cut}

    def text(self) -> str:
        """A summary for people: the first line, per-target lines, then the log tail; at most MAX_BODY bytes."""
        head = "\n".join(self._head_lines())
        if not self.log_tail:
            return _cut_to(head, MAX_BODY)
        # Room for the head, "log:", the "[cut] N earlier lines" line and the newlines between them.
        budget = MAX_BODY - len(head.encode("utf-8", "replace")) - 64
        lines, cut = _tail_within(self.log_tail, budget)
        log = ["log:", *([f"{CUT} {cut} earlier lines"] if cut else []), *lines]
        return _cut_to("\n".join([head, *log]), MAX_BODY)

    def _head_lines(self) -> list[str]:
        lines = [self._headline()]
        if self.error:
            lines.append(f"error: {clip(self.error, _MAX_FIELD)}")
        if self.hint:
            lines.append(f"hint: {clip(self.hint, _MAX_FIELD)}")
        if self.targets:
            lines.append("targets:")
            lines += [line for target in self.targets for line in _target_lines(_clipped_target(target))]
        lines.append(f"run {self.run_id}, started {self.started_at}")
        return lines

    def _headline(self) -> str:
        if self.kind == "test":
            return f"opsctl test notification for policy {self.policy} from host {self.host}"
        details = [self.outcome] if self.outcome and self.outcome not in _PLAIN_OUTCOME[self.kind] else []
        if self.exit_code:
            details.append(f"exit {self.exit_code}")
        said = f" ({', '.join(details)})" if details else ""
        after = f" after {_duration(self.duration_s)}" if self.duration_s is not None and self.kind != "start" else ""
        return f"{self.command} of policy {self.policy} {_STATE[self.kind]}{said} on host {self.host}{after}"


def _target_lines(target: TargetLine) -> list[str]:
    if target.ok:
        return [f"  {target.name}: ok"]
    lines = [f"  {target.name}: FAILED" + (f": {target.error}" if target.error else "")]
    return lines + ([f"    hint: {target.hint}"] if target.hint else [])


def _clipped_target(target: TargetLine) -> TargetLine:
    return TargetLine(target.name, target.ok, _clip_optional(target.error), _clip_optional(target.hint))


def _clip_optional(text: str | None) -> str | None:
    return None if text is None else clip(text, _MAX_FIELD)


def _duration(seconds: float) -> str:
    if seconds < _MINUTE:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), _MINUTE)
    if minutes < _MINUTE:
        return f"{minutes} min {rest} s"
    return f"{minutes // _MINUTE} h {minutes % _MINUTE} min"


def _tail_within(lines: tuple[str, ...], budget: int) -> tuple[list[str], int]:
    """The newest lines (each clipped) whose UTF-8 size, newlines included, fits the budget; and how many were cut."""
    kept: list[str] = []
    used = 0
    for line in reversed(lines):
        line = clip(line, _MAX_LINE)  # noqa: PLW2901 - the clipped line replaces the original
        used += len(line.encode()) + 1  # clip made it encodable
        if used > budget:
            break
        kept.append(line)
    return kept[::-1], len(lines) - len(kept)


def clip(text: str, limit: int) -> str:
    """The text, or its head followed by " [cut]" so that the whole fits `limit` bytes of UTF-8."""
    return _cut(text, limit, f" {CUT}")


def _cut_to(text: str, limit: int) -> str:
    """Like clip, with the marker on a line of its own (for a whole body)."""
    return _cut(text, limit, f"\n{CUT}")


def _cut(text: str, limit: int, marker: str) -> str:
    # "replace": a lone surrogate (a file name decoded with surrogateescape) cannot be sent as UTF-8.
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return data.decode()
    # Decoding a prefix with "ignore" drops only the last character if the cut went through it.
    return data[:limit - len(marker.encode())].decode("utf-8", "ignore") + marker
