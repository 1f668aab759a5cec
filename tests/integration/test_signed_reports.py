"""Signed reports end to end: the operator makes a key and verifies a real SQLite backup; an auditor, on a
"laptop" that has only the report and the public key (no policy, no state folder, no network), checks it.

The auditor's opsctl runs in a mount namespace where the operator's whole workspace (policy,
state folder, private key) is an empty tmpfs, and in a network namespace with no network.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from opsctl.reports import sealed
from tests.support.verification import reports, verify
from tests.support.workspace import REPO_ROOT, Result

# Run inside the new namespaces: hide the operator's workspace ($1), then run the auditor's command.
HIDE = 'mount -t tmpfs -o mode=000 opsctl-hidden "$1" && shift && exec "$@"'


@pytest.fixture
def signed(workspace):
    """A SQLite policy with a signing key, initialised and backed up once."""
    with closing(sqlite3.connect(workspace.root / "crm.sqlite3")) as conn, conn:
        conn.executescript("CREATE TABLE deals (id INTEGER PRIMARY KEY, amount REAL);"
                           "INSERT INTO deals (amount) VALUES (10.5), (20.0);")
    workspace.write_policy({"engine": "sqlite", "path": "crm.sqlite3"}, signing_key="keys/reports.key")
    for command in (("init",), ("backup",)):
        result = workspace.opsctl(*command)
        assert result.returncode == 0, result.output
    return workspace


def isolation(hidden: Path) -> list[str]:
    """The namespaces' command prefix; none on a developer's machine that cannot make them (never under CI)."""
    if os.geteuid() == 0 and shutil.which("unshare"):
        probe = subprocess.run(["unshare", "--mount", "--net", "--propagation", "private", "true"],
                               capture_output=True, check=False)
        if probe.returncode == 0:
            return ["unshare", "--mount", "--net", "--propagation", "private", "sh", "-c", HIDE, "sh", str(hidden)]
    if os.environ.get("CI"):
        pytest.fail("root and unshare (mount and network namespaces) are needed to hide the state folder")
    return []


def auditor(desk: Path, hidden: Path, *args: str) -> Result:
    """opsctl as an auditor runs it: an empty home and working folder, no OPSCTL_POLICY, the workspace hidden."""
    home, cwd = desk / "home", desk / "cwd"
    home.mkdir(exist_ok=True)
    cwd.mkdir(exist_ok=True)
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_STATE_HOME": str(home / ".state"), "XDG_CACHE_HOME": str(home / ".cache"),
           "PYTHONPATH": str(REPO_ROOT), "LANG": "C.UTF-8"}
    proc = subprocess.run([*isolation(hidden), sys.executable, "-m", "opsctl", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False)
    assert not list(cwd.iterdir()) and not list(home.iterdir()), "the auditor's check wrote something"
    return Result(proc.returncode, proc.stdout, proc.stderr)


def desk_with(folder: Path, files: list[Path]) -> Path:
    """The auditor's folder: copies of the given files, readable by anyone."""
    folder.mkdir(mode=0o755)
    for path in files:
        shutil.copy(path, folder / path.name)
        (folder / path.name).chmod(0o644)
    return folder


def test_an_auditor_finds_a_real_report_valid_and_a_forged_one_altered(signed, tmp_path_factory):
    made = signed.opsctl("keys", "signing", "init")
    assert made.returncode == 0, made.output
    key_id = re.search(r"Made signing key ([0-9a-f]{16})\.", made.stdout)[1]
    public = signed.root / "state" / "reports" / f"signing-key-{key_id}.pub"
    assert f"report signing: key {key_id} at {signed.root / 'keys' / 'reports.key'}" in signed.opsctl("doctor").stdout

    assert verify(signed).returncode == 0
    genuine = reports(signed)
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o640 for p in genuine)
    assert verify(signed, tamper="DELETE FROM deals WHERE amount > 15").returncode == 1
    failed = next(p for p in reports(signed) if p.suffix == ".json" and p not in genuine)
    desk = desk_with(tmp_path_factory.mktemp("auditor") / "desk", [*genuine, public])
    forged = sealed.hashed_content(json.loads(failed.read_text())) | {"verdict": "PASSED"}
    (desk / "forged.json").write_text(sealed.json_text({**sealed.seal(forged), "signature": forged_signature(failed)}),
                                      encoding="utf-8")  # byte for byte as opsctl writes a report: only the key tells

    trail_lines = signed.audit_lines()
    for path in genuine:
        checked = auditor(desk, signed.root, "report", "verify", str(desk / path.name), "--public-key",
                          str(desk / public.name))
        assert checked.returncode == 0, checked.output
        assert checked.stdout.startswith(f"VALID: {desk / path.name} is as opsctl wrote it, signed with key {key_id} "
                                         "by "), checked.stdout
    checked = auditor(desk, signed.root, "report", "verify", str(desk / "forged.json"), "--public-key",
                      str(desk / public.name))
    assert checked.returncode == 1, checked.output
    assert checked.stdout.startswith(f"ALTERED: {desk / 'forged.json'} names key {key_id}, but its signature does "
                                     "not verify with that key"), checked.stdout
    assert signed.audit_lines() == trail_lines, "the auditor's check wrote into the operator's audit trail"


def forged_signature(report: Path) -> dict:
    """The signature opsctl made for the FAILED report, kept by a forger who cannot make a new one."""
    return json.loads(report.read_text())["signature"]


def test_the_auditors_namespace_hides_the_operators_files(signed, tmp_path_factory):
    """The check above proves something only if the auditor's opsctl really cannot see the workspace."""
    if not isolation(signed.root):
        pytest.skip("no namespaces on this machine (CI requires them)")
    desk = desk_with(tmp_path_factory.mktemp("auditor") / "desk", [])
    seen = auditor(desk, signed.root, "--policy", str(signed.root / "policy.yaml"), "policy", "validate")
    assert seen.returncode == 2 and "policy.yaml" in seen.stderr, seen.output
