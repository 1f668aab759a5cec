"""What every action starts from: the parsed command line, the loaded policy, and shared services."""

from __future__ import annotations

import fcntl
import logging
import os
import pwd
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import IO, TypeVar

from rich.console import Console

from opsctl.actions.checkpoints import Checkpoints
from opsctl.audit import readers, runs
from opsctl.errors import BadInput, OpsctlError, PolicyBusy, described
from opsctl.leftovers import scratch_folder, sweep_folders
from opsctl.policy import Policy, trust
from opsctl.policy.compliance import Metrics
from opsctl.policy.load import check_target_files, load_owned_policy
from opsctl.policy.model import Target as TargetConfig
from opsctl.policy.model import default_state_dir
from opsctl.policy.notify import Notify
from opsctl.restic import Repository, Restic
from opsctl.secrets import as_text, read_secret, withhold_environment
from opsctl.sources import Source, sources_for
from opsctl.sources.errors import traceback_safe
from opsctl.targets import Access, Target, target_for

log = logging.getLogger(__name__)
T = TypeVar("T")
_UNBOUNDED = 10_000
DEFAULT_POLICY_PATHS = (Path("opsctl.yaml"), Path("/etc/opsctl/policy.yaml"))


@dataclass(frozen=True)
class App:
    """Global options from the command line."""

    policy_path: Path | None
    json_output: bool = False
    verbose: bool = False
    checkpoints: Checkpoints = field(default_factory=Checkpoints)

    @cached_property
    def out(self) -> Console:
        console = Console(highlight=False, soft_wrap=True)
        # A log or a pipe has no width: tables must stay whole there, never cut to 80 columns.
        return console if console.is_terminal else Console(highlight=False, soft_wrap=True, width=_UNBOUNDED)

    @cached_property
    def err(self) -> Console:
        return Console(stderr=True, highlight=False, soft_wrap=True)

    def resolve_policy_path(self) -> Path:
        if self.policy_path is not None:
            return self.policy_path
        found = next((p for p in DEFAULT_POLICY_PATHS if p.exists()), None)
        if found is None:
            raise BadInput("no policy file given", "pass --policy FILE or set OPSCTL_POLICY=FILE")
        return found


@dataclass(frozen=True)
class Attempt:
    """What a command is working on, so a failure can say so in the audit trail."""

    targets: tuple[str, ...] = ()
    snapshot_ids: tuple[str, ...] = ()


