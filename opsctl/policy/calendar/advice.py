"""Messages for refused text: the common mistakes get a suggestion of their own.

Every refusal says what to write instead; a suggestion is only made when it parses itself, so this module reads
text with the grammar and prints it in the normalized form.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from opsctl.policy.calendar.elapses import Stuck, next_usec
from opsctl.policy.calendar.grammar import SHORTHANDS, Bad, parsed
from opsctl.policy.calendar.normal_form import normal_form
from opsctl.policy.calendar.quoting import quotable
from opsctl.policy.calendar.spec import WEEKDAYS, Chain, Part, Spec, chain_values

_CRON_FIELDS = 5
EXAMPLES = '"*-*-* 03:30:00" (every day at 03:30), "Mon..Fri *-*-* 02:00" or "hourly"'
# Spellings systemd also takes; refused here so that the README's list is the whole story.
_ALIASES = {"anually": "annually", "biannually": "semiannually", "bi-annually": "semiannually",
            "semi-annually": "semiannually"}


def refusal(text: str, reason: str, example: str | None = None) -> str:
    return f'"{quotable(text)}" is not a calendar expression opsctl understands: {reason}; write {example or EXAMPLES}'


def _suggest(text: str, meaning: str = "") -> str | None:
    """The normalized form of text as a suggestion, if it parses; None otherwise (never a second diagnosis)."""
    try:
        spec = parsed(text)
    except Bad:
        return None
    return f'"{normal_form(spec)}"' + (f" ({meaning})" if meaning else "")


def diagnose(text: str) -> str | None:
    for diagnosis in (_spaces_around, _other_spaces, _time_zone, _alias, _shorthand_with_time, _every, _cron,
                      _weekday_dash, _fraction):
        message = diagnosis(text)
        if message:
            return message
    return None


def _spaces_around(text: str) -> str | None:
    if text == text.strip():
        return None
    return refusal(text, "it starts or ends with blank space, which systemd refuses",
                   _suggest(text.strip()) or f'"{quotable(text.strip())}"')


def _other_spaces(text: str) -> str | None:
    if not re.search(r"[^\S ]", text):
        return None
    return refusal(text, "its parts are separated by tabs or line breaks; systemd takes spaces only",
                   _suggest(" ".join(text.split())))


def _time_zone(text: str) -> str | None:
    rest, _, zone = text.rpartition(" ")
    if not rest or not _is_time_zone(zone):
        return None
    return refusal(text, f'it names a time zone ({quotable(zone)}), which opsctl does not support: schedules run '
                   "in the machine's local time zone, as a systemd timer without one does",
                   _suggest(rest.strip(), "in local time"))


def _is_time_zone(word: str) -> bool:
    if word.upper() in ("UTC", "GMT", "Z") or word in time.tzname:
        return True
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*", word):
        return False
    if "/" in word:
        return True
    try:
        ZoneInfo(word)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def _alias(text: str) -> str | None:
    wanted = _ALIASES.get(text.lower())
    if wanted is None:
        return None
    return refusal(text, "opsctl takes each shorthand in one spelling only", f'"{wanted}"')


_SHORTHAND_MEANING = {"minutely": "every day", "hourly": "every day", "daily": "every day",
                      "weekly": "every Monday", "monthly": "on the first of every month",
                      "yearly": "every 1 January", "annually": "every 1 January",
                      "quarterly": "on the first day of every quarter",
                      "semiannually": "every 1 January and 1 July"}


def _shorthand_with_time(text: str) -> str | None:
    name, _, rest = text.partition(" ")
    name = name.lower()
    if name not in SHORTHANDS or not rest.strip():
        return None
    alone = normal_form(SHORTHANDS[name])
    clock = re.fullmatch(r"\s*([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?\s*", rest)
    if clock is None:
        return refusal(text, f'a shorthand such as "{name}" stands alone', f'"{name}"')
    hour, minute, second = int(clock.group(1)), clock.group(2), clock.group(3) or "00"
    date = alone.rsplit(" ", 1)[0] if name not in ("minutely", "hourly") else "*-*-*"
    at = f"{hour:02d}:{minute}" + (f":{second}" if second != "00" else "")
    suggestion = _suggest(f"{date} {hour:02d}:{minute}:{second}", f"{_SHORTHAND_MEANING[name]} at {at}")
    if suggestion is None:
        return None
    return refusal(text, f'a shorthand such as "{name}" takes no time of day',
                   f'{suggestion} or "{name}" alone ({alone})')


_EVERY = re.compile(r"every\s*(?P<count>[0-9]*)\s*(?P<unit>s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|"
                    r"d|days?|w|weeks?|months?)", re.IGNORECASE)
_UNIT = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week"}


def _every(text: str) -> str | None:
    if not text.lower().startswith("every"):
        return None
    found = _EVERY.fullmatch(text.strip())
    if found is None:
        return refusal(text, "it is an interval, and a schedule names the moments to run at",
                       '"*:0/5" (every 5 minutes), "hourly" or "*-*-* 03:30:00" (every day at 03:30)')
    count = int(found.group("count") or 1)
    unit = found.group("unit").lower()
    unit = "month" if unit.startswith("mo") else _UNIT[unit[0]]
    return refusal(text, "it is an interval, and a schedule names the moments to run at",
                   _every_suggestion(count, unit))


_EVERY_ONE = {"minute": "minutely", "hour": "hourly", "day": "daily", "week": "weekly", "month": "monthly"}
# unit: (expression, how many fit in the unit above, the unit above)
_EVERY_SOME = {"second": ("*:*:0/{n}", 60, "minute"), "minute": ("*:0/{n}", 60, "hour"),
               "hour": ("0/{n}:00", 24, "day")}


def _every_suggestion(count: int, unit: str) -> str:
    if count == 1 and unit in _EVERY_ONE:
        return f'"{_EVERY_ONE[unit]}"'
    if unit in _EVERY_SOME and count < _EVERY_SOME[unit][1]:
        pattern, size, above = _EVERY_SOME[unit]
        # systemd counts from 0 in each minute, hour or day: 0/7 minutes is :00, :07 ... :56, then :00 again
        note = "" if size % count == 0 else f", counting again from 0 every {above}"
        shown = _suggest(pattern.format(n=count), f"every {count} {unit}s{note}" if count > 1 else f"every {unit}")
        if shown:
            return shown
    return '"hourly", "daily" or "*-*-* 00/6:00:00" (every 6 hours)'


_CRON_FIELD = re.compile(r"[0-9*][0-9*/,\-]*|[A-Za-z]{3}([,\-][A-Za-z]{3})*")
_CRON_DAYS = {str(number): name for number, name in enumerate(("Sun", *WEEKDAYS[:-1], "Sun"))}


def _cron(text: str) -> str | None:
    fields = text.split()
    if len(fields) != _CRON_FIELDS or not all(_CRON_FIELD.fullmatch(item) for item in fields):
        return None
    minute, hour, day, month, weekday = (_cron_to_systemd(item, low) for item, low in zip(fields, "00110",
                                                                                             strict=True))
    days = "" if weekday == "*" else _cron_weekdays(weekday) + " "
    suggestion = _suggest(f"{days}*-{month}-{day} {hour}:{minute}:00")
    if suggestion and days and day != "*":
        suggestion += " (cron runs when either day field matches, systemd only when both do)"
    return refusal(text, "cron lines are not calendar expressions",
                   suggestion or '"*-*-* 03:30:00" (cron\'s "30 3 * * *")')


def _cron_to_systemd(item: str, low: str) -> str:
    if item == "*":
        return "*"
    return item.replace("*/", f"{low}/").replace("-", "..")


def _cron_weekdays(item: str) -> str:
    return re.sub(r"[0-7]", lambda found: _CRON_DAYS[found.group(0)], item)


def _weekday_dash(text: str) -> str | None:
    fixed = re.sub(r"^([A-Za-z]{3,9})-([A-Za-z]{3,9})\b", r"\1..\2", text)
    suggestion = _suggest(fixed) if fixed != text else None
    if suggestion is None:
        return None
    return refusal(text, 'weekday ranges are written with "..", not "-"', suggestion)


def _fraction(text: str) -> str | None:
    fixed = re.sub(r"(:[0-9]+)\.[0-9]+(?=$|,|/|\.\.)", r"\1", text)
    fixed = re.sub(r"(/[0-9]+)\.[0-9]+$", r"\1", fixed)
    suggestion = _suggest(fixed, "whole seconds") if fixed != text else None
    if suggestion is None:
        return None
    return refusal(text, "fractional seconds are not supported", suggestion)


def gives_up(text: str, spec: Spec, usec: int, moment: datetime) -> str:
    """What to say when systemd's own search loops: its timer would stop firing there."""
    listed = _listed(spec)
    example = EXAMPLES
    try:
        if listed != spec and next_usec(listed, usec) is not None:
            example = f'"{normal_form(listed)}" (the same moments, listed)'
    except Stuck:
        pass
    return (f'systemd cannot compute when "{quotable(text)}" elapses after {moment.isoformat()}: its search '
            "loops (as when a repetition runs past the end of a day that changes to or from daylight saving time), "
            f"so its timer would stop; write {example}")


def _listed(spec: Spec) -> Spec:
    """spec with its month, day and hour repetitions written out as lists of values."""
    def listed(chain: Chain, low: int, high: int) -> Chain:
        if chain is None or not any(part.repeat for part in chain):
            return chain
        return tuple(Part(value) for value in sorted(chain_values(chain, low, high)))
    return replace(spec, month=listed(spec.month, 1, 12), day=listed(spec.day, 1, 31),
                   hour=listed(spec.hour, 0, 23))
