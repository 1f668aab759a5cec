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

import fcntl
import hashlib
import json
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opsctl.audit.trail import AuditEntry, line_sha256

GENESIS = "genesis"
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


def check(path: Path, head: Path | None = None) -> ChainCheck:
    """Check a trail file's chain (and its head, when there is one); OSError when it cannot be read."""
    content = _read_locked(path)
    lines, fragment = _split(content)
    genesis = next((line for line in lines if line.data is not None and line.data.get("kind") == GENESIS), None)
    if genesis is None:
        return _unchained(path, lines, fragment)
    walk = _Walk(path, lines, genesis)
    walk.run()
    walk.finish(fragment, _read_head(head if head is not None else head_path(path)))
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
        self.unparsed: _Line | None = None

    def run(self) -> None:
        self._check_legacy()
        for line in self.lines[self.genesis.number:]:
            if self.problem is not None:
                return
            self._step(line)
        if self.problem is None and self.unparsed is not None:
            self._bad(self.unparsed.number, f"line {self.unparsed.number} is not an audit entry: it was edited or "
                                            "damaged")

    def _check_legacy(self) -> None:
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
            if self.unparsed is not None:  # two in a row: the first was not a torn write
                self._bad(self.unparsed.number, f"line {self.unparsed.number} is not an audit entry: it was edited or "
                                                "damaged")
            self.unparsed = line
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
        """A line after an unreadable one must name it as the torn write it fenced off."""
        if self.unparsed is None:
            return True
        fenced = line.data.get("fenced") if line.data is not None else None
        if isinstance(fenced, dict) and fenced.get("sha256") == line_sha256(self.unparsed.raw):
            self.notes.append(f"line {self.unparsed.number} is a write cut short (a power loss or kill); the next "
                              "entry fenced it off")
            self.unparsed = None
            return True
        self._bad(self.unparsed.number, f"line {self.unparsed.number} is not an audit entry: it was edited or damaged")
        return False

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

    def finish(self, fragment: bytes, head: dict[str, Any] | None) -> None:
        """The end of the file: a torn last write, and the head's record of the newest line."""
        if self.problem is not None:
            return
        end = self.links[-1]
        if head is not None and head.get("chain") == self.links[0].sha256 and isinstance(head.get("seq"), int):
            if head["seq"] > end.seq:
                self._bad(self.last.number + 1, f"the trail was cut short after line {self.last.number} (entry "
                                                f"{end.seq}): the head file recorded entry {head['seq']}")
                return
            if head["seq"] == end.seq and head.get("sha256") != end.sha256:
                self._bad(self.last.number, f"line {self.last.number} (the newest entry) was changed after it was "
                                            "written: the head file recorded another hash for it")
                return
            if head["seq"] < end.seq:
                self.notes.append(f"the head file names entry {head['seq']}, the trail ends at {end.seq}: a crash "
                                  "between the two writes, or entries added by hand")
        if fragment:
            self.notes.append(f"line {self.last.number + 1} is a write cut short (a power loss or kill); the next "
                              "entry will fence it off")

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
    return data if isinstance(data, dict) and isinstance(data.get("seq"), int) else None


def _link(line: _Line) -> Link:
    data = line.data or {}
    return Link(int(data.get("seq", 0)), line.sha256, str(data.get("prev", "")), _text(data.get("time")),
                _text(data.get("command") or data.get("kind")), _text(data.get("outcome")))


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _read_locked(path: Path) -> bytes:
    """The file's bytes, read while no opsctl is appending to it (a shared lock: the writer holds it exclusively)."""
    with path.open("rb") as handle:
        with suppress(OSError):  # a copy on a filesystem without locks: nothing appends to it anyway
            fcntl.flock(handle, fcntl.LOCK_SH)
        return handle.read()


def _read_head(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None
