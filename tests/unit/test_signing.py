"""Signed reports: keys signing init, signing at build time, and report verify --public-key, with real Ed25519 keys.

Reports are made by the real builders (verification, drill, compliance) and checked through the
real CLI in-process; only the verdict lines and exit codes are asserted, as a user reads them.
"""

from __future__ import annotations

import grp
import hashlib
import json
import logging
import os
import signal
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization

from opsctl import audit
from opsctl.actions.verify import TargetVerification, report_content
from opsctl.cli import main
from opsctl.policy import load_policy
from opsctl.reports import compliance, drill, sealed, signing, verification
from opsctl.reports.signing import Signer
from tests.unit.test_compliance_page import FIXED
from tests.unit.test_drill_report import content as drill_content

KEY = "keys/reports.key"
# What the builders add themselves; the compliance fixture carries them already, as a written page does.
_ADDED = ("finished_at", "host", "user", "opsctl_version")


def write_policy(folder: Path, **extra: Any) -> Path:
    (folder / "repo.pass").write_text("pw\n")
    (folder / "repo.pass").chmod(0o600)
    policy = {"name": "crm-test", "database": {"engine": "sqlite", "path": "crm.sqlite3"},
              "targets": [{"name": "local", "kind": "local", "path": "repo"}],
              "repository_password": {"file": "repo.pass"}, "state_dir": "state", "signing_key": KEY, **extra}
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


def opsctl(*args: str, policy: Path | None = None, env: dict[str, str] | None = None) -> Result:
    argv = ["--policy", str(policy), *args] if policy is not None else list(args)
    return CliRunner().invoke(main, argv, env=env)


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    return write_policy(tmp_path)


@pytest.fixture
def signer(policy: Path) -> Signer:
    """The policy's key, made by keys signing init."""
    made = opsctl("keys", "signing", "init", policy=policy)
    assert made.exit_code == 0, made.output
    return signing.load_signer(policy.parent / KEY)


def public_file(signer: Signer) -> Path:
    return signer.path.parent.parent / "state" / "reports" / f"signing-key-{signer.public.key_id}.pub"


def stranger(folder: Path) -> Signer:
    """A signer whose key this policy does not have."""
    key = serialization.load_pem_private_key(signing.new_key_pair()[0], password=None)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return Signer(folder, signing.PublicKey(raw), key)


def other_key(folder: Path) -> Path:
    """Another key's public half, as an auditor might hold by mistake."""
    _, public = signing.new_key_pair()
    path = folder / f"signing-key-{public.key_id}.pub"
    path.write_text(public.pem())
    return path


# --- keys signing init ---


def test_init_makes_a_private_key_0600_and_prints_and_keeps_its_public_half(policy):
    made = opsctl("keys", "signing", "init", policy=policy)
    assert made.exit_code == 0, made.output
    key_file = policy.parent / KEY
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    private = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key_id = hashlib.sha256(raw).hexdigest()[:16]
    kept = policy.parent / "state" / "reports" / f"signing-key-{key_id}.pub"
    assert f"Made signing key {key_id}" in made.stdout and kept.read_text().strip() in made.stdout
    assert "BEGIN PUBLIC KEY" in made.stdout and "PRIVATE" not in made.output
    assert "Reports written from now on are signed" in made.stdout
    assert b"PRIVATE" not in (policy.parent / "state" / "audit.jsonl").read_bytes()


def test_init_never_replaces_a_key_and_says_how_to_rotate(policy, signer):
    before = signer.path.read_bytes()
    again = opsctl("keys", "signing", "init", policy=policy)
    assert again.exit_code == 2, again.output
    assert "a signing key already exists" in again.stderr and "move the old key away first" in again.stderr
    assert signer.path.read_bytes() == before
    assert len(list((policy.parent / "state" / "reports").glob("signing-key-*.pub"))) == 1


def test_init_keeps_the_private_key_out_of_the_state_folder(policy):
    refused = opsctl("keys", "signing", "init", "--key-file", str(policy.parent / "state" / "x.key"), policy=policy)
    assert refused.exit_code == 2 and "inside the state folder" in refused.stderr, refused.output
    assert not (policy.parent / "state" / "x.key").exists()


