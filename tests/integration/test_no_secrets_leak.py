"""Canary passwords must never show in any process's argv or environment, in output, logs or the audit trail."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path

from tests.support.targets import local_target
from tests.support.workspace import REPO_ROOT

CANARY_REPO = "CANARYrepo7f3a9"
CANARY_DB = "CANARYdb51c0e"
CANARY_ROLE = "crm_canary"  # its own role: the canary password must not leak into other tests
# The test that puts a password in opsctl's own environment has its own, so that another test's scanner
# running at the same time (every process on the machine is scanned) never finds it there.
CANARY_ENV_DB, CANARY_ENV_ROLE = "CANARYenvdb93e7", "crm_canary_env"


CANARY_AWS = "CANARYaws0d9e21"
# Every command that reads a secret or starts a child, in an order that gives each something to do.
EVERY_COMMAND = (["init"], ["-v", "backup"], ["-v", "snapshots"], ["-v", "doctor"], ["-v", "check"],
                 ["-v", "prune", "--dry-run"], ["-v", "verify"], ["-v", "drill"], ["-v", "keys", "status"],
                 ["-v", "report", "list"], ["-v", "policy", "validate"])


class ProcScanner(threading.Thread):
    """Reads /proc/*/cmdline and /proc/*/environ of every process, over and over, until stopped."""

    def __init__(self, needles: list[bytes], allowed: dict[bytes, set[str]] | None = None) -> None:
        super().__init__(daemon=True)
        self.needles = needles
        self.allowed = allowed or {}  # a needle that some programs (by name) may hold in their environment
        self.hits: list[str] = []
        self.processes_seen: set[str] = set()
        self.may_dump_core: set[str] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit() and entry.name != str(os.getpid()):
                    self._scan(entry)

    def _scan(self, entry: Path) -> None:
        program = ""
        for name in ("cmdline", "environ"):
            try:
                data = (entry / name).read_bytes()
            except OSError:
                continue
            if name == "cmdline":
                program = _program(entry, data)
                self.processes_seen.add(program)
                self._check_core_limit(entry, program)
            for needle in self.needles:
                if needle in data and not (name == "environ" and program in self.allowed.get(needle, ())):
                    self.hits.append(f"{name} of {program or data[:80]!r}")

    def _check_core_limit(self, entry: Path, program: str) -> None:
        try:
            limits = (entry / "limits").read_text()
        except OSError:
            return
        core = next((line.split()[4] for line in limits.splitlines() if line.startswith("Max core file size")), "0")
        if core != "0":
            self.may_dump_core.add(program)


def _program(entry: Path, cmdline: bytes) -> str:
    """The program's name; an exiting process has an empty command line, but still its name (comm)."""
    if cmdline:
        return cmdline.split(b"\0")[0].decode(errors="replace").rsplit("/", 1)[-1]
    try:
        return (entry / "comm").read_text().strip()
    except OSError:
        return ""


def test_no_password_in_argv_environment_output_or_audit(workspace, pg_server):
    pg_database = "canary_crm"
    pg_server.create_role_and_database(CANARY_ROLE, CANARY_DB, pg_database)
    with pg_server.connect(pg_database, CANARY_ROLE, CANARY_DB) as conn:
        conn.execute("CREATE TABLE customers AS SELECT g AS id, md5(g::text) AS email FROM generate_series(1, 20000) g")
    workspace.secret("repository.pass", CANARY_REPO)
    workspace.secret("db.pass", CANARY_DB)
    workspace.write_policy({"engine": "postgresql", "host": "127.0.0.1", "port": pg_server.port, "user": CANARY_ROLE,
                            "password": {"file": "db.pass"}, "name": pg_database}, [local_target(offsite=True)])
    needles = [CANARY_REPO.encode(), CANARY_DB.encode(), CANARY_AWS.encode()]
    # the email column of customer 1: row data must not leak either
    row_value = hashlib.md5(b"1", usedforsecurity=False).hexdigest()
    # An S3 key in opsctl's own environment (for another policy's bucket, say): restic may inherit it, nothing else.
    scanner = ProcScanner(needles, allowed={CANARY_AWS.encode(): {"restic", Path(sys.executable).name}})
    scanner.start()
    outputs = []
    try:
        for args in (*EVERY_COMMAND, ["-v", "restore", "--yes", "--to", pg_database + "_copy"]):
            result = subprocess.run([sys.executable, "-m", "opsctl", "--policy", str(workspace.root / "policy.yaml"),
                                     *args], cwd=workspace.root, capture_output=True, text=True, check=False,
                                    env={**os.environ, "PYTHONPATH": str(REPO_ROOT),
                                         "AWS_SECRET_ACCESS_KEY": CANARY_AWS})
            assert result.returncode == 0, result.stdout + result.stderr
            outputs.append(result.stdout + result.stderr)
    finally:
        scanner.stop.set()
        scanner.join()

    assert {"restic", "pg_dump", "pg_restore"} <= scanner.processes_seen, scanner.processes_seen
    assert scanner.hits == []
    assert not scanner.may_dump_core & {"restic", "pg_dump", "pg_restore", "python3", "opsctl"}, scanner.may_dump_core
    for text in outputs:
        assert CANARY_REPO not in text and CANARY_DB not in text and row_value not in text
    written = [p for p in (workspace.root / "state").rglob("*") if p.is_file()]
    assert written, "the audit trail should exist"
    for path in written:
        content = path.read_bytes()
        assert all(needle not in content for needle in [*needles, row_value.encode()]), path


