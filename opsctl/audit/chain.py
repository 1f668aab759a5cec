"""The audit trail's hash chain: how each line links to the one before it, and how a copy is checked.

Every line after the genesis line carries `seq` (its number in the chain, genesis is 0) and `prev`
(the SHA-256 of the previous line's bytes). A line that is edited, deleted, inserted or moved breaks
a link, and `check` names the first line where that happened. The last line has no successor to
vouch for it, so the writer also keeps `audit.head` (the number and hash of the newest line): a
trail cut short, or its last line edited, no longer matches it.

A write cut off by a power loss leaves a line without its newline. The next write ends that
fragment with a newline and names its hash in its own `fenced` field, so the fragment is never
glued to the next entry and is not taken for tampering.

Anyone who can write the file can also rewrite the whole chain and the head: that is why the
chain's hashes are also kept on every target (`opsctl.audit.offsite`).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import stat
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opsctl.audit.trail import AuditEntry, line_sha256
from opsctl.policy.trust import read_regular

GENESIS = "genesis"
_HEAD_LIMIT = 64 << 10
FORMAT = "opsctl-audit/1"
ZERO = "0" * 64


@dataclass(frozen=True)
class Link:
    """One line of the chain as a copy keeps it: its number and hash, and metadata, never the entry itself."""

    seq: int
    sha256: str
    prev: str
    time: str
    command: str
    outcome: str

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "sha256": self.sha256, "prev": self.prev, "time": self.time,
                "command": self.command, "outcome": self.outcome}


@dataclass(frozen=True)
class ChainCheck:
    """What `audit verify` found in one trail file."""

    path: Path
    intact: bool
    problem: str | None
    """The first bad line, named, with what probably happened; None when intact."""
    entries: tuple[AuditEntry, ...]
    links: tuple[Link, ...]
    notes: tuple[str, ...] = ()
    """What is not tampering but worth knowing (a fenced torn line, entries from before the chain)."""
    chain_id: str | None = None
    """The SHA-256 of the genesis line: names the chain on the targets."""
    bad_line: int | None = None


@dataclass(frozen=True)
class _Line:
    number: int  # 1-based, as an editor shows it
    raw: bytes
    data: dict[str, Any] | None  # a chained line's JSON; None for anything else

    @property
    def sha256(self) -> str:
        return line_sha256(self.raw)


def head_path(trail: Path) -> Path:
    """Where the writer keeps the number and hash of the trail's newest line."""
    return trail.with_name(trail.name + ".head")


def check(path: Path, head_required: bool = False) -> ChainCheck:
    """Check a trail file's chain and its head file; OSError when it cannot be read.

    head_required: the policy's own trail, whose head must be there; a copy may come without one,
    and then nothing vouches for its newest lines (said in a note).
    """
    content, head = _read_locked(path)
    lines, fragment = _split(content)
    genesis = next((line for line in lines if line.data is not None and line.data.get("kind") == GENESIS), None)
    if genesis is None:
        return _unchained(path, lines, fragment)
    walk = _Walk(path, lines, genesis)
    walk.run()
    walk.finish(fragment, head, head_required)
    return walk.result()


def _unchained(path: Path, lines: list[_Line], fragment: bytes) -> ChainCheck:
    if not lines and not fragment:
        return ChainCheck(path, True, None, (), (), ("the trail is empty: no command has run yet",))
    return ChainCheck(path, False, f"{path} has no hash chain (written by an opsctl older than the chain, or not "
                                   "an audit trail): nothing proves its lines; the next opsctl command starts the "
                                   "chain and seals them", (), ())


