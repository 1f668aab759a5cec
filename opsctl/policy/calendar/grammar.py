"""Parsing: the same grammar and the same quirks as calendar_spec_from_string(), minus the refused forms.

Then normalizing and checking, as calendar_spec_normalize() and calendar_spec_valid() do. Bad carries the reason
the grammar stopped; the advice module turns it into the message a user reads.
"""

from __future__ import annotations

import re

from opsctl.policy.calendar.quoting import quotable
from opsctl.policy.calendar.spec import MAX_YEAR, MIN_YEAR, USEC, WEEKDAYS, Chain, Part, Spec, chain_values

_MAX_LIST = 241  # systemd refuses longer comma lists (CALENDARSPEC_COMPONENTS_MAX + 1)
_MAX_DIGITS = 9  # every accepted value has at most 4 digits; int() of a pasted novel is never attempted
_CENTURY = 100  # systemd reads years below it as 19xx or 20xx
_ALL_WEEKDAYS = 0b1111111
_ZERO: Chain = (Part(0),)


def _shorthand(month: Chain = None, day: Chain = None, hour: Chain = _ZERO, minute: Chain = _ZERO,
               weekdays: int = 0) -> Spec:
    return Spec(weekdays, None, month, day, hour, minute, _ZERO)


_FIRST = (Part(1),)
SHORTHANDS = {
    "minutely": _shorthand(hour=None, minute=None),
    "hourly": _shorthand(hour=None),
    "daily": _shorthand(),
    "weekly": _shorthand(weekdays=1),
    "monthly": _shorthand(day=_FIRST),
    "yearly": _shorthand(month=_FIRST, day=_FIRST),
    "annually": _shorthand(month=_FIRST, day=_FIRST),
    "quarterly": _shorthand(month=tuple(Part(m) for m in (1, 4, 7, 10)), day=_FIRST),
    "semiannually": _shorthand(month=(Part(1), Part(7)), day=_FIRST),
}


def parsed(text: str) -> Spec:
    """The spec of text, or Bad with the reason the grammar stopped."""
    spec = SHORTHANDS.get(text.lower()) if text.isascii() else None
    return spec or _validated(_Reader(text).spec())


