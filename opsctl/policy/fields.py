"""The policy's building blocks shared by every section: names, paths, durations, secret sources.

Kept apart from the sections themselves so that each section (database, targets, schedule,
notifications) can live in its own module without importing the others.
"""

from __future__ import annotations

import os
import re
import stat
from datetime import timedelta
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

from opsctl.policy.durations import parse_duration
from opsctl.policy.trust import chown_line, untrusted

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
NAME_RULE = "letters, digits, '.', '_' or '-', starting with a letter or digit, at most 63 characters"
# Validation context key: the policy is loaded for a read-only command, which opens none of the files it names.
READ_ONLY = "read_only"


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    path = value.expanduser()
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    return Path(os.path.normpath(path))


PolicyPath = Annotated[Path, AfterValidator(_resolve_path)]
Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
# A Unix group's name as Debian's adduser accepts it by default (NAME_REGEX in adduser.conf).
GroupName = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")]


def cross_reference(at: str, message: str) -> PydanticCustomError:
    """An error found while checking a section, at one of its fields (`at`, e.g. publish_to[1]): the loader names
    that field's whole path (describe_error in load.py)."""
    return PydanticCustomError("cross_reference", "{message}", {"at": at, "message": message})


def opens_files(info: ValidationInfo) -> bool:
    """Whether the command loading the policy will open the files it names (secrets, keys, CA files), so their
    owner and mode are checked now; a read-only command (an auditor's status --offline) opens none."""
    return not (info.context or {}).get(READ_ONLY)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_private_file(path: Path) -> None:
    """A secret file must exist, be a regular file owned by us, and be unreadable by others."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist; create it with mode 600") from None
    except PermissionError:
        raise ValueError(f"{path} cannot be read by this user") from None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{path} is not a regular file")
    if info.st_mode & 0o077:
        mode = stat.S_IMODE(info.st_mode)
        raise ValueError(f"{path} can be read by other users (mode {mode:o}); run: chmod 600 {path}")
    if info.st_uid != os.geteuid():
        raise ValueError(f"{path} is owned by uid {info.st_uid}, not by the user running opsctl (uid {os.geteuid()}); "
                         f"run: {chown_line(path)}")
    distrust = untrusted(path, private=True)  # the file is ours: now no folder above it may be another's
    if distrust is not None:
        raise ValueError(str(distrust))


class SecretSource(Strict):
    """Where a password comes from: exactly one of a private file, an environment variable, a command."""

    file: PolicyPath | None = Field(None, description="a file with mode 600 or 400 that holds only the password")
    env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="name of an environment variable")
    command: tuple[str, ...] | None = Field(
        None, min_length=1, description="a command (list of words, no shell) that prints the password"
    )
    store_command: tuple[str, ...] | None = Field(
        None, min_length=1, description="with command: a command that saves a new password read from stdin"
    )

    @model_validator(mode="after")
    def _exactly_one(self, info: ValidationInfo) -> SecretSource:
        given = [k for k in ("file", "env", "command") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of file, env or command (never the password itself)")
        if self.store_command is not None and self.command is None:
            raise ValueError("store_command goes with command (a file is rewritten by opsctl itself)")
        if self.file is not None and opens_files(info):
            check_private_file(self.file)
        return self

    def describe(self) -> str:
        """A display form that names the source, never the secret."""
        if self.file is not None:
            return f"file {self.file}"
        if self.env is not None:
            return f"environment variable {self.env}"
        return f"command {self.command[0]}" if self.command else "no source"


def _secret_not_inline(value: object) -> object:
    if isinstance(value, (str, int)):
        # TRY004: pydantic reports only ValueError (not TypeError) as a policy validation error
        raise ValueError(  # noqa: TRY004
            "write where the password comes from (file, env or command), never the password itself"
        )
    return value


Secret = Annotated[SecretSource, BeforeValidator(_secret_not_inline)]


def is_valid_name(text: str) -> bool:
    return re.match(NAME_PATTERN, text) is not None
