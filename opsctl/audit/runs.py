"""The run record: the last outcome of each command, and of each target under it, in `state_dir/runs/`.

One small JSON file per command, replaced atomically under a lock, so `opsctl status`,
notifications and metrics read the current state directly instead of parsing the audit trail or
console output. A target the last run did not touch keeps what an earlier run recorded for it.
A run in progress is marked `running` (PID and start time) until it ends: a mark whose process is
gone means that run was killed (kill -9, the OOM killer, a power cut) before it could say so.

The policy's report_group may read the records (audit/readers.py): in a folder that group may read,
a record is written 0640. Another user's records (an auditor's `status --offline`) are read, never
written.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from opsctl.audit.readers import RUNS, record_mode
from opsctl.durable import replace_synced
from opsctl.policy.trust import check_state_dir, is_anothers, read_regular

Fact = str | int | float | bool | None
"""Something a run learnt about a target, kept in its record until a later run of the command restates it."""
SNAPSHOT = "snapshot:"  # + database: the time of the newest snapshot of it there
VERIFIED = "verified:"  # + database: the time of the newest snapshot of it proven there (verify, drill, restore)
VERIFICATION_OK = "verification_ok:"  # + database: whether the last verification of it there passed
VERIFICATION_AT = "verification_at:"  # + database: when that verification ended


def verification_facts(database: str, ok: bool, at: str, snapshot_time: str | None) -> dict[str, Fact]:
    """How verifying a database on a target went; a pass also proves its snapshot."""
    proven = {VERIFIED + database: snapshot_time} if ok and snapshot_time else {}
    return {VERIFICATION_OK + database: ok, VERIFICATION_AT + database: at, **proven}


@dataclass(frozen=True)
class TargetRun:
    """How a command last ended on one target."""

    target: str
    location: str
    ok: bool
    finished_at: str
    duration_s: float
    error: str | None = None
    hint: str | None = None
    last_ok_at: str | None = None  # when the command last worked on this target (kept through failures)
    facts: dict[str, Fact] = field(default_factory=dict)  # what runs learnt there

    def after(self, earlier: TargetRun | None) -> TargetRun:
        """This outcome, keeping what earlier runs learnt that this one does not restate, and their last success."""
        if earlier is None or earlier.location != self.location:  # another place: nothing learnt there applies
            return replace(self, last_ok_at=self.finished_at if self.ok else None)
        return replace(self, last_ok_at=self.finished_at if self.ok else earlier.last_ok_at,
                       facts={**earlier.facts, **self.facts})


@dataclass(frozen=True)
class Running:
    """A run that has started and not yet ended (the PID alone is not unique: containers reuse PID 1)."""

    pid: int
    started_at: str
    host: str = ""


@dataclass(frozen=True)
class Skip:
    """The newest scheduled run that did not start (the policy was still busy), and how many did so far."""

    at: str
    reason: str
    count: int = 1


@dataclass(frozen=True)
class CommandRun:
    """How a command last ended (None before it ever ended), each target's own last outcome, and a run going on."""

    command: str
    outcome: str | None = None
    exit_code: int | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    error: str | None = None
    targets: tuple[TargetRun, ...] = ()
    running: Running | None = None
    last_skip: Skip | None = None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "targets": {t.target: asdict(t) for t in self.targets}}

    def target(self, name: str) -> TargetRun | None:
        return next((t for t in self.targets if t.target == name), None)

    def last_started(self) -> datetime | None:
        """When the last run started; a run going on counts."""
        if self.running is not None:
            return datetime.fromisoformat(self.running.started_at)
        return self.ended_run_started()

    def ended_run_started(self) -> datetime | None:
        """When the last run that has ended started (not one going on now)."""
        ended = self.last_ended()
        return None if ended is None else ended - timedelta(seconds=self.duration_s or 0)

    def last_ended(self) -> datetime | None:
        return None if self.finished_at is None else datetime.fromisoformat(self.finished_at)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CommandRun:
        targets = tuple(TargetRun(**t) for t in (data.get("targets") or {}).values())
        if any(not isinstance(t.facts, dict) or not isinstance(t.target, str) for t in targets):
            raise TypeError("a target's record is not what opsctl writes")
        running = Running(**data["running"]) if data.get("running") else None
        skip = Skip(**data["last_skip"]) if data.get("last_skip") else None
        return cls(**{**data, "targets": targets, "running": running, "last_skip": skip})


