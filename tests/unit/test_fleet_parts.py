"""The fleet's parts without servers: where each kind keeps the fleet folder, the policy's fleet section, what a
hostile document can and cannot make `fleet status` believe, the stale rule, and the local folder's walk (a real
filesystem with planted links, pipes and huge files)."""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from opsctl.cli import main
from opsctl.compliance import fleet as published
from opsctl.compliance.fleet_documents import assess, unreadable
from opsctl.targets import fleet
from opsctl.targets.fleet import MAX_DOCUMENT, RefusedDocument
from opsctl.targets.fleet_local import LocalFleet

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
DAY = 86400.0


# --- where -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("repository", "folder"), [
    ("/srv/backups/crm-eu", "/srv/backups/fleet"), ("/srv/backups/crm-eu/", "/srv/backups/fleet"),
    ("/crm", "/fleet")])
def test_the_fleet_folder_is_beside_the_repository(repository, folder):
    assert fleet.sftp_folder(repository) == folder
    assert fleet.local_folder(Path(repository)) == Path(folder)


@pytest.mark.parametrize(("prefix", "folder"), [("crm/eu", "crm/fleet"), ("/crm/eu/", "crm/fleet"), ("eu", "fleet"),
                                                ("", "fleet"), ("a/b/c", "a/b/fleet")])
def test_an_s3_fleet_folder_is_the_prefix_s_parent(prefix, folder):
    assert fleet.s3_folder(prefix) == folder


def test_only_fleet_names_are_written():
    assert fleet.file_name("crm-eu", "crm-eu-1.example") == "crm-eu-1.example.json"
    for policy, host in (("crm", "../x"), ("..", "h"), ("crm", ""), ("c/d", "h"), ("crm", "h\n")):
        with pytest.raises(Exception, match="refused"):
            fleet.file_name(policy, host)
    assert fleet.host_of("crm-eu-1.json") == "crm-eu-1"
    assert [fleet.host_of(name) for name in (".crm.json", "crm.json.tmp", "crm", "a b.json", ".json")] == [None] * 5


# --- the policy's fleet section --------------------------------------------------------------------------------


def validate(tmp_path, **fleet_section):
    (tmp_path / "repo.pass").write_text("x\n")
    (tmp_path / "repo.pass").chmod(0o600)
    policy = {"name": "crm", "database": {"engine": "sqlite", "path": "crm.sqlite3"},
              "targets": [{"name": "local", "kind": "local", "path": "repo"},
                          {"name": "nas", "kind": "local", "path": "nas/repo"}],
              "repository_password": {"file": "repo.pass"}, "fleet": fleet_section}
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
    return CliRunner().invoke(main, ["--policy", str(tmp_path / "policy.yaml"), "policy", "validate"])


def test_publish_to_names_the_policy_s_own_targets(tmp_path):
    result = validate(tmp_path, publish_to=["nas", "offsit"], host="crm-eu-1")
    assert result.exit_code == 2, result.output
    assert "At 'fleet.publish_to[1]': 'offsit' is not a target of this policy; name one of its targets: local, nas" \
        in result.stderr
    assert validate(tmp_path, publish_to=["nas", "nas"], host="h").exit_code == 2
    assert validate(tmp_path, publish_to=["nas"], host="bad name").exit_code == 2
    assert validate(tmp_path, publish_to=["nas"], host="crm-eu-1").exit_code == 0


def test_a_machine_name_that_cannot_be_listed_asks_for_fleet_host(tmp_path, monkeypatch):
    monkeypatch.setattr(socket, "gethostname", lambda: "my laptop")
    result = validate(tmp_path, publish_to=["nas"])
    assert result.exit_code == 2, result.output
    assert "At 'fleet.host': this machine's host name 'my laptop' cannot name it in the fleet; set fleet.host" \
        in result.stderr
    assert validate(tmp_path, publish_to=[]).exit_code == 0  # publishing nothing: the name does not matter
    assert validate(tmp_path, publish_to=["nas"], host="crm-eu-1").exit_code == 0


# --- what a document can make fleet status believe ---------------------------------------------------------------