def test_init_with_a_key_file_the_policy_does_not_name_warns_that_reports_stay_unsigned(policy, tmp_path):
    made = opsctl("keys", "signing", "init", "--key-file", str(tmp_path / "elsewhere.key"), policy=policy)
    assert made.exit_code == 0 and "reports are NOT signed with it yet" in made.stdout, made.output


# --- the three kinds of report, signed when built ---


def failed_verification(signer: Signer | None) -> dict[str, Any]:
    result = TargetVerification(target="local", location="local /r", snapshot_id="abcd1234", snapshot_time="t",
                                manifest_sha256="m", dump_bytes=1, repository="no errors", comparison=None,
                                error="the restore failed", hint="h", started_at="s", duration_s=1.0)
    about = {"policy": "p", "database": "crm", "engine": "sqlite", "started_at": "s", "restic_version": "restic"}
    return verification.build(report_content(about, [result], all_targets=False), signer).to_json()


KINDS = {  # kind -> (build a FAILED report, its module, the verdict a forger wants)
    "verification": (failed_verification, verification, "PASSED"),
    "drill": (lambda s: drill.build(drill_content(), s).to_json(), drill, "PASSED"),
    "compliance": (lambda s: compliance.build({k: v for k, v in FIXED.items() if k not in _ADDED}, s).to_json(),
                   compliance, "PASS"),
}


