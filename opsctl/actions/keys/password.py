"""Where the repository password lives during a rotation: current, staged (new), and the dated old copy.

A file source is rotated by renaming a staged file over it; a command source by its store_command
(the new password on stdin, exit 0 = stored). An environment variable cannot be rewritten by opsctl.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from opsctl.durable import replace_synced, sync_folder
from opsctl.errors import BadInput, OpsctlError
from opsctl.policy.fields import SecretSource, check_private_file
from opsctl.secrets import read_secret, store_secret

PURPOSE = "repository password"
MIN_PASSWORD_LENGTH = 12


def generate() -> bytes:
    """43 URL-safe characters from the OS's CSPRNG (256 bits), newline-terminated like a password file."""
    return (secrets.token_urlsafe(32) + "\n").encode()


def read_new_password_file(path: Path) -> bytes:
    """A password the operator chose, from a private file; refused when empty or unreadable."""
    try:
        check_private_file(path)
        data = path.read_bytes()
    except (ValueError, OSError) as exc:
        raise BadInput(f"--new-password-file cannot be used: {exc}",
                       "give a file with mode 600 holding only the password") from None
    if len(data.strip()) < MIN_PASSWORD_LENGTH:
        raise BadInput(f"the new password in {path} is shorter than {MIN_PASSWORD_LENGTH} characters",
                       "use a long random password, or leave out --new-password-file to have one generated")
    return data


class _StagedSecret:
    """Reads shared by every password store: the current secret, and the staged and old copies if present."""

    source: SecretSource

    @property
    def staged_path(self) -> Path:
        raise NotImplementedError

    @property
    def old_path(self) -> Path:
        raise NotImplementedError

    def current(self) -> bytes:
        return read_secret(self.source, PURPOSE)

    def staged(self) -> bytes | None:
        return _read_if_there(self.staged_path)

    def old(self) -> bytes | None:
        return _read_if_there(self.old_path)


@dataclass(frozen=True)
class FileStore(_StagedSecret):
    """The policy's password file; the staged and old copies sit next to it with its mode."""

    source: SecretSource
    stamp: str

    @property
    def path(self) -> Path:
        if self.source.file is None:  # store_for makes a FileStore only for a file source
            raise OpsctlError("the repository password does not come from a file", None)
        return self.source.file

    @property
    def staged_path(self) -> Path:
        return self.path.with_name(f"{self.path.name}.staged")

    @property
    def old_path(self) -> Path:
        return self.path.with_name(f"{self.path.name}.{self.stamp}.old")

    def stage(self, password: bytes) -> None:
        replace_synced(self.staged_path, password, mode=stat.S_IMODE(self.path.stat().st_mode))

    def switch(self) -> None:
        """Keep the current file as the dated old copy (a second link), then rename the staged one over it."""
        if not self.staged_path.exists():
            return  # renamed by an earlier, interrupted run
        if not self.old_path.exists():
            _keep_copy(self.path, self.old_path)
        os.rename(self.staged_path, self.path)
        sync_folder(self.path.parent)

    def discard_staged(self) -> None:
        self.staged_path.unlink(missing_ok=True)

    def finish(self) -> None:
        """The old copy is kept: an offline copy of a repository may still need it."""


@dataclass(frozen=True)
class CommandStore(_StagedSecret):
    """A secret manager reached through command (reads) and store_command (writes); copies in the state folder."""

    source: SecretSource
    state_dir: Path
    stamp: str

    @property
    def staged_path(self) -> Path:
        return self.state_dir / "repository-password.staged"

    @property
    def old_path(self) -> Path:
        return self.state_dir / f"repository-password.{self.stamp}.old"

    def stage(self, password: bytes) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        replace_synced(self.staged_path, password)

    def switch(self) -> None:
        """Save the new password with store_command unless the secret manager already returns it."""
        new, current = self.staged(), self.current()
        if new is None or current.strip() == new.strip():
            return
        store_command = self.source.store_command
        if store_command is None:  # store_for makes a CommandStore only when there is one
            raise OpsctlError("the policy has no store_command to save the new password", None)
        if not self.old_path.exists():
            replace_synced(self.old_path, current)
        store_secret(store_command, new, PURPOSE)
        if self.current().strip() != new.strip():
            raise OpsctlError(f"after store_command {store_command[0]} exited 0, command "
                              f"{_program(self.source.command)} still prints another password",
                              "fix the pair so command prints what store_command saved, "
                              "then: opsctl keys rotate --resume")

    def discard_staged(self) -> None:
        self.staged_path.unlink(missing_ok=True)

    def finish(self) -> None:
        self.discard_staged()


def store_for(source: SecretSource, state_dir: Path, stamp: str) -> FileStore | CommandStore:
    """The store that can rewrite this password source, or a clear refusal."""
    if source.file is not None:
        return FileStore(source, stamp)
    if source.env is not None:
        raise BadInput(f"the repository password comes from environment variable {source.env}, "
                       "which opsctl cannot change for the service that sets it",
                       "move the password to a private file (repository_password: {file: ...}) or to a command with "
                       "a store_command, then run: opsctl keys rotate")
    if source.store_command is None:
        raise BadInput(f"the repository password comes from command {_program(source.command)} and the policy has no "
                       "store_command to save a new one",
                       "add repository_password.store_command: a command that reads the new password on stdin, "
                       "stores it so that command prints it from then on, and exits 0")
    return CommandStore(source, state_dir, stamp)


def _program(command: tuple[str, ...] | None) -> str:
    """The program a command source runs (a source with store_command always has a command)."""
    return command[0] if command else "(none)"


def _keep_copy(path: Path, copy: Path) -> None:
    """A second hard link (same bytes, same mode); a copy where the filesystem has no hard links."""
    try:
        os.link(path, copy)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV):
            raise
        replace_synced(copy, path.read_bytes(), mode=stat.S_IMODE(path.stat().st_mode))


def _read_if_there(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