def status(verdict="PASS", rpo_s=DAY, **more) -> dict:
    return {"format": "opsctl-compliance/1", "policy": "crm-eu", "verdict": verdict, "summary": "s", "mode": "offline",
            "databases": ["crm"], "objectives": {"rpo_s": rpo_s, "max_key_age_s": 1.0, "drill_max_age_s": 1.0},
            "rules": [{"rule": "3-2-1", "required": True, "status": verdict, "reason": "r", "todo": None},
                      {"rule": "drill", "required": False, "status": "FAIL", "reason": "r", "todo": "t"}],
            "targets": [{"target": "local", "newest_verified_at": "2026-11-30T06:00:00+00:00"},
                        {"target": "offsite", "newest_verified_at": "2026-11-30T09:00:00+00:00"}],
            "drill": {"ok": True, "at": "2026-11-20T06:00:00+00:00"}, **more}


def document(published_at=NOW - timedelta(hours=1), host="crm-eu-1", policy="crm-eu", **status_fields) -> bytes:
    return published.encode(published.envelope(host, policy, status(**status_fields), published_at))


def test_a_fresh_passing_host_counts_as_passing():
    row = assess("crm-eu", "crm-eu-1", document(), NOW)
    assert (row.status, row.state, row.stale, row.why()) == ("PASS", "ok", False, (None, None))
    shown = row.to_json()
    assert shown["newest_verified_at"] == "2026-11-30T09:00:00+00:00" and shown["newest_verified_age_s"] == 3 * 3600
    assert shown["drill"] == {"ok": True, "at": "2026-11-20T06:00:00+00:00", "age_s": 10 * DAY + 6 * 3600}
    assert shown["published_age_s"] == 3600 and shown["rules"][1] == {"rule": "drill", "required": False,
                                                                      "status": "FAIL"}


@pytest.mark.parametrize(("age", "stale"), [(timedelta(hours=24), False), (timedelta(hours=24, seconds=1), True)])
def test_a_document_older_than_its_own_rpo_is_stale(age, stale):
    row = assess("crm-eu", "crm-eu-1", document(NOW - age), NOW)
    assert row.stale is stale and row.status == ("FAIL" if stale else "PASS")
    if stale:
        problem, hint = row.why()
        assert "last published 1d ago, more than its RPO 1d" in problem and "opsctl schedule status" in hint
        assert "if crm-eu-1 was retired or renamed, remove fleet/crm-eu/crm-eu-1.json with an administrator's keys" \
            in hint
    short = assess("crm-eu", "crm-eu-1", document(NOW - timedelta(minutes=2), rpo_s=60.0), NOW)
    assert short.stale and short.state == "stale"  # its own RPO, whatever the others'


def test_failing_and_unknown_hosts_say_which_rules():
    failing = assess("crm-eu", "crm-eu-1", document(verdict="FAIL"), NOW)
    assert failing.status == "FAIL" and failing.why()[0] == "fails 3-2-1"
    unknown = assess("crm-eu", "crm-eu-1", document(verdict="UNKNOWN"), NOW)
    assert unknown.status == "UNKNOWN" and "3-2-1 unknown" in unknown.why()[0]


