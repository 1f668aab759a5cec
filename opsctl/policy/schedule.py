"""The policy's `schedule:` section: when each job runs, in systemd's OnCalendar words.

The same expressions drive the generated systemd timers and the `schedule run` daemon, so a
host with systemd and a container without it run the jobs at the same moments.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import BeforeValidator, Field

from opsctl.policy.calendar import Calendar, CalendarError, parse_calendar
from opsctl.policy.durations import parse_duration
from opsctl.policy.fields import Strict

JOBS = ("backup", "prune", "check", "verify", "drill", "standby")
_OFF_WORDS = ("off", "never", "none", "disabled")
# A user name as Debian's adduser accepts it by default (NAME_REGEX in adduser.conf); systemd's User= takes it too.
USER_NAME = r"^[a-z_][a-z0-9_-]{0,31}$"


def _when(value: object) -> object:
    """A calendar expression, or off (YAML reads a bare `off` as false)."""
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in _OFF_WORDS):
        return None
    if isinstance(value, Calendar):
        return value
    if not isinstance(value, str):
        raise ValueError(  # noqa: TRY004 - pydantic reports only ValueError as a policy error
            'expected a calendar expression such as hourly or "*-*-* 01:30:00", or off')
    when = parse_calendar(value)
    if next_run(when, datetime.now(UTC)) is None:  # its years are over, or its date never falls on its weekday
        raise ValueError(f'"{when.text}" never comes due again; write one that does, e.g. "*-*-* 01:30:00", or off')
    return when


def _delay(value: object) -> timedelta:
    """A duration, or 0 (every run starts on the dot)."""
    if value in (0, "0", "0s"):
        return timedelta(0)
    return parse_duration(value)


When = Annotated[Calendar | None, BeforeValidator(_when)]


class Schedule(Strict):
    """When each job runs on its own (systemd timers or `opsctl schedule run`); off leaves a job out."""

    backup: When = Field(parse_calendar("hourly"), description="when backups run; default hourly")
    prune: When = Field(parse_calendar("*-*-* 03:30:00"), description="when retention is applied; default daily 03:30")
    check: When = Field(parse_calendar("Sun *-*-* 04:30:00"),
                        description="when every repository is checked, reading the next part of its data; "
                                    "default Sundays 04:30")
    verify: When = Field(parse_calendar("*-*-* 05,17:00:00"),
                         description="when the newest snapshot is restored and proven, one target per run in turn; "
                                     "default twice a day, 05:00 and 17:00")
    drill: When = Field(parse_calendar("*-*-01 06:00:00"),
                        description="when a disaster-recovery drill runs; default the 1st of each month at 06:00")
    standby: When = Field(None, description="when the read-only standby on the recovery server is refreshed "
                                            "(opsctl standby refresh); default off")
    randomized_delay: Annotated[timedelta, BeforeValidator(_delay)] = Field(
        timedelta(minutes=5), description="each run starts up to this much later, so many hosts do not start at once")
    user: str | None = Field(
        None, pattern=USER_NAME,
        description="the user that system timers run each job as (systemd User=, with that user's groups): a user "
                    "name of lower-case letters, digits, '_' and '-'; default root")

    def jobs(self) -> dict[str, Calendar]:
        """The jobs that run, with when."""
        return {job: when for job in JOBS if (when := getattr(self, job)) is not None}


def check_parts(read_data_subset: str) -> int | None:
    """How many scheduled checks read every pack once: 5% -> 20, 1/7 -> 7; None for a size (random packs)."""
    if read_data_subset.endswith("%"):
        percent = float(read_data_subset[:-1])
        return max(1, math.ceil(100 / percent)) if percent > 0 else None
    if "/" in read_data_subset:
        return int(read_data_subset.split("/")[1]) or None
    return None


def next_run(when: Calendar, after: datetime) -> datetime | None:
    """The first run after `after`, or None when there is none (its years are over, or, as in systemd, the
    search gives up around a daylight-saving change): such a job simply never comes due."""
    try:
        return when.next_after(after)
    except CalendarError:
        return None


def local_iso(moment: datetime | None) -> str | None:
    """The moment in this machine's time zone, as the schedule is written."""
    return None if moment is None else moment.astimezone().isoformat(timespec="seconds")
