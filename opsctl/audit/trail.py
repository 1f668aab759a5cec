"""The audit trail: one JSON line per opsctl command, whatever its outcome. Never secrets, never row data.

Lines are hash-chained (see `opsctl.audit.chain` for the format and its check): each write, under
an exclusive lock, reads the newest line, links the new one to it, writes the whole line at once,
fsyncs, then records the newest line in `audit.jsonl.head`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pwd
import secrets
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opsctl import __version__
from opsctl.durable import replace_synced
from opsctl.policy.trust import check_state_dir

OUTCOMES = ("ok", "partial", "failed", "refused", "busy", "interrupted")


def _user() -> str:
    """The account that runs opsctl, from its uid (getpass.getuser trusts $LOGNAME, which anyone can set)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


@dataclass(frozen=True)
class AuditEntry:
    """One command's line in the trail: who ran what, where, on which targets, and how it ended."""

    command: str
    policy: str | None
    policy_file: str | None
    outcome: str
    exit_code: int
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    user: str = field(default_factory=_user)
    uid: int = field(default_factory=os.geteuid)
    host: str = field(default_factory=socket.gethostname)
    opsctl_version: str = __version__
    targets: tuple[str, ...] = ()
    snapshot_ids: tuple[str, ...] = ()
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "targets": list(self.targets), "snapshot_ids": list(self.snapshot_ids)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuditEntry | None:
        """An entry read back; None when the line is not one (the trail is a file anyone with access may edit)."""
        if not isinstance(data.get("command"), str):
            return None
        details = data.get("details")
        return cls(command=data["command"], policy=_text(data.get("policy")),
                   policy_file=_text(data.get("policy_file")),
                   outcome=_text(data.get("outcome")) or "?", exit_code=_int(data.get("exit_code")),
                   time=_text(data.get("time")) or "?", user=_text(data.get("user")) or "?", uid=_int(data.get("uid")),
                   host=_text(data.get("host")) or "?", opsctl_version=_text(data.get("opsctl_version")) or "?",
                   targets=_texts(data.get("targets")), snapshot_ids=_texts(data.get("snapshot_ids")),
                   error=_text(data.get("error")), details=details if isinstance(details, dict) else {},
                   duration_s=float(data["duration_s"]) if isinstance(data.get("duration_s"), (int, float)) else 0.0)


def trail_path(state_dir: Path) -> Path:
    """Where a policy's audit trail is kept."""
    return state_dir / "audit.jsonl"


def line_sha256(raw: bytes) -> str:
    """The hash by which the next line names this one (the line's bytes, without its newline)."""
    return hashlib.sha256(raw).hexdigest()


