"""opsctl schedule install | remove: the policy's jobs as systemd timers, written and undone safely.

install writes a .service and .timer per job (and the OnFailure= template), shows a diff for each
file it changes, never touches a unit it did not write (the marker line), removes its own units of
jobs the policy turned off, and asks systemd to load and start the timers only when systemd runs
this machine; otherwise (a container, --output) it says what to run. A second install with the
same policy changes nothing.
"""

from __future__ import annotations

import difflib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.markup import escape

from opsctl.actions.context import App, Session
from opsctl.actions.outcome import AuditFacts, Outcome
from opsctl.actions.runner import Command
from opsctl.durable import replace_synced
from opsctl.errors import BadInput, OpsctlError
from opsctl.policy.model import LocalTargetConfig, MountTargetConfig, Policy, SQLiteConfig
from opsctl.schedule import systemd, units

HOME_FOLDERS = (Path("/home"), Path("/root"), Path("/run/user"))
TMP_FOLDERS = (Path("/tmp"), Path("/var/tmp"))  # noqa: S108 - names of the folders PrivateTmp= hides, not used


@dataclass(frozen=True)
class InstallRequest:
    user: bool = False
    output: Path | None = None
    remove: bool = False


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

    def to_json(self) -> dict[str, Any]:
        return {"folder": self.folder, "activated": self.activated, "next_steps": list(self.next_steps),
                "units": [{"name": c.name, "change": c.change, "diff": c.diff} for c in self.changes]}

    def show(self, app: App) -> None:
        for c in self.changes:
            app.out.print(f"{c.change:>9}  {escape(str(Path(self.folder) / c.name))}")
            if c.diff:
                app.out.print(escape(c.diff), highlight=False)
        if not any(c.change != "unchanged" for c in self.changes):
            app.out.print("nothing to change: the units already say what the policy says")
        if self.next_steps:
            app.out.print("next, as root (or with --user as yourself):")
            for step in self.next_steps:
                app.out.print(f"  {escape(step)}")

    def audit(self) -> AuditFacts:
        return AuditFacts(details={"folder": self.folder, "activated": self.activated,
                                   "units": {c.name: c.change for c in self.changes if c.change != "unchanged"}})


def unit_spec(policy: Policy, policy_file: Path, state_dir: Path, user: bool) -> units.UnitSpec:
    """What the units must say for this policy: how to start opsctl, which paths a job writes, its jobs."""
    policy_file, state_dir = policy_file.resolve(), state_dir.absolute()
    writes, optional = writable_paths(policy, state_dir)
    reads = (*policy_paths(policy), policy_file, Path(sys.executable), *writes, *optional)
    jobs = tuple(units.JobUnit(job, when.normalized, int(policy.schedule.randomized_delay.total_seconds()))
                 for job, when in policy.schedule.jobs().items())
    return units.UnitSpec(policy=policy.name, policy_file=policy_file, opsctl=opsctl_argv(), user=user,
                          read_write_paths=writes, optional_paths=optional,
                          protect_home=not any(_under(p, HOME_FOLDERS) for p in reads),
                          private_tmp=not any(_under(p, TMP_FOLDERS) for p in reads), jobs=jobs)


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


def _install(session: Session, request: InstallRequest) -> Installed:
    folder = request.output or systemd.unit_folder(request.user)
    wanted = {} if request.remove else _rendered(session, request.user)
    policy_file = session.policy_path.resolve()  # one spelling per file: through a link, or with .., it is the same
    existing = _our_units(folder, session.policy.name, policy_file)
    _refuse_foreign(folder, wanted, session.policy.name, policy_file)
    changes = [_change(name, existing.get(name), text) for name, text in wanted.items()]
    changes += [UnitChange(name, "removed") for name in existing if name not in wanted]
    return _apply(session, request, folder, wanted, tuple(changes))


def _apply(session: Session, request: InstallRequest, folder: Path, wanted: dict[str, str],
           changes: tuple[UnitChange, ...]) -> Installed:
    timers = [n for n in wanted if n.endswith(".timer")]
    gone = [c.name for c in changes if c.change == "removed"]
    changed = any(c.change != "unchanged" for c in changes)
    if request.output is None and changed:
        _stop(gone, request.user)
    try:
        _write(folder, wanted, changes)
    except OSError as exc:
        raise BadInput(f"cannot write the units into {folder} ({exc.strerror})",
                       "run it as root, or add --user for your own systemd, or --output DIR for a folder of your "
                       "choice") from None
    if not request.remove:
        session.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # ReadWritePaths= needs it to exist
    if request.output is not None or not systemd.systemd_is_running():
        return Installed(str(folder), changes, False, _steps(request, timers, gone, changed))
    if changed:
        _systemctl(request.user, "daemon-reload")
    idle = [t for t in timers if not _enabled(t, request.user)]
    if idle:
        _systemctl(request.user, "enable", "--now", *idle)
    return Installed(str(folder), changes, True, ())


def _rendered(session: Session, user: bool) -> dict[str, str]:
    try:
        return units.render(unit_spec(session.policy, session.policy_path, session.state_dir, user))
    except ValueError as exc:  # a path a unit file cannot carry (a newline in it)
        raise BadInput(f"the policy cannot be written as systemd units: {exc}",
                       "rename the file or folder named above, or use opsctl schedule run instead") from None


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