def test_s3_keys_and_repository_password_never_leak_with_three_targets(workspace, sftp_endpoint, s3_endpoint):
    from tests.support.bank import make_bank
    from tests.support.targets import local_target, s3_target, sftp_target

    make_bank(workspace.root / "bank.sqlite3")
    workspace.secret("repository.pass", CANARY_REPO)
    offsite = s3_target(s3_endpoint, workspace)
    workspace.secret("s3.env", "AWS_ACCESS_KEY_ID=CANARYkeyid42\nAWS_SECRET_ACCESS_KEY=CANARYs3secret99")
    workspace.write_policy({"engine": "sqlite", "path": "bank.sqlite3"},
                           [local_target(), sftp_target(sftp_endpoint), offsite])
    needles = [CANARY_REPO.encode(), b"CANARYs3secret99", b"CANARYkeyid42"]
    scanner = ProcScanner(needles)
    scanner.start()
    outputs = []
    try:
        for args in (["init"], ["-v", "backup"],
                     ["-v", "restore", "--yes", "--target", "offsite", "--to", "out.sqlite3"], ["-v", "doctor"]):
            result = workspace.opsctl(*args)
            assert result.returncode == 0, result.output
            outputs.append(result.output)
    finally:
        scanner.stop.set()
        scanner.join()
    assert {"restic", "ssh"} <= scanner.processes_seen, scanner.processes_seen
    assert scanner.hits == []
    for text in outputs:
        assert not any(n.decode() in text for n in needles), text
    for path in (p for p in (workspace.root / "state").rglob("*") if p.is_file()):
        assert not any(n in path.read_bytes() for n in needles), path


def test_a_password_from_the_environment_reaches_no_child_even_in_commands_that_never_read_it(workspace, pg_server):
    """restic (init, snapshots, check) must not inherit the database password's variable just because it was set."""
    pg_server.create_role_and_database(CANARY_ENV_ROLE, CANARY_ENV_DB, "canary_env_crm")
    workspace.secret("repository.pass", CANARY_REPO)
    workspace.write_policy({"engine": "postgresql", "host": "127.0.0.1", "port": pg_server.port,
                            "user": CANARY_ENV_ROLE, "password": {"env": "CRM_DB_PASSWORD"}, "name": "canary_env_crm"})
    scanner = ProcScanner([CANARY_ENV_DB.encode()], allowed={CANARY_ENV_DB.encode(): {Path(sys.executable).name}})
    scanner.start()
    try:
        for args in (["init"], ["snapshots"], ["check"], ["keys", "status"], ["-v", "backup"]):
            result = workspace.opsctl(*args, env={"CRM_DB_PASSWORD": CANARY_ENV_DB})
            assert result.returncode == 0, result.output
    finally:
        scanner.stop.set()
        scanner.join()
    assert {"restic", "pg_dump"} <= scanner.processes_seen, scanner.processes_seen
    assert scanner.hits == []