@pytest.mark.parametrize(("data", "said"), [
    (b"not json", "it is not JSON"),
    (b"[" * 200_000, "it is not JSON"),
    (b"\xff\xfe\x00", "it is not JSON"),
    (b"[1]", "it is not a JSON object"),
    (json.dumps({"format": "opsctl-fleet/1"}).encode(), "host is missing"),
    (document(verdict="GREEN"), "status.verdict is not a value opsctl writes there"),
    (document(rpo_s="86400"), "status.objectives.rpo_s is not a number opsctl writes there"),
    (document(rpo_s=-1.0), "status.objectives.rpo_s is not a number opsctl writes there"),
    (document(rpo_s=float("nan")), "status.objectives.rpo_s is not a number opsctl writes there"),
    (document(rpo_s=float("inf")), "status.objectives.rpo_s is not a number opsctl writes there"),
    (document(rpo_s=1e300), "status.objectives.rpo_s is not a number opsctl writes there"),
    (document(databases=["crm\x1b[31m"]), "status.databases[0] holds characters opsctl never writes there"),
    (document(databases=["x"] * 65), "status.databases lists more than opsctl ever writes"),
    (document().replace(b'"2026-11-30T06:00:00+00:00"', b'"2026-11-30T06:00:00"'),
     "status.targets[0].newest_verified_at is a time without its zone"),
    (document().replace(b'"opsctl_version":"0.2.0"', b'"opsctl_version":"<b>"'),
     "opsctl_version holds characters opsctl never writes there"),
])
def test_a_document_that_is_not_one_opsctl_wrote_is_invalid_said_in_opsctl_s_words(data, said):
    row = assess("crm-eu", "crm-eu-1", data, NOW)
    assert (row.status, row.state, row.published) == ("UNKNOWN", "invalid", None)
    assert row.problem.startswith("fleet/crm-eu/crm-eu-1.json is not a valid opsctl status document: "), row.problem
    assert said in row.problem, row.problem
    for parser_words in ("Input should", "Field required", "Invalid JSON", "String should", "\x1b", "pydantic"):
        assert parser_words not in row.problem
    assert "the next job on crm-eu-1 writes it again" in row.hint


@pytest.mark.parametrize(("data", "claimed"), [
    (document(host="crm-eu-2"), "host 'crm-eu-2' of policy 'crm-eu'"),
    (document(policy="crm-us"), "host 'crm-eu-1' of policy 'crm-us'"),
    (document(host="<img src=x onerror=alert(1)>\x1b[2J"), "host '<img src=x onerror=alert(1)>?[2J'"),
])
def test_a_document_that_names_another_host_or_policy_is_flagged_never_counted(data, claimed):
    row = assess("crm-eu", "crm-eu-1", data, NOW)
    assert row.status == "UNKNOWN" and row.state == "doubtful"
    assert f"says it is {claimed}" in row.problem and "someone may be hiding a failing host" in row.hint


def test_a_passing_document_under_another_policy_s_status_is_flagged():
    data = document().replace(b'"policy":"crm-eu","rules"', b'"policy":"crm-us","rules"')
    row = assess("crm-eu", "crm-eu-1", data, NOW)
    assert row.state == "doubtful" and "holds the status of policy crm-us, not crm-eu" in row.problem


def test_a_clock_ahead_is_said_and_counts_as_unknown():
    row = assess("crm-eu", "crm-eu-1", document(NOW + timedelta(hours=2)), NOW)
    assert row.status == "UNKNOWN" and "published 2h in the future" in row.problem and "timedatectl" in row.hint


def test_the_fleet_verdict():
    ok = assess("crm-eu", "a", document(host="a"), NOW)
    stale = assess("crm-eu", "b", document(NOW - timedelta(days=2), host="b"), NOW)
    broken = unreadable("crm-eu", "c", NOW, "gone", None)
    assert published.fleet_verdict([ok]) == "PASS"
    assert published.fleet_verdict([ok, broken]) == "UNKNOWN"
    assert published.fleet_verdict([ok, broken, stale]) == "FAIL"
    assert published.fleet_verdict([]) == "UNKNOWN"  # nothing proven: no host published there


# --- the local fleet folder on a hostile share --------------------------------------------------------------------


@pytest.fixture
def share(tmp_path) -> tuple[LocalFleet, Path]:
    (tmp_path / "share").mkdir()
    return LocalFleet(tmp_path / "share", tmp_path / "share" / "fleet", "nas (mount /share/fleet)"), tmp_path


def test_publish_replaces_the_document_whole_and_lists_it(share):
    files, root = share
    files.publish("crm-eu", "crm-eu-1", b"{}")
    files.publish("crm-eu", "crm-eu-1", b'{"second": 1}')
    assert files.read("crm-eu", "crm-eu-1") == b'{"second": 1}'
    assert sorted(os.listdir(root / "share" / "fleet" / "crm-eu")) == ["crm-eu-1.json"]  # nothing left aside
    assert (root / "share" / "fleet" / "crm-eu" / "crm-eu-1.json").stat().st_mode & 0o777 == 0o644
    assert files.listing() == fleet.Listing((("crm-eu", "crm-eu-1"),), 0)


