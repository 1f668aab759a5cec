"""Notification delivery against a real HTTP server on loopback, and command hooks as real processes.

The server misbehaves on demand (5xx, 404, redirects, no answer, a closed connection, a trickle of
bytes): deliver() must report each case in words that hold no URL path or token, retry only what a
later attempt may fix, and come back within its deadline whatever the channels do.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from opsctl import __version__
from opsctl.notify import (
    MAX_BODY,
    CommandHook,
    Delivery,
    DeliveryFailed,
    Event,
    Healthchecks,
    TargetLine,
    Webhook,
    deliver,
)
from opsctl.notify.event import Kind
from tests.support.certs import Authority
from tests.support.servers import free_port
from tests.support.webhook_server import WebhookServer
from tests.support.workspace import REPO_ROOT

TOKEN = "0c5e2d4a-7b1f-4e8e-9a57-" + uuid.uuid4().hex[:12]  # the capability in a healthchecks URL
SECRET = b"whsec-" + uuid.uuid4().hex.encode()
RUN_ID = str(uuid.uuid4())
PROXIES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy set on the developer's machine would receive the loopback requests instead of the test server."""
    for name in PROXIES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server():
    server = WebhookServer().start()
    yield server
    server.stop()


def event(kind: Kind = "failure", **changes) -> Event:
    fields = {"kind": kind, "command": "backup", "policy": "crm-prod", "host": "db1", "run_id": RUN_ID,
              "started_at": "2026-11-30T02:00:00+00:00"}
    if kind != "start":
        fields |= {"exit_code": 1 if kind == "failure" else 0, "duration_s": 12.3,
                   "outcome": {"failure": "failed", "skipped": "skipped"}.get(kind, "ok")}
    if kind == "failure":
        fields |= {"targets": (TargetLine("local", ok=True),
                               TargetLine("offsite", ok=False, error="connection refused by s3.example.com",
                                          hint="check the firewall, then run: opsctl doctor")),
                   "error": "1 of 2 targets failed", "log_tail": ("restic: saving", "Fatal: unable to save")}
    return Event(**(fields | changes))


# --- healthchecks.io ---------------------------------------------------------------------------------------------


def test_healthchecks_signals_each_event_on_its_own_path_with_the_run_id(server):
    base = f"/ping/{TOKEN}"
    check = Healthchecks(server.url + base)
    sent = [event("start"), event("success"), event("failure", exit_code=3), event("skipped"), event("test"),
            event("failure", exit_code=None), event("failure", exit_code=300)]
    for one in sent:
        assert deliver([check], one, timeout_s=2)[0].ok
    paths = [request.path for request in server.requests]
    assert paths == [f"{base}/start", base, f"{base}/3", f"{base}/log", f"{base}/log", f"{base}/fail", f"{base}/fail"]
    assert {request.query["rid"][0] for request in server.requests} == {RUN_ID}  # start and end pair up
    for request, one in zip(server.requests, sent, strict=True):
        assert request.method == "POST" and request.body.decode() == one.text()
        assert request.headers["content-type"].startswith("text/plain")
        assert request.headers["user-agent"] == f"opsctl/{__version__}"


def test_healthchecks_keeps_the_query_the_url_already_has(server):
    assert deliver([Healthchecks(f"{server.url}/ping/key/crm-backup/?create=1")], event("start"))[0].ok
    (request,) = server.requests
    assert request.path == "/ping/key/crm-backup/start" and request.query == {"create": ["1"], "rid": [RUN_ID]}


# --- webhook -----------------------------------------------------------------------------------------------------


def test_webhook_posts_the_event_as_json_signed_with_the_secret(server):
    sent = event("failure")
    (delivery,) = deliver([Webhook(f"{server.url}/hooks/{TOKEN}", SECRET)], sent)
    assert delivery == Delivery(delivery.channel, True, 1, None, delivery.seconds)
    (request,) = server.to(f"/hooks/{TOKEN}")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == f"opsctl/{__version__}"
    stamp = request.headers["x-opsctl-timestamp"]
    expected = hmac.new(SECRET, stamp.encode() + b"." + request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["x-opsctl-signature"], f"sha256={expected}")
    assert abs(int(stamp) - time.time()) < 60
    body = json.loads(request.body)
    assert body == sent.to_json() | {"sent_at": body["sent_at"]}
    assert body["schema"] == 1 and body["kind"] == "failure" and body["exit_code"] == 1 and body["run_id"] == RUN_ID
    assert body["targets"][1] == {"name": "offsite", "ok": False, "error": "connection refused by s3.example.com",
                                  "hint": "check the firewall, then run: opsctl doctor"}
    assert SECRET.decode() not in request.body.decode()


