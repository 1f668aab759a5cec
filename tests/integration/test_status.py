"""opsctl status against real repositories: every rule's verdict, reason and exit code, online and offline.

One protected CRM (a local copy and an off-site, offline vault, both verified, drilled) is set up
once per worker; each failing rule is then a variant of its policy over the same repositories and
run record, so only the status runs themselves repeat.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import threading
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from opsctl.audit import runs
from opsctl.audit.runs import CommandRun, TargetRun
from opsctl.policy import load_policy
from opsctl.targets import target_for
from tests.support.workspace import Workspace

_OLDER_THAN_LIMITS_S = 2.5
ALL_RULES = ["3-2-1", "3-2-1-1-0", "rpo", "key-age", "drill"]
LOCAL = {"name": "local", "kind": "local", "path": "repo-local"}
VAULT = {"name": "vault", "kind": "mount", "path": "repo-vault", "require_mountpoint": False, "offsite": True,
         "offline": True}


def _crm(root: Path) -> None:
    with closing(sqlite3.connect(root / "crm.sqlite3")) as conn, conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT)")
        conn.executemany("INSERT INTO customers (email) VALUES (?)", [(f"c{i}@example.com",) for i in range(50)])


def _policy(ws: Workspace, name: str = "policy.yaml", targets: list[dict] | None = None, **extra) -> Path:
    extra.setdefault("compliance", {"rules": ALL_RULES})
    return ws.write_policy({"engine": "sqlite", "path": "crm.sqlite3"}, targets or [LOCAL, VAULT], name=name,
                           metrics={"textfile": "metrics/opsctl.prom"}, **extra)


def _ok(result) -> None:
    assert result.returncode == 0, result.output


@pytest.fixture(scope="module")
def protected(tmp_path_factory, restic_binary) -> Workspace:  # noqa: ARG001 (restic must be installed)
    ws = Workspace(tmp_path_factory.mktemp("status"))
    _crm(ws.root)
    (ws.root / "metrics").mkdir()
    _policy(ws)
    for command in (["init"], ["backup"], ["verify", "--all-targets"], ["drill"]):
        _ok(ws.opsctl(*command))
    # The variants with 1 s limits (rpo, key age, drill age) need these records to be older than that when a
    # status run reads them (the drill's is its end, kept to the second): what is awaited here is time itself.
    time.sleep(_OLDER_THAN_LIMITS_S)
    return ws


def status(ws: Workspace, *args: str, policy: str = "policy.yaml", **kwargs) -> tuple[int, dict]:
    result = ws.opsctl("status", "--json", *args, policy=policy, **kwargs)
    return result.returncode, json.loads(result.stdout)


def rule(document: dict, name: str) -> dict:
    return next(r for r in document["rules"] if r["rule"] == name)


def test_a_protected_crm_passes_every_rule_online_and_offline(protected):
    code, online = status(protected)
    assert code == 0, online
    assert online["verdict"] == "PASS" and online["mode"] == "online"
    assert {r["rule"]: r["status"] for r in online["rules"]} == dict.fromkeys(ALL_RULES, "PASS")
    vault = next(t for t in online["targets"] if t["target"] == "vault")
    assert vault["reachable"] is True and vault["snapshots"] == 1 and vault["media"] == "NAS"
    assert vault["newest_verified_age_s"] is not None and vault["key_age_s"] is not None
    assert "2 kinds of media (NAS, disk)" in rule(online, "3-2-1")["reason"]

    # Offline needs no restic at all: the run record answers.
    code, offline = status(protected, "--offline", env={"OPSCTL_RESTIC": "/nonexistent/restic"})
    assert code == 0 and offline["mode"] == "offline"
    assert [r["status"] for r in offline["rules"]] == [r["status"] for r in online["rules"]]
    assert all(t["reachable"] is None for t in offline["targets"])


@pytest.mark.parametrize(("variant", "failing", "words"), [
    ({"targets": [LOCAL]}, "3-2-1", "fewer than 3 copies"),
    ({"targets": [LOCAL, {**VAULT, "offsite": False, "offline": False}]}, "3-2-1", "no copy off-site"),
    ({"targets": [LOCAL, {**VAULT, "offline": False}]}, "3-2-1-1-0", "no immutable or offline copy"),
    ({"objectives": {"rpo": "1s"}}, "rpo", "the newest verified snapshot of crm is"),
    ({"max_key_age": "1s"}, "key-age", "opsctl's key is older than max_key_age 1s"),
    ({"compliance": {"rules": ALL_RULES, "drill_max_age": "1s"}}, "drill", "the last passed drill was"),
], ids=["too-few-targets", "no-offsite", "no-immutable", "stale-verified", "old-key", "no-recent-drill"])
def test_each_failing_rule_gives_its_reason_and_exit_1(protected, variant, failing, words):
    _policy(protected, "variant.yaml", **{"targets": [LOCAL, VAULT], **variant})
    code, document = status(protected, policy="variant.yaml")
    assert code == 1, document
    assert document["verdict"] == "FAIL"
    found = rule(document, failing)
    assert found["status"] == "FAIL" and words in found["reason"], found
    assert found["todo"], "a failing rule says what to do"
    assert sum(r["status"] == "FAIL" for r in document["rules"] if r["rule"] != "3-2-1-1-0") == (
        0 if failing == "3-2-1-1-0" else 1), document["rules"]


def test_a_rule_not_required_does_not_change_the_exit_code(protected):
    _policy(protected, "lenient.yaml", max_key_age="1s", compliance={"rules": ["3-2-1", "rpo"]})
    code, document = status(protected, policy="lenient.yaml")
    assert code == 0
    assert rule(document, "key-age") == {**rule(document, "key-age"), "status": "FAIL", "required": False}


def test_a_target_that_does_not_answer_makes_the_rule_unknown_exit_3(protected):
    """An SFTP server that accepts the connection and then says nothing: the --timeout cuts it off."""
    with _silent_server() as port:
        identity, known_hosts = _pinned_key(protected.root, port)
        silent = {"name": "faraway", "kind": "sftp", "host": "127.0.0.1", "port": port, "user": "backup",
                  "path": "/srv/repo", "identity_file": str(identity), "known_hosts": str(known_hosts), "offsite": True}
        _policy(protected, "silent.yaml", targets=[LOCAL, silent], compliance={"rules": ["3-2-1"]})
        _held_copies_before(protected, "silent.yaml", "faraway")
        code, document = status(protected, "--timeout", "2", policy="silent.yaml")
    assert code == 3, document
    assert document["verdict"] == "UNKNOWN"
    assert rule(document, "3-2-1")["status"] == "UNKNOWN"
    faraway = next(t for t in document["targets"] if t["target"] == "faraway")
    assert faraway["reachable"] is False and "did not answer within 2 s" in faraway["error"]


def test_metrics_and_the_sealed_page_hold_no_secret(protected, tmp_path):
    page, prom = tmp_path / "compliance.html", tmp_path / "opsctl.prom"
    result = protected.opsctl("status", "--html", str(page), "--prometheus", str(prom))
    _ok(result)
    checked = protected.opsctl("report", "verify", str(page))
    assert checked.returncode == 0 and "the audit trail recorded it" in checked.stdout, checked.output
    families = {f.name: f for f in text_string_to_metric_families(prom.read_text())}
    rules = {s.labels["rule"]: s.value for s in families["opsctl_rule_ok"].samples}
    assert rules == dict.fromkeys(ALL_RULES, 1.0)
    textfile = protected.root / "metrics" / "opsctl.prom"
    for text in (result.output, page.read_text(), prom.read_text(), textfile.read_text()):
        assert protected.repository_password not in text
        assert "c1@example.com" not in text


def test_status_never_overwrites_a_file_it_did_not_write(protected, tmp_path):
    foreign = tmp_path / "notes.html"
    foreign.write_text("<p>the auditor's own notes</p>")
    for option, path in (("--html", foreign), ("--prometheus", protected.root / "policy.yaml"),
                         ("--html", protected.root / "state" / "audit.jsonl")):
        before = path.read_bytes()
        result = protected.opsctl("status", "--offline", option, str(path))
        assert result.returncode == 2, result.output
        assert "Traceback" not in result.output
        assert path.read_bytes().startswith(before)  # the audit trail only grows: by this refusal's line


def test_metrics_follow_a_success_a_partial_failure_and_a_failure(workspace):
    _crm(workspace.root)
    (workspace.root / "metrics").mkdir()
    _policy(workspace, compliance={"rules": ["3-2-1"]})
    _ok(workspace.opsctl("init"))
    _ok(workspace.opsctl("backup"))
    first = _metrics(workspace)
    assert first["opsctl_last_run_exit_code"][_labels(command="backup")] == 0
    local, vault, spare = (_labels(target=name, database="crm", command="backup")
                           for name in ("local", "vault", "spare"))
    backed_up = first["opsctl_last_success_timestamp_seconds"]
    assert local in backed_up and vault in backed_up
    assert first["opsctl_rule_ok"][_labels(rule="3-2-1", required="true")] == 1

    # A third target with no repository: the backup partly fails (exit 3); the others' successes advance.
    broken = {"name": "spare", "kind": "local", "path": "repo-spare"}
    _policy(workspace, targets=[LOCAL, VAULT, broken], compliance={"rules": ["3-2-1"]})
    assert workspace.opsctl("backup").returncode == 3
    partial = _metrics(workspace)
    assert partial["opsctl_last_run_exit_code"][_labels(command="backup")] == 3
    successes = partial["opsctl_last_success_timestamp_seconds"]
    assert spare not in successes
    assert successes[local] > backed_up[local]

    # The database is gone: the backup fails (exit 1); the last successes stay as they were.
    (workspace.root / "crm.sqlite3").unlink()
    assert workspace.opsctl("backup").returncode == 1
    failed = _metrics(workspace)
    assert failed["opsctl_last_run_exit_code"][_labels(command="backup")] == 1
    assert failed["opsctl_last_success_timestamp_seconds"][local] == successes[local]


def test_a_failed_verification_fails_3_2_1_1_0(workspace):
    _crm(workspace.root)
    _policy(workspace, compliance={"rules": ["3-2-1-1-0"]})
    (workspace.root / "metrics").mkdir()
    for command in (["init"], ["backup", "--target", "local"]):
        _ok(workspace.opsctl(*command))
    # The vault never received a backup: verifying it fails. (A damaged pack fails too, after restic has
    # retried reading it for over two minutes.)
    assert workspace.opsctl("verify", "--target", "vault").returncode == 1
    code, document = status(workspace)
    assert code == 1
    found = rule(document, "3-2-1-1-0")
    assert found["status"] == "FAIL" and "the newest verification of vault failed" in found["reason"], found


def _metrics(ws: Workspace) -> dict[str, dict[frozenset, float]]:
    """Each metric's samples by their labels (the policy label left out), as prometheus_client parses the file."""
    text = (ws.root / "metrics" / "opsctl.prom").read_text()
    return {family.name: {_labels(**{k: v for k, v in sample.labels.items() if k != "policy"}): sample.value
                          for sample in family.samples}
            for family in text_string_to_metric_families(text)}


