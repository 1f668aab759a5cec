"""What restic needs to open one repository; built by a target, consumed by the runner."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Repository:
    """A restic repository location with its password. The password never shows in repr."""

    location: str
    display: str
    password: bytes = field(repr=False)
    options: tuple[str, ...] = ()
    environment: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    unset_environment: tuple[str, ...] = ()
    # (variable, content): each content goes into a private file for the run, the variable names it.
    secret_files: tuple[tuple[str, bytes], ...] = field(default=(), repr=False)
    cacert: str | None = None  # a PEM file of CAs restic trusts for this repository (restic's --cacert)
