"""opsctl schedule install | remove: the policy's jobs as systemd timers, written and undone safely.

install writes a .service and .timer per job (and the OnFailure= template), shows a diff for each
file it changes, never touches a unit it did not write (the marker line), removes its own units of
jobs the policy turned off, and asks systemd to load and start the timers only when systemd runs
this machine; otherwise (a container, --output) it says what to run. A second install with the
same policy changes nothing; --dry-run says the same and writes nothing anywhere: no unit, no state
folder, no audit line, no run record, no lock (it runs outside the usual lifecycle, like an
auditor's command), so `ansible-playbook --check` can run it on a live host.

With `schedule.user`, the system units run each job as that user, whose files the policy names
(secrets owned by that user, its state folder). Root installing them must not open those: the
install then reads the policy alone (a file of root's or the caller's, changeable by nobody else),
writes only the units, and records nothing in that user's audit trail (its lines are that user's).
"""

from __future__ import annotations

import difflib
import os
import pwd
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from rich.markup import escape

from opsctl.actions.context import App, Session
from opsctl.actions.outcome import AuditFacts, Outcome
from opsctl.actions.runner import Command
from opsctl.durable import replace_synced
from opsctl.errors import BadInput, OpsctlError
from opsctl.policy import trust
from opsctl.policy.load import load_owned_policy
from opsctl.policy.model import LocalTargetConfig, MountTargetConfig, Policy, SQLiteConfig, default_state_dir
from opsctl.schedule import systemd, units

HOME_FOLDERS = (Path("/home"), Path("/root"), Path("/run/user"))
TMP_FOLDERS = (Path("/tmp"), Path("/var/tmp"))  # noqa: S108 - names of the folders PrivateTmp= hides, not used


@dataclass(frozen=True)
class InstallRequest:
    user: bool = False
    output: Path | None = None
    remove: bool = False
    dry_run: bool = False  # say what would change; write nothing, start nothing


@dataclass(frozen=True)
class UnitChange:
    name: str
    change: str  # "new", "changed", "unchanged", "removed"
    diff: str = ""


@dataclass(frozen=True)
class Installed(Outcome):
    folder: str
    changes: tuple[UnitChange, ...]
    activated: bool
    next_steps: tuple[str, ...]
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"folder": self.folder, "activated": self.activated, "dry_run": self.dry_run,
                "changed": self.changed, "next_steps": list(self.next_steps),
                "units": [{"name": c.name, "change": c.change, "diff": c.diff} for c in self.changes]}

    @property
    def changed(self) -> bool:
        """Whether a unit file was (with --dry-run: would be) written or removed."""
        return any(c.change != "unchanged" for c in self.changes)

    def show(self, app: App) -> None:
        for c in self.changes:
            app.out.print(f"{c.change:>9}  {escape(str(Path(self.folder) / c.name))}")
            if c.diff:
                app.out.print(escape(c.diff), highlight=False)
        if not self.changed:
            app.out.print("nothing to change: the units already say what the policy says")
        elif self.dry_run:
            app.out.print("dry run: nothing was written or started; run it without --dry-run to make these changes")
        if self.next_steps:
            app.out.print("next, as root (or with --user as yourself):")
            for step in self.next_steps:
                app.out.print(f"  {escape(step)}")

    def audit(self) -> AuditFacts:
        return AuditFacts(details={"folder": self.folder, "activated": self.activated, "dry_run": self.dry_run,
                                   "units": {c.name: c.change for c in self.changes if c.change != "unchanged"}})


def unit_spec(policy: Policy, policy_file: Path, state_dir: Path, user: bool) -> units.UnitSpec:
    """What the units must say for this policy: how to start opsctl, which paths a job writes, its jobs, and the
    user it runs as (system units only: a user unit runs as its owner)."""
    policy_file, state_dir = policy_file.resolve(), state_dir.absolute()
    writes, optional = writable_paths(policy, state_dir)
    reads = (*policy_paths(policy), policy_file, Path(sys.executable), *writes, *optional)
    jobs = tuple(units.JobUnit(job, when.normalized, int(policy.schedule.randomized_delay.total_seconds()))
                 for job, when in policy.schedule.jobs().items())
    return units.UnitSpec(policy=policy.name, policy_file=policy_file, opsctl=opsctl_argv(), user=user,
                          read_write_paths=writes, optional_paths=optional,
                          protect_home=not any(_under(p, HOME_FOLDERS) for p in reads),
                          private_tmp=not any(_under(p, TMP_FOLDERS) for p in reads), jobs=jobs,
                          run_as=None if user else policy.schedule.user)