def test_a_link_planted_in_the_fleet_folder_is_never_followed(share):
    files, root = share
    outside = root / "outside"
    outside.mkdir()
    (outside / "victim.json").write_text("victim")
    fleet_folder = root / "share" / "fleet"
    fleet_folder.mkdir()
    (fleet_folder / "crm-eu").symlink_to(outside)
    with pytest.raises(RefusedDocument, match=r"fleet/crm-eu is a symbolic link or a file, not a folder"):
        files.publish("crm-eu", "victim", b"{}")
    assert files.listing() == fleet.Listing((), 1)  # the link is counted, never walked into
    (fleet_folder / "crm-eu").unlink()
    (fleet_folder / "crm-eu").mkdir()
    (fleet_folder / "crm-eu" / "crm-eu-1.json").symlink_to(outside / "victim.json")
    with pytest.raises(RefusedDocument, match="is a symbolic link, not a document"):
        files.read("crm-eu", "crm-eu-1")
    files.publish("crm-eu", "crm-eu-1", b"{}")  # the rename replaces the link itself
    assert (outside / "victim.json").read_text() == "victim" and sorted(os.listdir(outside)) == ["victim.json"]
    assert not (fleet_folder / "crm-eu" / "crm-eu-1.json").is_symlink()
    fleet_folder.rename(root / "share" / "fleet.real")
    (root / "share" / "fleet").symlink_to(outside)
    with pytest.raises(RefusedDocument, match="fleet is a symbolic link"):
        files.listing()
    with pytest.raises(RefusedDocument):
        files.publish("crm-eu", "crm-eu-1", b"{}")
    assert sorted(os.listdir(outside)) == ["victim.json"]


def test_pipes_folders_huge_files_and_odd_names_are_refused_or_ignored(share):
    files, root = share
    folder = root / "share" / "fleet" / "crm-eu"
    folder.mkdir(parents=True)
    os.mkfifo(folder / "pipe.json")
    (folder / "dir.json").mkdir()
    with (folder / "huge.json").open("wb") as huge:
        huge.truncate(MAX_DOCUMENT + 1)
    for odd in ("a b.json", ".hidden.json", "notes.txt", "x.json.tmp"):
        (folder / odd).write_text("{}")
    (root / "share" / "fleet" / "bad name").mkdir()
    (root / "share" / "fleet" / "stray.json").write_text("{}")
    listing = files.listing()
    assert listing.documents == (("crm-eu", "dir"), ("crm-eu", "huge"), ("crm-eu", "pipe"))
    assert listing.ignored == 6
    for host, said in (("pipe", "folder, pipe or device"), ("dir", "folder, pipe or device"),
                       ("huge", "larger than 1 MiB")):
        with pytest.raises(RefusedDocument, match=said):
            files.read("crm-eu", host)


def test_a_missing_fleet_folder_is_an_empty_fleet(share):
    files, _ = share
    assert files.listing() == fleet.Listing()


def test_a_mounted_share_keeps_its_fleet_folder_on_the_share(tmp_path, monkeypatch):
    """Beside a repository that is the mount point itself, fleet/ would land on the local disk: refused."""
    from opsctl.policy.model import MountTargetConfig
    from opsctl.targets.errors import TargetUnreachable
    from opsctl.targets.mount import MountTarget

    share = tmp_path / "mnt" / "nas"
    (share / "crm").mkdir(parents=True)
    monkeypatch.setattr(MountTarget, "_mount_point", lambda _self: share)
    below = MountTarget(MountTargetConfig(name="nas", kind="mount", path=share / "crm"))
    files = below.fleet()
    files.publish("crm", "crm-eu-1", b"{}")
    assert (share / "fleet" / "crm" / "crm-eu-1.json").read_bytes() == b"{}"
    at_the_mount_point = MountTarget(MountTargetConfig(name="nas", kind="mount", path=share))
    with pytest.raises(TargetUnreachable, match=r"fleet folder .*/mnt/fleet would not be on the share mounted at"):
        at_the_mount_point.fleet()
    assert not (tmp_path / "mnt" / "fleet").exists()


