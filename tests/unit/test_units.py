"""The systemd units of `opsctl schedule` (schedule/units.py) and its systemctl layer (schedule/systemd.py).

systemd's own parser checks the units: `systemd-analyze verify` (it needs no systemd running as PID 1) must
accept every file without a word about it, and the dump of the units it loaded (at debug level) shows the
argv it made of ExecStart=, which must be exactly opsctl's, however odd the paths.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from opsctl.schedule import systemd
from opsctl.schedule.systemd import TimerState, parse_show, timer_state, unit_folder
from opsctl.schedule.units import MARKER, JobUnit, UnitSpec, is_ours, render, unit_prefix

OPSCTL = (sys.executable, "-m", "opsctl")  # systemd-analyze checks that the program exists
# Everything systemd would read as syntax: quotes, a backslash, specifiers, variables, UTF-8.
ODD = "pol icy's \"q\" 100% $HOME \\back é/crm $USER %i ${X}.yaml"
NAMESPACES = ("ProtectSystem", "ReadWritePaths", "PrivateTmp", "ProtectHome", "ProtectKernelTunables",
              "ProtectKernelModules", "ProtectControlGroups")
FILTERS = {"NoNewPrivileges": "yes", "RestrictSUIDSGID": "yes", "LockPersonality": "yes", "RestrictRealtime": "yes",
           "SystemCallArchitectures": "native"}


def make_spec(tmp_path: Path, **changes: object) -> UnitSpec:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    spec = UnitSpec(policy="crm", policy_file=tmp_path / "crm.yaml", opsctl=OPSCTL, user=False,
                    read_write_paths=(state,), optional_paths=(tmp_path / "nas",), protect_home=True,
                    jobs=(JobUnit("backup", "*-*-* 03:30:00", 600), JobUnit("check", "weekly", 3600)))
    return dataclasses.replace(spec, **changes)


def settings(text: str, section: str) -> list[tuple[str, str]]:
    """The (key, value) lines of one section, in order, as systemd reads them (comments skipped)."""
    current, found = "", []
    for line in text.split("\n"):
        if line.startswith("["):
            current = line
        elif current == f"[{section}]" and line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            found.append((key, value))
    return found


def values(text: str, section: str, key: str) -> list[str]:
    return [value for name, value in settings(text, section) if name == key]


def unquote(value: str, instance: str = "i") -> list[str]:
    """Split a setting into words as systemd.syntax(7) says, then resolve '%%' and '%i' (systemd.unit(5)).

    Quotes may open a word only and must close it; C escapes apply inside and outside quotes.
    """
    escapes = {"\\": "\\", '"': '"', "'": "'", "s": " ", "t": "\t", "n": "\n"}
    words: list[str] = []
    word: str | None = None
    quote, closed = "", False
    chars = iter(value)
    for char in chars:
        assert not closed or char == " ", f"a closing quote must end the word: {value}"
        closed = False
        if char == "\\":
            word = (word or "") + escapes[next(chars)]
        elif quote:
            word, quote, closed = (word, "", True) if char == quote else (f"{word}{char}", quote, False)
        elif char == " ":
            words += [word] if word is not None else []
            word = None
        elif char in "\"'":
            assert word is None, f"a quote inside a word: {value}"
            word, quote = "", char
        else:
            word = (word or "") + char
    assert not quote, f"an unclosed quote: {value}"
    words += [word] if word is not None else []
    return [re.sub("%(.)", lambda m: {"%": "%", "i": instance}[m[1]], w) for w in words]


def exec_argv(text: str) -> list[str]:
    """The argv ExecStart= starts; the ':' prefix (no $VARIABLE expansion) is required."""
    (line,) = values(text, "Service", "ExecStart")
    program, *args = unquote(line)
    assert program.startswith(":"), "without ':', systemd would expand $VARIABLES in the arguments"
    return [program[1:], *args]


# -- what the files say ------------------------------------------------------------------------------------------


def test_one_service_and_timer_per_job_and_one_failure_template(tmp_path):
    files = render(make_spec(tmp_path))
    assert list(files) == ["opsctl-crm-backup.service", "opsctl-crm-backup.timer", "opsctl-crm-check.service",
                           "opsctl-crm-check.timer", "opsctl-crm-failed@.service"]
    assert all(name.startswith(unit_prefix("crm")) for name in files)
    assert all(text.startswith(f"{MARKER}: policy crm ({tmp_path / 'crm.yaml'}); written by opsctl schedule "
                               "install, which replaces it: edit the policy, not this file\n")
               for text in files.values())


def test_a_system_service_runs_the_job_sandboxed(tmp_path):
    text = render(make_spec(tmp_path))["opsctl-crm-backup.service"]
    assert dict(settings(text, "Unit")) == {
        "Description": "opsctl backup of policy crm", "Wants": "network-online.target",
        "After": "network-online.target", "OnFailure": "opsctl-crm-failed@backup.service"}
    assert exec_argv(text) == [*OPSCTL, "--policy", str(tmp_path / "crm.yaml"), "schedule", "job", "backup"]
    service = dict(settings(text, "Service"))
    assert service | {"ExecStart": "", "ReadWritePaths": ""} == {
        "Type": "oneshot", "ExecStart": "", "SuccessExitStatus": "75", "Nice": "10",
        "IOSchedulingClass": "idle", "UMask": "0077",
        "KillMode": "mixed", "TimeoutStopSec": "120", "CacheDirectory": "opsctl",
        "Environment": "XDG_CACHE_HOME=%C/opsctl", "ProtectSystem": "strict", "ReadWritePaths": "",
        "PrivateTmp": "yes", "ProtectHome": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes", **FILTERS}
    # The optional folder (a NAS that may not be mounted) is skipped when missing: '-'.
    assert values(text, "Service", "ReadWritePaths") == [str(tmp_path / "state"), f"-{tmp_path / 'nas'}"]


def test_protect_home_only_when_no_policy_path_is_under_home(tmp_path):
    under_home = render(make_spec(tmp_path, protect_home=False))["opsctl-crm-backup.service"]
    assert values(under_home, "Service", "ProtectHome") == []
    assert values(under_home, "Service", "ProtectSystem") == ["strict"]
    assert values(render(make_spec(tmp_path))["opsctl-crm-backup.service"], "Service", "ProtectHome") == ["yes"]


def test_a_user_service_has_no_mount_sandbox_and_no_system_targets(tmp_path):
    text = render(make_spec(tmp_path, user=True))["opsctl-crm-backup.service"]
    service = dict(settings(text, "Service"))
    assert not set(NAMESPACES) & set(service), "a user unit would get a user namespace, where root is nobody"
    assert FILTERS.items() <= service.items()
    assert service["CacheDirectory"] == "opsctl" and service["KillMode"] == "mixed"
    assert dict(settings(text, "Unit")) == {"Description": "opsctl backup of policy crm",
                                            "OnFailure": "opsctl-crm-failed@backup.service"}


@pytest.mark.parametrize("user", [False, True])
def test_a_timer_starts_its_service_and_catches_up_missed_runs(tmp_path, user):
    text = render(make_spec(tmp_path, user=user))["opsctl-crm-backup.timer"]
    assert settings(text, "Timer") == [("OnCalendar", "*-*-* 03:30:00"), ("Persistent", "true"),
                                       ("RandomizedDelaySec", "600"), ("AccuracySec", "1min"),
                                       ("Unit", "opsctl-crm-backup.service")]
    assert settings(text, "Install") == [("WantedBy", "timers.target")]


@pytest.mark.parametrize("user", [False, True])
def test_the_failure_template_reports_without_a_failure_handler_of_its_own(tmp_path, user):
    files = render(make_spec(tmp_path, user=user))
    template, job = files["opsctl-crm-failed@.service"], files["opsctl-crm-backup.service"]
    assert exec_argv(template)[-3:] == ["schedule", "failed", "i"]  # %i: the failed job, from the instance
    assert values(template, "Unit", "OnFailure") == []
    assert values(template, "Unit", "Description") == ["opsctl report of a failed %i of policy crm"]
    assert [s for s in settings(template, "Service") if s[0] not in ("ExecStart", "ReadWritePaths")] == \
           [s for s in settings(job, "Service") if s[0] not in ("ExecStart", "SuccessExitStatus", "ReadWritePaths")]
    # A folder that is gone may be why the job failed: its report must still start.
    assert all(unquote(v)[0].startswith("-") for v in values(template, "Service", "ReadWritePaths"))
    assert values(job, "Service", "SuccessExitStatus") == ["75"]  # skipped: recorded and notified by opsctl


def test_a_system_unit_runs_its_job_as_schedule_user_with_a_cache_of_its_own(tmp_path):
    plain, as_user = render(make_spec(tmp_path)), render(make_spec(tmp_path, run_as="opsctl"))
    for name in ("opsctl-crm-backup.service", "opsctl-crm-failed@.service"):
        service = settings(as_user[name], "Service")
        assert service[:2] == [("Type", "oneshot"), ("User", "opsctl")], name  # the job and its failure report
        assert values(as_user[name], "Service", "CacheDirectory") == ["opsctl/user-opsctl"]
        assert values(as_user[name], "Service", "CacheDirectoryMode") == ["0700"]
        assert values(as_user[name], "Service", "Environment") == ["XDG_CACHE_HOME=%C/opsctl/user-opsctl"]
        # Everything else as root's: the same sandbox, the same command.
        others = {"User", "CacheDirectory", "CacheDirectoryMode", "Environment"}
        assert [s for s in service if s[0] not in others] == \
               [s for s in settings(plain[name], "Service") if s[0] not in others]
    assert as_user["opsctl-crm-backup.timer"] == plain["opsctl-crm-backup.timer"]
    assert "User=" not in "".join(plain.values())  # without schedule.user, root's units are as they were
    assert list(as_user.items()) == list(render(make_spec(tmp_path, run_as="opsctl")).items())


@pytest.mark.parametrize(("change", "message"), [
    ({"user": True, "run_as": "opsctl"}, "user unit runs as the user"),
    ({"run_as": "Backup User"}, "not one systemd's User= takes"),
    ({"run_as": "opsctl\nExecStartPre=/bin/evil"}, "not one systemd's User= takes"),
])
def test_a_user_systemd_cannot_run_as_another_user_nor_an_odd_name(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        render(make_spec(tmp_path, **change))


# -- paths as systemd reads them -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [ODD, "a b/c", "100%%/%n", "$$/${HOME}", "\\\\", "'", '"', "é ü/ß", ";", "-x"])
def test_every_path_reaches_opsctl_as_one_argument(tmp_path, name):
    odd = tmp_path / name
    program = tmp_path / "ve nv $X 5%/python"
    spec = make_spec(tmp_path, policy_file=odd, opsctl=(str(program), "-m", "opsctl"), read_write_paths=(odd,),
                     optional_paths=(odd,))
    for text in render(spec).values():
        if text.startswith(MARKER) and "[Service]" in text:
            assert exec_argv(text)[:5] == [str(program), "-m", "opsctl", "--policy", str(odd)]
            expected = [f"-{odd}", f"-{odd}"] if "schedule failed" in text else [str(odd), f"-{odd}"]
            assert [unquote(v)[0] for v in values(text, "Service", "ReadWritePaths")] == expected


@pytest.mark.parametrize(("change", "message"), [
    ({"policy_file": Path("/etc/opsctl/crm\nExecStartPre=/bin/evil.yaml")}, "newline or control"),
    ({"policy_file": Path("/etc/opsctl/crm\t.yaml")}, "newline or control"),
    ({"policy_file": Path("/etc/opsctl/crm\x7f.yaml")}, "newline or control"),
    ({"read_write_paths": (Path("/srv/a\rb"),)}, "newline or control"),
    ({"optional_paths": (Path("/mnt/nas\n"),)}, "newline or control"),
    ({"opsctl": ("/usr/bin/opsctl", "--x\n")}, "newline or control"),
    ({"policy_file": Path(os.fsdecode(b"/etc/\xff.yaml"))}, "not UTF-8"),
    ({"policy_file": Path("crm.yaml")}, "absolute"),
    ({"read_write_paths": (Path("/srv/../etc"),)}, "without '..'"),
    ({"opsctl": ("opsctl",)}, "absolute"),
    ({"opsctl": ('/opt/"x"/opsctl',)}, "quote or a backslash"),
    ({"opsctl": ("/opt/x\\y/opsctl",)}, "quote or a backslash"),
    ({"opsctl": ()}, "no command"),
    ({"policy": "crm eu"}, "policy name"),
    ({"policy": ""}, "policy name"),
    ({"policy": "x" * 250}, "longer than"),
    ({"jobs": (JobUnit("back up", "hourly", 0),)}, "job name"),
    ({"jobs": (JobUnit("backup", "hourly\nExecStartPre=/bin/evil", 0),)}, "newline or control"),
    ({"jobs": (JobUnit("backup", "hourly", -1),)}, "negative"),
    ({"jobs": (JobUnit("backup", "hourly", 0), JobUnit("backup", "daily", 0))}, "twice: backup"),
])
def test_what_a_unit_file_cannot_carry_is_refused(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        render(make_spec(tmp_path, **change))


def test_the_same_spec_gives_the_same_bytes(tmp_path):
    first = render(make_spec(tmp_path, policy_file=tmp_path / ODD))
    again = render(make_spec(tmp_path, policy_file=tmp_path / ODD))
    assert list(first.items()) == list(again.items())
    assert list(first) == sorted(first)


def test_is_ours_knows_only_this_policys_files(tmp_path):
    crm = render(make_spec(tmp_path))["opsctl-crm-backup.service"]
    crm_eu = render(make_spec(tmp_path, policy="crm-eu"))["opsctl-crm-eu-backup.service"]
    assert is_ours(crm, "crm") and is_ours(crm_eu, "crm-eu")
    assert not is_ours(crm_eu, "crm"), "opsctl-crm-eu-* starts with opsctl-crm- but is another policy's"
    assert not is_ours(crm, "crm-eu") and not is_ours(crm, "cr")
    hand_written = "[Unit]\nDescription=opsctl backup of policy crm\n[Service]\nExecStart=/bin/true\n"
    assert not is_ours(hand_written, "crm")
    assert not is_ours(f"# my own unit\n{crm}", "crm"), "the marker counts on the first line only"
    assert not is_ours("", "crm")


# -- systemd-analyze verify ----------------------------------------------------------------------------------------


@pytest.fixture
def analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing: CI checks the units with it (Debian package systemd)")
        pytest.skip("systemd-analyze is not installed")
    return path


@dataclasses.dataclass(frozen=True)
class Verified:
    output: str  # what verify says at its normal level: warnings and errors
    dump: str  # at debug level, stdout: the units it loaded, as it parsed them
    log: str  # at debug level, stderr: among others, the units it could not load


def verify(analyze: str, spec: UnitSpec, folder: Path) -> Verified:
    """Write the units into `folder` and verify them all together, as systemd would load them from there.

    verify puts the folders of the files it is given first in the unit search path, so the timer's Unit=
    and OnFailure='s template instance resolve to these files. A user manager needs $XDG_RUNTIME_DIR.
    """
    folder.mkdir()
    for name, text in render(spec).items():
        (folder / name).write_text(text, encoding="utf-8")
    runtime = folder.parent / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "XDG_CONFIG_HOME": str(folder.parent / "config")}
    argv = [analyze, *(["--user"] if spec.user else []), "verify", *sorted(str(path) for path in folder.iterdir())]
    plain = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    debug = subprocess.run(argv, capture_output=True, text=True, env={**env, "SYSTEMD_LOG_LEVEL": "debug"},
                           timeout=60, check=False)
    assert debug.returncode == 0, debug.stderr[-3000:]
    return Verified(plain.stdout + plain.stderr, debug.stdout, debug.stderr)


def unloaded(verified: Verified, policy: str) -> list[str]:
    """Units of this policy that verify looked for and did not find (at its normal level it says nothing)."""
    pattern = rf"^({re.escape(unit_prefix(policy))}\S*): Failed to load configuration"
    return re.findall(pattern, verified.log, re.MULTILINE)


def shell_words(line: str) -> list[str]:
    """Split a "Command Line" of the dump as sh would: bare words, and double-quoted ones with escapes."""
    token = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|([^\s"\\]+))(?=\s|$)')
    words, at = [], 0
    while at < len(line):
        match = token.match(line, at)
        assert match, f"not quoted as systemd quotes: {line[at:]}"
        words.append(re.sub(r"\\(.)", r"\1", match[1]) if match[1] is not None else match[2])
        at = match.end()
    return words


def dumped(verified: Verified, unit: str, field: str) -> list[str]:
    """One field of one unit in verify's debug dump ("Command Line" is shell-quoted there)."""
    block = verified.dump.split(f"-> Unit {unit}:\n", 1)[1].split("-> Unit ", 1)[0]
    return re.findall(rf"^\s+{field}: (.*)$", block, re.MULTILINE)