class Session:
    """One command's view of the policy; secrets are read at most once, and only when needed."""

    attempt = Attempt()
    server_sources: dict[tuple[object, ...], list[Source]]  # by server choice (actions/servers.py)
    swept: tuple[str, ...] = ()  # what this run removed that killed runs had left behind

    def attempting(self, target: str, snapshot_id: str | None = None) -> None:
        """Note the target (display name) and snapshot being worked on; recorded if the command then fails."""
        self.attempt = Attempt((*self.attempt.targets, target),
                               (*self.attempt.snapshot_ids, *([snapshot_id] if snapshot_id else [])))

    def __init__(self, app: App, access: Access = Access.WRITE) -> None:
        self.app = app
        self.server_sources = {}
        self.access = access  # what the command does to targets' files: it picks an S3 target's keys
        self.policy_path = app.resolve_policy_path()
        # The state folder is checked when the run begins (check_state_dir): a refusal there is still a run of
        # this policy, whose notifications can say so.
        loaded = load_owned_policy(self.policy_path, check_state_dir=False, read_only=access is Access.READ)
        # The owner of the file read (its descriptor's), never of what the path names later: a file swapped or
        # unlinked after the read must not pass for the caller's own policy.
        self.policy: Policy = loaded.policy
        self.policy_owner = loaded.owner
        if self.visiting:
            # Another user's records or policy: what their runs do (metrics, notifications) a reader never does.
            self.policy = self.policy.model_copy(update={"notify": Notify(), "metrics": Metrics()})
        withhold_environment(self._secret_variables())
        self.restic = Restic(os.environ.get("OPSCTL_RESTIC", "restic"),
                             lock_wait_s=self.policy.lock_wait.total_seconds())

    @contextmanager
    def cold_restic_cache(self) -> Iterator[None]:
        """restic starts from an empty cache, as on a new machine, for the rest of this command."""
        with scratch_folder("restic-cache", self.state_dir / "tmp") as folder:
            warm, self.restic = self.restic, Restic(self.restic.binary, self.restic.lock_wait_s, cache_dir=str(folder))
            try:
                yield
            finally:
                self.restic = warm

    @cached_property
    def state_dir(self) -> Path:
        if self.policy.state_dir is not None:
            return self.policy.state_dir
        own = default_state_dir(self.policy.name)
        if self.access is Access.READ and self.policy_owner != os.geteuid() and not _is_own_folder(own):
            return _owners_default_state_dir(self.policy_owner, self.policy.name)  # where the owner's runs keep it
        return own

    @cached_property
    def visiting(self) -> bool:
        """A read-only command on another user's policy or records (an auditor's status --offline): it reads them
        and writes nothing, not even its own run record. Whatever cannot be told to be the caller's is another's."""
        if self.access is not Access.READ:
            return False
        if self.policy_owner not in (os.geteuid(), 0):  # root's policy may be the caller's too (chown root: FILE)
            return True
        try:
            return self.state_dir.stat().st_uid != os.geteuid()
        except FileNotFoundError:  # the caller's own policy, whose first run makes it
            return False
        except OSError:
            return True

    def _secret_variables(self) -> list[str]:
        """The environment variables this policy's passwords come from (restic and the tools must not inherit them)."""
        recovery = self.policy.recovery_server
        sources = (self.policy.repository_password, getattr(self.policy.database, "password", None),
                   recovery.password if recovery is not None else None)
        return [source.env for source in sources if source is not None and source.env]

    def sweep_leftovers(self, databases: list[Source] | None) -> None:
        """Remove what killed runs left behind: scratch folders, and (on the servers given) scratch databases."""
        if self.visiting:
            return  # the owner's runs clean up after themselves
        self.swept += tuple(str(folder) for folder in sweep_folders(self.state_dir))
        if databases is not None:
            self.sweep_databases(databases)

    def sweep_databases(self, sources: list[Source] | None = None) -> None:
        """Drop the scratch and staging databases killed runs left (default: on the policy's own server)."""
        self.swept += tuple(self._swept_databases(self.sources if sources is None else sources))

    def _swept_databases(self, sources: list[Source]) -> list[str]:
        removed: dict[str, None] = {}
        for source in sources:
            try:
                for name in source.scratch_left_behind():
                    if f"database {name}" not in removed:
                        source.discard(name)
                        removed[f"database {name}"] = None
            except OpsctlError as exc:  # the command itself reports a database it cannot reach
                log.debug("no sweep of %s: %s", source.database, exc.message)
        if removed:
            log.warning("removed %d scratch database(s) a killed opsctl run left behind: %s", len(removed),
                        ", ".join(removed))
        return list(removed)

    def read_secrets(self, database: bool = True) -> None:
        """Read the passwords now, so a missing one stops the command (exit 2) before anything starts."""
        _ = self.repository_password
        if database:
            _ = self.sources

    @cached_property
    def repository_password(self) -> bytes:
        return read_secret(self.policy.repository_password, "repository password")

    def repository(self, target: Target) -> Repository:
        return target.repository(self.repository_password)

    def target_configs(self, only: str | None = None) -> list[TargetConfig]:
        """The policy's targets, or the one named; an unknown name lists the known ones."""
        if only is None:
            return list(self.policy.targets)
        config = self.policy.target(only)
        if config is None:
            names = ", ".join(t.name for t in self.policy.targets)
            raise BadInput(f"there is no target named '{only}' in the policy", f"use one of: {names}")
        return [config]

    def target(self, config: TargetConfig) -> Target:
        return target_for(config, self.policy.stall_timeout.total_seconds(), self.access)

    def target_to_read(self, config: TargetConfig) -> Target:
        """The target a reading command logs in to, with the keys the policy names (fleet status). The policy was
        loaded read-only, so none of the files it names was checked: it must be the caller's or root's (it says where
        those keys are sent), and this target's own files are checked now, as any command checks them."""
        if self.policy_owner not in (os.geteuid(), 0):
            raise BadInput(f"the policy file {self.policy_path} is another user's, and this command logs in to "
                           f"target {config.name} with the keys it names", "run it with a policy of your own (or "
                           "root's) that names your own keys for that target")
        check_target_files(self.policy_path, self.policy, config.name)
        return self.target(config)

    def on_each_target(self, target_name: str | None, work: Callable[[TargetConfig], T]) -> list[T]:
        """Run work(config) for every target (or the one named) at once; results in policy order."""
        configs = self.target_configs(target_name)
        with ThreadPoolExecutor(max_workers=max(1, len(configs))) as pool:
            return list(pool.map(work, configs))

    def retention(self, config: TargetConfig) -> dict[str, int]:
        """The keep-rules of one target (its own, or the policy's), as restic option names."""
        rules = config.retention or self.policy.retention
        return {key: value for key, value in rules.model_dump().items() if value is not None}

    def check_state_dir(self) -> None:
        """Refuse (exit 2) a state folder another user could change: opsctl keeps its records and journal there.
        Then a command that writes gives the policy's report_group its read access (a warning when it cannot)."""
        if self.access is Access.READ:
            trust.check_state_dir_to_read(self.state_dir, self.policy_owner)
            if self.visiting:
                self._check_readable()
            return  # who may read the state is for the commands that write it to say, never for a reader
        trust.check_state_dir(self.state_dir)
        warnings = readers.share_state_dir(self.state_dir, self.policy.report_group, self.policy_path)
        for warning in warnings:
            log.warning("%s", warning)

    def _check_readable(self) -> None:
        """Refuse (exit 2), saying how to be let in, a reader who may not read the owner's run record."""
        folder = runs.runs_dir(self.state_dir)
        try:
            os.listdir(folder)
        except FileNotFoundError:
            return  # nothing recorded yet: every rule says so
        except PermissionError:
            raise BadInput(f"the run record {folder} cannot be read by this user",
                           "the policy's owner can let you read it: report_group: GROUP in the policy, you a member "
                           "of that group (log in again after being added)") from None

    @contextmanager
    def exclusive(self, command: str, wait_s: float | None = None) -> Iterator[None]:
        """One opsctl run at a time per policy on this host; a second one waits up to wait_s (default lock_wait)."""
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.state_dir / "run.lock"
        # O_NOFOLLOW: a link planted in the state folder must not make opsctl truncate the file it points to.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        with open(fd, "r+") as handle:
            deadline = time.monotonic() + (self.policy.lock_wait.total_seconds() if wait_s is None else wait_s)
            while not _try_lock(handle):
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "another opsctl run"
                    raise PolicyBusy(f"policy {self.policy.name} is busy: {holder}",
                                   "wait for it to finish, or give it longer with the policy's lock_wait")
                time.sleep(0.5)
            handle.seek(0)
            handle.truncate()
            handle.write(f"opsctl {command} (PID {os.getpid()}) since {time.strftime('%Y-%m-%d %H:%M:%S')}")
            handle.flush()
            yield

    @cached_property
    def sources(self) -> list[Source]:
        database = self.policy.database
        secret = getattr(database, "password", None)
        password = as_text(read_secret(secret, "database password")) if secret is not None else None
        return sources_for(database, password, self.state_dir / "tmp")

    def source(self, name: str | None) -> Source:
        """The source for one database of the policy (the only one when name is None)."""
        return self.pick_source(self.sources, name)

    @staticmethod
    def pick_source(sources: list[Source], name: str | None) -> Source:
        """The source of database `name` among `sources` (the only one when name is None)."""
        if name is None and len(sources) == 1:
            return sources[0]
        names = [s.database for s in sources]
        if name is None:
            raise BadInput("the policy backs up several databases", f"choose one with --database ({', '.join(names)})")
        match = next((s for s in sources if s.database == name), None)
        if match is None:
            raise BadInput(f"the policy has no database named '{name}'", f"use one of: {', '.join(names)}")
        return match

    def snapshot_tags(self, source: Source) -> list[str]:
        return ["opsctl", f"policy={self.policy.name}", f"db={source.database}"]


def as_operator_error(exc: BaseException, where: str) -> OpsctlError:
    """Any failure as an OpsctlError; a library's own exception is named by its class, never its data."""
    if isinstance(exc, OpsctlError):
        return exc
    log.debug("failure on %s", where, exc_info=traceback_safe(exc))
    return OpsctlError(f"{where}: {described(exc)}", "run again with --verbose to see where it happened")


def _is_own_folder(folder: Path) -> bool:
    try:
        return folder.stat().st_uid == os.geteuid()
    except OSError:
        return False


def _owners_default_state_dir(owner: int, policy_name: str) -> Path:
    """The default state_dir of the policy's owner, as default_state_dir gives it when the owner runs opsctl
    (for another user than root, without their XDG_STATE_HOME: the usual ~/.local/state)."""
    if owner == 0:
        return Path("/var/lib/opsctl") / policy_name
    try:
        home = Path(pwd.getpwuid(owner).pw_dir)
    except KeyError:
        return default_state_dir(policy_name)
    return home / ".local" / "state" / "opsctl" / policy_name


def _try_lock(handle: IO[str]) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