# --- the data's age, judged when the fleet is read ------------------------------------------------------------------

RPO_RULE = {"rule": "rpo", "required": True, "status": "PASS", "reason": "r", "todo": None}


def verified(*ages_h: float | None, snapshot_h: float | None = None) -> list[dict]:
    """One target per age: its newest verified snapshot that many hours before NOW (None: never verified)."""
    def at(hours: float | None) -> str | None:
        return None if hours is None else (NOW - timedelta(hours=hours)).isoformat()
    return [{"target": f"t{i}", "newest_verified_at": at(age), "newest_snapshot_at": at(snapshot_h)}
            for i, age in enumerate(ages_h)]


def test_a_fresh_document_over_old_data_fails_whatever_it_says():
    """A check published PASS an hour ago, while its newest verified snapshot (now 47h old) was still fresh."""
    data = document(rules=[RPO_RULE], targets=verified(47, 50))
    row = assess("crm-eu", "crm-eu-1", data, NOW)
    assert (row.stale, row.data_too_old, row.status, row.state) == (False, True, "FAIL", "failing")
    problem, hint = row.why()
    assert problem == "the newest verified snapshot is 1d23h old, more than its RPO 1d"
    assert "on crm-eu-1: opsctl backup, then opsctl verify" in hint
    shown = row.to_json()
    assert shown["published_verdict"] == "PASS" and shown["status"] == "FAIL" and shown["data_too_old"]
    assert shown["rules"] == [{"rule": "rpo", "required": True, "status": "FAIL"}]  # judged now
    assert published.fleet_verdict([row]) == "FAIL"
    # Backups still land, the verify job does not: say so.
    lagging = assess("crm-eu", "crm-eu-1", document(rules=[RPO_RULE], targets=verified(47, snapshot_h=2)), NOW)
    assert "(a newer snapshot, 2h old, is not verified yet)" in lagging.why()[0]
    assert lagging.why()[1].startswith("on crm-eu-1: opsctl verify;")
    assert assess("crm-eu", "crm-eu-1", document(rules=[RPO_RULE], targets=verified(23, 30)), NOW).status == "PASS"


def test_the_data_s_age_counts_only_where_the_rpo_rule_does():
    optional = dict(RPO_RULE, required=False)
    row = assess("crm-eu", "crm-eu-1", document(rules=[optional], targets=verified(47)), NOW)
    assert (row.status, row.data_too_old) == ("PASS", False)
    assert row.to_json()["rules"] == [{"rule": "rpo", "required": False, "status": "FAIL"}]  # shown, not counted
    # Never verified: its own document fails the rule already; that stands, said as it said it.
    never = assess("crm-eu", "crm-eu-1", document(verdict="FAIL", rules=[dict(RPO_RULE, status="FAIL")],
                                                  targets=verified(None)), NOW)
    assert (never.status, never.data_too_old, never.why()[0]) == ("FAIL", False, "fails rpo")


def test_each_database_s_newest_verified_snapshot_counts_as_the_rpo_rule_counts_it():
    """crm verified 1h ago on t0, hr 30h ago on t1 (and 40h on t0): hr is over the RPO, so the host is."""
    def at(hours: float) -> str:
        return (NOW - timedelta(hours=hours)).isoformat()
    targets = [{"target": "t0", "newest_verified_at": at(40), "databases": {
                    "crm": {"newest_verified_at": at(1)}, "hr": {"newest_verified_at": at(40)}}},
               {"target": "t1", "newest_verified_at": None, "databases": {"hr": {"newest_verified_at": at(30)}}}]
    row = assess("crm-eu", "crm-eu-1", document(databases=["crm", "hr"], rules=[RPO_RULE], targets=targets), NOW)
    assert row.data_too_old and row.to_json()["newest_verified_age_s"] == 30 * 3600
    assert "the newest verified snapshot is 1d6h old" in row.why()[0]


