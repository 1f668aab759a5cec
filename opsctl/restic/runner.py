"""The only place that starts restic: argument lists in, typed results or typed errors out."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from contextlib import contextmanager
from functools import cached_property
from typing import Iterable, Iterator

from opsctl.process import StreamTail, die_with_parent, feed, read_chunks, stop, widen_pipe
from opsctl.restic import commands
from opsctl.restic.errors import ResticError, ResticMissing, ResticTooOld, RepositoryNotFound, classify
from opsctl.restic.models import BackupSummary, Snapshot, snapshot_from_json
from opsctl.restic.repository import Repository

log = logging.getLogger(__name__)

# Variables that would make restic open another repository or read another password.
_FOREIGN_ENV = ("RESTIC_REPOSITORY", "RESTIC_REPOSITORY_FILE", "RESTIC_PASSWORD", "RESTIC_PASSWORD_FILE",
                "RESTIC_PASSWORD_COMMAND", "RESTIC_FROM_PASSWORD", "RESTIC_FROM_PASSWORD_FILE")
_MAX_PASSWORD = 32 * 1024  # must fit a pipe buffer: it is written before restic starts reading


class Restic:
    """Runs restic for one operator command. Password by pipe, never argv or environment."""

    def __init__(self, binary: str = "restic") -> None:
        self.binary = binary

    @cached_property
    def version(self) -> str:
        """restic's version, checked once: a missing or too old restic is a clear error."""
        try:
            out = subprocess.run([self.binary, "version"], capture_output=True, text=True, timeout=30).stdout
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

    def snapshots(self, repo: Repository, tags: Iterable[str] = ()) -> list[Snapshot]:
        """Snapshots carrying all the given tags, oldest first."""
        out = self._run(repo, commands.snapshots_args(tags), "snapshots")
        return sorted((snapshot_from_json(item) for item in json.loads(out or "[]")), key=lambda s: s.time)

    def forget(self, repo: Repository, snapshot_ids: Iterable[str]) -> None:
        self._run(repo, commands.forget_args(snapshot_ids), "forget")

    def backup_stream(self, repo: Repository, chunks: Iterable[bytes], *, filename: str,
                      tags: Iterable[str], compression: str) -> BackupSummary:
        """Back up a stream as one file. If the stream raises, restic is killed so no snapshot is saved."""
        args = commands.backup_stdin_args(filename, tags, compression)
        with self._popen(repo, args, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as proc:
            widen_pipe(proc.stdin)
            out, err = StreamTail(proc.stdout, keep=5), StreamTail(proc.stderr)
            feed(proc, chunks)
            if proc.wait() != 0:
                raise classify(err.text(), repo.display, "backup")
            return _backup_summary(out.text(), repo.display)

    @contextmanager
    def dump(self, repo: Repository, snapshot_id: str, path: str) -> Iterator[Iterator[bytes]]:
        """Stream one file of a snapshot; the iterator raises at the end if restic failed."""
        with self._popen(repo, commands.dump_args(snapshot_id, path), stdout=subprocess.PIPE) as proc:
            widen_pipe(proc.stdout)
            err = StreamTail(proc.stderr)

            def chunks() -> Iterator[bytes]:
                yield from read_chunks(proc.stdout)
                if proc.wait() != 0:
                    raise classify(err.text(), repo.display, "dump")

            try:
                yield chunks()
            finally:
                stop(proc)

    def _run(self, repo: Repository, args: list[str], action: str) -> str:
        with self._popen(repo, args, stdout=subprocess.PIPE) as proc:
            stdout, stderr = proc.communicate()
        if proc.returncode != 0:
            raise classify(stderr.decode("utf-8", "replace"), repo.display, action)
        return stdout.decode("utf-8", "replace")

    @contextmanager
    def _popen(self, repo: Repository, args: list[str], **streams) -> Iterator[subprocess.Popen]:
        _ = self.version
        if len(repo.password) > _MAX_PASSWORD:
            raise ResticError(f"the repository password for {repo.display} is longer than {_MAX_PASSWORD} bytes")
        read_end, write_end = os.pipe()
        try:
            os.write(write_end, repo.password)
        finally:
            os.close(write_end)
        argv = [self.binary, *commands.global_args(repo.location, read_end, repo.options), *args]
        log.debug("running %s", " ".join(argv))
        try:
            proc = subprocess.Popen(argv, pass_fds=(read_end,), env=self._environment(repo),
                                    stderr=subprocess.PIPE, preexec_fn=die_with_parent, **streams)
        finally:
            os.close(read_end)
        with proc:
            try:
                yield proc
            finally:
                stop(proc)

    @staticmethod
    def _environment(repo: Repository) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_ENV}
        env.update(repo.environment)
        return env


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
