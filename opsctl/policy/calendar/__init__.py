"""Schedules written as systemd writes them (OnCalendar=, systemd.time(7)), for a documented subset.

Accepted: the shorthands minutely, hourly, daily, weekly, monthly, yearly, annually, quarterly and
semiannually (any case), or `[WEEKDAYS] [[YYYY-]MM-DD] [HH:MM[:SS]]`, where WEEKDAYS is a comma list
of names and `..` ranges (Mon..Fri, Sat,Sun), and every date or time field is `*` or a comma list of
values, `A..B` ranges and `/N` repetitions. A missing date means every day, a missing time 00:00:00.
Refused with a message saying what to write instead: time zones (UTC), the `~` last-day syntax,
fractional seconds, `@` timestamps, cron lines, "daily 01:30", "every 5m".

Elapses are computed with systemd's own algorithm (find_next() of src/shared/calendarspec.c, v252),
on the C library's mktime()/localtime() in the machine's local time zone, so that the daemon fires at
the moments a systemd timer would, including across daylight saving changes: a local time that does
not exist that day is skipped, one that happens twice elapses once (the first time).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from opsctl.policy.calendar.advice import EXAMPLES, diagnose, gives_up, refusal
from opsctl.policy.calendar.elapses import Stuck, next_usec
from opsctl.policy.calendar.grammar import Bad, parsed
from opsctl.policy.calendar.normal_form import normal_form
from opsctl.policy.calendar.quoting import quotable
from opsctl.policy.calendar.spec import MAX_YEAR, Spec
from opsctl.policy.durations import LONGEST
from opsctl.process import tool_environment

__all__ = ["Calendar", "CalendarError", "parse_calendar", "systemd_disagrees"]


class CalendarError(ValueError):
    """The text is not a calendar expression opsctl understands; the message says what to write instead."""


_LONGEST_TEXT = 1000  # far more than any sensible expression; a pasted file is refused outright
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_USEC = timedelta(microseconds=1)
# longest_gap looks from a fixed moment, so a policy validates the same way every day.
_GAP_REFERENCE = datetime(2025, 1, 1, tzinfo=UTC)
_GAP_WINDOW = timedelta(days=400)
_GAP_ELAPSES = 5000


@dataclass(frozen=True)
class Calendar:
    """A parsed calendar expression: the text as written and systemd's normalized form of it."""

    text: str
    normalized: str
    _spec: Spec = field(repr=False, compare=False)

    def next_after(self, moment: datetime) -> datetime:
        """The first elapse strictly after moment (aware), as an aware local time.

        CalendarError if there is none: its years are over, or systemd's own search loops there (its timer
        would stop), as it does for "3/12:00" the afternoon before Europe/Berlin moves its clocks forward.
        """
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError("next_after needs a timezone-aware moment")
        usec = (moment - _EPOCH) // _ONE_USEC
        if usec < 0:
            raise ValueError("next_after cannot look before 1970, as systemd cannot")
        try:
            found = next_usec(self._spec, usec)
        except Stuck:
            raise CalendarError(gives_up(self.text, self._spec, usec, moment)) from None
        if found is None:
            raise CalendarError(f'"{quotable(self.text)}" has no elapse after {moment.isoformat()} (systemd looks '
                                f"no further than {MAX_YEAR}); write {EXAMPLES}")
        return (_EPOCH + timedelta(microseconds=found)).astimezone()

    def longest_gap(self) -> timedelta:
        """The longest time between two consecutive elapses in about 400 days (at most 5000 elapses).

        Looked at from the first elapse after 2025-01-01. A schedule that stops elapsing (its years end, or
        systemd's search for its next elapse loops, which stops its timer) has a gap that never ends: LONGEST,
        100 years, which callers can still add a delay to.
        """
        try:
            previous = self.next_after(_GAP_REFERENCE)
        except CalendarError:
            return LONGEST
        horizon, longest = previous + _GAP_WINDOW, timedelta(0)
        for _ in range(_GAP_ELAPSES):
            try:
                following = self.next_after(previous)
            except CalendarError:
                return LONGEST
            longest = max(longest, following - previous)
            if following >= horizon:
                break
            previous = following
        return min(longest, LONGEST)


def parse_calendar(text: str) -> Calendar:
    """Parse a calendar expression of the accepted subset; CalendarError says what to write instead."""
    if not isinstance(text, str):
        raise CalendarError(f"a schedule is a calendar expression written as text; write {EXAMPLES}")
    if not text.strip():
        raise CalendarError(f"the schedule is empty; write {EXAMPLES}")
    if len(text) > _LONGEST_TEXT:
        raise CalendarError(refusal(text, f"it is longer than the {_LONGEST_TEXT} characters any schedule needs"))
    try:
        spec = parsed(text)
    except Bad as bad:
        raise CalendarError(diagnose(text) or refusal(text, bad.reason, bad.example)) from None
    return Calendar(text, normal_form(spec), spec)


def systemd_disagrees(calendar: Calendar) -> str | None:
    """Ask `systemd-analyze calendar` (when on PATH): a one-line reason if it refuses or normalizes otherwise."""
    binary = shutil.which("systemd-analyze")
    if binary is None:
        return None
    try:
        result = subprocess.run([binary, "calendar", "--", calendar.text], capture_output=True, text=True,
                                timeout=10, check=False, env=tool_environment())
    except (OSError, subprocess.TimeoutExpired):  # it could not be asked: that is not a disagreement
        return None
    if result.returncode != 0:
        said = next((line.strip() for line in result.stderr.splitlines() if line.strip()), f"exit {result.returncode}")
        verb = "refuses" if "Failed to parse" in result.stderr else "fails on"  # or it cannot compute an elapse
        return f'systemd {verb} "{quotable(calendar.text)}": {quotable(said, 200)}'
    found = re.search(r"^\s*Normalized form: (.*)$", result.stdout, re.MULTILINE)
    theirs = found.group(1).strip() if found else "(nothing)"
    if theirs != calendar.normalized:
        return f'systemd normalizes "{quotable(calendar.text)}" to "{theirs}", opsctl to "{calendar.normalized}"'
    return None