class Bad(Exception):
    def __init__(self, reason: str, example: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.example = example


# ASCII: with Unicode case folding the long s (U+017F) would match "s", and systemd compares bytes.
_WEEKDAY = re.compile("monday|mon|tuesday|tue|wednesday|wed|thursday|thu|friday|fri|saturday|sat|sunday|sun",
                      re.IGNORECASE | re.ASCII)
_NUMBER = re.compile("[0-9]+")  # not \d: systemd takes ASCII digits only
_WORD = re.compile(r"[^\s,.:\-/]*")


class _Reader:
    """A cursor over the text, with one method per part of the grammar."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self, count: int = 1) -> str:
        return self.text[self.pos:self.pos + count]

    def spaces(self) -> None:
        while self.peek() == " ":
            self.pos += 1

    def word(self) -> str:
        found = _WORD.match(self.text, self.pos)
        return found.group(0) if found else ""

    def spec(self) -> Spec:
        weekdays = self.weekdays()
        year, month, day = self.date()
        hour, minute, usec = self.time_of_day()
        if self.pos != len(self.text):
            raise Bad(f'"{quotable(self.text[self.pos:])}" is left over after the time')
        return Spec(weekdays, year, month, day, hour, minute, usec)

    def weekdays(self) -> int:
        bits, low, first = 0, -1, True
        while True:
            found = _WEEKDAY.match(self.text, self.pos)
            if found is None:
                if first:
                    return 0
                raise Bad(f'"{quotable(self.word())}" is not a weekday (Mon..Sun, or Monday..Sunday)')
            day = _WEEKDAY_NUMBERS[found.group(0).lower()[:3]]
            self.pos = found.end()
            if self.peek() not in ("", "-", ".", ",", " "):
                raise Bad(f'"{quotable(found.group(0) + self.word())}" is not a weekday (Mon..Sun, or Monday..Sunday)')
            if low > day:
                raise Bad(f"the weekday range {WEEKDAYS[low]}..{WEEKDAYS[day]} runs backwards",
                          f'"{WEEKDAYS[day]},{WEEKDAYS[low]}..Sun" or "Mon..Fri"')
            bits |= sum(1 << number for number in range(day if low < 0 else low, day + 1))
            if self.peek() in ("", " "):
                self.spaces()
                return bits
            low = self.weekday_separator(low, day)
            if self.peek() in ("", " "):
                if low >= 0:
                    raise Bad(f'the weekday range "{WEEKDAYS[low]}.." has no end', '"Mon..Fri"')
                self.spaces()
                return bits
            first = False

    def weekday_separator(self, low: int, day: int) -> int:
        """Step over what follows a weekday name; return where an open range starts (-1: none)."""
        if self.peek() == "-":
            raise Bad('weekday ranges are written with "..", not "-"', f'"{WEEKDAYS[day]}..Fri"')
        if self.peek() == ",":
            self.pos += 1
            return -1
        if self.peek(2) != ".." or low >= 0:
            raise Bad("weekdays are separated by commas and ranges written with two dots",
                      '"Mon..Fri" or "Sat,Sun"')
        self.pos += 2
        return day

    def date(self) -> tuple[Chain, Chain, Chain]:
        if self.peek() in ("", "@"):
            if self.peek() == "@":
                raise Bad("@ timestamps (and cron's @daily) are not supported", '"daily" or "*-*-* 03:30:00"')
            return None, None, None
        start = self.pos
        first = self.chain("the year or month")
        if self.peek() in ("", ":"):  # it was the hour: there is no date
            self.pos = start
            return None, None, None
        self.date_separator(start)
        second = self.chain("the month or day")
        if self.peek() in ("", " "):
            self.spaces()
            return None, first, second
        self.date_separator(start)
        third = self.chain("the day")
        if self.peek() not in ("", " "):
            raise Bad(f'"{quotable(self.text[start:])}" is not a date (YYYY-MM-DD, MM-DD, "*" for any)',
                      '"*-*-01 03:00:00"')
        self.spaces()
        return first, second, third

    def date_separator(self, start: int) -> None:
        if self.peek() == "~":
            raise Bad('the "~" (days before the end of the month) is not supported',
                      '"*-*-01 03:00:00" (the first of every month)')
        if self.peek() != "-":
            shown = self.text[start:].split(" ", 1)[0]
            raise Bad(f'"{quotable(shown)}" is not a date (YYYY-MM-DD, MM-DD, "*" for any) or a time (HH:MM)')
        self.pos += 1

    def time_of_day(self) -> tuple[Chain, Chain, Chain]:
        if self.peek() == "":
            return _ZERO, _ZERO, _ZERO
        hour = self.chain("the hour")
        if self.peek() != ":":
            raise Bad('the time is written HH:MM or HH:MM:SS, such as "03:30"')
        self.pos += 1
        minute = self.chain("the minutes")
        if self.peek() == "":
            return hour, minute, _ZERO
        if self.peek() != ":":
            raise Bad('the time is written HH:MM or HH:MM:SS, such as "03:30"')
        self.pos += 1
        return hour, minute, self.chain("the seconds", usec=True)

    def chain(self, what: str, usec: bool = False) -> Chain:
        if self.peek() == "*":
            self.pos += 1
            return (Part(0, -1, USEC),) if usec else None
        parts = [self.part(what, usec)]
        while self.peek() == ",":
            self.pos += 1
            parts.append(self.part(what, usec))
        if len(parts) > _MAX_LIST:
            raise Bad(f"{what} lists more than {_MAX_LIST - 1} values")
        return tuple(parts)

    def part(self, what: str, usec: bool) -> Part:
        start, stop, repeat = self.number(what, usec), -1, 0
        if self.peek(2) == "..":
            self.pos += 2
            stop, repeat = self.number(what, usec), (USEC if usec else 1)
        if self.peek() == "/":
            self.pos += 1
            repeat = self.number(what, usec)
            if repeat == 0:
                raise Bad(f'"/0" in {what} repeats nothing', '"*:0/15" (every 15 minutes)')
        elif usec and stop >= 0 and start + repeat > stop:  # systemd's own check, for seconds only
            raise Bad(f"the range {start // USEC}..{stop // USEC} in {what} is empty or runs backwards")
        if self.peek() not in ("", " ", ",", "-", "~", ":"):
            raise Bad(f'"{quotable(self.text[self.pos:])}" cannot follow a number in {what}')
        return Part(start, stop, repeat)

    def number(self, what: str, usec: bool) -> int:
        found = _NUMBER.match(self.text, self.pos)
        if found is None and self.word().isalpha():
            raise Bad(f'"{quotable(self.word())}" is not a weekday (Mon..Sun, Monday..Sunday) or a shorthand '
                      '(hourly, daily, weekly, monthly, ...)')
        if found is None:
            raise Bad(f'"{quotable(self.word())}" is not a number or "*" in {what}')
        if len(found.group(0).lstrip("0")) > _MAX_DIGITS:
            raise Bad(f"{what} has a number far too large")
        self.pos = found.end()
        if usec and self.peek() == "." and self.peek(2) != "..":
            raise Bad("fractional seconds are not supported", '"*-*-* 03:30:15" (whole seconds)')
        return int(found.group(0)) * (USEC if usec else 1)


_WEEKDAY_NUMBERS = {name.lower(): number for number, name in enumerate(WEEKDAYS)}


# ---------------------------------------------------------------------------------------------------------
# Normalizing and checking: calendar_spec_normalize() and calendar_spec_valid(), with messages.

_FIELDS = (("year", MIN_YEAR, MAX_YEAR, 1), ("month", 1, 12, 1), ("day", 1, 31, 1), ("hour", 0, 23, 1),
           ("minute", 0, 59, 1), ("second", 0, 59, USEC))


def _validated(spec: Spec) -> Spec:
    if spec.year and any(0 <= value < _CENTURY for part in spec.year for value in (part.start, part.stop)):
        raise Bad("years are written with four digits (systemd reads 26 as 2026 and 89 as 1989)",
                  '"2027-01-01 03:00:00"')
    weekdays = 0 if spec.weekdays == _ALL_WEEKDAYS else spec.weekdays
    chains = [_normalized_chain(chain) for chain in (spec.year, spec.month, spec.day, spec.hour, spec.minute,
                                                      spec.usec)]
    for chain, (name, low, high, scale) in zip(chains, _FIELDS, strict=True):
        for part in chain or ():
            _check_part(part, name, low * scale, (high + 1) * scale - 1, scale)
    spec = Spec(weekdays, *chains)
    _check_some_day_exists(spec)
    return spec


def _normalized_chain(chain: Chain) -> Chain:
    """Trim each range to a multiple of its repetition, drop repetitions that never repeat, sort, dedupe."""
    if chain is None:
        return None
    parts = set()
    for part in chain:
        start, stop, repeat = part.start, part.stop, part.repeat
        if stop > start and repeat > 0:
            stop -= (stop - start) % repeat
        if (stop > start and repeat > 0 and start + repeat > stop) or start == stop:
            stop, repeat = -1, 0
        parts.add(Part(start, stop, repeat))
    return tuple(sorted(parts, key=lambda part: (part.start, part.stop, part.repeat)))


def _check_part(part: Part, name: str, low: int, high: int, scale: int) -> None:
    """calendar_spec_valid() for one element; bounds and values are in the field's unit times scale."""
    shown = f"{part.start // scale}" + (f"..{part.stop // scale}" if part.stop >= 0 else "")
    shown += f"/{part.repeat // scale}" if part.repeat and not (part.stop >= 0 and part.repeat == scale) else ""
    limits = f"{low // scale}..{high // scale}"
    if not low <= part.start <= high or (part.stop >= 0 and not low <= part.stop <= high):
        raise Bad(f'the {name} "{shown}" is outside {limits}')
    if part.repeat > high - low:
        raise Bad(f'the repetition in the {name} "{shown}" is longer than {limits}')
    if part.stop >= 0 and part.start + part.repeat > part.stop:
        raise Bad(f'the {name} range "{shown}" runs backwards: write the smaller value first')
    if part.stop < 0 and part.start + part.repeat > high:
        raise Bad(f'the {name} "{shown}" never repeats ({part.start // scale}+{part.repeat // scale} is past '
                  f"{high // scale}; {part.start // scale} alone or a shorter repetition would do)")


def _check_some_day_exists(spec: Spec) -> None:
    """Refuse "*-02-30": systemd accepts it and never elapses; a schedule that never runs is a mistake."""
    years = chain_values(spec.year, MIN_YEAR, MAX_YEAR)
    leap = any(year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) for year in years)
    longest = {2: 29 if leap else 28, 4: 30, 6: 30, 9: 30, 11: 30}
    months, days = chain_values(spec.month, 1, 12), chain_values(spec.day, 1, 31)
    if not any(day <= longest.get(month, 31) for month in months for day in days):
        raise Bad("no month it names has such a day, so it would never run", '"*-*-01 03:00:00" or "*-02-28"')
