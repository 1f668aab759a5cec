"""A live byte counter on a terminal; nothing at all when output is not a terminal or is JSON."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

from rich.progress import DownloadColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TransferSpeedColumn


@contextmanager
def byte_progress(app, label: str) -> Iterator[Callable[[Iterable[bytes]], Iterator[bytes]]]:
    """Yield a wrapper for a byte stream that counts what flows through it on the terminal."""
    if app.json_output or not app.err.is_terminal:
        yield iter
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), DownloadColumn(), TransferSpeedColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=app.err, transient=True) as progress:
        task = progress.add_task(label, total=None)

        def tracked(chunks: Iterable[bytes]) -> Iterator[bytes]:
            for chunk in chunks:
                progress.advance(task, len(chunk))
                yield chunk

        yield tracked