def test_webhook_without_a_secret_sends_no_signature(server):
    assert deliver([Webhook(f"{server.url}/hooks/{TOKEN}")], event("success"))[0].ok
    (request,) = server.requests
    assert "x-opsctl-signature" not in request.headers and "x-opsctl-timestamp" not in request.headers
    assert json.loads(request.body)["outcome"] == "ok"


def test_a_tampered_body_does_not_verify(server):
    deliver([Webhook(f"{server.url}/hooks/{TOKEN}", SECRET)], event("success"))
    (request,) = server.requests
    stamp = request.headers["x-opsctl-timestamp"]
    tampered = request.body.replace(b'"ok"', b'"no"')
    forged = hmac.new(SECRET, stamp.encode() + b"." + tampered, hashlib.sha256).hexdigest()
    assert request.headers["x-opsctl-signature"] != f"sha256={forged}"


# --- retries -----------------------------------------------------------------------------------------------------


def test_two_server_errors_then_success_is_delivered_on_the_third_attempt(server):
    server.answer("/flaky", 500, times=2)
    (delivery,) = deliver([Webhook(f"{server.url}/flaky")], event(), timeout_s=2, retries=2)
    assert delivery.ok and delivery.attempts == 3 and delivery.error is None
    assert len(server.to("/flaky")) == 3


def test_a_server_that_always_fails_is_tried_retries_plus_one_times(server, monkeypatch):
    monkeypatch.setattr("opsctl.notify.delivery.BACKOFF_S", (0.05,))
    server.answer("/down/1", 500)  # a failure with exit code 1 pings URL/1
    (delivery,) = deliver([Healthchecks(f"{server.url}/down")], event(), timeout_s=2, retries=2)
    assert not delivery.ok and delivery.attempts == 3 and delivery.error == "answered HTTP 500"
    assert len(server.to("/down/1")) == 3


@pytest.mark.parametrize(("status", "attempts"), [(404, 1), (400, 1), (401, 1), (429, 3), (503, 3)])
def test_only_rate_limits_and_server_errors_are_retried(server, monkeypatch, status, attempts):
    monkeypatch.setattr("opsctl.notify.delivery.BACKOFF_S", (0.05,))
    server.answer("/x", status)
    (delivery,) = deliver([Webhook(f"{server.url}/x")], event(), timeout_s=2, retries=2)
    assert not delivery.ok and delivery.attempts == attempts and delivery.error == f"answered HTTP {status}"


def test_redirects_are_not_followed(server):
    server.answer(f"/moved/{TOKEN}", 302, location=f"{server.url}/elsewhere/{TOKEN}")
    server.answer(f"/gone/{TOKEN}", 307, location=f"{server.url}/elsewhere/{TOKEN}")
    deliveries = deliver([Webhook(f"{server.url}/moved/{TOKEN}", SECRET), Webhook(f"{server.url}/gone/{TOKEN}")],
                         event())
    for delivery, status in zip(deliveries, (302, 307), strict=True):
        assert not delivery.ok and delivery.attempts == 1
        assert delivery.error and f"HTTP {status}" in delivery.error and "redirect" in delivery.error
    assert server.to(f"/elsewhere/{TOKEN}") == []


def test_a_refused_connection_is_retried_and_reported(monkeypatch):
    monkeypatch.setattr("opsctl.notify.delivery.BACKOFF_S", (0.05,))
    (delivery,) = deliver([Webhook(f"http://127.0.0.1:{free_port()}/hooks/{TOKEN}")], event(), retries=2)
    assert not delivery.ok and delivery.attempts == 3 and delivery.error == "connection refused"


# --- the deadline ------------------------------------------------------------------------------------------------