def writable_paths(policy: Policy, state_dir: Path) -> tuple[tuple[Path, ...], tuple[Path, ...]]:
    """The folders a job writes: the state folder and an SQLite database's folder (which must exist), and each
    local or mount target (which may be missing when its share is not mounted: the job then says so itself)."""
    writes = [state_dir]
    if isinstance(policy.database, SQLiteConfig):
        writes.append(policy.database.path.parent)
    optional = [t.path for t in policy.targets if isinstance(t, LocalTargetConfig | MountTargetConfig)]
    if policy.metrics.textfile is not None:  # node_exporter's folder; missing, the metrics alone are not written
        optional.append(policy.metrics.textfile.parent)
    return tuple(dict.fromkeys(writes)), tuple(dict.fromkeys(optional))


def policy_paths(value: object) -> list[Path]:
    """Every path the policy names (secrets, keys, CA files, programs), found by walking the model."""
    if isinstance(value, Path):
        return [value]
    if isinstance(value, tuple | list):
        return [p for item in value for p in policy_paths(item)]
    fields = getattr(type(value), "model_fields", None)
    if fields is None:
        return []
    found = [p for name in fields for p in policy_paths(getattr(value, name))]
    programs = getattr(value, "argv", None)
    return found + ([Path(programs[0])] if programs else [])


def _under(path: Path, folders: tuple[Path, ...]) -> bool:
    return any(path == folder or folder in path.parents for folder in folders)


def opsctl_argv() -> tuple[str, ...]:
    """How a unit starts this opsctl: its own command next to this Python, else this Python with -m."""
    beside = Path(sys.executable).parent / "opsctl"
    if beside.is_file() and os.access(beside, os.X_OK):
        return (str(beside),)
    return (sys.executable, "-m", "opsctl")


@dataclass(frozen=True)
class _Scheduled:
    """What the units are made from: the policy, its file, the state folder its jobs write, and whether the
    install is root's for another user's jobs (schedule.user), which must leave that user's files alone."""

    policy: Policy
    policy_file: Path
    state_dir: Path
    for_another_user: bool = False


def _install(session: Session, request: InstallRequest) -> Installed:
    return _installed(_Scheduled(session.policy, session.policy_path, session.state_dir), request)


def _installed(scheduled: _Scheduled, request: InstallRequest) -> Installed:
    if not request.remove:
        _check_run_as(scheduled, request)
    folder = request.output or systemd.unit_folder(request.user)
    wanted = {} if request.remove else _rendered(scheduled, request.user)
    policy_file = scheduled.policy_file.resolve()  # one spelling per file: through a link, or with .., the same
    existing = _our_units(folder, scheduled.policy.name, policy_file)
    _refuse_foreign(folder, wanted, scheduled.policy.name, policy_file)
    changes = [_change(name, existing.get(name), text) for name, text in wanted.items()]
    changes += [UnitChange(name, "removed") for name in existing if name not in wanted]
    return _apply(scheduled, request, folder, wanted, tuple(changes))


def _apply(scheduled: _Scheduled, request: InstallRequest, folder: Path, wanted: dict[str, str],
           changes: tuple[UnitChange, ...]) -> Installed:
    timers = [n for n in wanted if n.endswith(".timer")]
    gone = [c.name for c in changes if c.change == "removed"]
    changed = any(c.change != "unchanged" for c in changes)
    if request.dry_run:
        return Installed(str(folder), changes, False, (), dry_run=True)
    if request.output is None and changed:
        _stop(gone, request.user)
    try:
        _write(folder, wanted, changes)
    except OSError as exc:
        raise BadInput(f"cannot write the units into {folder} ({exc.strerror})",
                       "run it as root, or add --user for your own systemd, or --output DIR for a folder of your "
                       "choice") from None
    if not request.remove and not scheduled.for_another_user:  # that user's folder is checked, never made by root
        scheduled.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # ReadWritePaths= needs it to exist
    if request.output is not None or not systemd.systemd_is_running():
        return Installed(str(folder), changes, False, _steps(request, timers, gone, changed))
    if changed:
        _systemctl(request.user, "daemon-reload")
    idle = [t for t in timers if not _enabled(t, request.user)]
    if idle:
        _systemctl(request.user, "enable", "--now", *idle)
    return Installed(str(folder), changes, True, ())


