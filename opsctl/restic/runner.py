"""The only place that starts restic: argument lists in, typed results or typed errors out."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from functools import cached_property
from typing import TypeVar

from opsctl.leftovers import memory_folder, scratch_folder
from opsctl.process import (
    StallWatch,
    StreamTail,
    die_with_parent,
    feed,
    piped,
    read_chunks,
    stop,
    tool_environment,
    widen_pipe,
)
from opsctl.restic import commands
from opsctl.restic.errors import (
    RepositoryLocked,
    RepositoryNotFound,
    ResticError,
    ResticMissing,
    ResticTimeout,
    ResticTooOld,
    TargetStalled,
    WrongPassword,
    classify,
)
from opsctl.restic.models import (
    BackupSummary,
    CheckResult,
    ForgetPlan,
    Key,
    Snapshot,
    forget_plan_from_json,
    key_from_json,
    snapshot_from_json,
)
from opsctl.restic.repository import Repository

log = logging.getLogger(__name__)
T = TypeVar("T")

# Variables that would make restic open another repository or read another password.
_FOREIGN_ENV = ("RESTIC_REPOSITORY", "RESTIC_REPOSITORY_FILE", "RESTIC_PASSWORD", "RESTIC_PASSWORD_FILE",
                "RESTIC_PASSWORD_COMMAND", "RESTIC_FROM_PASSWORD", "RESTIC_FROM_PASSWORD_FILE")
_MAX_PASSWORD = 32 * 1024  # must fit a pipe buffer: it is written before restic starts reading


class Restic:
    """Runs restic for one operator command. Password by pipe, never argv or environment."""

    def __init__(self, binary: str = "restic", lock_wait_s: float = 0.0, cache_dir: str | None = None,
                 answer_within_s: float | None = None) -> None:
        self.binary = binary
        self.lock_wait_s = lock_wait_s
        self.cache_dir = cache_dir
        self.answer_within_s = answer_within_s  # a short command that takes longer is stopped (None: no limit)

    def answering_within(self, seconds: float) -> Restic:
        """The same restic, for quick looks: a command that takes longer than `seconds` is stopped, and says so."""
        bounded = Restic(self.binary, 0.0, self.cache_dir, seconds)
        bounded.__dict__["version"] = self.version  # checked once per process is enough
        return bounded

    @cached_property
    def version(self) -> str:
        """restic's version, checked once: a missing or too old restic is a clear error."""
        try:
            out = subprocess.run([self.binary, "version"], capture_output=True, text=True, timeout=30,
                                 env=tool_environment(), check=False).stdout
        except subprocess.TimeoutExpired:
            raise ResticError(f"'{self.binary} version' did not answer within 30 s") from None
        except (FileNotFoundError, PermissionError):
            raise ResticMissing(
                f"restic is not installed (looked for '{self.binary}')", "install it: sudo apt-get install restic"
            ) from None
        found = commands.parse_version(out)
        if found is None or found < commands.MINIMUM_VERSION:
            floor = ".".join(map(str, commands.MINIMUM_VERSION))
            raise ResticTooOld(f"{out.strip() or 'this restic'} is older than restic {floor}",
                               f"install restic {floor} or newer (Debian 12: sudo apt-get install restic)")
        return ".".join(map(str, found))

    def init(self, repo: Repository) -> None:
        self._run(repo, commands.init_args(), "init")

    def exists(self, repo: Repository) -> bool:
        """True when a repository is there and the password opens it; False when there is none."""
        try:
            self._run(repo, commands.cat_config_args(), "cat config")
        except RepositoryNotFound:
            return False
        return True

    def opens(self, repo: Repository) -> bool:
        """True when the password opens the repository, False when restic says it is the wrong one."""
        try:
            self._run(repo, commands.cat_config_args(), "open")
        except WrongPassword:
            return False
        return True

    def keys(self, repo: Repository) -> list[Key]:
        """The repository's keys; the one the password opened is marked current."""
        out = self._run(repo, commands.key_list_args(), "key list")
        return [key_from_json(item) for item in json.loads(out or "[]")]

    def add_key(self, repo: Repository, new_password: bytes) -> None:
        """Add a key for new_password (given by a second pipe); the repository's other keys stay."""
        read_end = _pipe_with(new_password)
        try:
            self._run_once(repo, commands.key_add_args(read_end), "key add", pass_fds=(read_end,))
        finally:
            os.close(read_end)

    def remove_key(self, repo: Repository, key_id: str) -> None:
        self._run(repo, commands.key_remove_args(key_id), "key remove")

    def snapshots(self, repo: Repository, tags: Iterable[str] = ()) -> list[Snapshot]:
        """Snapshots carrying all the given tags, oldest first."""
        out = self._run(repo, commands.snapshots_args(tags), "snapshots")
        return sorted((snapshot_from_json(item) for item in json.loads(out or "[]")), key=lambda s: s.time)

    def file_size(self, repo: Repository, snapshot_id: str, path: str) -> int | None:
        """The size of one file in a snapshot (None when the snapshot has no such file)."""
        return _listing(self._run(repo, commands.ls_args(snapshot_id), "ls"), path)[1]

    def latest_with_size(self, repo: Repository, tags: Iterable[str], path: str) -> tuple[Snapshot | None, int | None]:
        """The newest snapshot carrying all tags and the size of one of its files, in one restic call."""
        return _listing(self._run(repo, commands.ls_args("latest", tags), "ls"), path)

    def forget(self, repo: Repository, snapshot_ids: Iterable[str]) -> None:
        self._run(repo, commands.forget_args(snapshot_ids), "forget")

    def forget_by_policy(self, repo: Repository, tags: Iterable[str], keep: dict[str, int],
                         dry_run: bool) -> list[ForgetPlan]:
        """Apply keep-rules to the snapshots carrying all tags; with dry_run only say what would go."""
        out = self._run(repo, commands.forget_policy_args(tags, keep, dry_run), "forget")
        return [forget_plan_from_json(group) for group in json.loads(_json_part(out) or "[]")]

    def prune(self, repo: Repository) -> str:
        """Remove data no snapshot needs any more; returns restic's report."""
        return self._run(repo, commands.prune_args(), "prune")

    def check(self, repo: Repository, read_data_subset: str | None = None) -> CheckResult:
        """restic check; a damaged repository is a result (ok False), not an exception."""
        return self._waiting_for_lock(repo, lambda: self._check_once(repo, read_data_subset))

    def _check_once(self, repo: Repository, read_data_subset: str | None) -> CheckResult:
        with self._popen(repo, commands.check_args(read_data_subset), stdout=subprocess.PIPE) as proc:
            stdout, stderr = proc.communicate()
        out, err = stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace")
        if proc.returncode != 0:
            error = classify(err, repo.display, "check")
            if type(error) is not ResticError:  # could not check at all (password, lock, network)
                raise error
        return CheckResult(ok=proc.returncode == 0, report=(out + err).strip())

    def unlock_stale(self, repo: Repository) -> None:
        """Remove locks left by runs that are gone; a live run's lock stays."""
        self._run_once(repo, commands.unlock_args(), "unlock")

    def wait_for_lock(self, repo: Repository) -> None:
        """Wait (within lock_wait) until no exclusive lock blocks a new run; stale locks are removed first."""
        self._run(repo, commands.cat_config_args(), "open")

    def backup_stream(self, repo: Repository, chunks: Iterable[bytes], *, filename: str,
                      tags: Iterable[str], compression: str, stall_timeout_s: float | None = None) -> BackupSummary:
        """Back up a stream as one file. If the stream raises or restic stalls, restic is killed: no snapshot."""
        args = commands.backup_stdin_args(filename, tags, compression)
        with self._popen(repo, args, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as proc:
            widen_pipe(proc.stdin)
            out, err = StreamTail(piped(proc.stdout), keep=5), StreamTail(piped(proc.stderr))
            watch = StallWatch(proc, stall_timeout_s)
            try:
                feed(proc, chunks, watch)
                watch.writing()  # restic still uploading its last packs must not hang forever either
                returncode = proc.wait()
            finally:
                watch.close()
            if watch.stalled:
                raise TargetStalled(f"{repo.display} made no progress for {stall_timeout_s:.0f} s and was cut off",
                                    "check the target's network and storage; the other targets were not held up")
            if returncode != 0:
                raise classify(err.text(), repo.display, "backup")
            return _backup_summary(out.text(), repo.display)

    @contextmanager
    def dump(self, repo: Repository, snapshot_id: str, path: str) -> Iterator[Iterator[bytes]]:
        """Stream one file of a snapshot; the iterator raises at the end if restic failed."""
        with self._popen(repo, commands.dump_args(snapshot_id, path), stdout=subprocess.PIPE) as proc:
            widen_pipe(proc.stdout)
            err = StreamTail(piped(proc.stderr))

            def chunks() -> Iterator[bytes]:
                yield from read_chunks(piped(proc.stdout))
                if proc.wait() != 0:
                    raise classify(err.text(), repo.display, "dump")

            try:
                yield chunks()
            finally:
                _stop_gently(proc)  # cut short (a failed staging database, Ctrl-C): no lock left behind

    def _run(self, repo: Repository, args: list[str], action: str) -> str:
        return self._waiting_for_lock(repo, lambda: self._run_once(repo, args, action))

    def _waiting_for_lock(self, repo: Repository, attempt: Callable[[], T]) -> T:
        """Run an attempt; a held lock is waited for (bounded by lock_wait) after removing stale ones."""
        deadline = time.monotonic() + self.lock_wait_s
        delay, unlocked = 1.0, False
        while True:
            try:
                return attempt()
            except RepositoryLocked as exc:
                if not unlocked:
                    self.unlock_stale(repo)
                    unlocked = True
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:  # a last attempt was made at the deadline: the whole lock_wait was waited
                    raise RepositoryLocked(f"{exc.message}; waited {self.lock_wait_s:.0f} s", exc.hint) from None
                log.info("%s; waiting %.0f s", exc.message, min(delay, remaining))
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, 15.0)

    def _run_once(self, repo: Repository, args: list[str], action: str, pass_fds: tuple[int, ...] = ()) -> str:
        with self._popen(repo, args, pass_fds=pass_fds, stdout=subprocess.PIPE) as proc:
            try:
                stdout, stderr = proc.communicate(timeout=self.answer_within_s)
            except subprocess.TimeoutExpired:
                raise ResticTimeout(f"{repo.display} did not answer within {self.answer_within_s:.0f} s ({action})",
                                    "check that the target is up and reachable from this host") from None
        if proc.returncode != 0:
            raise classify(stderr.decode("utf-8", "replace"), repo.display, action)
        return stdout.decode("utf-8", "replace")

    @contextmanager
    def _popen(self, repo: Repository, args: list[str], pass_fds: tuple[int, ...] = (), *,
               stdin: int | None = None, stdout: int | None = None) -> Iterator[subprocess.Popen[bytes]]:
        _ = self.version
        read_end = _pipe_with(repo.password, repo.display)
        argv = [self.binary, *commands.global_args(repo.location, read_end, repo.options, self.cache_dir),
                *(["--cacert", repo.cacert] if repo.cacert else []), *args]
        log.debug("running %s", " ".join(argv))
        with _secret_files(repo.secret_files) as files:
            try:
                proc = subprocess.Popen(argv, pass_fds=(read_end, *pass_fds), env=self._environment(repo, files),
                                        stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
                                        preexec_fn=die_with_parent)  # noqa: PLW1509 - only prctl(PDEATHSIG) + getppid: async-signal-safe
            finally:
                os.close(read_end)
            with proc:
                try:
                    yield proc
                finally:
                    stop(proc)

    @staticmethod
    def _environment(repo: Repository, files: dict[str, str]) -> dict[str, str]:
        dropped = {*_FOREIGN_ENV, *repo.unset_environment}
        env = {k: v for k, v in os.environ.items() if k not in dropped}
        env.update(repo.environment)
        env.update(files)
        return env


