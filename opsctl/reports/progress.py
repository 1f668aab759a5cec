"""A live byte counter on a terminal; nothing at all when output is not a terminal or is JSON."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from rich.progress import DownloadColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TransferSpeedColumn


@contextmanager
def byte_progress(app, label: str) -> Iterator[Callable[[int], None]]:
    """Yield a function to call with each chunk's size while bytes stream somewhere."""
    if app.json_output or not app.err.is_terminal:
        yield lambda _n: None
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), DownloadColumn(), TransferSpeedColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=app.err, transient=True) as progress:
        task = progress.add_task(label, total=None)
        yield lambda n: progress.advance(task, n)