class _Walk:
    """One pass over the lines after genesis; stops at the first bad one."""

    def __init__(self, path: Path, lines: list[_Line], genesis: _Line) -> None:
        self.path, self.lines, self.genesis = path, lines, genesis
        self.numbers: dict[int, list[int]] = {}
        for line in lines:
            seq = line.data.get("seq") if line.data is not None else None
            if isinstance(seq, int) and line.number > genesis.number:
                self.numbers.setdefault(seq, []).append(line.number)
        self.problem: str | None = None
        self.bad_line: int | None = None
        self.notes: list[str] = []
        self.links: list[Link] = [_link(genesis)]
        self.entries: list[AuditEntry] = []
        self.last = genesis
        self.unparsed: list[_Line] = []  # lines that are no entry, since the last entry

    def run(self) -> None:
        self._check_legacy()
        for line in self.lines[self.genesis.number:]:
            if self.problem is not None:
                return
            self._step(line)

    def _check_legacy(self) -> None:
        data = self.genesis.data or {}
        earlier = data.get("previous_chain")
        if isinstance(earlier, dict):
            self.notes.append(f"this trail was started over at {_text(data.get('time'))}: an earlier chain "
                              f"({_text(earlier.get('chain'))[:16]}, up to entry {earlier.get('seq')}) is no longer "
                              "here; the targets keep its copy")
        before = self.genesis.number - 1
        if before == 0:
            return
        legacy = b"".join(line.raw + b"\n" for line in self.lines[:before])
        if hashlib.sha256(legacy).hexdigest() != (self.genesis.data or {}).get("legacy_sha256"):
            self._bad(1, f"lines 1-{before} (written before the chain began) were changed since the chain sealed them")
        else:
            self.notes.append(f"lines 1-{before} were written before the chain began; the chain's first line "
                              "sealed them as they were")

    def _step(self, line: _Line) -> None:
        if line.data is None:
            self.unparsed.append(line)
            return
        if not self._fences(line):
            return
        seq, expected = line.data.get("seq"), self.links[-1].seq + 1
        if not isinstance(seq, int) or seq != expected:
            self._bad(line.number, self._misplaced(line, seq, expected))
            return
        if line.data.get("prev") != self.last.sha256:
            self._bad(self.last.number, self._edited(line))
            return
        self._accept(line)

    def _fences(self, line: _Line) -> bool:
        """Lines after the last entry that are no entry must be exactly the cut-short writes this line fenced off."""
        if not self.unparsed:
            return True
        fenced = line.data.get("fenced") if line.data is not None else None
        fenced = [fenced] if isinstance(fenced, dict) else fenced  # one cut-short write, as the first chains wrote it
        named = [item.get("sha256") for item in fenced if isinstance(item, dict)] if isinstance(fenced, list) else []
        if named == [each.sha256 for each in self.unparsed]:
            self.notes.append(f"{_lines(self.unparsed)} cut short (a power loss, a kill or a full disk); "
                              "the next entry fenced them off")
            self.unparsed = []
            return True
        self._not_an_entry()
        return False

    def _not_an_entry(self) -> None:
        first = self.unparsed[0].number
        self._bad(first, f"line {first} is not an audit entry: it was edited or damaged")

    def _misplaced(self, line: _Line, seq: object, expected: int) -> str:
        if not isinstance(seq, int):
            return f"line {line.number} has no entry number: it was edited, or inserted by hand"
        others = [number for number in self.numbers.get(seq, []) if number != line.number]
        if others:
            return (f"line {line.number} holds entry {seq}, which line {others[0]} holds too: an entry was inserted "
                    "or copied there")
        if expected in self.numbers:
            return (f"line {line.number} holds entry {seq} where entry {expected} belongs (entry {expected} is at "
                    f"line {self.numbers[expected][0]}): the entries were reordered")
        if seq < expected:
            return f"line {line.number} holds entry {seq} after entry {expected - 1}: the entries were reordered"
        if seq == expected + 1:
            return f"entry {expected} is missing before line {line.number}: it was deleted"
        return f"entries {expected}-{seq - 1} are missing before line {line.number}: they were deleted"

    def _edited(self, line: _Line) -> str:
        if self.last is self.genesis:
            return f"line {self.last.number} (the chain's first line) was changed after line {line.number} was written"
        return (f"line {self.last.number} was changed after it was written (line {line.number} recorded another hash "
                f"for it), or line {line.number} was inserted")

    def _accept(self, line: _Line) -> None:
        data = line.data or {}
        changed = data.get("changed_before")
        if isinstance(changed, dict) and isinstance(changed.get("seq"), int):
            at = self.numbers.get(changed["seq"], [self.last.number])[0]
            self._bad(at, f"line {at} was changed after it was written: the write of line {line.number} found its "
                          "hash differs from what the head file recorded")
            return
        self.links.append(_link(line))
        entry = AuditEntry.from_json(data)
        if entry is not None:
            self.entries.append(entry)
        self.last = line

    def finish(self, fragment: bytes, head: dict[str, Any] | None, head_required: bool) -> None:
        """The end of the file: writes cut short, and the head's record of the newest entry."""
        if self.problem is not None:
            return
        if head is None:
            self._headless(head_required)
        elif head.get("chain") != self.links[0].sha256:
            self._bad(self.genesis.number, "the head file names another chain than this trail's: the trail was "
                                           "replaced or started over since the head was written")
        elif not self._matches(head):
            return
        if self.problem is None and self.unparsed:  # after the newest entry the head vouches for: failed writes
            self.notes.append(f"{_lines(self.unparsed)} cut short after the newest entry; the next entry "
                              "will fence them off")
        if self.problem is None and fragment:
            number = self.lines[-1].number + 1 if self.lines else 1
            self.notes.append(f"line {number} is a write cut short (a power loss or kill); the next entry will "
                              "fence it off")

    def _headless(self, required: bool) -> None:
        if required:
            self._bad(self.last.number, "the head file (audit.jsonl.head) is missing, so nothing vouches for the "
                                        "newest entries: it was deleted; compare with a target: opsctl audit verify "
                                        "--against TARGET")
        else:
            self.notes.append("no head file was given with this copy: the newest entries could have been cut or "
                              "changed unseen; compare with a target's copy (opsctl audit verify --against)")
        if self.unparsed and self.problem is None:
            self._not_an_entry()

    def _matches(self, head: dict[str, Any]) -> bool:
        """The trail ends where the head says (an older head: a crash between the two writes)."""
        end, seq = self.links[-1], head.get("seq")
        if not isinstance(seq, int) or seq > end.seq:
            self._bad(self.last.number + 1, f"the trail was cut short after line {self.last.number} (entry "
                                            f"{end.seq}): the head file recorded entry {seq}")
        elif seq == end.seq and head.get("sha256") != end.sha256:
            self._bad(self.last.number, f"line {self.last.number} (the newest entry) was changed after it was "
                                        "written: the head file recorded another hash for it")
        elif seq < end.seq:
            self.notes.append(f"the head file names entry {seq}, the trail ends at {end.seq}: a crash between the "
                              "two writes, or entries added by hand")
        return self.problem is None

    def _bad(self, number: int, problem: str) -> None:
        self.problem, self.bad_line = problem, number

    def result(self) -> ChainCheck:
        return ChainCheck(self.path, self.problem is None, self.problem, tuple(self.entries), tuple(self.links),
                          tuple(self.notes), self.links[0].sha256, self.bad_line)


