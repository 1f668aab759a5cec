"""Live progress: rich bars per transfer on a terminal, a plain line per step in logs, nothing with --json."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from opsctl.reports.console import Terminal, human_bytes


class Transfer:
    """One transfer's counter; thread-safe, so replication workers can report from their threads."""

    def __init__(self, board: Board, label: str, total: int | None = None) -> None:
        self._board = board
        self.label = label
        self.bytes = 0
        self._task = board.start(label, total)
        self._finished = threading.Lock()  # held for good by the first finish: a transfer ends once

    def advance(self, count: int) -> None:
        self.bytes += count
        self._board.advance(self._task, count)

    def track(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.advance(len(chunk))
            yield chunk

    def finish(self, outcome: str) -> None:
        """Say how it ended; later calls (a copy cut off as it ended on its own) say nothing more."""
        if self._finished.acquire(blocking=False):
            self._board.finish(self._task, self.label, self.bytes, outcome)


class Board:
    """All transfers of one command."""

    def __init__(self, app: Terminal) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        if not app.json_output and app.err.is_terminal:
            columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                       TransferSpeedColumn(), TimeElapsedColumn())
            self._progress = Progress(*columns, console=app.err, transient=True)

    def transfer(self, label: str, total: int | None = None) -> Transfer:
        return Transfer(self, label, total)

    def start(self, label: str, total: int | None = None) -> TaskID | None:
        if self._progress is None:
            if not self._app.json_output:
                self._app.err.print(f"… {label}", highlight=False)
            return None
        with self._lock:
            return self._progress.add_task(label, total=total)

    def advance(self, task: TaskID | None, count: int) -> None:
        if self._progress is not None and task is not None:  # a task exists whenever there is a progress display
            with self._lock:
                self._progress.advance(task, count)

    def finish(self, task: TaskID | None, label: str, count: int, outcome: str) -> None:
        if self._progress is not None and task is not None:  # a task exists whenever there is a progress display
            with self._lock:
                self._progress.remove_task(task)
        if not self._app.json_output:
            self._app.err.print(f"{'✓' if outcome == 'ok' else '✗'} {label}: {human_bytes(count)}, {outcome}",
                                highlight=False, markup=False)


@contextmanager
def board(app: Terminal) -> Iterator[Board]:
    """A progress board that is cleared from the terminal when the command's table is printed."""
    shown = Board(app)
    if shown._progress is None:
        yield shown
        return
    with shown._progress:
        yield shown


@contextmanager
def byte_progress(app: Terminal, label: str,
                  total: int | None = None) -> Iterator[Callable[[Iterable[bytes]], Iterator[bytes]]]:
    """Yield a wrapper for a byte stream that counts what flows through it (a bar to `total` when known)."""
    with board(app) as shown:
        transfer = shown.transfer(label, total)
        yield transfer.track
        transfer.finish("ok")
