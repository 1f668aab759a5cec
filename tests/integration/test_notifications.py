"""Notifications from real runs to a real HTTP server on loopback: who hears what, exactly once, and never a secret.

A failed backup pings its healthcheck once with its exit code, posts one signed webhook and runs the
on-failure program once; a dead, failing or hanging endpoint never changes the run's outcome or holds it
up; a killed run is reported once by `schedule failed` (systemd's OnFailure=), a run that reported
itself is not reported twice.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import time
import uuid
from contextlib import closing

import pytest

from tests.support.bank import make_bank
from tests.support.webhook_server import WebhookServer
from tests.support.workspace import Workspace

CANARY_ROW = "canary-" + os.urandom(6).hex() + "@example.com"


@pytest.fixture
def server():
    running = WebhookServer().start()
    yield running
    running.stop()


@pytest.fixture
def crm(workspace: Workspace, server: WebhookServer) -> Workspace:
    bank = workspace.root / "bank.sqlite3"
    make_bank(bank)
    with closing(sqlite3.connect(bank)) as conn:
        conn.execute("CREATE TABLE contacts (email TEXT)")
        conn.execute("INSERT INTO contacts VALUES (?)", (CANARY_ROW,))
        conn.commit()
    workspace.secret("webhook.key", "sign-" + os.urandom(8).hex())
    hook = workspace.root / "on-failure.sh"
    hook.write_text('#!/bin/sh\nenv | grep "^OPSCTL_" | sort > "$0.$OPSCTL_RUN_ID.env"\n')
    hook.chmod(0o700)
    write_policy(workspace, server)
    return workspace


def write_policy(workspace: Workspace, server: WebhookServer, **notify) -> None:
    channels = [
        {"kind": "healthchecks", "url": f"{server.url}/hc/{HC_UUID}", "commands": ["backup", "verify"]},
        {"kind": "webhook", "url": f"{server.url}/hook", "secret_file": "webhook.key",
         "events": ["failure", "success"]},
        {"kind": "command", "argv": [str(workspace.root / "on-failure.sh")], "timeout": "10s"},
    ]
    workspace.write_policy({"engine": "sqlite", "path": "bank.sqlite3"}, lock_wait="1s",
                           notify={"channels": channels, "timeout": "2s", "retries": 1, **notify})


HC_UUID = str(uuid.uuid4())


def hook_runs(workspace: Workspace) -> list[dict[str, str]]:
    return [dict(line.split("=", 1) for line in path.read_text().splitlines())
            for path in sorted(workspace.root.glob("on-failure.sh.*.env"))]


def everything_received(server: WebhookServer) -> str:
    return json.dumps([[r.path, r.query, r.headers, r.body.decode(errors="replace")]
                       for path in ("/hook", f"/hc/{HC_UUID}", f"/hc/{HC_UUID}/start", f"/hc/{HC_UUID}/1",
                                    f"/hc/{HC_UUID}/log")
                       for r in server.to(path)])


def test_a_failed_backup_pings_once_with_its_exit_code_and_never_sends_secrets_or_rows(crm, server):
    result = crm.opsctl("backup")  # never initialised: no repository, so the backup fails
    assert result.returncode == 1, result.output

    start, failure = server.to(f"/hc/{HC_UUID}/start"), server.to(f"/hc/{HC_UUID}/1")
    assert len(start) == 1 and len(failure) == 1
    assert start[0].query["rid"] == failure[0].query["rid"]  # healthchecks pairs them into one run
    assert "backup of policy crm-test FAILED" in failure[0].body.decode()
    assert server.to(f"/hc/{HC_UUID}") == []  # no success ping

    posts = server.to("/hook")
    assert len(posts) == 1
    event = json.loads(posts[0].body)
    assert (event["kind"], event["command"], event["exit_code"], event["outcome"]) == ("failure", "backup", 1, "failed")
    assert posts[0].headers["x-opsctl-event-id"] == f"{event['run_id']}:failure"  # receivers drop a retry's repeat
    key = (crm.root / "webhook.key").read_bytes().strip()
    signed = posts[0].headers["x-opsctl-timestamp"].encode() + b"." + posts[0].body
    assert posts[0].headers["x-opsctl-signature"] == "sha256=" + hmac.new(key, signed, hashlib.sha256).hexdigest()

    (run,) = hook_runs(crm)
    assert run["OPSCTL_EXIT_CODE"] == "1" and run["OPSCTL_COMMAND"] == "backup"

    received = everything_received(server) + json.dumps(hook_runs(crm))
    for secret in (crm.repository_password, key.decode(), CANARY_ROW):
        assert secret not in received


def test_a_good_backup_pings_success_and_pages_nobody(crm, server):
    assert crm.opsctl("init").returncode == 0
    result = crm.opsctl("backup")
    assert result.returncode == 0, result.output
    assert len(server.to(f"/hc/{HC_UUID}/start")) == 1 and len(server.to(f"/hc/{HC_UUID}")) == 1
    assert json.loads(server.to("/hook")[0].body)["kind"] == "success"
    assert hook_runs(crm) == []  # the command channel is for failures only (its default)
    assert CANARY_ROW not in everything_received(server)


@pytest.mark.parametrize("misbehave", ["hang", "close", "answer500"])
def test_a_dead_endpoint_never_fails_or_stalls_the_backup(crm, server, misbehave):
    assert crm.opsctl("init").returncode == 0
    for path in (f"/hc/{HC_UUID}/start", f"/hc/{HC_UUID}", "/hook"):
        if misbehave == "answer500":
            server.answer(path, 500)
        else:
            getattr(server, misbehave)(path)
    started = time.monotonic()
    result = crm.opsctl("backup")
    took = time.monotonic() - started
    assert result.returncode == 0, result.output
    # Each attempt gives up after 2 s, one retry: the run waits at most a few seconds per ping, never forever.
    assert took < 20, took
    assert "notification to" in result.stderr  # said, calmly, and the backup still counts
    audit = json.loads(crm.audit_lines()[-1])
    assert audit["command"] == "backup" and audit["outcome"] == "ok"


def test_notify_test_reaches_every_channel_without_changing_the_checks_state(crm, server):
    result = crm.opsctl("notify", "test")
    assert result.returncode == 0, result.output
    assert len(server.to(f"/hc/{HC_UUID}/log")) == 1 and server.to(f"/hc/{HC_UUID}") == []
    assert json.loads(server.to("/hook")[0].body)["kind"] == "test"
    assert hook_runs(crm)[0]["OPSCTL_EVENT"] == "test"

    server.answer("/hook", 404)
    partly = crm.opsctl("notify", "test")
    assert partly.returncode == 3 and "FAILED" in partly.stdout and HC_UUID not in partly.output


def test_a_killed_run_is_reported_once_by_the_on_failure_handler(crm, server):
    assert crm.opsctl("init").returncode == 0 and crm.opsctl("backup").returncode == 0
    killed = crm.opsctl("schedule", "job", "verify", env={"OPSCTL_TEST_KILL_AT": "restored"})
    assert killed.returncode == -9
    assert hook_runs(crm) == []  # it could not say anything itself

    monitor = {"MONITOR_EXIT_CODE": "killed", "MONITOR_EXIT_STATUS": "KILL", "MONITOR_SERVICE_RESULT": "signal"}
    reported = crm.opsctl("schedule", "failed", "verify", env=monitor)
    assert reported.returncode == 0, reported.output
    (run,) = hook_runs(crm)
    assert run["OPSCTL_EXIT_CODE"] == "137" and run["OPSCTL_OUTCOME"] == "killed"
    assert len(server.to(f"/hc/{HC_UUID}/137")) == 1
    record = json.loads((crm.root / "state" / "runs" / "verify.json").read_text())
    assert record["outcome"] == "killed" and record["running"] is None

    again = crm.opsctl("schedule", "failed", "verify", env=monitor)
    assert again.returncode == 0 and len(hook_runs(crm)) == 1  # once


def test_a_run_that_failed_on_its_own_is_not_reported_again(crm, server):
    assert crm.opsctl("schedule", "job", "backup").returncode == 1  # no repository
    assert crm.opsctl("schedule", "failed", "backup").returncode == 0  # what OnFailure= runs next
    assert len(server.to(f"/hc/{HC_UUID}/1")) == 1 and len(hook_runs(crm)) == 1


def test_a_scheduled_run_that_cannot_even_start_still_pages(crm, server):
    (crm.root / "state").mkdir(exist_ok=True)
    (crm.root / "state" / "run.lock").mkdir()  # the policy's lock cannot be taken: the run never starts
    result = crm.opsctl("schedule", "job", "backup")
    assert result.returncode == 1, result.output
    assert len(server.to(f"/hc/{HC_UUID}/1")) == 1 and len(hook_runs(crm)) == 1
    status = crm.opsctl("schedule", "status", "--json")
    backup = next(j for j in json.loads(status.stdout)["jobs"] if j["job"] == "backup")
    assert backup["last_outcome"] == "failed" and status.returncode == 1


def test_a_notification_channel_that_cannot_be_used_never_stops_the_backup(crm, server):
    (crm.root / "webhook.key").chmod(0o644)  # readable by others: that channel refuses to sign with it
    assert crm.opsctl("init").returncode == 0
    result = crm.opsctl("backup")
    assert result.returncode == 0 and "can be read by other users" in result.stderr, result.output
    assert len(server.to(f"/hc/{HC_UUID}")) == 1  # the other channels still hear about it
    assert crm.opsctl("policy", "validate").returncode == 2  # and validate names the channel


def test_a_scheduled_run_refused_for_an_unsafe_state_folder_still_pages(crm, server):
    (crm.root / "state").mkdir(exist_ok=True)
    (crm.root / "state").chmod(0o777)  # others could rewrite opsctl's records: refused, and someone must hear
    result = crm.opsctl("schedule", "job", "backup")
    assert result.returncode == 2 and "chmod 700" in result.stderr, result.output
    assert len(server.to(f"/hc/{HC_UUID}/2")) == 1 and len(hook_runs(crm)) == 1