def runs_dir(state_dir: Path) -> Path:
    return state_dir / RUNS


def this_run(started_at: str) -> Running:
    return Running(os.getpid(), started_at, socket.gethostname())


def started(state_dir: Path, command: str, started_at: str) -> None:
    """Mark the command as running in this process, keeping its last outcome."""
    if is_anothers(state_dir):
        return  # see _locked
    with _locked(state_dir):
        earlier = read(state_dir, command) or CommandRun(command)
        _write(state_dir, replace(earlier, running=this_run(started_at)))


def record(state_dir: Path, run: CommandRun, started_at: str) -> None:
    """Store how the run ended, keeping earlier results of targets it did not touch, and another run's mark."""
    if is_anothers(state_dir):
        return
    with _locked(state_dir):
        earlier = read(state_dir, run.command)
        before = {t.target: t for t in (earlier.targets if earlier else ())}
        touched = tuple(t.after(before.get(t.target)) for t in run.targets)
        kept = tuple(t for name, t in before.items() if name not in {t.target for t in touched})
        mark = earlier.running if earlier and earlier.running != this_run(started_at) else None
        skip = earlier.last_skip if earlier else None
        _write(state_dir, replace(run, targets=kept + touched, running=mark, last_skip=skip))


def skipped(state_dir: Path, command: str, at: str, reason: str) -> None:
    """Count a scheduled run that did not start, keeping the command's last real outcome as it was."""
    if is_anothers(state_dir):
        return
    with _locked(state_dir):
        earlier = read(state_dir, command) or CommandRun(command)
        count = earlier.last_skip.count + 1 if earlier.last_skip else 1
        _write(state_dir, replace(earlier, last_skip=Skip(at, reason, count)))


def killed(state_dir: Path, mark: Running, ended: CommandRun) -> None:
    """Record how a run that could not say so itself ended (killed, per systemd), and clear its mark."""
    if is_anothers(state_dir):
        return
    with _locked(state_dir):
        earlier = read(state_dir, ended.command) or CommandRun(ended.command)
        if earlier.running != mark:
            return  # another run has started since: its mark and outcome are newer
        _write(state_dir, replace(ended, targets=earlier.targets, running=None, last_skip=earlier.last_skip))


def ended_unreported(state_dir: Path, command: str) -> Running | None:
    """The mark of a run of this command on this host whose process is gone without saying how it ended."""
    earlier = read(state_dir, command)
    mark = earlier.running if earlier else None
    if mark is None or mark.host != socket.gethostname() or _alive(mark.pid):
        return None
    return mark


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    return True


def read_all(state_dir: Path) -> list[CommandRun]:
    """Every command's record, by command name (an unreadable one is left out)."""
    folder = runs_dir(state_dir)
    found = [read_file(path) for path in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    return [run for run in found if run is not None]


def read(state_dir: Path, command: str) -> CommandRun | None:
    """The command's record, or None when it never ran (or its record cannot be read)."""
    return read_file(_path(state_dir, command))


def read_file(path: Path) -> CommandRun | None:
    """A record, read as one another user may have planted: never through a link, never waiting on a FIFO."""
    try:
        return CommandRun.from_json(json.loads(read_regular(path).decode("utf-8")))
    except (OSError, ValueError, TypeError, AttributeError, KeyError, RecursionError):
        return None  # a record that cannot be read is rewritten whole by the next run


@contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """One writer at a time: read, merge and replace happen under this lock.

    Writers skip another user's state_dir without a word before they get here: only a read-only command (an
    auditor's status --offline) runs on one, and it writes nothing there.
    """
    folder = runs_dir(state_dir)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    check_state_dir(state_dir)  # never write into a folder another user controls (the run says why)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write(state_dir: Path, run: CommandRun) -> None:
    content = (json.dumps(run.to_json(), indent=1, sort_keys=True) + "\n").encode()
    replace_synced(_path(state_dir, run.command), content, record_mode(runs_dir(state_dir)))


def _path(state_dir: Path, command: str) -> Path:
    return runs_dir(state_dir) / (re.sub(r"[^a-z0-9]+", "-", command.lower()).strip("-") + ".json")
