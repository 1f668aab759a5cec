"""The small systemctl layer of `opsctl schedule`: where unit files go, and the state of a timer."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from opsctl.process import tool_environment

_SYSTEM_UNITS = Path("/etc/systemd/system")
_TIMEOUT_S = 30
_SHOWN = ("UnitFileState", "ActiveState", "NextElapseUSecRealtime", "LastTriggerUSec")
_ENABLED = ("enabled", "enabled-runtime")
_NO_TIME = ("", "n/a", "0")
# systemd's own format ("Mon 2026-11-30 19:00:00 UTC"); the weekday is English in every locale.
_TIMESTAMP = re.compile(r"(?:[A-Z][a-z]{2} )?(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d{1,6})?) (?:UTC|GMT)")


@dataclass(frozen=True)
class TimerState:
    """What systemd says of one timer."""

    enabled: bool  # starts at boot (UnitFileState=enabled)
    active: bool  # running now, waiting for its next elapse
    next_elapse: datetime | None  # UTC; None when none is planned
    last_trigger: datetime | None  # UTC; None when it never fired


def systemd_is_running() -> bool:
    """systemd is the init system, as sd_booted() tells: /run/systemd/system is a folder."""
    return Path("/run/systemd/system").is_dir()


def unit_folder(user: bool) -> Path:
    """Where opsctl writes unit files: /etc/systemd/system, or $XDG_CONFIG_HOME/systemd/user for --user."""
    if not user:
        return _SYSTEM_UNITS
    config = os.environ.get("XDG_CONFIG_HOME", "")
    # The XDG base directory spec: a relative value is invalid and is ignored.
    base = Path(config) if os.path.isabs(config) else Path.home() / ".config"
    return base / "systemd" / "user"


def timer_state(unit: str, user: bool) -> TimerState | None:
    """The timer's state; None when systemd is not running, or systemctl fails or says what cannot be read."""
    if not systemd_is_running():
        return None
    try:
        done = systemctl(user, "show", "-p", ",".join(_SHOWN), "--", unit)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    try:
        return parse_show(done.stdout)
    except ValueError:
        return None


def parse_show(text: str) -> TimerState:
    """Read `systemctl show -p UnitFileState,ActiveState,NextElapseUSecRealtime,LastTriggerUSec` (UTC times)."""
    values = dict(line.partition("=")[::2] for line in text.split("\n") if "=" in line)
    return TimerState(enabled=values.get("UnitFileState", "") in _ENABLED,
                      active=values.get("ActiveState", "") == "active",
                      next_elapse=_timestamp(values.get("NextElapseUSecRealtime", "")),
                      last_trigger=_timestamp(values.get("LastTriggerUSec", "")))


def systemctl(user: bool, *args: str) -> subprocess.CompletedProcess[str]:
    """Run systemctl (with --user for the user's manager) with an argument list, never a shell, for 30 s at most.

    Raises OSError when there is no systemctl, subprocess.TimeoutExpired when it does not end in time.
    """
    argv = ["systemctl", *(["--user"] if user else []), *args]
    # TZ: the times it prints are UTC, which parse_show reads. No stdin: without a terminal systemctl
    # fails at once when it needs a password (polkit), instead of waiting for an answer nobody types.
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, encoding="utf-8", errors="replace",
                          env={**tool_environment(), "TZ": "UTC0"}, timeout=_TIMEOUT_S, check=False)


def _timestamp(value: str) -> datetime | None:
    value = value.strip()
    if value in _NO_TIME:
        return None
    match = _TIMESTAMP.fullmatch(value)
    if match is None:
        raise ValueError(f"not a UTC time as systemctl prints it: {value!r}")
    return datetime.fromisoformat(match[1]).replace(tzinfo=UTC)