# --- flooded folders, and what the listing passed over ---------------------------------------------------------------


def test_junk_flooding_one_policy_s_folder_cuts_that_folder_only(share):
    files, root = share
    folder = root / "share" / "fleet"
    (folder / "crm-aa").mkdir(parents=True)
    for index in range(fleet.MAX_ENTRIES + 1):
        (folder / "crm-aa" / f"junk-{index:05d}").touch()
    (folder / "crm-zz").mkdir()
    files.publish("crm-zz", "h1", b"{}")
    listing = files.listing()
    assert listing.documents == (("crm-zz", "h1"),)  # another policy's document is still listed
    assert listing.cut == ("fleet/crm-aa/",) and listing.ignored == fleet.MAX_ENTRIES


def test_documents_past_the_budget_cut_the_listing(share):
    files, root = share
    folder = root / "share" / "fleet" / "crm-aa"
    folder.mkdir(parents=True)
    for index in range(fleet.MAX_ENTRIES + 1):
        (folder / f"h{index:05d}.json").touch()
    files.publish("crm-zz", "h1", b"{}")
    listing = files.listing()
    assert len(listing.documents) == fleet.MAX_ENTRIES and "fleet/crm-aa/" in listing.cut


def test_a_cut_listing_is_never_a_pass():
    from opsctl.actions.fleet_status import FleetAnswer

    ok = assess("crm-eu", "crm-eu-1", document(), NOW)
    whole = FleetAnswer("nas", "nas (...)", NOW, hosts=(ok,))
    cut = FleetAnswer("nas", "nas (...)", NOW, hosts=(ok,), listing=fleet.Listing(cut=("fleet/crm-aa/",)))
    assert (whole.verdict, int(whole.exit_code)) == ("PASS", 0)
    assert (cut.verdict, int(cut.exit_code)) == ("UNKNOWN", 3)
    assert "fleet/crm-aa/ only in part), so some hosts may be missing" in cut.summary()
    failing = assess("crm-eu", "crm-eu-2", document(host="crm-eu-2", verdict="FAIL"), NOW)
    assert published.fleet_verdict([ok, failing], cut=True) == "FAIL"  # at least UNKNOWN: a failure stays one


def test_the_summary_names_ten_hosts_and_counts_the_rest():
    from opsctl.actions.fleet_status import FleetAnswer

    hosts = tuple(unreadable("crm-eu", f"h{i:02d}", NOW, "not read within 30 s", None) for i in range(13))
    summary = FleetAnswer("nas", "nas (...)", NOW, hosts=hosts).summary()
    assert summary == ("13 of 13 hosts need attention: " + ", ".join(f"h{i:02d} unreadable" for i in range(10))
                       + " and 3 more")


def test_a_killed_publish_s_leftover_is_an_interrupted_publish(share):
    from opsctl.reports.fleet_view import notes

    files, root = share
    files.publish("crm-eu", "h1", b"{}")
    (root / "share" / "fleet" / "crm-eu" / ".h1.json.0123abcd.tmp").write_bytes(b"{")
    (root / "share" / "fleet" / "crm-eu" / ".h1.json.nothex00.tmp").write_bytes(b"{")
    listing = files.listing()
    assert (listing.documents, listing.interrupted, listing.ignored) == ((("crm-eu", "h1"),), 1, 1)
    said = notes({"hosts": [], "ignored": 0, "interrupted": 1, "cut": []})
    assert said == [("1 interrupted publish (a half-written .<host>.json.<hex>.tmp: a job was killed while it wrote "
                     "its status); that host's next job removes it after an hour")]


# --- the policy and the command line ---------------------------------------------------------------------------------


def fleet_policy(tmp_path: Path, targets: list[dict] | None = None, **extra) -> Path:
    """A policy whose repository password file does not exist: fleet status reads no password."""
    policy = {"name": "crm-eu", "database": {"engine": "sqlite", "path": "crm.sqlite3"}, "state_dir": "state",
              "targets": targets or [{"name": "local", "kind": "local", "path": "repos/crm-eu"}],
              "repository_password": {"file": "missing.pass"}, **extra}
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
    return tmp_path / "policy.yaml"


