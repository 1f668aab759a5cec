"""The systemd units of a policy's schedule: a .service and a .timer per job, and one failure template.

Rendering is pure and deterministic (the same spec gives the same bytes), so a second install is a no-op.
Every value is written by systemd's own rules (systemd.syntax(7) "Quoting", systemd.service(5) "Command
lines", systemd.unit(5) "Specifiers"): whatever a path holds reaches opsctl as the same single argument, or
the path is refused with ValueError when a unit file cannot carry it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

MARKER = "# opsctl-managed"

# Safe in unit names (systemd.unit(5)) and in a command line without quotes.
_NAME = re.compile(r"[A-Za-z0-9._-]+")
# A word of these characters is written as it is; any other is quoted (and '%' doubled).
_BARE = re.compile(r"[A-Za-z0-9_./:=+,@-]+")
_UNIT_NAME_MAX = 255
# A user name as the policy's schedule.user takes it (Debian's adduser default): safe in User= and in a path.
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")

# Cheap, and safe for pg_dump, mariadb-dump, restic, ssh and Python. Left out on purpose: PrivateNetwork= and
# RestrictAddressFamilies= (the tools reach databases and targets over the network, local ones over AF_UNIX)
# and MemoryDenyWriteExecute= (it breaks code made at run time: libffi's ctypes callbacks, JITs).
# These are seccomp filters and prctl()s, which a user manager applies too (it implies NoNewPrivileges=).
_FILTERS = ("NoNewPrivileges=yes", "RestrictSUIDSGID=yes", "LockPersonality=yes", "RestrictRealtime=yes",
            "SystemCallArchitectures=native")
# Mount namespaces: for system units only (see _sandbox).
_NAMESPACES = ("PrivateTmp=yes", "ProtectKernelTunables=yes", "ProtectKernelModules=yes", "ProtectControlGroups=yes")
_NO_MOUNTS = ("# No ProtectSystem= and other mounts: in a user unit they need a user namespace, where root's files "
              "look owned by nobody, and opsctl and ssh refuse those")


@dataclass(frozen=True)
class JobUnit:
    """One scheduled job of a policy and when it runs."""

    job: str  # backup, prune, check, verify, drill
    calendar: str  # an OnCalendar= expression, already validated: "hourly", "*-*-* 03:30:00"
    randomized_delay_s: int  # RandomizedDelaySec=


@dataclass(frozen=True)
class UnitSpec:
    """Everything the units of one policy say; `render` writes it, nothing else decides."""

    policy: str  # the policy's name: letters, digits, '.', '_', '-' (safe in unit names)
    policy_file: Path  # absolute
    opsctl: tuple[str, ...]  # how to start opsctl: ("/usr/local/bin/opsctl",), (".../python", "-m", "opsctl")
    user: bool  # a --user unit
    read_write_paths: tuple[Path, ...]  # must exist when the job starts
    optional_paths: tuple[Path, ...]  # may be missing at start (a NAS mount)
    protect_home: bool  # False when a policy path is under /home, /root or /run/user
    jobs: tuple[JobUnit, ...]
    private_tmp: bool = True  # False when a policy path is under /tmp or /var/tmp (a private /tmp would hide it)
    run_as: str | None = None  # User= of system units (the policy's schedule.user); None: root


def unit_prefix(policy: str) -> str:
    """What every unit name of this policy starts with (another policy's may too: check with is_ours)."""
    return f"opsctl-{policy}-"


def render(spec: UnitSpec) -> dict[str, str]:
    """Every unit file of the policy's schedule, file name -> content, sorted by name."""
    _check_spec(spec)
    files = {_failed_template(spec.policy): _failure_service(spec)}
    for job in spec.jobs:
        files[_service(spec.policy, job.job)] = _job_service(spec, job)
        files[timer_name(spec.policy, job.job)] = _job_timer(spec, job)
    return dict(sorted(files.items()))


def is_ours(text: str, policy: str, policy_file: Path | None = None) -> bool:
    """The file carries opsctl's marker for this policy (and, when given, this policy file): not another
    policy's, not a hand-written unit."""
    first_line = text.partition("\n")[0]
    if policy_file is not None:
        return first_line.startswith(f"{MARKER}: policy {policy} ({policy_file}); ")
    return first_line.startswith(f"{MARKER}: policy {policy} (")


def _service(policy: str, job: str) -> str:
    return f"{unit_prefix(policy)}{job}.service"


def timer_name(policy: str, job: str) -> str:
    """The file (and unit) name of a job's timer."""
    return f"{unit_prefix(policy)}{job}.timer"


def _failed_template(policy: str, instance: str = "") -> str:
    return f"{unit_prefix(policy)}failed@{instance}.service"


def _job_service(spec: UnitSpec, job: JobUnit) -> str:
    return _file(spec, [
        "[Unit]",
        f"Description=opsctl {job.job} of policy {spec.policy}",
        *_network(spec),
        f"OnFailure={_failed_template(spec.policy, job.job)}",
        "",
        "[Service]",
        "Type=oneshot",
        *_run_as(spec),
        *_exec_start(spec, f"schedule job {job.job}"),
        # 75: skipped, the run before it still held the policy; opsctl has recorded and notified that itself.
        "SuccessExitStatus=75",
        *_service_settings(spec),
    ])


def _failure_service(spec: UnitSpec) -> str:
    # No OnFailure= here: a failing report must not start another report.
    return _file(spec, [
        "[Unit]",
        f"Description=opsctl report of a failed %i of policy {spec.policy}",
        *_network(spec),
        "",
        "[Service]",
        "Type=oneshot",
        *_run_as(spec),
        *_exec_start(spec, "schedule failed %i"),
        # Every folder may be missing here: the job may have failed because one was, and the report must start.
        *_service_settings(spec, all_optional=True),
    ])


def _job_timer(spec: UnitSpec, job: JobUnit) -> str:
    return _file(spec, [
        "[Unit]",
        f"Description=Timer of opsctl {job.job} of policy {spec.policy}",
        "",
        "[Timer]",
        f"OnCalendar={job.calendar.replace('%', '%%')}",
        "Persistent=true",
        f"RandomizedDelaySec={job.randomized_delay_s}",
        "AccuracySec=1min",
        f"Unit={_service(spec.policy, job.job)}",
        "",
        "[Install]",
        "WantedBy=timers.target",
    ])


def _file(spec: UnitSpec, lines: list[str]) -> str:
    header = (f"{MARKER}: policy {spec.policy} ({spec.policy_file}); written by opsctl schedule install, "
              "which replaces it: edit the policy, not this file")
    return "\n".join([header, "", *lines]) + "\n"


def _network(spec: UnitSpec) -> list[str]:
    # A user manager sees no system units: there network-online.target is only "not found".
    return [] if spec.user else ["Wants=network-online.target", "After=network-online.target"]


def _service_settings(spec: UnitSpec, *, all_optional: bool = False) -> list[str]:
    return [
        "Nice=10",
        "IOSchedulingClass=idle",
        "UMask=0077",
        # SIGTERM goes to opsctl alone: it stops its children and drops its scratch copies itself;
        # whatever is left after TimeoutStopSec is killed.
        "KillMode=mixed",
        "TimeoutStopSec=120",
        # restic keeps its cache there: kept between runs, and writable under ProtectSystem=strict.
        *_cache(spec),
        *_sandbox(spec, all_optional=all_optional),
    ]


def _run_as(spec: UnitSpec) -> list[str]:
    # systemd gives the process that user's primary group and its other groups (initgroups), and HOME.
    return [] if spec.run_as is None else [f"User={spec.run_as}"]


def _cache(spec: UnitSpec) -> list[str]:
    """systemd makes the cache folder and gives it to User=, taking it from whoever had it: a job of another user
    (or root's) gets a folder of its own, private to it, so no policy's restic cache moves to another user."""
    if spec.run_as is None:
        return ["CacheDirectory=opsctl", "Environment=XDG_CACHE_HOME=%C/opsctl"]
    folder = f"opsctl/user-{spec.run_as}"
    return [f"CacheDirectory={folder}", "CacheDirectoryMode=0700", f"Environment=XDG_CACHE_HOME=%C/{folder}"]


def _sandbox(spec: UnitSpec, *, all_optional: bool = False) -> list[str]:
    if spec.user:
        # A user manager cannot mount. systemd 252 skips ProtectSystem=, ReadWritePaths=, PrivateTmp=,
        # ProtectHome= and the Protect{Kernel*,ControlGroups}= mounts in user units; from 253 on they turn
        # on PrivateUsers=, where root's files and folders look owned by "nobody", so opsctl's trust check
        # refuses the policy (/ and /etc are "another user's") and ssh refuses its config. Both are worse
        # than no mounts: user units keep the filters only.
        return [_NO_MOUNTS, *_FILTERS]
    required = () if all_optional else spec.read_write_paths
    optional = (*spec.read_write_paths, *spec.optional_paths) if all_optional else spec.optional_paths
    paths = [f"ReadWritePaths={_word(str(path))}" for path in required]
    # '-': a folder missing at start (a NAS not mounted) is skipped, not a failed start.
    paths += [f"ReadWritePaths={_word(f'-{path}')}" for path in optional]
    home = ["ProtectHome=yes"] if spec.protect_home else []
    namespaces = [n for n in _NAMESPACES if spec.private_tmp or n != "PrivateTmp=yes"]
    return ["ProtectSystem=strict", *paths, *namespaces, *home, *_FILTERS]


def _exec_start(spec: UnitSpec, subcommand: str) -> list[str]:
    """ExecStart=: opsctl's argv, `--policy <file>` and the subcommand (already in unit file syntax)."""
    program, *args = spec.opsctl
    words = [_executable(program), *(_word(arg) for arg in [*args, "--policy", str(spec.policy_file)]), subcommand]
    return ["# ':' = no $VARIABLE expansion: every word reaches opsctl as written here",
            f"ExecStart={' '.join(words)}"]


def _executable(program: str) -> str:
    """The first word. ':' turns $VAR expansion off for the whole line, so '$' needs no escaping anywhere.

    ('$$' would not do: systemd expands variables in argv[0] but not in the path it runs, so a '$' in
    the program's path would be wrong in one of the two.)
    """
    if not program.startswith("/"):
        raise ValueError(f"the opsctl program must be an absolute path, not {program!r}")
    if any(char in program for char in "\"'\\"):  # systemd refuses them in the executable's path
        raise ValueError(f"the opsctl program {program!r} holds a quote or a backslash, which systemd cannot run")
    return _word(f":{program}")


def _word(text: str) -> str:
    """One word of a unit file value: bare when safe, else double-quoted with C escapes and '%' doubled."""
    if _BARE.fullmatch(text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{escaped}"'


def _check_spec(spec: UnitSpec) -> None:
    _check_name(spec.policy, "policy name")
    _check_run_as(spec)
    if not spec.opsctl:
        raise ValueError("no command to start opsctl")
    for arg in spec.opsctl:
        _check_text(arg, "an argument of the opsctl command")
    for path in (spec.policy_file, *spec.read_write_paths, *spec.optional_paths):
        _check_path(path)
    names = [job.job for job in spec.jobs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"scheduled twice: {', '.join(twice)}")
    for job in spec.jobs:
        _check_name(job.job, "job name")
        _check_text(job.calendar, "OnCalendar= expression")
        if job.randomized_delay_s < 0:
            raise ValueError(f"RandomizedDelaySec= of {job.job} is negative: {job.randomized_delay_s}")
        if len(_failed_template(spec.policy, job.job)) > _UNIT_NAME_MAX:
            raise ValueError(f"the unit names of policy {spec.policy} are longer than systemd's {_UNIT_NAME_MAX}")


def _check_run_as(spec: UnitSpec) -> None:
    if spec.run_as is None:
        return
    if spec.user:
        raise ValueError("a user unit runs as the user whose systemd runs it: it cannot name another (User=)")
    if not _USER.fullmatch(spec.run_as):
        raise ValueError(f"the user name {spec.run_as!r} is not one systemd's User= takes as it is")


def _check_name(name: str, what: str) -> None:
    if not _NAME.fullmatch(name):
        raise ValueError(f"{what} {name!r} has other characters than letters, digits, '.', '_' and '-'")


def _check_path(path: Path) -> None:
    text = str(path)
    _check_text(text, "path")
    # systemd refuses paths with '..' in ReadWritePaths= ("not normalized") and needs absolute ones.
    if not path.is_absolute() or ".." in path.parts:
        raise ValueError(f"{text!r} must be an absolute path without '..'")


def _check_text(text: str, what: str) -> None:
    """A newline would end the setting (and start another), and a unit file is UTF-8 text."""
    for char in text:
        category = unicodedata.category(char)
        if category == "Cc":
            raise ValueError(f"the {what} {text!r} holds a newline or control character, which a unit file "
                             "cannot carry")
        if category == "Cs":
            raise ValueError(f"the {what} {text!r} is not UTF-8, which a unit file must be")
