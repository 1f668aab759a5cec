"""Small helpers shared by the modules that start processes (restic/, sources/, secrets)."""

from __future__ import annotations

import ctypes
import fcntl
import os
import resource
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import suppress
from typing import IO, cast

CHUNK_SIZE = 1 << 20
_PR_SET_PDEATHSIG = 1
_F_SETPIPE_SZ = 1031


# Looked up once here: the child runs die_with_parent between fork and exec, where loading a
# library could deadlock on a lock another thread of ours held at fork time.
_prctl = ctypes.CDLL(None, use_errno=True).prctl
_OPSCTL_PID = os.getpid()


def die_with_parent() -> None:
    """Run in the child before exec: the kernel kills it if opsctl dies.

    A restic reading a dump from stdin would otherwise see end-of-file when opsctl is killed
    and save a truncated snapshot that looks complete.
    """
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != _OPSCTL_PID:  # opsctl died before the signal was armed
        os._exit(1)


def widen_pipe(stream: IO[bytes] | None) -> None:
    """Ask for a 1 MiB pipe buffer so large dumps cross with fewer context switches."""
    if stream is None:
        return
    with suppress(OSError):  # the default 64 KiB buffer still works, only a little slower
        fcntl.fcntl(stream.fileno(), _F_SETPIPE_SZ, CHUNK_SIZE)


def piped(stream: IO[bytes] | None) -> IO[bytes]:
    """The pipe of a child started with stdin/stdout/stderr=PIPE (typed: Popen says it may be None)."""
    if stream is None:
        raise ValueError("the child was not started with this stream piped")
    return stream


def read_chunks(stream: IO[bytes]) -> Iterator[bytes]:
    """Yield a binary stream in full 1 MiB chunks (the last may be shorter) until end of file.

    A pipe hands over whatever the writer last wrote, often a few KiB: filling a whole chunk
    before yielding it cuts the per-chunk work of every stage downstream (hashing, relaying) by
    two orders of magnitude. The chunks are bytearrays, never reused, so nothing is copied twice.
    """
    fd = stream.fileno()
    while True:
        chunk = bytearray(CHUNK_SIZE)
        with memoryview(chunk) as view:
            filled = 0
            while filled < CHUNK_SIZE and (count := os.readv(fd, [view[filled:]])):
                filled += count
        if filled == 0:
            return
        if filled < CHUNK_SIZE:
            del chunk[filled:]
        # A bytearray is handed on as bytes (read-only by every consumer): copying it into bytes
        # would double the memory traffic of every dump.
        yield cast(bytes, chunk)


def write_all(stream: IO[bytes], data: bytes) -> None:
    """Write every byte of data to an unbuffered pipe."""
    view = memoryview(data)
    fd = stream.fileno()
    while view:
        view = view[os.write(fd, view):]


class StallWatch:
    """Kills a child that has not accepted a write for `timeout_s` seconds.

    Only time spent blocked writing counts: a slow producer (a dump waiting on a table lock) is
    not the consumer's stall.
    """

    def __init__(self, proc: subprocess.Popen[bytes], timeout_s: float | None) -> None:
        self._proc = proc
        self._since: float | None = None
        self._done = threading.Event()
        self.stalled = False
        if timeout_s:
            threading.Thread(target=self._watch, args=(timeout_s,), daemon=True).start()

    def writing(self) -> None:
        self._since = time.monotonic()

    def idle(self) -> None:
        self._since = None

    def close(self) -> None:
        self._done.set()

    def _watch(self, timeout_s: float) -> None:
        while not self._done.wait(min(1.0, timeout_s)):
            since = self._since
            if since is not None and time.monotonic() - since > timeout_s:
                self.stalled = True
                self._proc.kill()
                return


def feed(proc: subprocess.Popen[bytes], chunks: Iterable[bytes], watch: StallWatch | None = None) -> None:
    """Write chunks to a child's stdin, then close it to signal the end.

    If producing the chunks fails, the child is killed before it ever sees end-of-file: a
    consumer such as restic would otherwise save the partial stream as if it were complete.
    """
    try:
        for chunk in chunks:
            try:
                if watch:
                    watch.writing()
                write_all(piped(proc.stdin), chunk)
                if watch:
                    watch.idle()
            except BrokenPipeError:
                return  # the child stopped reading; its exit status and stderr say why
    except BaseException:
        stop(proc)
        raise
    piped(proc.stdin).close()


class StreamTail:
    """Drains a child's output in a thread, keeping only its last lines (bounded memory)."""

    def __init__(self, stream: IO[bytes], keep: int = 200) -> None:
        self._lines: deque[str] = deque(maxlen=keep)
        self._thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self._thread.start()

    def _drain(self, stream: IO[bytes]) -> None:
        try:
            for raw in stream:
                self._lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
        except (ValueError, OSError):
            pass  # the pipe was closed under us because the child was stopped: nothing more to read

    def text(self) -> str:
        """Everything kept so far, once the stream has ended."""
        self._thread.join()
        return "\n".join(self._lines)


# Secrets other tools read from the environment: no child but restic (which opsctl gives its own) needs them.
_SECRET_PREFIXES = ("AWS_", "RESTIC_", "MINIO_")
_SECRET_VARIABLES = frozenset({"PGPASSWORD", "MYSQL_PWD", "MARIADB_PWD"})


def no_core_dumps() -> None:
    """A crash of opsctl or of any child it starts (limits are inherited) writes no core file: it would hold secrets."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


# Settings that would send a database client elsewhere or loosen its checks behind the policy's back
# (PGHOSTADDR overrides the host name; MYSQL_HOME adds a my.cnf with its own CAs and ciphers).
_REDIRECTING = ("PGHOSTADDR", "PGSERVICE", "PGSERVICEFILE", "PGSYSCONFDIR", "PGGSSENCMODE", "PGREQUIRESSL",
                "PGSSLNEGOTIATION", "PGSSLMINPROTOCOLVERSION", "PGSSLMAXPROTOCOLVERSION", "MYSQL_HOME", "MARIADB_HOME")


def drop_redirecting_environment() -> None:
    """Forget, for opsctl's own sessions and every child, the variables that would override the policy's server."""
    for name in _REDIRECTING:
        os.environ.pop(name, None)


def tool_environment(*dropped: str) -> dict[str, str]:
    """opsctl's environment for a database tool or a password command: without anyone's secrets (and `dropped`)."""
    return {key: value for key, value in os.environ.items()
            if not key.startswith(_SECRET_PREFIXES) and key not in _SECRET_VARIABLES and key not in dropped}


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill a child that must not finish (its output would be incomplete) and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def run_store_command(argv: list[str], secret: bytes, timeout: float = 60) -> int:
    """Run a command that saves a secret read from its stdin (never argv); return its exit status."""
    return subprocess.run(argv, input=secret, stdout=subprocess.DEVNULL, env=tool_environment(), timeout=timeout,
                          check=False).returncode


def run_secret_command(argv: list[str], timeout: float = 60) -> bytes:
    """Run a password command and return its standard output; its stderr goes to the terminal."""
    result = subprocess.run(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=tool_environment(),
                            timeout=timeout, check=False)
    if result.returncode != 0:
        raise subprocess.CalledProcessError(result.returncode, argv[0])
    return result.stdout
