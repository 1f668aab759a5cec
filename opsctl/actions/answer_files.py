"""What the commands that answer a question (status, fleet status) share: how long a target may take to answer,
and the files they write for others beside their answer (a page, metrics), which replace only a file opsctl wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from opsctl.durable import ForeignFile, is_own, replace_own
from opsctl.errors import BadInput

DEFAULT_TIMEOUT_S = 30.0  # how long a target may take to answer (--timeout)


def check_output_file(option: str, path: Path, suffixes: tuple[str, ...], ours: Callable[[bytes], bool]) -> None:
    """Refuse (exit 2, before anything runs) a file opsctl could not write, or could not tell later as its own."""
    if path.suffix not in suffixes:
        raise BadInput(f"{option} {path}: give a file name ending in {' or '.join(suffixes)}",
                       "opsctl writes only files it can recognise later as its own")
    if not path.parent.is_dir():
        raise BadInput(f"{option} {path}: the folder {path.parent} does not exist",
                       "create it, or give a file in a folder that exists")
    if not is_own(path, ours):
        raise BadInput(f"{option} {path}: that file holds something opsctl did not write; nothing was changed",
                       "name another file (opsctl replaces only its own page or metrics)")


def write_own(path: Path, content: bytes, ours: Callable[[bytes], bool]) -> str | None:
    """Replace a file opsctl wrote (or an empty one) for the auditor; why it was not, or None."""
    try:
        replace_own(path, content, 0o644, ours)  # for the auditor: no row and no secret in it
    except ForeignFile:
        return f"{path} was not written: it holds something opsctl did not write; name another file"
    except OSError as exc:
        return f"{path} could not be written ({exc.strerror or exc.__class__.__name__})"
    return None