def _split(content: bytes) -> tuple[list[_Line], bytes]:
    """Complete lines (numbered from 1), and the bytes after the last newline (a torn write)."""
    *complete, fragment = content.split(b"\n")
    return [_Line(number, raw, _parsed(raw)) for number, raw in enumerate(complete, 1)], fragment


def _parsed(raw: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    seq = data.get("seq") if isinstance(data, dict) else None
    return data if isinstance(seq, int) and not isinstance(seq, bool) else None


def _link(line: _Line) -> Link:
    data = line.data or {}
    return Link(int(data.get("seq", 0)), line.sha256, str(data.get("prev", "")), _text(data.get("time")),
                _text(data.get("command") or data.get("kind")), _text(data.get("outcome")))


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _read_locked(path: Path) -> tuple[bytes, dict[str, Any] | None]:
    """The file's bytes and its head, both read while no opsctl appends (the writer holds the lock exclusively)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO given as a trail never blocks
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a pipe, a device or a folder)")
        with suppress(OSError):  # a copy on a filesystem without locks: nothing appends to it anyway
            fcntl.flock(handle, fcntl.LOCK_SH)
        return handle.read(), _read_head(head_path(path))


def _read_head(path: Path) -> dict[str, Any] | None:
    try:  # a head file is a few hundred bytes; a FIFO or a device in its place must not hang the check
        data = json.loads(read_regular(path, _HEAD_LIMIT))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _lines(lines: list[_Line]) -> str:
    numbers = [line.number for line in lines]
    return f"line {numbers[0]} is a write" if len(numbers) == 1 else f"lines {numbers[0]}-{numbers[-1]} are writes"
