"""Read passwords from the sources a policy names. The value never leaves memory except by pipe."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

from opsctl.errors import OpsctlError, SecretUnavailable
from opsctl.policy.fields import SecretSource, check_private_file
from opsctl.process import run_secret_command, run_store_command

_withheld: dict[str, str] = {}  # secrets taken out of the environment before any child process started


def withhold_environment(names: Iterable[str]) -> None:
    """Take these variables out of the environment now, so that no child (restic, pg_dump, ...) inherits them,
    also in a command that never reads them; read_secret still finds them."""
    for name in names:
        if name in os.environ:
            _withheld[name] = os.environ.pop(name)


def withheld() -> dict[str, str]:
    """The variables withheld so far, for an opsctl child that reads them itself (the schedule daemon's jobs)."""
    return dict(_withheld)


def read_secret(source: SecretSource, purpose: str) -> bytes:
    """The raw secret bytes; SecretUnavailable names the source and what to do, never the value."""
    if source.file is not None:
        return _from_file(source.file, purpose)
    if source.env is not None:
        withhold_environment([source.env])
        value = _withheld.get(source.env)
        if not value:
            raise SecretUnavailable(
                f"the {purpose} comes from environment variable {source.env}, which is not set",
                f"export {source.env} in the environment that runs opsctl (a systemd credential or EnvironmentFile)",
            )
        return value.encode()
    if source.command is None:  # the model requires exactly one of file, env, command
        raise SecretUnavailable(f"the {purpose} has no source (file, env or command)")
    return _from_command(source.command, purpose)


def _from_file(path: Path, purpose: str) -> bytes:
    try:
        check_private_file(path)
        data = path.read_bytes()
    except (ValueError, OSError) as exc:
        raise SecretUnavailable(f"the {purpose} file cannot be used: {exc}") from None
    if not data.strip():
        raise SecretUnavailable(f"the {purpose} file {path} is empty", "write the password into it")
    return data


def _from_command(command: tuple[str, ...], purpose: str) -> bytes:
    try:
        data = run_secret_command(list(command))
    except FileNotFoundError:
        raise SecretUnavailable(f"the {purpose} command {command[0]} was not found") from None
    except subprocess.TimeoutExpired:
        raise SecretUnavailable(f"the {purpose} command {command[0]} did not finish within 60 s") from None
    except subprocess.CalledProcessError as exc:
        raise SecretUnavailable(
            f"the {purpose} command {command[0]} failed (exit {exc.returncode})",
            "run it by hand to see why",
        ) from None
    if not data.strip():
        raise SecretUnavailable(f"the {purpose} command {command[0]} printed nothing")
    return data


def store_secret(argv: tuple[str, ...], secret: bytes, purpose: str) -> None:
    """Hand a new secret to a store_command on its stdin; exit 0 means it was stored."""
    try:
        returncode = run_store_command(list(argv), secret)
    except FileNotFoundError:
        raise OpsctlError(f"the store_command {argv[0]} was not found",
                          "fix repository_password.store_command") from None
    except subprocess.TimeoutExpired:
        raise OpsctlError(f"the store_command {argv[0]} did not finish within 60 s") from None
    if returncode != 0:
        raise OpsctlError(f"the store_command {argv[0]} failed (exit {returncode}); the new {purpose} was not stored",
                          "run it by hand to see why, then: opsctl keys rotate --resume (the staged password is kept)")


def as_text(secret: bytes) -> str:
    """A password for a database client: without the file's trailing newline."""
    try:
        return secret.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise SecretUnavailable("the database password is not valid UTF-8 text") from None