def _rendered(scheduled: _Scheduled, user: bool) -> dict[str, str]:
    try:
        return units.render(unit_spec(scheduled.policy, scheduled.policy_file, scheduled.state_dir, user))
    except ValueError as exc:  # a path a unit file cannot carry (a newline in it)
        raise BadInput(f"the policy cannot be written as systemd units: {exc}",
                       "rename the file or folder named above, or use opsctl schedule run instead") from None


def _check_run_as(scheduled: _Scheduled, request: InstallRequest) -> None:
    """schedule.user: system units only, a user this machine has, and (installing for them) their state folder."""
    name = scheduled.policy.schedule.user
    if name is None:
        return
    if request.user:
        raise BadInput(f"schedule.user ({name}) is for system units: a --user unit runs as the user whose systemd "
                       "runs it", "leave out --user (as root), or remove schedule.user from the policy")
    account = _account(name)
    if account is None:
        raise BadInput(f"schedule.user ({name}): there is no user {name} on this machine, so systemd could not start "
                       "the jobs", f"create it first (e.g. useradd --system --shell /usr/sbin/nologin {name}), or "
                       "change schedule.user")
    if scheduled.for_another_user:  # a dry run too: it must refuse what the install would refuse
        _check_their_state_dir(scheduled.state_dir, account)


def _account(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _check_their_state_dir(state_dir: Path, account: pwd.struct_passwd) -> None:
    """The jobs' user keeps its records there (ReadWritePaths= needs it to exist): made by that user, not by root."""
    try:
        owner = state_dir.stat().st_uid
    except FileNotFoundError:
        raise BadInput(f"the state_dir {state_dir} of schedule.user ({account.pw_name}) does not exist yet; the units "
                       "need it (ReadWritePaths=)", f"as {account.pw_name}, run opsctl init first (sudo -u "
                       f"{account.pw_name} opsctl --policy FILE init), or: install -d -m 700 -o {account.pw_name} "
                       f"{state_dir}") from None
    except OSError as exc:
        raise BadInput(f"the state_dir {state_dir} cannot be read ({exc.strerror})", "check its folders") from None
    if owner != account.pw_uid:
        raise BadInput(f"the state_dir {state_dir} is not owned by schedule.user ({account.pw_name}), who runs the "
                       "jobs: they would refuse it", f"chown -R {account.pw_name}: {state_dir}")


def install_command(app: App, remove: bool = False, dry_run: bool = False) -> Command[InstallRequest]:
    """schedule install (or remove); for root installing the units of jobs that run as another user (the policy's
    schedule.user), the form that reads the policy alone: that user's secrets are theirs, and root opening them
    would be refused (a secret must be its reader's own). A dry run is standalone on every path: it records
    nothing, so it changes nothing on the host (not even the state folder the usual lifecycle would make)."""
    usual = SCHEDULE_REMOVE if remove else SCHEDULE_INSTALL
    scheduled = _for_another_user(app)
    if scheduled is not None:
        return Command(usual.name, usual.body, standalone=partial(_installed, scheduled))
    if dry_run:
        return Command(usual.name, usual.body, standalone=partial(_planned, app))
    return usual


def _planned(app: App, request: InstallRequest) -> Installed:
    """The usual install's plan: the policy loaded and its state folder checked as the install would (the same
    refusals), the units compared, and nothing written. A state folder not made yet is fine: the install makes it."""
    path = app.resolve_policy_path()
    policy = load_owned_policy(path, check_state_dir=False).policy
    state_dir = policy.state_dir or default_state_dir(policy.name)
    trust.check_state_dir(state_dir)
    return _installed(_Scheduled(policy, path, state_dir), request)


def _for_another_user(app: App) -> _Scheduled | None:
    """The policy when its schedule.user is not the caller; None for the usual install, which then loads the policy
    as every command does (and says what is wrong with it, if anything is)."""
    try:
        path = app.resolve_policy_path()
        if trust.is_callers_own(path):  # a pipe: the units could not name it anyway; the usual path says so
            return None
        loaded = load_owned_policy(path, check_state_dir=False, read_only=True)
    except OpsctlError:
        return None
    name = loaded.policy.schedule.user
    account = None if name is None else _account(name)
    if name is None or (account is not None and account.pw_uid == os.geteuid()):
        return None
    if loaded.owner not in (0, os.geteuid()):  # read_only accepted another's file: units must run root's or yours
        return None  # the usual load refuses it, with the chown that fixes it
    state_dir = loaded.policy.state_dir or _default_state_dir(account, loaded.policy.name)
    return _Scheduled(loaded.policy, path, state_dir, for_another_user=True)


def _default_state_dir(account: pwd.struct_passwd | None, policy: str) -> Path:
    """Where the jobs' user keeps the state by default (as opsctl run by them finds it: their ~/.local/state)."""
    if account is None:  # no such user: the install refuses it before this path is used
        return Path("/nonexistent") / policy
    if account.pw_uid == 0:
        return Path("/var/lib/opsctl") / policy
    return Path(account.pw_dir) / ".local" / "state" / "opsctl" / policy


def _our_units(folder: Path, policy: str, policy_file: Path) -> dict[str, str]:
    """The units that opsctl wrote in the folder for this policy file (never a link: not opsctl's)."""
    found: dict[str, str] = {}
    for path in sorted(folder.glob(f"{units.unit_prefix(policy)}*")) if folder.is_dir() else []:
        text = None if path.is_symlink() else _read(path)
        if text is not None and units.is_ours(text, policy, policy_file):
            found[path.name] = text
    return found


def _refuse_foreign(folder: Path, wanted: dict[str, str], policy: str, policy_file: Path) -> None:
    """opsctl never changes a unit it did not write, nor one it wrote for another file of the same name."""
    foreign = [name for name in wanted if (folder / name).is_symlink() or (
        (text := _read(folder / name)) is not None and not units.is_ours(text, policy, policy_file))]
    if foreign:
        raise BadInput(f"{', '.join(foreign)} in {folder} were not written by opsctl for the policy file "
                       f"{policy_file}; opsctl never changes a unit it did not write",
                       "if they are stale copies, move them away; if another policy file has the same name, "
                       "give one of them another name; then run schedule install again")


def _read(path: Path) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BadInput(f"{path} cannot be read ({exc.strerror})", "check the folder's permissions") from None
    with open(fd, encoding="utf-8", errors="replace") as handle:
        return handle.read()


def _change(name: str, before: str | None, after: str) -> UnitChange:
    if before is None:
        return UnitChange(name, "new")
    if before == after:
        return UnitChange(name, "unchanged")
    diff = "".join(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                        f"{name} (installed)", f"{name} (from the policy)"))
    return UnitChange(name, "changed", diff)


