"""The audit trail's hash chain: every kind of tampering is named at its line; a torn write is fenced, not glued."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from opsctl.audit import AuditEntry, append, chain, offsite
from opsctl.audit.trail import line_sha256
from tests.support.workspace import REPO_ROOT

# Lines 1-2 are left by an opsctl older than the chain; 3 is genesis; entries 1..5 are lines 4..8.
LEGACY = b'{"command": "backup", "outcome": "ok"}\n{"command": "prune", "outcome": "ok"}\n'


def entry(command: str, outcome: str = "ok") -> AuditEntry:
    return AuditEntry(command=command, policy="crm", policy_file="/etc/opsctl/policy.yaml", outcome=outcome,
                      exit_code=0 if outcome == "ok" else 1)


@pytest.fixture
def trail(tmp_path: Path) -> Path:
    folder = tmp_path / "state"
    folder.mkdir(mode=0o700)
    path = folder / "audit.jsonl"
    path.write_bytes(LEGACY)
    for command in ("init", "backup", "verify", "backup", "drill"):
        append(path, entry(command))
    return path


def tampered(trail: Path, change) -> Path:
    """A copy of the trail (and its head) with its lines changed by `change`."""
    lines = trail.read_bytes().split(b"\n")[:-1]
    copy = trail.with_name("copy.jsonl")
    copy.write_bytes(b"".join(line + b"\n" for line in change(lines)))
    chain.head_path(copy).write_bytes(chain.head_path(trail).read_bytes())
    return copy


def test_an_honest_trail_is_intact_and_seals_what_came_before_it(trail):
    checked = chain.check(trail)
    assert checked.intact, checked.problem
    assert [e.command for e in checked.entries] == ["init", "backup", "verify", "backup", "drill"]
    assert any("before the chain began" in note for note in checked.notes)
    assert all(e.uid == os.geteuid() for e in checked.entries)


def edit(lines):
    lines[4] = lines[4].replace(b'"outcome": "ok"', b'"outcome": "failed"')
    return lines


def delete(lines):
    del lines[4]
    return lines


def insert(lines):
    forged = json.loads(lines[4])
    forged.update(command="restore", prev=line_sha256(lines[4]))
    lines.insert(5, json.dumps(forged, sort_keys=True).encode())
    return lines


def reorder(lines):
    lines[4], lines[5] = lines[5], lines[4]
    return lines


def truncate(lines):
    return lines[:-2]


def edit_legacy(lines):
    lines[0] = lines[0].replace(b"ok", b"failed")
    return lines


@pytest.mark.parametrize(("change", "line", "words"), [
    (edit, 5, "line 5 was changed after it was written"),
    (delete, 5, "entry 2 is missing before line 5: it was deleted"),
    (insert, 6, "line 6 holds entry 2, which line 5 holds too: an entry was inserted"),
    (reorder, 5, "the entries were reordered"),
    (truncate, 7, "the trail was cut short after line 6 (entry 3): the head file recorded entry 5"),
    (edit_legacy, 1, "written before the chain began) were changed"),
])
def test_each_kind_of_tampering_is_named_at_its_line(trail, change, line, words):
    checked = chain.check(tampered(trail, change))
    assert not checked.intact
    assert checked.bad_line == line, checked.problem
    assert words in (checked.problem or "")


def test_the_newest_line_edited_is_caught_by_the_head(trail):
    def edit_last(lines):
        lines[-1] = lines[-1].replace(b'"outcome": "ok"', b'"outcome": "failed"')
        return lines
    checked = chain.check(tampered(trail, edit_last))
    assert (checked.bad_line, checked.intact) == (8, False)
    assert "the newest entry" in (checked.problem or "")


def test_a_torn_write_is_fenced_off_never_glued_to_the_next_entry(trail):
    with trail.open("ab") as handle:  # a power loss in the middle of a write
        handle.write(b'{"command": "backup", "outcome": "o')
    assert chain.check(trail).intact  # the head still names the last whole entry: nothing was lost
    append(trail, entry("restore"))
    checked = chain.check(trail)
    assert checked.intact, checked.problem
    assert [e.command for e in checked.entries][-2:] == ["drill", "restore"]
    assert any("line 9 is a write cut short" in note for note in checked.notes)
    assert trail.read_bytes().split(b"\n")[8] == b'{"command": "backup", "outcome": "o'


def _append_many(path: str, count: int) -> None:
    for index in range(count):
        append(Path(path), entry(f"job-{os.getpid()}-{index}"))


def test_writers_at_the_same_time_keep_one_unbroken_chain(tmp_path):
    folder = tmp_path / "state"
    folder.mkdir(mode=0o700)
    path = folder / "audit.jsonl"
    workers = [multiprocessing.get_context("fork").Process(target=_append_many, args=(str(path), 25))
               for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    checked = chain.check(path)
    assert checked.intact, checked.problem
    assert len(checked.entries) == 100


def test_the_copy_on_a_target_names_where_a_rewritten_trail_diverges(trail):
    links = chain.check(trail).links
    held = offsite.decode(offsite.encode("c" * 64, links, "crm"), "c" * 64, 0, links[-1].seq)
    assert offsite.compare(links, held, "nas").agrees
    rewritten = [*links[:3], *(link.__class__(link.seq, "f" * 64, link.prev, link.time, link.command, link.outcome)
                               for link in links[3:])]
    verdict = offsite.compare(rewritten, held, "nas")
    assert (verdict.agrees, verdict.diverges_at) == (False, 3)
    shorter = offsite.compare(links[:4], held, "nas")
    assert (shorter.agrees, shorter.diverges_at) == (False, 4)
    assert "holds entries 4-5 that the local trail lacks" in shorter.message
    with pytest.raises(offsite.DamagedCopy):
        offsite.decode(b"{\"format\": \"something else\"}\n", "c" * 64, 0, 0)


def test_an_auditor_checks_a_copy_with_no_policy_and_gets_the_line_and_exit_1(trail, tmp_path):
    copy = tampered(trail, delete)
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO_ROOT), "HOME": str(tmp_path / "home")}
    run = subprocess.run([sys.executable, "-m", "opsctl", "audit", "verify", "--file", str(copy)],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False)
    assert run.returncode == 1, run.stderr
    assert "BROKEN: entry 2 is missing before line 5: it was deleted" in run.stdout
    intact = subprocess.run([sys.executable, "-m", "opsctl", "audit", "show", "--file", str(trail),
                             "--command", "backup"], capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=60, check=False)
    assert intact.returncode == 0, intact.stderr
    assert intact.stdout.count("backup") == 3 and "chain: intact" in intact.stdout  # the older line is shown too
    assert not (tmp_path / "home").exists()  # nothing written: no state folder, no trail of its own


def test_writes_that_failed_twice_on_a_full_disk_are_fenced_and_the_chain_goes_on(trail):
    with trail.open("ab") as handle:  # two appends cut short: the second one ended the first's fragment itself
        handle.write(b'{"command": "backup", "outc\n{"command": "back')
    append(trail, entry("restore"))
    checked = chain.check(trail, head_required=True)
    assert checked.intact, checked.problem
    assert [e.command for e in checked.entries][-2:] == ["drill", "restore"]
    assert checked.links[-1].seq == 6  # no number skipped
    assert any("lines 9-10 are writes cut short" in note for note in checked.notes)


def test_a_missing_head_or_one_of_another_chain_is_named(trail, tmp_path):
    chain.head_path(trail).rename(tmp_path / "kept.head")
    assert not chain.check(trail, head_required=True).intact
    copy = chain.check(trail)  # a copy handed to an auditor may come alone: said, not failed
    assert copy.intact and any("no head file was given" in note for note in copy.notes)
    other = tmp_path / "other" / "audit.jsonl"
    other.parent.mkdir(mode=0o700)
    append(other, entry("init"))
    (tmp_path / "kept.head").rename(chain.head_path(trail))
    chain.head_path(trail).write_bytes(chain.head_path(other).read_bytes())
    replaced = chain.check(trail, head_required=True)
    assert not replaced.intact and "names another chain" in (replaced.problem or "")


def test_two_trails_started_in_the_same_second_have_different_names(tmp_path):
    names = set()
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir(mode=0o700)
        append(tmp_path / folder / "audit.jsonl", entry("init"))
        names.add(chain.check(tmp_path / folder / "audit.jsonl").chain_id)
    assert len(names) == 2


def _check_while_others_write(path: str, rounds: int) -> list[str]:
    return [chain.check(Path(path), head_required=True).problem or "" for _ in range(rounds)]


def test_a_check_while_others_append_never_sees_a_false_break(tmp_path):
    folder = tmp_path / "state"
    folder.mkdir(mode=0o700)
    path = folder / "audit.jsonl"
    append(path, entry("init"))
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_append_many, args=(str(path), 40)) for _ in range(3)]
    for writer in writers:
        writer.start()
    with context.Pool(1) as pool:
        problems = pool.apply(_check_while_others_write, (str(path), 60))
    for writer in writers:
        writer.join()
    assert not [p for p in problems if p], problems[:3]


def test_a_batch_that_does_not_hold_what_its_name_says_is_damaged(trail):
    links = chain.check(trail).links
    content = offsite.encode("c" * 64, links[:3], "crm")
    assert [link.seq for link in offsite.decode(content, "c" * 64, 0, 2)] == [0, 1, 2]
    for first, last in ((0, 9_999_999_999), (1, 2)):
        with pytest.raises(offsite.DamagedCopy):
            offsite.decode(content, "c" * 64, first, last)
    verdict = offsite.compare(links, links, "nas", others=["0123456789abcdef"])
    assert not verdict.agrees and "also holds the copy of another chain" in verdict.message