@pytest.mark.parametrize("user", [False, True])
def test_systemd_accepts_every_unit_without_a_warning(tmp_path, analyze, user):
    spec = make_spec(tmp_path, user=user)
    verified = verify(analyze, spec, tmp_path / "units")
    assert unit_prefix("crm") not in verified.output and str(tmp_path) not in verified.output, verified.output
    assert unloaded(verified, "crm") == []
    assert dumped(verified, "opsctl-crm-backup.timer", "Triggers") == ["opsctl-crm-backup.service (origin-file)"]
    assert dumped(verified, "opsctl-crm-backup.service", "OnFailure") == [
        "opsctl-crm-failed@backup.service (origin-file)"]


@pytest.mark.parametrize("user", [False, True])
def test_systemd_parses_odd_paths_into_exactly_opsctls_arguments(tmp_path, analyze, user):
    odd = tmp_path / ODD
    odd.parent.mkdir()
    program = tmp_path / "ve nv $X 5%" / "python"  # systemd checks the program: it must be there
    program.parent.mkdir()
    program.symlink_to(sys.executable)
    spec = make_spec(tmp_path, user=user, policy_file=odd, opsctl=(str(program), "-m", "opsctl"),
                     read_write_paths=(odd.parent,), optional_paths=(odd,))
    verified = verify(analyze, spec, tmp_path / "units")
    assert unit_prefix("crm") not in verified.output, verified.output
    opsctl = [str(program), "-m", "opsctl", "--policy", str(odd)]
    (job,) = dumped(verified, "opsctl-crm-backup.service", "Command Line")
    assert shell_words(job) == [*opsctl, "schedule", "job", "backup"]
    (failed,) = dumped(verified, "opsctl-crm-failed@i.service", "Command Line")  # verify's own instance: "i"
    assert shell_words(failed) == [*opsctl, "schedule", "failed", "i"]
    if not user:  # the dump joins the paths with spaces
        assert dumped(verified, "opsctl-crm-backup.service", "ReadWritePaths") == [f"{odd.parent} -{odd}"]