def write(kind: str, report: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    return sealed.write_pair(report, folder, kind, "crm", KINDS[kind][1].render_html)


def check(path: Path, key: Path, *extra: str) -> Result:
    return opsctl("report", "verify", str(path), "--public-key", str(key), *extra)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_signed_report_is_valid_with_its_public_key(kind, signer, tmp_path):
    report = KINDS[kind][0](signer)
    assert report["signature"]["key_id"] == signer.public.key_id
    for path in write(kind, report, tmp_path / "out"):
        checked = check(path, public_file(signer))
        assert checked.exit_code == 0, checked.output
        assert checked.stdout.startswith(f"VALID: {path} is as opsctl wrote it, signed with key "
                                         f"{signer.public.key_id} by {report['user']}@{report['host']} at "
                                         f"{report['finished_at']}"), checked.stdout
    page = KINDS[kind][1].render_html(report)
    assert f"Ed25519, key {signer.public.key_id}" in page


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_failed_report_edited_to_pass_and_rehashed_is_altered(kind, signer, tmp_path):
    report = KINDS[kind][0](signer)
    forged = sealed.hashed_content(report) | {"verdict": KINDS[kind][2]}
    forged = {**sealed.seal(forged), "signature": report["signature"]}  # the hash is right, the signature cannot be
    for path in write(kind, forged, tmp_path / "out"):
        assert sealed.check_file(path).intact  # the hash alone is fooled
        checked = check(path, public_file(signer))
        assert checked.exit_code == 1, checked.output
        assert checked.stdout.startswith(f"ALTERED: {path} names key {signer.public.key_id}, but its signature does "
                                         "not verify with that key"), checked.stdout


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_report_whose_signature_was_removed_is_unsigned(kind, signer, tmp_path):
    report = KINDS[kind][0](signer)
    for stripped in ({k: v for k, v in report.items() if k != "signature"}, {**report, "signature": None}):
        for path in write(kind, stripped, tmp_path / "out"):
            checked = check(path, public_file(signer))
            assert checked.exit_code == 1, checked.output
            assert checked.stdout.startswith(f"UNSIGNED: {path} is unsigned (hash only)"), checked.stdout
            path.unlink()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_report_checked_with_another_key_is_wrong_key(kind, signer, tmp_path):
    key = other_key(tmp_path)
    for path in write(kind, KINDS[kind][0](signer), tmp_path / "out"):
        checked = check(path, key)
        assert checked.exit_code == 1, checked.output
        assert checked.stdout.startswith(f"WRONG KEY: {path} is signed with key {signer.public.key_id}, not with "
                                         f"the given key {key.name[12:28]}"), checked.stdout


def test_a_signature_re_made_by_another_key_under_this_key_id_is_altered(signer, tmp_path):
    report = failed_verification(signer)
    forger, _ = signing.new_key_pair()
    forger_key = serialization.load_pem_private_key(forger, password=None)
    faked = {**signer.sign(report["sha256"]),
             "value": Signer(tmp_path, signer.public, forger_key).sign(report["sha256"])["value"]}
    for path in write("verification", {**report, "signature": faked}, tmp_path / "out"):
        checked = check(path, public_file(signer))
        assert checked.exit_code == 1 and checked.stdout.startswith("ALTERED: "), checked.output


def test_an_unsigned_report_from_before_signatures_says_hash_only(signer, tmp_path):
    old = sealed.seal(sealed.stamp({"format": verification.FORMAT, **sealed.hashed_content(
        failed_verification(None))}))  # sealed as opsctl 0.2 did: no signature field at all
    for path in write("verification", old, tmp_path / "out"):
        checked = check(path, public_file(signer))
        assert checked.exit_code == 1, checked.output
        assert "unsigned (hash only)" in checked.stdout and "VALID" not in checked.stdout
        assert "not signed" not in path.read_text()  # its page is exactly as it always was


def test_pages_say_whether_they_are_signed(signer):
    for kind, (build, module, _) in KINDS.items():
        assert "<td>not signed</td>" in module.render_html(build(None)), kind
        signed = module.render_html(build(signer))
        assert f"Ed25519, key {signer.public.key_id}" in signed and "not signed" not in signed, kind
        assert "public key obtained from the operator" in signed and "signing-key-" not in signed, kind


def test_a_public_key_that_is_not_one_is_refused_without_echoing_it(signer, tmp_path):
    report = write("verification", failed_verification(signer), tmp_path / "out")[0]
    for given, said in ((signer.path, "is a private key"), (report, "is not an Ed25519 public key"),
                        (tmp_path / "missing.pub", "there is no public key file")):
        checked = check(report, given)
        assert checked.exit_code == 2 and said in checked.stderr, checked.output
        assert "BEGIN" not in checked.output


# --- --audit-trail: the trail's chain, and the run that recorded the report ---


def trail_with(path: Path, report: dict[str, Any]) -> Path:
    """A trail written by opsctl's own writer, whose verify run recorded this report."""
    audit.append(path, audit.AuditEntry("backup", "crm-test", None, "ok", 0))
    audit.append(path, audit.AuditEntry("verify", "crm-test", None, "failed", 1, details={
        "verdict": report["verdict"], "report_sha256": report["sha256"]}))
    return path


def test_an_audit_trail_that_recorded_the_report_vouches_for_it(signer, tmp_path):
    report = failed_verification(signer)
    trail = trail_with(tmp_path / "trail" / "audit.jsonl", report)
    path = write("verification", report, tmp_path / "out")[1]
    checked = check(path, public_file(signer), "--audit-trail", str(trail))
    assert checked.exit_code == 0, checked.output
    said = " ".join(checked.stdout.split())
    recorded = (f"The audit trail {trail}'s chain is unbroken up to the newest line its .head file records and it "
                "recorded this report (verify on")
    assert said.startswith("VALID: ") and recorded in said and "intact" not in said, said
    caveat = ("the chain has no key, so it proves order and completeness only against the copies kept on the "
              "targets: opsctl audit verify --against TARGET.")
    assert caveat in said


def test_an_audit_trail_that_did_not_record_the_report_or_is_broken_fails(signer, tmp_path):
    report = failed_verification(signer)
    path = write("verification", report, tmp_path / "out")[0]
    other = trail_with(tmp_path / "other" / "audit.jsonl", {"verdict": "FAILED", "sha256": "0" * 64})
    checked = check(path, public_file(signer), "--audit-trail", str(other))
    assert checked.exit_code == 1 and "But no run in the audit trail" in " ".join(checked.stdout.split())
    assert checked.stdout.startswith("NOT RECORDED: ") and "VALID" not in checked.stdout, checked.output
    trail = trail_with(tmp_path / "trail" / "audit.jsonl", report)
    lines = trail.read_text().splitlines(keepends=True)
    trail.write_text("".join([*lines[:-2], lines[-2].replace('"backup"', '"restore"'), lines[-1]]))  # one edit
    checked = check(path, public_file(signer), "--audit-trail", str(trail))
    assert checked.exit_code == 1 and "is broken" in checked.stdout, checked.output
    assert checked.stdout.startswith("TRAIL BROKEN: ") and "VALID" not in checked.stdout, checked.output
    for given, word in ((other, "NOT RECORDED"), (trail, "TRAIL BROKEN")):
        said = json.loads(check(path, public_file(signer), "--audit-trail", str(given), "--json").stdout)
        assert said["verdict"] == word and said["signature"] == "VALID" and not said["intact"], said


def test_the_auditors_check_reads_no_policy_and_writes_nothing(signer, policy, tmp_path):
    path = write("verification", failed_verification(signer), tmp_path / "out")[0]
    trail = policy.parent / "state" / "audit.jsonl"
    before = trail.read_bytes()
    checked = opsctl("report", "verify", str(path), "--public-key", str(public_file(signer)),
                     env={"OPSCTL_POLICY": str(policy)})
    assert checked.exit_code == 0, checked.output
    assert trail.read_bytes() == before


# --- report verify with the policy (no --public-key) ---


def test_with_the_policy_a_signed_report_is_checked_with_the_policys_own_key(signer, policy, tmp_path):
    report = failed_verification(signer)
    trail_with(policy.parent / "state" / "audit.jsonl", report)  # what the verify run itself would have recorded
    path = write("verification", report, tmp_path / "out")[0]
    checked = opsctl("report", "verify", str(path), policy=policy)
    assert checked.exit_code == 0 and f"signed with this policy's key {signer.public.key_id}" in checked.stdout, \
        checked.output
    path.write_text(json.dumps({**report, "signature": signer.sign("0" * 64)}))  # recorded content, forged signature
    checked = opsctl("report", "verify", str(path), policy=policy)
    assert checked.exit_code == 1 and checked.stdout.startswith("ALTERED: "), checked.output


# --- loading the key, and who may read the reports ---


def test_a_named_key_that_cannot_sign_leaves_the_report_unsigned_with_a_warning(policy, signer, caplog):
    signer.path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="opsctl"):
        assert signing.signer_or_warn(load_policy(policy)) is None
    assert "UNSIGNED" in caplog.text and f"chmod 600 {signer.path}" in caplog.text
    signer.path.chmod(0o600)
    assert signing.signer_or_warn(load_policy(policy)) == signer


