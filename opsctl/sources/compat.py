"""Whether another server can take a dump, and how much room it has: the checks before a restore copies anything.

A dump is written for the server it came from. pg_dump's output from a newer PostgreSQL may use
syntax an older server rejects, half-way through a restore that has then copied gigabytes for
nothing; a MariaDB dump may use features an older MariaDB (or MySQL, a different engine since 5.7)
lacks. The snapshot carries its server's version (the `server-version` property and tag), so a
restore can refuse before it starts. A newer server than the dump's is fine for both engines.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from pathlib import Path

from opsctl.sources.base import SERVER_VERSION
from opsctl.sources.errors import DestinationRefused

log = logging.getLogger(__name__)
_LEADING_NUMBERS = re.compile(r"\s*(\d+)(?:\.(\d+))?")
_PG_TWO_PART_MAJORS_UNTIL = 10  # PostgreSQL 9.6's major version is "9.6"; from 10 on it is one number


def pg_version_text(server_version_num: int) -> str:
    """PostgreSQL's numeric version (150018) as people write it: 15.18 (9.6.24 before PostgreSQL 10)."""
    major = server_version_num // 10000
    if major >= _PG_TWO_PART_MAJORS_UNTIL:
        return f"{major}.{server_version_num % 10000}"
    return f"{major}.{server_version_num // 100 % 100}.{server_version_num % 100}"


def pg_major(version: str) -> tuple[int, ...] | None:
    """The major version of "15.18" (15,) or "9.6.24" (9, 6); None for text that is no version."""
    found = _LEADING_NUMBERS.match(version)
    if found is None:
        return None
    first = int(found.group(1))
    if first >= _PG_TWO_PART_MAJORS_UNTIL:
        return (first,)
    return (first, int(found.group(2))) if found.group(2) else None


def mysql_release(version: str) -> tuple[str, tuple[int, int]] | None:
    """("MariaDB", (10, 11)) for "10.11.6-MariaDB-0+deb12u1", ("MySQL", (8, 0)) for "8.0.36"; None for no version."""
    found = _LEADING_NUMBERS.match(version)
    if found is None or found.group(2) is None:
        return None
    flavour = "MariaDB" if "mariadb" in version.lower() else "MySQL"
    return flavour, (int(found.group(1)), int(found.group(2)))


def check_pg(properties: dict[str, str], server_version_num: int, where: str) -> None:
    """Refuse a dump from a newer PostgreSQL major version than this server's."""
    taken = properties.get(SERVER_VERSION)
    if not taken:
        return  # a snapshot from before opsctl recorded the version: nothing to compare with
    dumped, here = pg_major(taken), pg_major(pg_version_text(server_version_num))
    if dumped is None or here is None:
        log.debug("cannot compare PostgreSQL versions %r and %r", taken, server_version_num)
        return
    if here < dumped:
        wanted = ".".join(map(str, dumped))
        raise DestinationRefused(
            f"the snapshot comes from PostgreSQL {taken} and {where} runs PostgreSQL "
            f"{pg_version_text(server_version_num)}: pg_dump output from a newer server may use syntax an older one "
            "rejects, so nothing was restored",
            f"restore to a server running PostgreSQL {wanted} or newer (upgrade the recovery server, or choose "
            "another with --server/--host)")


def check_mysql(properties: dict[str, str], server_version: str, where: str) -> None:
    """Refuse a dump from another flavour (MariaDB vs MySQL) or from a newer release than this server's."""
    taken = properties.get(SERVER_VERSION)
    if not taken:
        return
    dumped, here = mysql_release(taken), mysql_release(server_version)
    if dumped is None or here is None:
        log.debug("cannot compare MySQL/MariaDB versions %r and %r", taken, server_version)
        return
    if dumped[0] != here[0]:
        raise DestinationRefused(
            f"the snapshot comes from {dumped[0]} {taken} and {where} runs {here[0]} {server_version}: the two "
            "engines differ in SQL, system tables and defaults, so nothing was restored",
            f"restore to a {dumped[0]} server ({_release(dumped[1])} or newer)")
    if here[1] < dumped[1]:
        raise DestinationRefused(
            f"the snapshot comes from {dumped[0]} {taken} and {where} runs the older {here[0]} {server_version}: "
            "its dump may use features an older server lacks, so nothing was restored",
            f"restore to a server running {dumped[0]} {_release(dumped[1])} or newer (upgrade the recovery server, "
            "or choose another with --server/--host)")


def _release(release: tuple[int, int]) -> str:
    return f"{release[0]}.{release[1]}"


def is_local(host: str) -> bool:
    """A Unix socket folder or a loopback name or address: a server on this machine (the idea of the policy's own)."""
    if "," in host:  # a list of hosts: any one of them may answer
        return False
    if host.startswith(("/", "@")) or host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def free_bytes_at(path: Path) -> int | None:
    """Free space for an unprivileged writer on the filesystem holding `path` (or its nearest existing folder);
    None when it cannot be looked at."""
    for candidate in (path, *path.parents):
        try:
            found = os.statvfs(candidate)
        except FileNotFoundError:
            continue
        except (PermissionError, NotADirectoryError):
            return None
        return found.f_bavail * found.f_frsize
    return None


def free_bytes_of_server(host: str, data_directory: str | None) -> int | None:
    """Free space where a server keeps its data, when it runs on this machine and said where (an absolute path)."""
    if data_directory is None or not is_local(host) or not data_directory.startswith("/"):
        return None
    try:
        found = os.statvfs(data_directory)
    except OSError:  # not there (a server in a container: its path means nothing here), or not ours to look at
        return None
    return found.f_bavail * found.f_frsize