def test_silent_and_closing_servers_fail_within_the_deadline_and_others_still_succeed(server):
    server.hang(f"/silent/{TOKEN}")
    server.close(f"/closing/{TOKEN}/1")  # healthchecks pings URL/<exit code>
    channels = [Webhook(f"{server.url}/silent/{TOKEN}"), Healthchecks(f"{server.url}/closing/{TOKEN}"),
                Webhook(f"{server.url}/fine/{TOKEN}"), Healthchecks(f"{server.url}/fine-too/{TOKEN}")]
    started = time.monotonic()
    silent, closing, fine, fine_too = deliver(channels, event(), timeout_s=1, retries=5, deadline_s=2.5)
    assert time.monotonic() - started < 2.5 + 1
    assert not silent.ok and silent.error and silent.error.startswith("no answer within")
    assert not closing.ok and closing.error == "connection closed without an answer" and closing.attempts >= 2
    assert fine.ok and fine_too.ok and fine.attempts == 1


def test_a_server_trickling_bytes_does_not_stretch_an_attempt_past_its_timeout(server):
    server.trickle("/slow")
    started = time.monotonic()
    (delivery,) = deliver([Webhook(f"{server.url}/slow")], event(), timeout_s=1, retries=0, deadline_s=20)
    assert time.monotonic() - started < 2
    assert not delivery.ok and delivery.error == "no answer within 1 s"


class Stuck:
    """A channel that never returns from send (a DNS lookup that hangs, say)."""

    display = "stuck://channel"

    def __init__(self) -> None:
        self.release = threading.Event()

    def send(self, event: Event, timeout_s: float) -> None:  # noqa: ARG002 - the channel ignores its time limit
        self.release.wait(30)


class Broken:
    display = "broken://channel"

    def send(self, event: Event, timeout_s: float) -> None:  # noqa: ARG002
        raise KeyError(event.run_id)


def test_a_channel_still_running_at_the_deadline_is_abandoned_and_a_broken_one_does_not_raise(server):
    stuck = Stuck()
    started = time.monotonic()
    deliveries = deliver([stuck, Broken(), Webhook(f"{server.url}/ok")], event(), deadline_s=0.5)
    stuck.release.set()
    assert time.monotonic() - started < 1.5
    assert deliveries[0] == Delivery("stuck://channel", False, 1, "no answer within 0.5 s", deliveries[0].seconds)
    assert deliveries[1].error == "failed unexpectedly (KeyError)" and not deliveries[1].ok
    assert deliveries[2].ok


def test_no_channels_is_nothing_to_do():
    assert deliver([], event()) == []


# --- TLS ---------------------------------------------------------------------------------------------------------


def test_tls_certificates_are_verified(tmp_path: Path, monkeypatch):
    files = Authority("opsctl test CA").issue(tmp_path, "hooks", dns=("localhost",), ips=("127.0.0.1",))
    server = WebhookServer(tls=files).start()
    try:
        (refused,) = deliver([Webhook(f"{server.url}/hooks/{TOKEN}", SECRET)], event())
        assert not refused.ok and refused.attempts == 1 and refused.error and "not trusted" in refused.error
        monkeypatch.setenv("SSL_CERT_FILE", str(files.ca))  # now opsctl trusts the test CA
        (trusted,) = deliver([Webhook(f"{server.url}/hooks/{TOKEN}", SECRET)], event())
        assert trusted.ok and len(server.to(f"/hooks/{TOKEN}")) == 1
        server.trickle("/slow")
        (slow,) = deliver([Webhook(f"{server.url}/slow")], event(), timeout_s=1, retries=0)
        assert slow.error == "no answer within 1 s" and slow.seconds < 2
    finally:
        server.stop()


# --- no capability or secret in what is shown --------------------------------------------------------------------


def test_displays_errors_and_logs_never_show_the_token(server, caplog):
    caplog.set_level("DEBUG", logger="opsctl")
    for suffix in ("", "/1"):  # webhooks post to the URL, healthchecks to URL/<exit code>
        server.answer(f"/e/{TOKEN}{suffix}", 500)
        server.answer(f"/n/{TOKEN}{suffix}", 404)
        server.answer(f"/r/{TOKEN}{suffix}", 301, location=f"{server.url}/x/{TOKEN}")
        server.close(f"/c/{TOKEN}{suffix}")
        server.hang(f"/h/{TOKEN}{suffix}")
    urls = [f"{server.url}/{path}/{TOKEN}?k={TOKEN}" for path in "enrch"]
    urls.append(f"http://127.0.0.1:{free_port()}/{TOKEN}")
    channels = [*(Healthchecks(url) for url in urls), *(Webhook(url, SECRET) for url in urls)]
    deliveries = deliver(channels, event(), timeout_s=0.5, retries=1, deadline_s=1.5)
    assert [delivery.ok for delivery in deliveries] == [False] * len(channels)
    port = server.url.rsplit(":", 1)[1]
    shown = [repr(channel) for channel in channels] + [repr(delivery) for delivery in deliveries]
    for text in [*shown, caplog.text]:
        assert TOKEN not in text and SECRET.decode() not in text
    assert channels[0].display == f"http://127.0.0.1:{port}/…"