def _pipe_with(secret: bytes, display: str = "the repository") -> int:
    """A pipe already holding the secret; the read end is returned for restic to read once."""
    if len(secret) > _MAX_PASSWORD:
        raise ResticError(f"the password for {display} is longer than {_MAX_PASSWORD} bytes")
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, secret)
    finally:
        os.close(write_end)
    return read_end


@contextmanager
def _secret_files(contents: tuple[tuple[str, bytes], ...]) -> Iterator[dict[str, str]]:
    """Private files (mode 600, in memory where /dev/shm exists) that live only as long as one restic run
    (or, after a kill, until the next run sweeps them: see opsctl/leftovers.py).

    restic reads S3 keys from its environment or a credentials file; a file keeps them out of
    /proc/PID/environ. A pipe does not work: restic reads the file more than once.
    """
    if not contents:
        yield {}
        return
    with scratch_folder("secrets", memory_folder()) as folder:
        paths: dict[str, str] = {}
        for index, (variable, content) in enumerate(contents):
            path = str(folder / f"secret-{index}")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
            paths[variable] = path
        yield paths


def _listing(out: str, path: str) -> tuple[Snapshot | None, int | None]:
    """restic ls --json: the snapshot line, then one line per node; the snapshot and the size of `path`."""
    snapshot, size = None, None
    for line in out.splitlines():
        item = json.loads(line) if line.startswith("{") else {}
        if item.get("struct_type") == "snapshot":
            snapshot = snapshot_from_json(item)
        elif item.get("struct_type") == "node" and item.get("path") == path:
            size = int(item.get("size", 0))
    return snapshot, size


def _json_part(out: str) -> str:
    """forget --json prints its JSON on one line; other lines are progress text."""
    return next((line for line in out.splitlines() if line.startswith("[")), "")


def _backup_summary(stdout: str, display: str) -> BackupSummary:
    for line in reversed(stdout.splitlines()):
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            continue
        if message.get("message_type") == "summary":
            return BackupSummary(
                snapshot_id=message["snapshot_id"],
                bytes_processed=int(message.get("total_bytes_processed", 0)),
                bytes_added=int(message.get("data_added", 0)),
                duration_s=float(message.get("total_duration", 0.0)),
            )
    raise ResticError(f"restic backup to {display} finished without a summary; the snapshot may be missing")


def _stop_gently(proc: subprocess.Popen[bytes], grace_s: float = 5) -> None:
    """Stop a restic that holds a repository lock: SIGINT first, so it removes its lock, then kill."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    stop(proc)