def test_no_key_at_the_default_place_means_unsigned_silently(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(signing, "default_signing_key", lambda name: tmp_path / "none" / f"{name}.key")
    (tmp_path / "p").mkdir()
    path = write_policy(tmp_path / "p", signing_key=None)
    with caplog.at_level(logging.WARNING, logger="opsctl"):
        assert signing.signer_or_warn(load_policy(path)) is None
    assert not caplog.text


def test_reports_are_0640_in_a_private_folder_or_shared_with_the_report_group(tmp_path, caplog):
    report = failed_verification(None)
    for path in write("verification", report, tmp_path / "plain"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o700
    group = grp.getgrgid(os.getegid())
    for path in sealed.write_pair(report, tmp_path / "shared", "verify", "crm", verification.render_html,
                                  group=group.gr_name):
        assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.stat().st_gid == group.gr_gid
    assert stat.S_IMODE((tmp_path / "shared").stat().st_mode) == 0o750
    with caplog.at_level(logging.WARNING, logger="opsctl"):
        paths = sealed.write_pair(report, tmp_path / "nogroup", "verify", "crm", verification.render_html,
                                  group="no-such-group-here")
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in paths)
    assert "report_group no-such-group-here does not exist" in caplog.text


# --- the file must be byte for byte what opsctl wrote: a re-encoding the hash cannot see is altered ---


def edited(path: Path, old: str, new: str) -> Path:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    copy = path.with_name(f"edited-{path.name}")
    copy.write_bytes(text.replace(old, new, 1).encode("utf-8"))
    return copy


def with_signature(path: Path, **fields: Any) -> Path:
    """The report re-written exactly as opsctl writes one, with its signature field changed."""
    report = json.loads(path.read_text())
    copy = path.with_name(f"signature-{path.name}")
    copy.write_text(sealed.json_text({**report, "signature": {**report["signature"], **fields}}), encoding="utf-8")
    return copy


def other_base64(text: str) -> str:
    """The same bytes in a non-canonical base64 spelling: the unused low bits of the last character flipped."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    end = len(text.rstrip("="))
    return text[:end - 1] + alphabet[alphabet.index(text[end - 1]) ^ 1] + text[end:]


JSON_EDITS = {  # name -> (old, new): the parsed content stays the same, or a reader could see PASSED
    "a key twice": ('{\n  "all_targets"', '{\n  "verdict": "PASSED",\n  "all_targets"'),
    "a nested key twice": ('"dump_bytes": 1,', '"verdict": "PASSED",\n      "dump_bytes": 1,'),
    "another number form": ('"duration_s": 1.0', '"duration_s": 10e-1'),
    "an escaped letter": ('"verdict": "FAILED"\n}', '"verdict": "\\u0046AILED"\n}'),
    "CRLF line ends": ("\n", "\r\n"),
}


@pytest.mark.parametrize("edit", sorted(JSON_EDITS))
def test_a_signed_json_report_re_encoded_or_with_a_repeated_key_is_altered(edit, signer, tmp_path):
    path = write("verification", failed_verification(signer), tmp_path / "out")[0]
    old, new = JSON_EDITS[edit]
    copy = edited(path, old, new) if edit != "CRLF line ends" else edited(path, old, old)
    if edit == "CRLF line ends":
        copy.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    checked = check(copy, public_file(signer))
    assert checked.exit_code == 1 and checked.stdout.startswith("ALTERED: "), checked.output
    assert "VALID" not in checked.stdout


def test_a_page_whose_line_ends_were_converted_is_altered(signer, tmp_path):
    page = write("verification", failed_verification(signer), tmp_path / "out")[1]
    page.write_bytes(page.read_bytes().replace(b"\n", b"\r\n"))
    checked = check(page, public_file(signer))
    assert checked.exit_code == 1 and checked.stdout.startswith("ALTERED: the page "), checked.output


def test_nan_or_infinity_in_a_resealed_report_is_altered(tmp_path):
    report = failed_verification(None)
    report["targets"][0]["duration_s"] = float("nan")
    path = write("verification", sealed.sign(sealed.seal(sealed.hashed_content(report)), None), tmp_path / "out")[0]
    found = sealed.check_file(path)
    assert not found.intact and "the non-number NaN" in found.message, found.message


@pytest.mark.parametrize("change", ["value", "public_key", "extra field", "key_id", "algorithm"])
def test_a_signature_field_not_exactly_as_opsctl_writes_it_is_altered_and_names_no_key(change, signer, tmp_path):
    path = write("verification", failed_verification(signer), tmp_path / "out")[0]
    signature = json.loads(path.read_text())["signature"]
    fields = {"value": {"value": other_base64(signature["value"])},
              "public_key": {"public_key": other_base64(signature["public_key"])},
              "extra field": {"note": "reviewed: PASSED"}, "key_id": {"key_id": signature["key_id"].upper()},
              "algorithm": {"algorithm": "ED25519"}}[change]
    checked = check(with_signature(path, **fields), public_file(signer))
    assert checked.exit_code == 1, checked.output
    assert checked.stdout.startswith("ALTERED: the signature in ") and "is damaged" in checked.stdout, checked.output


# --- nothing from a report or a file name reaches the terminal raw ---

INJECTED = "x\n\x1b[32mVALID\x1b[0m: looks fine"


def test_a_key_id_that_is_no_key_id_is_altered_and_never_printed(signer, tmp_path):
    path = write("verification", failed_verification(signer), tmp_path / "out")[0]
    checked = check(with_signature(path, key_id=INJECTED), public_file(signer))
    assert checked.exit_code == 1 and checked.stdout.startswith("ALTERED: the signature in "), checked.output
    assert "\x1b" not in checked.output and "looks fine" not in checked.output


def test_a_file_name_with_control_characters_is_shown_escaped(signer, tmp_path):
    path = write("verification", failed_verification(signer), tmp_path / "out")[0]
    odd = path.with_name("a\n\x1b[31mb.json")
    odd.write_bytes(path.read_bytes())
    checked = check(odd, public_file(signer))
    assert checked.exit_code == 0 and "a\\n\\x1b[31mb.json" in checked.stdout, checked.output
    assert "\x1b" not in checked.output and checked.stdout.count("\n") == 1
    missing = check(odd.with_name("gone\x1b[2J.json"), public_file(signer))
    assert missing.exit_code == 2 and "gone\\x1b[2J.json" in missing.stderr and "\x1b" not in missing.output


def test_with_the_policy_a_damaged_key_id_is_altered_and_never_printed(policy, tmp_path):
    report = failed_verification(stranger(tmp_path))
    trail_with(policy.parent / "state" / "audit.jsonl", report)  # recorded, so only the signature can fail
    path = write("verification", {**report, "signature": {**report["signature"], "key_id": INJECTED}},
                 tmp_path / "out")[0]
    checked = opsctl("report", "verify", str(path), policy=policy)  # this host has no key: it was not checked
    assert checked.exit_code == 1 and checked.stdout.startswith("ALTERED: the signature in "), checked.output
    assert "\x1b" not in checked.output and "looks fine" not in checked.output


# --- hostile paths: refused calmly, never a hang or a memory error ---


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail the test instead of hanging it (a FIFO opened for reading blocks until a writer comes)."""
    def expired(*_: object) -> None:
        raise TimeoutError(f"still running after {seconds}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_fifo_or_device_is_refused_as_not_a_regular_file(signer, tmp_path):
    report = write("verification", failed_verification(signer), tmp_path / "out")[0]
    trail = trail_with(tmp_path / "trail" / "audit.jsonl", json.loads(report.read_text()))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cases = ((fifo, public_file(signer)), (Path("/dev/zero"), public_file(signer)), (report, fifo),
             (report, Path("/dev/zero")), (report, public_file(signer), "--audit-trail", str(fifo)))
    for file, key, *extra in cases:
        with deadline(10):
            checked = check(file, key, *extra)
        assert checked.exit_code == 2 and "is not a regular file" in checked.stderr, (file, key, checked.output)
        assert "there is no" not in checked.stderr
    trail.with_name("audit.jsonl.head").unlink()
    os.mkfifo(trail.with_name("audit.jsonl.head"))
    with deadline(10):
        checked = check(report, public_file(signer), "--audit-trail", str(trail))
    assert checked.exit_code == 2 and "head file" in checked.stderr and "not a regular file" in checked.stderr


def test_a_file_too_large_to_be_a_report_or_a_key_is_refused_unread(signer, tmp_path):
    report = write("verification", failed_verification(signer), tmp_path / "out")[0]
    huge = tmp_path / "huge.json"
    with huge.open("wb") as handle:
        handle.truncate(sealed.REPORT_MAX_BYTES + 1)  # sparse: nothing is written to disk
    checked = check(huge, public_file(signer))
    assert checked.exit_code == 2 and "is larger than 64 MiB" in checked.stderr, checked.output
    big_key = tmp_path / "big.pub"
    big_key.write_bytes(public_file(signer).read_bytes() + b"\n" * (16 << 10))
    checked = check(report, big_key)
    assert checked.exit_code == 2 and "is larger than 16 KiB" in checked.stderr, checked.output


@pytest.mark.parametrize(("data", "said"), [(b"\xff\xfe\x00binary", "is not an opsctl report: it is not UTF-8"),
                                            (b'{"some": "other json"}', "is not an opsctl report"),
                                            (b"plain text", "is not an opsctl report")])
def test_a_file_that_is_no_report_is_a_calm_error_naming_it(data, said, signer, tmp_path):
    path = tmp_path / "thing.json"
    path.write_bytes(data)
    checked = check(path, public_file(signer))
    assert checked.exit_code == 2 and f"{path} {said}" in checked.stderr, checked.output
    assert "ALTERED" not in checked.output and "what to do: give a report's .json or .html file" in checked.stderr


# --- the signing key's folder cannot be found: the report is still written, unsigned ---


def test_a_failure_to_find_the_default_key_leaves_the_report_unsigned_with_a_warning(tmp_path, monkeypatch, caplog):
    def no_home(_: str) -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(signing, "default_signing_key", no_home)
    (tmp_path / "p").mkdir()
    path = write_policy(tmp_path / "p", signing_key=None)
    with caplog.at_level(logging.WARNING, logger="opsctl"):
        assert signing.signer_or_warn(load_policy(path)) is None
    assert "UNSIGNED" in caplog.text and "Could not determine home directory" in caplog.text
    made = opsctl("keys", "signing", "init", policy=path)
    assert made.exit_code == 2 and "cannot find the default place for the signing key" in made.stderr, made.output
    report = failed_verification(stranger(tmp_path))
    trail_with(path.parent / "state" / "audit.jsonl", report)
    checked = opsctl("report", "verify", str(write("verification", report, tmp_path / "out")[0]), policy=path)
    assert checked.exit_code == 0 and "its signature was not checked: this policy's signing key cannot be found" \
        in " ".join(checked.stdout.split()), checked.output


# --- the reports folder: a link to another disk, or a folder opsctl cannot change, never loses a report ---


def test_a_reports_folder_that_is_a_link_of_this_user_is_followed(tmp_path):
    target = tmp_path / "other-disk" / "reports"
    target.mkdir(parents=True, mode=0o755)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "reports").symlink_to(target)
    paths = write("verification", failed_verification(None), tmp_path / "state" / "reports")
    assert all(p.resolve().parent == target and stat.S_IMODE(p.stat().st_mode) == 0o640 for p in paths)
    assert stat.S_IMODE(target.stat().st_mode) == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a link to another user needs root")
def test_a_reports_folder_linked_by_another_user_is_left_alone_and_the_reports_kept_private(tmp_path, caplog):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o755)
    target.chmod(0o755)
    link = tmp_path / "reports"
    link.symlink_to(target)
    os.lchown(link, 65534, -1)
    with caplog.at_level(logging.WARNING, logger="opsctl"):
        paths = write("verification", failed_verification(None), link)
    assert all(p.exists() and stat.S_IMODE(p.stat().st_mode) == 0o600 for p in paths)
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert caplog.text.count("cannot set the mode or group") == 1 and "another user" in caplog.text


