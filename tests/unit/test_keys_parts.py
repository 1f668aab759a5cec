"""Key rotation's pure parts: restic key arguments, key parsing, the journal, password sources."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from opsctl.actions.keys import journal as jr
from opsctl.actions.keys.password import FileStore, generate, read_new_password_file, store_for
from opsctl.errors import BadInput
from opsctl.policy.fields import SecretSource
from opsctl.restic import commands
from opsctl.restic.models import key_from_json


def test_key_arguments_carry_no_password():
    assert commands.key_list_args() == ["key", "list", "--json"]
    assert commands.key_add_args(7) == ["key", "add", "--new-password-file", "/dev/fd/7"]
    assert commands.key_remove_args("d4009000") == ["key", "remove", "d4009000"]


@pytest.mark.parametrize("bad", ["", "--all", "D4009000", "d400 9000"])
def test_key_remove_takes_exactly_one_id(bad):
    with pytest.raises(ValueError, match="not a restic key ID"):
        commands.key_remove_args(bad)


def test_key_list_json():
    key = key_from_json({"current": True, "id": "d4009000", "userName": "root", "hostName": "vm",
                         "created": "2026-11-22 22:06:19"})
    assert (key.id, key.current, key.user, key.host) == ("d4009000", True, "root", "vm")
    assert key.created.tzinfo is not None and key.created.minute == 6


def test_journal_round_trip_is_private_and_atomic(tmp_path):
    journal = jr.Journal(rotation="20261122T000000Z", started="t", step="stage",
                         targets=(jr.TargetState("a", "a (local)", "aaaa1111"),
                                  jr.TargetState("b", "b (local)", "aaaa1111", origin="a")))
    jr.save(tmp_path, journal)
    path = jr.journal_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert jr.load(tmp_path) == journal
    assert json.loads(path.read_text())["targets"][1]["origin"] == "a"
    assert not list(tmp_path.glob(".*.tmp"))
    jr.remove(tmp_path)
    assert jr.load(tmp_path) is None


def test_a_damaged_journal_is_reported_not_guessed(tmp_path):
    jr.journal_path(tmp_path).write_text("{not json")
    with pytest.raises(Exception, match="cannot be read"):
        jr.load(tmp_path)


def test_file_store_stages_switches_and_keeps_the_old_secret(tmp_path):
    current = tmp_path / "restic.pass"
    current.write_bytes(b"old-password\n")
    current.chmod(0o400)
    store = FileStore(SecretSource(file=current), "20261122T000000Z")
    store.stage(b"new-password-123\n")
    assert stat.S_IMODE(store.staged_path.stat().st_mode) == 0o400
    store.switch()
    store.switch()  # a resumed run repeats it harmlessly
    assert store.current() == b"new-password-123\n" and store.old() == b"old-password\n"
    assert store.staged() is None and stat.S_IMODE(store.old_path.stat().st_mode) == 0o400


def test_generated_passwords_are_long_and_distinct():
    first, second = generate(), generate()
    assert first != second and len(first.strip()) >= 43


def test_sources_rotation_cannot_rewrite(tmp_path):
    with pytest.raises(BadInput, match="environment variable"):
        store_for(SecretSource(env="RESTIC_PW"), tmp_path, "x")
    with pytest.raises(BadInput, match="no store_command"):
        store_for(SecretSource(command=("pass", "show", "x")), tmp_path, "x")


def test_weak_new_password_file_is_refused(tmp_path: Path):
    short = tmp_path / "new.pass"
    short.write_text("short\n")
    short.chmod(0o600)
    with pytest.raises(BadInput, match="shorter than 12"):
        read_new_password_file(short)
    short.chmod(0o644)
    with pytest.raises(BadInput, match="other users"):
        read_new_password_file(short)


def test_store_command_only_goes_with_command(tmp_path):
    from pydantic import ValidationError

    secret = tmp_path / "p"
    secret.write_text("x\n")
    secret.chmod(0o600)
    with pytest.raises(ValidationError, match="store_command goes with command"):
        SecretSource(file=secret, store_command=("true",))
