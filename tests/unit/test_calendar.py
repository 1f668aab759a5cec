"""Calendar expressions (OnCalendar=): normalized forms and elapses checked against systemd-analyze itself.

The comparisons run `systemd-analyze calendar` (systemd 252 on Debian 12) in five local time zones, four of
them across their daylight saving changes; without systemd-analyze they skip, and under CI they fail.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opsctl.policy.calendar import Calendar, CalendarError, parse_calendar, systemd_disagrees
from opsctl.policy.durations import LONGEST

SHORTHANDS = ["minutely", "hourly", "daily", "weekly", "monthly", "yearly", "annually", "quarterly", "semiannually",
              "HOURLY", "Daily"]
EXPRESSIONS = [
    *SHORTHANDS,
    # weekdays: names, lists, ranges, and the forms systemd folds together
    "Mon", "monday *-12-* 17:00", "Sun *-*-* 04:30", "Mon..Fri *-*-* 02:00", "Sat,Sun 08:05:40",
    "Sat,Thu,Mon..Wed,Sat..Sun", "Mon,Tue", "Tue,Thu 01:00", "Wed..Wed,Wed *-1", "Wed, 17:48", "Mon..Sun 03:00",
    "Friday *-*-13", "Mon *-*-1..7 01:00", "Thursday,Friday 2026-*-1,5 11:12:13",
    # dates: lists, ranges, repetitions, years, the leap day
    "*-*-01", "*-*-31", "*-02-29", "*-02-28,29 12:00", "10-15", "03-05 08:05:40", "*-1/2-1,3", "*-*-1..7",
    "*-*-1..31/10", "*-*-2/7", "*-01,04,07,10-01 06:00", "*-06..08-* 00:00", "2026-*-* 03:30", "2027-01-01",
    "2026..2199/3-*-*", "2026..2040-02-29", "2028-02-29 00:00:00", "2026-02..04-05",
    # times: lists, ranges, repetitions, seconds
    "*-*-* 03:30:00", "03:30", "0:0:0", "23:59:59", "*:*:0/5", "*:*:*", "*:*:59", "*:*:5..10", "*:*:10..50/20",
    "*:*:0/1,5", "*:0/15", "*:2/3", "*:30", "0/6:00", "1..4/2:00", "12..14:10,20,30", "12,14,13,12:20,10,30",
    "*-*-* *:30:45", "*:00/10:30", "22..23,0..2:0/20", "mon,fri *-1/2-1,3 *:30:45", "*-*-* 02:30:00", "*-*-* 02:00",
    "*-*-* 01:59:59",
]
# All but UTC change to and from daylight saving time: Lord Howe by half an hour, Dublin "negatively" (its
# winter time is the one tzdata marks as DST), which once made systemd loop; 252 has the fix, which opsctl follows.
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Europe/Dublin"]
BASES = [datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC),
         datetime(2026, 1, 1, 23, 56, tzinfo=UTC),  # repetitions running past midnight (in UTC)
         datetime(2028, 2, 28, 12, 34, 56, tzinfo=UTC),
         datetime(2026, 3, 29, 0, 30, tzinfo=UTC), datetime(2026, 10, 24, 23, 30, tzinfo=UTC),  # Berlin
         datetime(2026, 3, 28, 22, 30, tzinfo=UTC), datetime(2026, 10, 24, 22, 30, tzinfo=UTC),  # Dublin
         datetime(2026, 3, 8, 6, 30, tzinfo=UTC), datetime(2026, 11, 1, 4, 30, tzinfo=UTC),  # New York
         datetime(2026, 4, 4, 14, 0, tzinfo=UTC), datetime(2026, 10, 3, 15, 0, tzinfo=UTC)]  # Lord Howe
ITERATIONS = 5


@contextmanager
def local_zone(zone: str) -> Iterator[None]:
    """Run in another local time zone: opsctl computes in the C library's, which TZ sets."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


@pytest.fixture
def in_utc() -> Iterator[None]:
    with local_zone("UTC"):
        yield


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    binary = shutil.which("systemd-analyze")
    if binary is None:
        message = "systemd-analyze is missing (apt-get install systemd)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary


# text -> (normalized form, elapses: fewer if it stops); the form is None where systemd gives up computing them
Elapses = dict[str, tuple[str | None, list[datetime]]]


