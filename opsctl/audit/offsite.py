"""The audit trail's copy on a target: the chain's hashes and metadata, in files that are only ever added.

Each job adds one file holding the links (entry number, line hash, previous hash, time, command,
outcome) written since the last copy: no user names, no paths, no error text, so a bucket's
readers learn nothing about the customers or the host. Someone who rewrites the local trail
cannot make it match these hashes again, and on a bucket with Object Lock cannot delete them.

A target is not trusted either: whatever its files say is parsed with limits, and a file that
is not an audit copy is reported, never followed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from opsctl.audit.chain import Link

FORMAT = "opsctl-audit-copy/1"
FOLDER = "opsctl-audit"  # beside restic's folders in each target's repository
_HASH_LENGTH = 64
_BATCH = re.compile(r"(\d{10})-(\d{10})\.jsonl")


def batch_name(chain_id: str, first: int, last: int) -> str:
    """The file that holds entries first..last of a chain (a name targets.replicate accepts)."""
    return f"{FOLDER}/{chain_id[:16]}/{first:010d}-{last:010d}.jsonl"


def batch_range(name: str) -> tuple[int, int] | None:
    """The (first, last) entries a batch file's name claims (batch_name read back); None for any other name."""
    match = _BATCH.fullmatch(name.rpartition("/")[2])
    return None if match is None else (int(match.group(1)), int(match.group(2)))


def chain_folder(chain_id: str) -> str:
    return f"{FOLDER}/{chain_id[:16]}"


def encode(chain_id: str, links: Sequence[Link], policy: str) -> bytes:
    """A batch file: a header naming the chain and its policy, then one link per line.

    The policy's name tells a trail that was started over from another policy's sharing the repository.
    """
    header = {"format": FORMAT, "chain": chain_id, "policy": policy, "first": links[0].seq, "last": links[-1].seq}
    lines = [json.dumps(header, sort_keys=True), *(json.dumps(link.to_json(), sort_keys=True) for link in links)]
    return ("\n".join(lines) + "\n").encode()


class DamagedCopy(ValueError):
    """A file in the copy's folder that is not a batch opsctl wrote."""


MAX_BATCH = 4 << 20  # a job adds a few hundred bytes per entry: a larger file is no batch opsctl wrote


def decode(content: bytes, chain_id: str, first: int, last: int) -> list[Link]:
    """The links first..last of one batch file of this chain; DamagedCopy when it is anything else."""
    if len(content) > MAX_BATCH:
        raise DamagedCopy("far larger than a batch opsctl writes")
    header, _, body = content.partition(b"\n")
    top = _row(header)
    if not isinstance(top, dict) or top.get("format") != FORMAT or top.get("chain") != chain_id \
            or top.get("first") != first or top.get("last") != last:
        raise DamagedCopy("its header does not name this chain and the entries its name says")
    links = [_link(_row(line)) for line in body.splitlines() if line.strip()]
    if len(links) != last - first + 1 or any(link.seq != first + index for index, link in enumerate(links)):
        raise DamagedCopy(f"it does not hold exactly entries {first}-{last}")
    return links


def policy_of(content: bytes) -> str | None:
    """The policy a batch file says it belongs to (None: it does not say, or it is no batch)."""
    try:
        header = _row(content.partition(b"\n")[0])
    except DamagedCopy:
        return None
    policy = header.get("policy") if isinstance(header, dict) else None
    return policy if isinstance(policy, str) else None


def _row(line: bytes) -> object:
    try:
        return json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise DamagedCopy("not JSON lines") from None


def _link(row: object) -> Link:
    if not isinstance(row, dict):
        raise DamagedCopy("a line that is not a link")
    seq, digest, prev = row.get("seq"), row.get("sha256"), row.get("prev")
    if not (isinstance(seq, int) and seq >= 0 and isinstance(digest, str) and len(digest) == _HASH_LENGTH
            and isinstance(prev, str)):
        raise DamagedCopy("a link without its number or hash")
    return Link(seq, digest, prev, _text(row.get("time")), _text(row.get("command")), _text(row.get("outcome")))


def _text(value: object) -> str:
    return value[:200] if isinstance(value, str) else ""


@dataclass(frozen=True)
class Comparison:
    """How a local chain and a target's copy of it relate."""

    agrees: bool
    message: str
    diverges_at: int | None = None  # the first entry number where they differ
    pending: int = 0  # local entries the target does not hold yet (copied after the next job)


def compare(local: Sequence[Link], remote: Iterable[Link], target: str, others: Sequence[str] = ()) -> Comparison:
    """The first entry where the local chain and the target's copy disagree, or how far they agree.

    others: other chains of the same policy whose copies the target holds (a trail started over or replaced).
    """
    if others:
        return Comparison(False, f"{target} also holds the copy of another chain ({', '.join(others[:3])}): the "
                                 "local trail was started over or replaced after that one was copied (a rebuilt "
                                 "host, a deleted state folder); keep both as evidence and compare them", 0)
    return _compare_held(local, remote, target)


def _compare_held(local: Sequence[Link], remote: Iterable[Link], target: str) -> Comparison:
    held: dict[int, str] = {}
    for link in remote:
        if held.setdefault(link.seq, link.sha256) != link.sha256:
            return Comparison(False, f"{target} holds two different hashes for entry {link.seq}: someone added a "
                                     "file there by hand; keep both and compare them with the local trail", link.seq)
    if not held:
        return Comparison(False, f"{target} holds no copy of this trail yet: run a job (a backup) to copy it, "
                                 "then check again", None, len(local))
    for link in local:
        theirs = held.get(link.seq)
        if theirs is not None and theirs != link.sha256:
            return Comparison(False, f"entry {link.seq} differs from the copy on {target}: the local trail was "
                                     "rewritten from there (the copy keeps what it said first)", link.seq)
    newest_local, newest_remote = local[-1].seq if local else -1, max(held)
    if newest_remote > newest_local:
        return Comparison(False, f"{target} holds entries {newest_local + 1}-{newest_remote} that the local trail "
                                 "lacks: it was cut short or replaced", newest_local + 1)
    missing = [link.seq for link in local if link.seq not in held]
    pending = [seq for seq in missing if seq > newest_remote]
    if len(missing) > len(pending):
        return Comparison(False, f"{target} lacks entry {missing[0]} although it holds later ones: a copy file "
                                 "was deleted there", missing[0])
    agreed = f"the local trail matches the copy on {target} up to entry {newest_remote}"
    later = "" if not pending else "; 1 newer entry is" if len(pending) == 1 else f"; {len(pending)} newer entries are"
    return Comparison(True, agreed + (f"{later} copied after the next job" if pending else ""), None, len(pending))
