"""Feeding a dump into a database's own restore tool (pg_restore, the mariadb client)."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterable

from opsctl.process import StreamTail, die_with_parent, feed, piped, widen_pipe
from opsctl.sources.errors import RestoreFailed
from opsctl.sources.redact import redact_tool_output

log = logging.getLogger(__name__)


# Tool errors with a known remedy: a marker in the tool's stderr -> what to do.
_PACKET = "raise it (SET GLOBAL max_allowed_packet = 1073741824;) and run the restore again"
_GONE = (f"the server closed the connection mid-restore: most often because a statement of the dump is larger than "
         f"its max_allowed_packet; {_PACKET}. If the server restarted instead, its error log says why. Nothing was "
         "changed at the destination")
_REMEDIES = {
    "ERROR 1153": "a statement of the dump (one row, blobs in hex) is larger than this server's max_allowed_packet; "
                  f"{_PACKET}. Nothing was changed at the destination",
    # The server sends 1153 and hangs up; a client still writing the statement sees only the hang-up.
    "ERROR 2006": _GONE,
    "ERROR 2013": _GONE,
}


def run_restore_tool(argv: list[str], env: dict[str, str], chunks: Iterable[bytes], failure: str,
                     pass_fds: tuple[int, ...] = ()) -> None:
    """Stream chunks to the tool's stdin; RestoreFailed (`failure` plus its redacted stderr) if it fails."""
    log.debug("running %s", " ".join(argv))
    with subprocess.Popen(argv, env=env, pass_fds=pass_fds, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE,
                          preexec_fn=die_with_parent) as proc:  # noqa: PLW1509 - only prctl + getppid: async-signal-safe
        widen_pipe(proc.stdin)
        err = StreamTail(piped(proc.stderr))
        feed(proc, chunks)
        if proc.wait() != 0:
            said = err.text()
            hint = next((remedy for marker, remedy in _REMEDIES.items() if marker in said),
                        "nothing was changed at the destination")
            raise RestoreFailed(f"{failure}:\n{redact_tool_output(said)}", hint)