def test_systemd_accepts_units_that_run_as_a_user(tmp_path, analyze):
    verified = verify(analyze, make_spec(tmp_path, run_as="daemon"), tmp_path / "units")  # not nobody: systemd warns
    assert unit_prefix("crm") not in verified.output and str(tmp_path) not in verified.output, verified.output
    assert unloaded(verified, "crm") == []


def test_verify_would_notice_a_missing_template_or_service(tmp_path, analyze):
    """The check of the two checks above: plain verify passes either way, the debug log does not."""
    spec = make_spec(tmp_path, jobs=(JobUnit("backup", "hourly", 0),))
    folder = tmp_path / "units"
    verify(analyze, spec, folder)
    (folder / "opsctl-crm-failed@.service").unlink()
    (folder / "opsctl-crm-backup.service").unlink()
    env = {**os.environ, "SYSTEMD_LOG_LEVEL": "debug"}
    debug = subprocess.run([analyze, "verify", str(folder / "opsctl-crm-backup.timer")], capture_output=True,
                           text=True, env=env, timeout=60, check=False)
    assert debug.returncode == 0
    assert unloaded(Verified("", debug.stdout, debug.stderr), "crm") == ["opsctl-crm-backup.service"]


# -- systemctl -------------------------------------------------------------------------------------------------------