@pytest.mark.parametrize("url", ["ftp://example.com/{token}", "file:///etc/{token}", "hc-ping.com/{token}",
                                 "https://user:{token}@example.com/", "https:///{token}",
                                 "https://example.com:99999/{token}", "https://example.com/{token} x",
                                 "https://example.com/{token}\n", "https://example.com/{token}/é",
                                 "javascript:alert('{token}')"])
def test_only_plain_http_and_https_urls_are_accepted(url):
    for make in (Healthchecks, Webhook):
        with pytest.raises(ValueError, match="notification URL") as caught:
            make(url.format(token=TOKEN))  # ids stay the same in every xdist worker; the token does not
        assert TOKEN not in str(caught.value)


def test_ipv6_hosts_and_ports_are_displayed_without_the_path():
    assert Webhook(f"https://[::1]:8443/{TOKEN}").display == "https://[::1]:8443/…"
    assert Healthchecks(f"https://HC-Ping.com/{TOKEN}").display == "https://hc-ping.com/…"


# --- command hooks -----------------------------------------------------------------------------------------------


def test_a_command_hook_gets_the_event_in_its_environment_and_no_secrets(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-" + TOKEN)
    monkeypatch.setenv("PGPASSWORD", "pg-" + TOKEN)
    monkeypatch.setenv("RESTIC_PASSWORD", "restic-" + TOKEN)
    out = tmp_path / "env"
    hook = CommandHook(("sh", "-c", 'env > "$1"', "hook", str(out)))
    (delivery,) = deliver([hook], event("failure", exit_code=3, outcome="partial"))
    assert delivery == Delivery("sh", True, 1, None, delivery.seconds)
    seen = dict(line.split("=", 1) for line in out.read_text().splitlines() if line.startswith("OPSCTL_"))
    assert seen == {"OPSCTL_EVENT": "failure", "OPSCTL_COMMAND": "backup", "OPSCTL_POLICY_NAME": "crm-prod",
                    "OPSCTL_HOST": "db1", "OPSCTL_EXIT_CODE": "3", "OPSCTL_OUTCOME": "partial",
                    "OPSCTL_FAILED_TARGETS": "offsite", "OPSCTL_ERROR": "1 of 2 targets failed", "OPSCTL_HINT": "",
                    "OPSCTL_RUN_ID": RUN_ID, "OPSCTL_DURATION_S": "12.3"}
    assert TOKEN not in out.read_text()
    assert "PATH=" in out.read_text()  # the rest of opsctl's environment is there


def test_a_failing_or_missing_command_is_not_delivered(tmp_path: Path):
    failing, missing = deliver([CommandHook(("sh", "-c", "exit 3")), CommandHook((str(tmp_path / "no-such-hook"),))],
                               event())
    assert not failing.ok and failing.attempts == 1 and failing.error == "sh exited with status 3"
    assert not missing.ok and missing.attempts == 1 and missing.error == f"program not found: {tmp_path}/no-such-hook"
    with pytest.raises(DeliveryFailed, match="no-such-hook"):
        CommandHook(("no-such-hook-" + TOKEN[:8],)).send(event(), 1)


@pytest.mark.parametrize("ignores_term", [False, True], ids=["stops-on-term", "ignores-term"])
def test_a_hanging_command_is_stopped_with_its_children_at_the_timeout(tmp_path: Path, ignores_term):
    pids = tmp_path / "pids"
    trap = "trap '' TERM; " if ignores_term else ""
    hook = CommandHook(("sh", "-c", f'{trap}echo $$ > "$1"; sleep 100 & echo $! >> "$1"; wait', "hook", str(pids)))
    started = time.monotonic()
    (delivery,) = deliver([hook], event(), timeout_s=1, retries=2, deadline_s=10)
    took = time.monotonic() - started
    assert not delivery.ok and delivery.attempts == 1  # it may have done its job: not run twice
    assert delivery.error == "sh did not finish within 1 s and was stopped"
    assert (took > 3 if ignores_term else took < 1.5), took  # SIGKILL follows SIGTERM after 2 s
    shell, sleeper = (int(pid) for pid in pids.read_text().split())
    assert not alive(shell) and not alive(sleeper)


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (an orphan may wait for a container's init to reap it)."""
    for _ in range(40):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return False
        if state in ("Z", "X"):
            return False
        time.sleep(0.05)
    return True


def test_a_command_hook_shows_only_its_program_name():
    hook = CommandHook(("/usr/local/bin/page-oncall", "--token", TOKEN))
    assert hook.display == "page-oncall" and TOKEN not in repr(hook)
    with pytest.raises(ValueError, match="program"):
        CommandHook(())


# --- the event's text and JSON -----------------------------------------------------------------------------------


def test_the_text_says_what_happened_first():
    lines = event("failure").text().splitlines()
    assert lines[0] == "backup of policy crm-prod FAILED (exit 1) on host db1 after 12.3 s"
    assert "  offsite: FAILED: connection refused by s3.example.com" in lines
    assert "    hint: check the firewall, then run: opsctl doctor" in lines
    assert lines[-3:] == ["log:", "restic: saving", "Fatal: unable to save"]
    assert event("success").text().splitlines()[0] == "backup of policy crm-prod succeeded on host db1 after 12.3 s"
    assert event("start").text().splitlines()[0] == "backup of policy crm-prod started on host db1"
    partial = event("failure", exit_code=3, outcome="partial", duration_s=3725)
    first = "backup of policy crm-prod FAILED (partial, exit 3) on host db1 after 1 h 2 min"
    assert partial.text().splitlines()[0] == first


def test_a_huge_log_tail_keeps_the_head_and_the_newest_lines_within_max_body():
    tail = tuple(f"ligne {n}: sauvegarde échouée — 数据库 €" for n in range(50_000))
    text = event("failure", log_tail=tail).text()
    assert len(text.encode()) <= MAX_BODY and "\ufffd" not in text
    assert text.startswith("backup of policy crm-prod FAILED (exit 1)")
    assert "offsite: FAILED" in text and "[cut]" in text
    assert text.endswith(tail[-1])  # the newest line says most about the failure
    body = event("failure", log_tail=tail).to_json()
    assert body["log_tail"][-1] == tail[-1] and body["log_lines_cut"] > 49_000
    assert len(json.dumps(body, ensure_ascii=False).encode()) < 2 * MAX_BODY


@pytest.mark.parametrize("filler", ["é", "€", "数", "😀", "a"])
def test_a_huge_head_is_cut_at_a_character_boundary(filler):
    for size in range(MAX_BODY - 8, MAX_BODY + 8):  # every alignment of the cut against the characters
        text = event("failure", error=filler * size, targets=tuple(TargetLine(f"t{n}", ok=False, error=filler * 3000)
                                                                      for n in range(5))).text()
        data = text.encode()
        assert len(data) <= MAX_BODY and data.decode() == text and "\ufffd" not in text
        assert text.endswith("[cut]") and text.startswith("backup of policy crm-prod FAILED")


def test_text_that_cannot_be_utf_8_is_still_sent(server):
    odd = event("failure", error="cannot read /srv/dump-\udcff.sql", log_tail=("name \udcfe",))
    assert "\udcff" not in odd.text() and odd.text().encode()
    assert deliver([Webhook(f"{server.url}/w"), Healthchecks(f"{server.url}/h")], odd)[1].ok
    assert "cannot read /srv/dump-" in json.loads(server.to("/w")[0].body)["error"]


def test_json_keys_are_stable():
    assert list(event("start").to_json()) == ["schema", "kind", "command", "policy", "host", "run_id", "started_at",
                                              "sent_at", "exit_code", "outcome", "duration_s", "targets", "error",
                                              "hint", "log_tail", "log_lines_cut"]


def test_notify_does_not_load_actions_or_the_cli():
    loaded = subprocess.run([sys.executable, "-c", "import sys, opsctl.notify; print(sorted(sys.modules))"],
                            cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    assert "opsctl.actions" not in loaded and "opsctl.cli" not in loaded