def _labels(**labels: str) -> frozenset:
    return frozenset(labels.items())


def _held_copies_before(ws: Workspace, policy: str, name: str) -> None:
    """The run record of a backup that reached the target an hour ago: it held a copy when last known."""
    config = next(t for t in load_policy(ws.root / policy).targets if t.name == name)
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat(timespec="seconds")
    held = TargetRun(name, target_for(config).display, True, hour_ago, 1.0, facts={"snapshot:crm": hour_ago})
    runs.record(ws.root / "state", CommandRun("backup", "ok", 0, hour_ago, 1.0, None, (held,)), hour_ago)


def _pinned_key(root: Path, port: int) -> tuple[Path, Path]:
    """A key pair and a known_hosts line pinning it for the port: enough for SSH to start talking."""
    identity = root / f"id_{port}"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(identity)], check=True)
    known_hosts = root / f"known_hosts_{port}"
    known_hosts.write_text(f"[127.0.0.1]:{port} {identity.with_suffix('.pub').read_text()}")
    return identity, known_hosts


class _silent_server:  # noqa: N801 - used as a context manager, named for what it is
    """A TCP server on a free loopback port that accepts connections and never says a word."""

    def __enter__(self) -> int:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        return self.sock.getsockname()[1]

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_policy_validate_refuses_a_lock_shorter_than_retention(workspace):
    _crm(workspace.root)
    (workspace.root / "s3.env").write_text("AWS_ACCESS_KEY_ID=a\nAWS_SECRET_ACCESS_KEY=b\n")
    (workspace.root / "s3.env").chmod(0o600)
    s3 = {"name": "offsite", "kind": "s3", "endpoint": "https://s3.example.com", "bucket": "crm-backups",
          "credentials": {"file": "s3.env"}, "object_lock": {"mode": "COMPLIANCE", "days": 30}}
    _policy(workspace, targets=[LOCAL, s3])
    result = workspace.opsctl("policy", "validate")
    assert result.returncode == 2
    assert "targets[1].object_lock.days 30 is shorter than the 372 days" in result.output, result.output
    assert "Traceback" not in result.output