def _write(folder: Path, wanted: dict[str, str], changes: tuple[UnitChange, ...]) -> None:
    folder.mkdir(parents=True, exist_ok=True, mode=0o755)
    for c in changes:
        if c.change == "removed":
            (folder / c.name).unlink(missing_ok=True)
        elif c.change != "unchanged":
            replace_synced(folder / c.name, wanted[c.name].encode(), mode=0o644)


def _stop(timers: list[str], user: bool) -> None:
    stopping = [t for t in timers if t.endswith(".timer")]
    if stopping and systemd.systemd_is_running():
        _systemctl(user, "disable", "--now", *stopping)


def _enabled(timer: str, user: bool) -> bool:
    state = systemd.timer_state(timer, user)
    return state is not None and state.enabled and state.active


def _systemctl(user: bool, *args: str) -> None:
    done = systemd.systemctl(user, *args)
    if done.returncode != 0:
        raise OpsctlError(f"systemctl {' '.join(args)} failed: {done.stderr.strip()[:300]}",
                          "the unit files are in place; fix what systemctl says, then run schedule install again")


def _steps(request: InstallRequest, timers: list[str], gone: list[str], changed: bool) -> tuple[str, ...]:
    ctl = "systemctl --user" if request.user else "systemctl"
    steps = []
    if request.output is not None and not request.remove:
        steps.append(f"copy the files to {systemd.unit_folder(request.user)}")
    if changed or request.output is not None:
        steps.append(f"{ctl} daemon-reload")
    gone_timers = [t for t in gone if t.endswith(".timer")]
    if gone_timers:
        steps.insert(0, f"{ctl} disable --now {' '.join(gone_timers)}")
    if timers:
        steps.append(f"{ctl} enable --now {' '.join(timers)}")
    return tuple(steps)


SCHEDULE_INSTALL = Command("schedule install", _install)
SCHEDULE_REMOVE = Command("schedule remove", _install)