WAITING = """NextElapseUSecRealtime=Mon 2026-11-30 19:00:00 UTC
LastTriggerUSec=Sun 2026-11-29 19:00:04 UTC
ActiveState=active
UnitFileState=enabled
"""
NEVER_FIRED = """NextElapseUSecRealtime=Tue 2026-12-01 03:34:12 UTC
LastTriggerUSec=n/a
ActiveState=active
UnitFileState=enabled
"""
BY_HAND = """UnitFileState=disabled
ActiveState=active
NextElapseUSecRealtime=Mon 2026-11-30 19:00:00.250000 UTC
LastTriggerUSec=n/a
"""


@pytest.mark.parametrize(("text", "expected"), [
    (WAITING, TimerState(True, True, datetime(2026, 11, 30, 19, tzinfo=UTC),
                         datetime(2026, 11, 29, 19, 0, 4, tzinfo=UTC))),
    # enabled, never fired yet: systemd 252 says n/a
    (NEVER_FIRED, TimerState(True, True, datetime(2026, 12, 1, 3, 34, 12, tzinfo=UTC), None)),
    # stopped and disabled; other versions (and --value) print "" or 0 for no time
    ("NextElapseUSecRealtime=\nLastTriggerUSec=0\nActiveState=inactive\nUnitFileState=disabled\n",
     TimerState(False, False, None, None)),
    # started by hand, not enabled; microseconds (--timestamp=us)
    (BY_HAND, TimerState(False, True, datetime(2026, 11, 30, 19, 0, 0, 250000, tzinfo=UTC), None)),
    ("ActiveState=failed\nUnitFileState=enabled-runtime\n", TimerState(True, False, None, None)),
    # a unit that is not there: no timer properties at all
    ("ActiveState=inactive\nUnitFileState=\n", TimerState(False, False, None, None)),
])
def test_parse_show(text, expected):
    assert parse_show(text) == expected