@cache
def systemd_elapses(binary: str, zone: str, base: datetime, texts: tuple[str, ...]) -> Elapses:
    """What systemd says of each text it accepts: one systemd-analyze run for many texts."""
    argv = [binary, "calendar", f"--iterations={ITERATIONS}", f"--base-time=@{int(base.timestamp())}", "--", *texts]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                            env={**os.environ, "TZ": zone})
    # One empty line before each text but the first; a text systemd refuses prints nothing on stdout.
    blocks: list[list[str]] = [[]]
    for line in result.stdout.splitlines():
        if line:
            blocks[-1].append(line)
        else:
            blocks.append([])
    assert len(blocks) == len(texts), result.stdout
    found: Elapses = {text: parse_block(lines) for text, lines in zip(texts, blocks, strict=True) if lines}
    for gave_up in re.findall(r"^Failed to determine next elapse for '(.*)': ", result.stderr, re.MULTILINE):
        found[gave_up] = (None, [])
    return found


def parse_block(lines: list[str]) -> tuple[str, list[datetime]]:
    normalized = next(line.split("Normalized form: ", 1)[1] for line in lines if "Normalized form: " in line)
    elapses = []
    for index, line in enumerate(lines):
        shown = re.match(r"\s*(?:Next elapse|Iter\. #\d+): (.*)$", line)
        if shown is None or shown.group(1) == "never":
            continue
        in_utc = re.match(r"\s*\(in UTC\): (.*)$", lines[index + 1]) if index + 1 < len(lines) else None
        moment = (in_utc or shown).group(1)
        elapses.append(datetime.strptime(moment, "%a %Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC))
    return normalized, elapses


def our_elapses(calendar: Calendar, base: datetime) -> tuple[str | None, list[datetime]]:
    """Like systemd_elapses: no form and no elapses if opsctl says systemd cannot compute one of them."""
    elapses, moment = [], base
    for _ in range(ITERATIONS):
        try:
            moment = calendar.next_after(moment)
        except CalendarError as stopped:
            if "systemd cannot compute" in str(stopped):
                return None, []
            break
        elapses.append(moment.astimezone(UTC))
    return calendar.normalized, elapses


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("text", EXPRESSIONS)
def test_same_form_and_elapses_as_systemd(systemd_analyze, zone, text):
    calendar = parse_calendar(text)
    for base in BASES:
        theirs = systemd_elapses(systemd_analyze, zone, base, tuple(EXPRESSIONS))[text]
        with local_zone(zone):
            ours = our_elapses(calendar, base)
        assert ours == theirs, f"{text!r} in {zone} after {base.isoformat()}"


def test_where_systemd_gives_up_so_does_opsctl(systemd_analyze):
    """systemd 252 loops on "3/12:00" (03:00 and 15:00) from 15:00 the day before Berlin's clocks go forward.

    Its timer would stop there; opsctl says so, and suggests the same hours as a list, which works.
    """
    base = datetime(2026, 3, 28, 16, 0, tzinfo=UTC)
    theirs = systemd_elapses(systemd_analyze, "Europe/Berlin", base, ("3/12:00", "*-*-* 03,15:00:00"))
    assert theirs["3/12:00"] == (None, [])
    with local_zone("Europe/Berlin"), pytest.raises(CalendarError) as stuck:
        parse_calendar("3/12:00").next_after(base)
    assert 'its timer would stop; write "*-*-* 03,15:00:00" (the same moments, listed)' in str(stuck.value)
    with local_zone("Europe/Berlin"):
        assert our_elapses(parse_calendar("*-*-* 03,15:00:00"), base) == theirs["*-*-* 03,15:00:00"]
        assert parse_calendar("3/12:00").longest_gap() == LONGEST  # its timer stops: no RPO is kept
    with local_zone("UTC"):
        assert parse_calendar("3/12:00").longest_gap() == timedelta(hours=12)


@pytest.mark.usefixtures("in_utc")
def test_elapses_are_aware_and_local():
    with local_zone("Europe/Berlin"):
        moment = parse_calendar("*-*-* 03:30").next_after(datetime(2026, 7, 1, tzinfo=UTC))
    assert moment.utcoffset() == timedelta(hours=2) and (moment.hour, moment.minute) == (3, 30)
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_calendar("daily").next_after(datetime(2026, 7, 1))  # noqa: DTZ001 (the mistake under test)


@pytest.mark.parametrize("text", EXPRESSIONS)
@pytest.mark.usefixtures("systemd_analyze")
def test_systemd_agrees(text):
    assert systemd_disagrees(parse_calendar(text)) is None


@pytest.mark.usefixtures("systemd_analyze")
def test_systemd_disagreements_are_reported(tmp_path, monkeypatch):
    calendar = parse_calendar("daily")
    reason = systemd_disagrees(replace(calendar, normalized="*-*-* 01:00:00"))
    assert reason == 'systemd normalizes "daily" to "*-*-* 00:00:00", opsctl to "*-*-* 01:00:00"'
    refused = systemd_disagrees(replace(calendar, text="daily 01:30"))
    assert refused is not None and refused.startswith('systemd refuses "daily 01:30": ') and "\n" not in refused
    leading_dash = systemd_disagrees(replace(calendar, text="-1"))  # passed after "--", never read as an option
    assert leading_dash is not None and "refuses" in leading_dash
    monkeypatch.setenv("PATH", str(tmp_path))
    assert systemd_disagrees(replace(calendar, normalized="anything")) is None


# Within the subset opsctl accepts, random expressions must be accepted and refused as systemd does, and
# elapse at the same moments; a fixed seed keeps the run repeatable.
def random_chain(rng: random.Random, low: int, high: int) -> str:
    if rng.random() < 0.35:
        return "*"
    parts = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        start = rng.randint(low, high + 1)  # now and then one past the end, which both must refuse
        shape = rng.random()
        if shape < 0.45:
            parts.append(f"{start:02d}")
        elif shape < 0.7:
            parts.append(f"{start}/{rng.randint(1, max(1, (high - low) // 2))}")
        elif shape < 0.9:
            parts.append(f"{start}..{rng.randint(start - 1, high)}")
        else:
            parts.append(f"{start}..{rng.randint(start, high + 1)}/{rng.randint(1, 5)}")
    return ",".join(parts)


def random_expression(rng: random.Random) -> str:
    words = []
    if rng.random() < 0.3:
        days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        first = rng.randrange(7)
        words.append(rng.choice([days[first], f"{days[first]}..{rng.choice(days[first:])}",
                                 f"{days[first]},{rng.choice(days)}"]))
    if rng.random() < 0.6:
        year = random_chain(rng, 2026, 2035) + "-" if rng.random() < 0.3 else ""
        words.append(f"{year}{random_chain(rng, 1, 12)}-{random_chain(rng, 1, 31)}")
    if rng.random() < 0.8 or not words:
        seconds = ":" + random_chain(rng, 0, 59) if rng.random() < 0.5 else ""
        words.append(f"{random_chain(rng, 0, 23)}:{random_chain(rng, 0, 59)}{seconds}")
    return " ".join(words)


RANDOM = tuple(dict.fromkeys(random_expression(random.Random(seed)) for seed in range(400)))


def refusal(text: str) -> str | None:
    try:
        parse_calendar(text)
    except CalendarError as refused:
        return str(refused)
    return None


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin"])
def test_random_expressions_match_systemd(systemd_analyze, zone):
    accepted = 0
    for base in (datetime(2026, 3, 28, 22, 0, tzinfo=UTC), datetime(2027, 10, 30, 23, 0, tzinfo=UTC)):
        theirs = systemd_elapses(systemd_analyze, zone, base, RANDOM)
        for text in RANDOM:
            refused = refusal(text)
            if refused is not None:
                # the one refusal of its own: an expression that would never run, which systemd accepts
                assert text not in theirs or "never run" in refused, text
                continue
            calendar = parse_calendar(text)
            assert text in theirs, f"systemd refuses {text!r}, opsctl accepts it"
            accepted += 1
            with local_zone(zone):
                assert our_elapses(calendar, base) == theirs[text], f"{text!r} after {base.isoformat()}"
    assert accepted > 300  # most of them are valid: the test compares elapses, not only refusals


REFUSALS = [
    ("", "the schedule is empty"),
    ("  ", "the schedule is empty"),
    ("daily 01:30", 'write "*-*-* 01:30:00" (every day at 01:30) or "daily" alone'),
    ("weekly 02:00", 'write "Mon *-*-* 02:00:00" (every Monday at 02:00)'),
    ("hourly 15", 'a shorthand such as "hourly" stands alone'),
    ("every 5m", 'write "*-*-* *:00/5:00" (every 5 minutes)'),
    ("every 7 minutes", "counting again from 0 every hour"),
    ("every 2h", 'write "*-*-* 00/2:00:00" (every 2 hours)'),
    ("every day", 'write "daily"'),
    ("every day at 3am", "it is an interval"),
    ("30 1 * * *", 'cron lines are not calendar expressions; write "*-*-* 01:30:00"'),
    ("*/15 * * * 1-5", 'write "Mon..Fri *-*-* *:00/15:00"'),
    ("0 3 1 * 1", "cron runs when either day field matches"),
    ("@daily", "cron's @daily"),
    ("@1767225600", "@ timestamps"),
    ("daily UTC", 'time zone (UTC), which opsctl does not support'),
    ("*-*-* 03:30 utc", 'write "*-*-* 03:30:00" (in local time)'),
    ("Mon *-*-* 03:30 Europe/Berlin", "time zone (Europe/Berlin)"),
    ("*-*-* 03:30 CET", "time zone (CET)"),
    ("*-02~03", 'the "~" (days before the end of the month) is not supported'),
    ("Mon *-05~07/1", '"~"'),
    ("05:40:23.42", 'fractional seconds are not supported; write "*-*-* 05:40:23" (whole seconds)'),
    ("*:*:0/0.5", "fractional seconds are not supported"),
    ("Mon-Fri 02:00", 'weekday ranges are written with "..", not "-"; write "Mon..Fri *-*-* 02:00:00"'),
    ("Fri..Mon", 'the weekday range Fri..Mon runs backwards; write "Mon,Fri..Sun"'),
    ("Mon..", 'the weekday range "Mon.." has no end'),
    ("Mon.Fri", "two dots"),
    ("Mondays", '"Mondays" is not a weekday'),
    ("Mo 03:00", '"Mo" is not a weekday'),
    ("biannually", 'write "semiannually"'),
    ("semi-annually", 'write "semiannually"'),
    (" hourly", 'starts or ends with blank space, which systemd refuses; write "*-*-* *:00:00"'),
    ("03:30 ", "starts or ends with blank space"),
    ("12-10-15", "years are written with four digits"),
    ("0026-01-01", "four digits"),
    ("*-02-30", "never run"),
    ("2027-02-29", "never run"),
    ("*-04,06-31", "never run"),
    ("24:00", 'the hour "24" is outside 0..23'),
    ("*:60", 'the minute "60" is outside 0..59'),
    ("23:59:60", 'the second "60" is outside 0..59'),
    ("*-13-01", 'the month "13" is outside 1..12'),
    ("1969-01-01", 'the year "1969" is outside 1970..2199'),
    ("*:0/60", 'is longer than 0..59'),
    ("*:*:30/30", 'the second "30/30" never repeats'),
    ("5..3:00", 'the hour range "5..3" runs backwards'),
    ("*:*:5..5", "empty or runs backwards"),
    ("*-*-01/0", '"/0" in the day repeats nothing'),
    ("12", "the time is written HH:MM"),
    ("*-*-* 1:2:3:4", "left over"),
    ("*-*-*-*", "is not a date"),
    ("1x:00", "cannot follow a number"),
    ("*-*-* 99999999999999999999:00", "far too large"),
    ("\uff2don", "is not a weekday"),  # a full-width M
    ("Mon\t03:00", 'separated by tabs or line breaks; systemd takes spaces only; write "Mon *-*-* 03:00:00"'),
    ("daily\n", 'starts or ends with blank space, which systemd refuses; write "*-*-* 00:00:00"'),
    ("Mon 5 03:00", '"5" is not a date'),
    ("1," * 600 + "1:00", "longer than the 1000 characters"),
    (",".join(["1"] * 242) + ":00", "lists more than 240 values"),
]


@pytest.mark.parametrize(("text", "expected"), REFUSALS)
def test_refusals_say_what_to_write(text, expected):
    with pytest.raises(CalendarError) as refused:
        parse_calendar(text)
    message = str(refused.value)
    assert expected in message
    assert "\n" not in message and len(message) < 400
    suggested = re.search(r'write "([^"]+)"', message)
    assert suggested is not None, message
    parse_calendar(suggested.group(1))  # every suggestion is itself accepted


def test_long_text_is_not_echoed_whole():
    with pytest.raises(CalendarError) as refused:
        parse_calendar("x" * 10_000)
    assert len(str(refused.value)) < 400 and "..." in str(refused.value)


@pytest.mark.parametrize("text", ["daily 01:30", "every 5m", "30 1 * * *", " hourly", "24:00", "*:*:30/30",
                                  "Fri..Mon", "Mon..", "12", "*:*:5..5", "*-*-01/0"])
@pytest.mark.usefixtures("systemd_analyze")
def test_systemd_refuses_them_too(text):
    reason = systemd_disagrees(replace(parse_calendar("daily"), text=text))
    assert reason is not None and reason.startswith(f'systemd refuses "{text}": ')


@pytest.mark.usefixtures("in_utc")
def test_expressions_that_end():
    once = parse_calendar("2027-01-01 03:00")
    assert once.next_after(datetime(2026, 6, 1, tzinfo=UTC)) == datetime(2027, 1, 1, 3, tzinfo=UTC)
    with pytest.raises(CalendarError, match="has no elapse after 2027-01-01T03:00:00"):
        once.next_after(datetime(2027, 1, 1, 3, tzinfo=UTC))
    with pytest.raises(CalendarError, match="no further than 2199"):
        parse_calendar("daily").next_after(datetime(2199, 12, 31, tzinfo=UTC))  # systemd stops at 2199 too
    with pytest.raises(CalendarError, match="has no elapse"):
        parse_calendar("Mon 2026-03-05").next_after(datetime(2026, 1, 1, tzinfo=UTC))  # a Thursday: never


@pytest.mark.parametrize(("text", "gap"), [
    ("hourly", timedelta(hours=1)),
    ("Mon..Fri *-*-* 02:00", timedelta(days=3)),
    ("monthly", timedelta(days=31)),
    ("*:*:0/5", timedelta(seconds=5)),
    # systemd skips :00 at midnight when a repetition runs past the hour: 23:56, then 00:07 (and 23:50, 00:25)
    ("*:0/7", timedelta(minutes=11)),
    ("*:0/25", timedelta(minutes=35)),
    ("yearly", timedelta(days=365)),
    ("*-02-29", timedelta(days=4 * 365 + 1)),
    ("*-*-31", timedelta(days=61)),  # 31 March to 31 May
])
@pytest.mark.usefixtures("in_utc")
def test_longest_gap(text, gap):
    assert parse_calendar(text).longest_gap() == gap


@pytest.mark.usefixtures("in_utc")
def test_longest_gap_of_schedules_that_end():
    assert parse_calendar("2027-01-01 03:00").longest_gap() == LONGEST
    assert parse_calendar("2024-*-* 03:00").longest_gap() == LONGEST  # before the reference: never
    assert parse_calendar("2025..2026-*-* 03:00").longest_gap() == timedelta(days=1)  # within the 400 days


def test_longest_gap_counts_daylight_saving_hours():
    with local_zone("Europe/Berlin"):
        assert parse_calendar("daily").longest_gap() == timedelta(hours=25)
        # 02:30 does not exist the day the clocks go forward: systemd skips that day
        assert parse_calendar("*-*-* 02:30:00").longest_gap() == timedelta(hours=47)


@pytest.mark.parametrize("text", ["*:*:0/5", "monthly", "Mon..Fri *-*-* 02:00", "*-02-29"])
@pytest.mark.usefixtures("in_utc")
def test_next_after_is_fast(text):
    calendar = parse_calendar(text)
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    started = time.perf_counter()
    for _ in range(40):
        moment = calendar.next_after(moment)
    assert (time.perf_counter() - started) / 40 < 0.002


def test_never_is_refused_quickly():
    started = time.perf_counter()
    for text in ("*-02-30", "*-02-31 03:00", "2100-02-29"):
        with pytest.raises(CalendarError, match="never run"):
            parse_calendar(text)
    assert time.perf_counter() - started < 0.1


@settings(derandomize=True, database=None, deadline=None, max_examples=200)
@given(text=st.sampled_from(["*:0/7", "Mon..Fri *-*-* 02:00", "*-*-1..31/10 12:00", "quarterly", "*:*:10..50/20"]),
       zone=st.sampled_from(ZONES),
       moment=st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2150, 1, 1),  # noqa: DTZ001
                           timezones=st.just(UTC)))
def test_every_moment_before_an_elapse_leads_to_it(text, zone, moment):
    calendar = parse_calendar(text)
    with local_zone(zone):
        following = calendar.next_after(moment)
        assert following > moment
        assert calendar.next_after(following - timedelta(microseconds=1)) == following
        assert calendar.next_after(moment + (following - moment) / 2) == following