def fleet_status(path: Path, *args: str):
    return CliRunner().invoke(main, ["--policy", str(path), "--json", "fleet", "status", *args])


@pytest.mark.parametrize(("target", "where"), [
    ({"name": "nas", "kind": "local", "path": "b/fleet"}, "/b/fleet"),
    ({"name": "nas", "kind": "sftp", "host": "nas", "user": "u", "path": "/srv/fleet/", "identity_file": "id",
      "known_hosts": "kh"}, "/srv/fleet/"),
    # Beside /srv/x, whose fleet folder /srv/fleet is: a policy named crm would publish into this repository.
    ({"name": "nas", "kind": "local", "path": "/srv/fleet/crm"}, "/srv/fleet/crm"),
])
def test_a_repository_that_is_a_fleet_folder_is_refused(tmp_path, target, where):
    path = fleet_policy(tmp_path, [target], fleet={"publish_to": ["nas"], "host": "h1"})
    result = CliRunner().invoke(main, ["--policy", str(path), "policy", "validate"])
    assert result.exit_code == 2, result.output
    assert "At 'fleet.publish_to[0]': the repository of target 'nas' (" in result.stderr
    assert f"{where}) lies in a folder named fleet" in result.stderr
    assert "move the repository to a folder with another name, or publish to another target" in result.stderr
    path = fleet_policy(tmp_path, [target])
    refused = fleet_status(path, "--target", "nas")
    assert refused.exit_code == 2
    assert "lies in a folder named fleet" in refused.output and "nothing was read" in refused.output


def a_failing_host(tmp_path: Path) -> None:
    """crm-us-1 publishes a failing status beside this policy's local repository."""
    (tmp_path / "repos").mkdir(exist_ok=True)
    shared = LocalFleet(tmp_path / "repos", tmp_path / "repos" / "fleet", "local")
    shared.publish("crm-us", "crm-us-1", document(datetime.now(UTC), "crm-us-1", "crm-us", verdict="FAIL")
                   .replace(b'"policy":"crm-eu"', b'"policy":"crm-us"'))


def test_fleet_status_needs_no_password_and_only_the_named_target_s_keys(tmp_path):
    """An auditor's machine with the fleet keys alone: no repository password file, no other target's keys."""
    s3 = {"name": "offsite", "kind": "s3", "endpoint": "https://s3.example", "bucket": "crm", "prefix": "crm/eu",
          "credentials": {"file": "missing-s3.env"}}
    path = fleet_policy(tmp_path, [{"name": "local", "kind": "local", "path": "repos/crm-eu"}, s3])
    a_failing_host(tmp_path)
    result = fleet_status(path, "--target", "local")
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["hosts"][0]["state"] == "failing"
    refused = fleet_status(path, "--target", "offsite")  # logging in there: its keys are checked, and named
    assert refused.exit_code == 2, refused.output
    assert "At 'targets[1].credentials':" in refused.stderr and "missing-s3.env does not exist" in refused.stderr


def test_fleet_status_records_no_outcome_of_this_policy(tmp_path):
    """Another host failing is no failure of this policy: no run record and no metrics (their "last run failed"
    alert would fire for this policy), only the audit line every command leaves."""
    metrics = tmp_path / "opsctl.prom"
    path = fleet_policy(tmp_path, metrics={"textfile": str(metrics)}, repository_password={"file": "repo.pass"})
    (tmp_path / "repo.pass").write_text("x\n")
    (tmp_path / "repo.pass").chmod(0o600)
    a_failing_host(tmp_path)
    assert fleet_status(path, "--target", "local").exit_code == 1
    assert not (tmp_path / "state" / "runs").exists() and not metrics.exists()
    trail = [json.loads(line) for line in (tmp_path / "state" / "audit.jsonl").read_text().splitlines()]
    assert [(e.get("command"), e.get("exit_code")) for e in trail if e.get("command")] == [("fleet status", 1)]