def test_parse_show_refuses_a_time_it_cannot_place():
    with pytest.raises(ValueError, match="UTC"):
        parse_show(WAITING.replace("UTC", "CET", 1))


@pytest.fixture
def fake_systemctl(tmp_path, monkeypatch):
    """A systemctl on PATH that records its argv and TZ and prints `output` (exit status in `rc`)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "systemctl"
    script.write_text(f"#!{sys.executable}\n"
                      "import os, pathlib, sys\n"
                      "here = pathlib.Path(__file__).parent\n"
                      "(here / 'argv').write_text('\\n'.join(sys.argv[1:]))\n"
                      "(here / 'tz').write_text(os.environ.get('TZ', ''))\n"
                      "sys.stdout.write((here / 'output').read_text())\n"
                      "sys.exit(int((here / 'rc').read_text()))\n")
    script.chmod(0o755)
    (folder / "output").write_text(WAITING)
    (folder / "rc").write_text("0")
    monkeypatch.setenv("PATH", str(folder))
    monkeypatch.setattr(systemd, "systemd_is_running", lambda: True)
    return folder


@pytest.mark.parametrize("user", [False, True])
def test_timer_state_asks_systemctl_for_utc_times(fake_systemctl, user):
    state = timer_state("opsctl-crm-backup.timer", user)
    assert state == parse_show(WAITING)
    assert (fake_systemctl / "argv").read_text().split("\n") == [
        *(["--user"] if user else []), "show", "-p", "UnitFileState,ActiveState,NextElapseUSecRealtime,LastTriggerUSec",
        "--", "opsctl-crm-backup.timer"]
    assert (fake_systemctl / "tz").read_text() == "UTC0"


def test_timer_state_is_none_when_systemctl_cannot_tell(fake_systemctl, monkeypatch):
    (fake_systemctl / "rc").write_text("1")  # "Failed to connect to bus" and the like
    assert timer_state("opsctl-crm-backup.timer", user=True) is None
    (fake_systemctl / "rc").write_text("0")
    (fake_systemctl / "output").write_text(WAITING.replace("UTC", "CET"))
    assert timer_state("opsctl-crm-backup.timer", user=False) is None
    monkeypatch.setenv("PATH", str(fake_systemctl / "nothing-here"))
    assert timer_state("opsctl-crm-backup.timer", user=False) is None
    monkeypatch.setattr(systemd, "systemd_is_running", lambda: False)
    monkeypatch.setenv("PATH", str(fake_systemctl))
    assert timer_state("opsctl-crm-backup.timer", user=False) is None


def test_unit_folders(tmp_path, monkeypatch):
    assert unit_folder(user=False) == Path("/etc/systemd/system")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert unit_folder(user=True) == tmp_path / "config" / "systemd" / "user"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/config")  # invalid by the XDG spec: ignored
    assert unit_folder(user=True) == tmp_path / "home" / ".config" / "systemd" / "user"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert unit_folder(user=True) == tmp_path / "home" / ".config" / "systemd" / "user"
