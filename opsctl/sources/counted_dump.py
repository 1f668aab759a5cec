"""A dump tool's output streamed while the row counts and fingerprints are read beside it, in the snapshot it
shares."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Iterator

from opsctl.manifest import Census, DumpFacts
from opsctl.process import StreamTail, piped, read_chunks, widen_pipe
from opsctl.sources.errors import DumpFailed, database_error_text
from opsctl.sources.redact import redact_tool_output


class CountedDump:
    """A running dump tool, with `take_census` running on a thread; subclasses say how to cancel and describe it."""

    tool_name = "the dump tool"
    census_hint = "the backup user needs SELECT on every table"

    def __init__(self, database: str, proc: subprocess.Popen[bytes], take_census: Callable[[], Census],
                 properties: dict[str, str]) -> None:
        self.database = database
        self.properties = properties
        self.facts: DumpFacts | None = None
        self._proc = proc
        self._census: Census | Exception = Census(tables=())
        self._census_thread = threading.Thread(target=self._take_census, args=(take_census,), daemon=True)
        self._census_thread.start()
        self._stderr = StreamTail(piped(proc.stderr))
        widen_pipe(proc.stdout)

    def _take_census(self, take_census: Callable[[], Census]) -> None:
        try:
            self._census = take_census()
        except Exception as exc:  # noqa: BLE001 - any failure of the census thread is reported when the dump ends
            self._census = exc

    def chunks(self) -> Iterator[bytes]:
        yield from read_chunks(piped(self._proc.stdout))
        code = self._proc.wait()
        self._census_thread.join()
        self._check(code)
        found = self._census
        if isinstance(found, Exception):  # _check has raised it already (as DumpFailed)
            raise found
        self.facts = self._facts(found)

    def abort(self) -> None:
        """Stop counting rows when the dump ended early (its session is about to close)."""
        if self._census_thread.is_alive():
            self._cancel_census()
            self._census_thread.join(timeout=10)

    def _check(self, code: int) -> None:
        """Counts first: a failed count session can also be why the dump tool lost its snapshot."""
        if isinstance(self._census, Exception):
            raise DumpFailed(f"reading the row counts of database {self.database} failed: "
                             f"{database_error_text(self._census)}",
                             f"{self.census_hint}; no snapshot was kept from this run")
        if code != 0:
            detail = redact_tool_output(self._stderr.text()) or f"exit status {code}"
            raise DumpFailed(f"{self.tool_name} of database {self.database} failed: {detail}",
                             "no snapshot was kept from this run; fix the cause and run the backup again")

    def _cancel_census(self) -> None:
        raise NotImplementedError

    def _facts(self, found: Census) -> DumpFacts:
        raise NotImplementedError
