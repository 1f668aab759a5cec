"""opsctl with faults injected, for tests only: `python -m tests.support.faulty <opsctl arguments>`.

The faults come from this harness's environment:
- OPSCTL_TEST_KILL_AT=<step> sends SIGKILL at a key-rotation step ("add:local", "add:local+" = after
  it), once a backup's dumps have all landed in the primary ("backed-up"; with
  OPSCTL_TEST_KILL_ONCE_PACKS_IN=<repository folder>, only once that folder holds a pack), or once a
  restore's staging or scratch database is loaded ("restored");
- OPSCTL_TEST_TAMPER_SQL=<statement> runs in the scratch database between the restore and the comparison;
- OPSCTL_TEST_KILL_IN_MOVE=1 kills a MySQL move right after it dropped the triggers of the tables it moves;
- OPSCTL_TEST_NO_FINGERPRINTS=1 makes backups as an opsctl older than fingerprints did (row counts only).
The installed `opsctl` has no such switches (a test proves it ignores these variables).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from contextlib import closing
from pathlib import Path

from opsctl.actions.checkpoints import Checkpoints
from opsctl.cli import main
from opsctl.sources import Source, census

KILL_AT = "OPSCTL_TEST_KILL_AT"
TAMPER_SQL = "OPSCTL_TEST_TAMPER_SQL"
NO_FINGERPRINTS = "OPSCTL_TEST_NO_FINGERPRINTS"
KILL_IN_MOVE = "OPSCTL_TEST_KILL_IN_MOVE"
KILL_ONCE_PACKS_IN = "OPSCTL_TEST_KILL_ONCE_PACKS_IN"


class Faults(Checkpoints):
    def __init__(self, kill_at: str | None, tamper_sql: str | None) -> None:
        self.kill_at, self.tamper_sql = kill_at, tamper_sql

    def reached(self, step: str) -> None:
        if step == self.kill_at:
            if folder := os.environ.get(KILL_ONCE_PACKS_IN):
                _await_pack(Path(folder))
            os.kill(os.getpid(), signal.SIGKILL)  # a real SIGKILL: no finally, no atexit tidies up

    def restored(self, source: Source, staging: str) -> None:
        self.reached("restored")
        if self.tamper_sql:
            tamper(source, staging, self.tamper_sql)


def _await_pack(repository: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not any((repository / "data").glob("*/*")):
        if time.monotonic() > deadline:
            raise SystemExit(f"no pack reached {repository} within {timeout_s:.0f} s")
        time.sleep(0.05)


def tamper(source: Source, staging: str, statement: str) -> None:
    """Run one statement in the staging database, as the engine's own client would."""
    if source.engine == "sqlite":
        with closing(sqlite3.connect(staging)) as conn, conn:
            conn.executescript(statement)
    elif source.engine == "postgresql":
        with source.server.connect(staging, autocommit=True) as conn:  # type: ignore[attr-defined]
            conn.execute(statement)
    else:
        with closing(source.server.connect(staging)) as conn, conn.cursor() as cur:  # type: ignore[attr-defined]
            cur.execute(statement)


def _killed_in_move() -> None:
    """A MySQL move dies right after it dropped the triggers it moves (the worst moment for them)."""
    from opsctl.sources import mysql

    def die(*_args: object) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    mysql._rename = die  # called right after the DROP TRIGGERs


if __name__ == "__main__":
    if os.environ.get(KILL_IN_MOVE) == "1":
        _killed_in_move()
    if os.environ.get(NO_FINGERPRINTS) == "1":
        census.new_salt = lambda: ""  # an empty salt: the dump records row counts only
    main(obj=Faults(os.environ.get(KILL_AT), os.environ.get(TAMPER_SQL)), prog_name="opsctl")
