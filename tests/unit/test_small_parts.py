"""Durations, restic output parsing and error classification, on texts restic 0.14 really prints."""

from __future__ import annotations

from datetime import timedelta

import pytest

from opsctl.policy.durations import format_duration, parse_duration
from opsctl.restic import commands
from opsctl.restic.errors import RepositoryLocked, RepositoryNotFound, ResticError, WrongPassword, classify
from opsctl.restic.models import parse_time
from opsctl.sources.redact import redact_tool_output


@pytest.mark.parametrize(("text", "expected"), [("24h", timedelta(hours=24)), ("90m", timedelta(minutes=90)),
                                           ("7d", timedelta(days=7)), ("1h30m", timedelta(minutes=90)),
                                           ("2w", timedelta(weeks=2)), ("45s", timedelta(seconds=45))])
def test_durations(text, expected):
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize("text", ["", "24", "h", "24x", "1.5h", "-1h", "0s", "24h 30"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


LOCKED = """unable to create lock in backend: repository is already locked exclusively by PID 3495 on vm by root (UID 0, GID 0)
lock was created at 2026-11-22 19:40:16 (528.615834ms ago)
storage ID 7808e169
the `unlock` command can be used to remove stale locks"""  # noqa: E501 (restic's own words, verbatim)


def test_classify_real_restic_messages():
    assert isinstance(classify("Fatal: wrong password or no key found\n", "t", "x"), WrongPassword)
    missing = classify("Fatal: unable to open config file: stat /r/config: no such file or directory\n"
                       "Is there a repository at the following location?\n/r\n", "local", "backup")
    assert isinstance(missing, RepositoryNotFound) and "run: opsctl init" in missing.hint
    assert "restore from another target" in missing.hint  # after a loss, init would make an empty one
    locked = classify(LOCKED, "local", "backup")
    assert isinstance(locked, RepositoryLocked)
    assert "exclusively locked by restic PID 3495 on vm (user root) since 2026-11-22 19:40:16" in locked.message
    other = classify("Fatal: something new\n", "local", "backup")
    assert type(other) is ResticError and "something new" in other.message


def test_version_parsing():
    assert commands.parse_version("restic 0.14.0 compiled with go1.19.8 on linux/amd64") == (0, 14, 0)
    assert commands.parse_version("restic 0.9.6") == (0, 9, 6)
    assert commands.parse_version("bash: restic: not found") is None


def test_nanosecond_times():
    moment = parse_time("2026-11-22T19:39:42.491227994Z")
    assert moment.microsecond == 491227 and moment.utcoffset() == timedelta(0)


def test_database_tool_errors_lose_row_values():
    text = ('pg_restore: error: COPY failed for table "customers": '
            'ERROR:  invalid input syntax for type integer: "Nguyễn"\n'
            "CONTEXT:  COPY customers, line 1, column id: \"Nguyễn\"\n"
            "DETAIL:  Key (email)=(ada@example.test) already exists.\n"
            "ERROR: value 'secret value' is too long\n")
    cleaned = redact_tool_output(text)
    assert "Nguyễn" not in cleaned and "ada@example.test" not in cleaned and "secret value" not in cleaned
    assert 'COPY failed for table "customers"' in cleaned


def test_a_file_replaced_after_a_crash_leaves_nothing_aside(tmp_path):
    from opsctl.durable import replace_synced

    target = tmp_path / "repository.pass.staged"
    stale = tmp_path / ".repository.pass.staged.4242.deadbeef.tmp"  # what a writer killed mid-write left
    stale.write_text("a half-written password\n")
    replace_synced(target, b"new\n")
    assert target.read_bytes() == b"new\n" and sorted(p.name for p in tmp_path.iterdir()) == [target.name]