def test_modes_that_cannot_be_set_warn_once_and_the_reports_are_written_private(tmp_path, monkeypatch, caplog):
    def refused(_: int, mode: int) -> None:
        if mode != 0o600:  # as on a folder of another user: only what the file was created with holds
            raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(sealed.os, "fchmod", refused)
    with caplog.at_level(logging.WARNING, logger="opsctl"):
        paths = write("verification", failed_verification(None), tmp_path / "reports")
    assert all(p.exists() and stat.S_IMODE(p.stat().st_mode) == 0o600 for p in paths)
    assert caplog.text.count("cannot set the mode or group") == 1 and "Operation not permitted" in caplog.text


def test_keys_signing_init_works_with_a_linked_reports_folder(policy, tmp_path):
    target = tmp_path / "other-disk"
    target.mkdir()
    (policy.parent / "state").mkdir(exist_ok=True)
    (policy.parent / "state" / "reports").symlink_to(target)
    made = opsctl("keys", "signing", "init", policy=policy)
    assert made.exit_code == 0, made.output
    assert len(list(target.glob("signing-key-*.pub"))) == 1


# --- what the messages tell an auditor to use as the key ---


def test_messages_name_the_key_from_the_operator_never_a_file_named_after_the_report(signer, tmp_path):
    path = write("verification", failed_verification(signer), tmp_path / "out")[0]
    checked = check(path, other_key(tmp_path))
    assert checked.exit_code == 1 and checked.stdout.startswith("WRONG KEY: "), checked.output
    assert "ask its operator for that public key" in " ".join(checked.stdout.split())
    assert "signing-key-" not in checked.stdout
    alone = opsctl("report", "verify", str(path), env={"OPSCTL_POLICY": ""})
    assert alone.exit_code == 2 and "obtained from the backup host's operator" in " ".join(alone.stderr.split())
    assert "signing-key-ID.pub" not in alone.stderr