def append(log_path: Path, entry: AuditEntry) -> None:
    """Append one chained line under an exclusive lock and flush it to disk before returning."""
    log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    check_state_dir(log_path.parent)  # never write into a folder another user controls (the run says why)
    fd = os.open(log_path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        head_file = log_path.with_name(log_path.name + ".head")
        written, head = _chained(fd, entry, _head(head_file))
        _write_all(fd, written)
        os.fsync(fd)
        replace_synced(head_file, json.dumps(head, sort_keys=True).encode() + b"\n")
    finally:
        os.close(fd)


def _chained(fd: int, entry: AuditEntry, head: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """The bytes to append for this entry (a new chain's first line too, when there is none), and the new head."""
    tail = _tail(fd)
    lead = b"\n" if tail.fragment else b""  # a torn last write ends here: never glued to this entry
    record: dict[str, Any] = entry.to_json()
    if tail.last is None:  # no chain yet: it starts here, sealing whatever the file held before
        genesis = _genesis(fd, entry, lead, head)
        chain, seq, prev, lines = line_sha256(genesis), 1, line_sha256(genesis), [genesis]
    else:
        chain, seq, prev, lines = _chain_id(fd), tail.seq + 1, line_sha256(tail.last), []
        cut_short = [*tail.unchained, *([tail.fragment] if tail.fragment else [])]
        if cut_short:  # writes that failed part-way (power loss, full disk): named, so never taken for entries
            record["fenced"] = [{"sha256": line_sha256(raw), "bytes": len(raw)} for raw in cut_short]
        if head.get("chain") == chain and head.get("seq") == tail.seq and head.get("sha256") != prev:
            record["changed_before"] = {"seq": tail.seq, "head_sha256": head.get("sha256")}
    line = json.dumps({**record, "seq": seq, "prev": prev}, sort_keys=True, default=str).encode()
    written = lead + b"".join(each + b"\n" for each in [*lines, line])
    return written, {"chain": chain, "seq": seq, "sha256": line_sha256(line)}


def _genesis(fd: int, entry: AuditEntry, lead: bytes, head: dict[str, Any]) -> bytes:
    """A chain's first line: which policy and host it belongs to, and the hash of every byte before it.

    A random nonce makes its hash (the chain's name on the targets) unguessable and unique; a head
    left by an earlier chain is named, so a trail that was started over says so.
    """
    legacy = hashlib.sha256()
    size = 0
    for block in _blocks(fd):
        legacy.update(block)
        size += len(block)
    legacy.update(lead)
    earlier = {"previous_chain": head} if isinstance(head.get("chain"), str) else {}
    return json.dumps({"kind": "genesis", "format": "opsctl-audit/1", "seq": 0, "prev": "0" * 64,
                       "policy": entry.policy, "host": entry.host, "time": entry.time,
                       "nonce": secrets.token_hex(16), "legacy_bytes": size + len(lead),
                       "legacy_sha256": legacy.hexdigest(), **earlier}, sort_keys=True).encode()


@dataclass(frozen=True)
class _Tail:
    last: bytes | None  # the newest chained line (None: the file holds no chain)
    seq: int  # its number in the chain
    unchained: tuple[bytes, ...]  # complete lines after it that are no entry: writes cut short, then fenced
    fragment: bytes  # bytes after the last newline: a write cut short


_TAIL_BLOCK = 64 << 10
_TAIL_SCAN = 16 << 20  # past this much unchained text at the end, the file is no chain opsctl keeps


def _tail(fd: int) -> _Tail:
    """The newest chained line, what follows it, and the bytes after the last newline; each line parsed once."""
    lines = _backwards(fd)
    fragment = next(lines, b"")
    unchained: list[bytes] = []
    scanned = 0
    for raw in lines:
        seq = _seq(raw)
        if seq is not None:
            return _Tail(raw, seq, tuple(reversed(unchained)), fragment)
        unchained.append(raw)
        scanned += len(raw) + 1
        if scanned > _TAIL_SCAN:
            break
    return _Tail(None, 0, (), fragment)


def _backwards(fd: int) -> Iterator[bytes]:
    """The bytes after the last newline first, then each complete line, newest first (read from the end)."""
    end, carried = os.fstat(fd).st_size, b""
    while end > 0:
        start = max(0, end - _TAIL_BLOCK)
        parts = (os.pread(fd, end - start, start) + carried).split(b"\n")
        end, carried = start, parts[0]  # the first piece may begin before this block
        yield from reversed(parts[1:])
    yield carried  # the file's first line (or, in a file without any newline, its only fragment)


def _seq(raw: bytes) -> int | None:
    """A chained line's number; None for anything else."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    seq = data.get("seq") if isinstance(data, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else None


def _chain_id(fd: int) -> str:
    """The chain's name: the hash of its first line, found from the file's start (only older lines precede it)."""
    pending = b""
    for block in _blocks(fd):
        *complete, pending = (pending + block).split(b"\n")
        for raw in complete:
            if b'"genesis"' in raw and _seq(raw) == 0:
                return line_sha256(raw)
    return ""


def _blocks(fd: int) -> Iterator[bytes]:
    offset = 0
    while block := os.pread(fd, 1 << 20, offset):
        yield block
        offset += len(block)


def _head(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def read(log_path: Path, command: str | None = None) -> list[AuditEntry]:
    """The trail's entries, oldest first (only one command's when given); damaged lines are skipped."""
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        try:
            data = json.loads(line)
        except ValueError:
            continue
        entry = AuditEntry.from_json(data) if isinstance(data, dict) else None
        if entry is not None and (command is None or entry.command == command):
            entries.append(entry)
    return entries


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _texts(value: object) -> tuple[str, ...]:
    return tuple(str(item) for item in value) if isinstance(value, list) else ()


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1
