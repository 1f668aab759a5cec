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
