"""One fleet folder read within a deadline: listed, then its documents read a few at once.

The reading runs on daemon threads, so a storage that hangs is left behind, never waited for at exit.
When the deadline comes, what was read is kept and each document not read yet is listed as such: one
slow document (or a slow storage) costs the hosts it holds, not the whole fleet.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from opsctl.errors import OpsctlError, described
from opsctl.targets import Target
from opsctl.targets.fleet import FOLDER, FleetFiles, FleetReader, Listing, file_name

READERS = 8  # documents read at once: a bucket or a NAS answers many requests in the time of one
Key = tuple[str, str]  # (policy, host)


@dataclass(frozen=True)
class Found:
    """What one fleet folder held: where it is, its listing, and each document's bytes or why it was not read."""

    location: str
    listing: Listing
    documents: dict[Key, bytes | OpsctlError]


def read_fleet(target: Target, timeout_s: float, on_read: Callable[[], None] = lambda: None) -> Found:
    """Every document of the target's fleet folder that could be read within timeout_s; OpsctlError when not even
    the listing came in time. on_read() is called after each document read (a test's checkpoint)."""
    reading = _Reading(target, on_read)
    threading.Thread(target=reading.run, name="fleet status", daemon=True).start()
    deadline = time.monotonic() + timeout_s
    if not reading.listed.wait(timeout_s):
        raise OpsctlError(f"the fleet folder did not answer within {timeout_s:.0f} s",
                          "check that the target is up and reachable from this host; --timeout gives it longer")
    if reading.failure is not None:
        raise reading.failure
    reading.done.wait(max(0.0, deadline - time.monotonic()))
    return reading.found(timeout_s)


class _Reading:
    """The listing, then READERS threads taking the documents in turn; the caller takes what is there in time."""

    def __init__(self, target: Target, on_read: Callable[[], None]) -> None:
        self._target = target
        self._on_read = on_read
        self._lock = threading.Lock()
        self._documents: dict[Key, bytes | OpsctlError] = {}
        self.location = target.display
        self.listing = Listing()
        self.failure: Exception | None = None
        self.listed, self.done = threading.Event(), threading.Event()
        self._given_up = threading.Event()  # the deadline passed: the readers take no more documents

    def run(self) -> None:
        try:
            with self._target.fleet() as files:
                self.location, self.listing = files.display, files.listing()
                self.listed.set()
                self._read_all(files, deque(self.listing.documents))
        except Exception as exc:  # noqa: BLE001 - handed to the caller's thread (after the listing: only a close)
            if not self.listed.is_set():
                self.failure = exc
        finally:
            self.listed.set()
            self.done.set()

    def _read_all(self, files: FleetFiles, waiting: deque[Key]) -> None:
        # The first reader uses the open connection itself: the others' own channels are a bonus a NAS may refuse.
        readers = [threading.Thread(target=self._read_some, args=(nullcontext(files) if i == 0 else files.reader(),
                                                                   waiting), name=f"fleet read {i}", daemon=True)
                   for i in range(min(READERS, len(waiting)))]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join()

    def _read_some(self, opening: AbstractContextManager[FleetReader], waiting: deque[Key]) -> None:
        try:
            with opening as reader:
                while not self._given_up.is_set():
                    try:
                        key = waiting.popleft()  # atomic: each document is taken by one reader
                    except IndexError:
                        return
                    read = _read_one(reader, key)
                    with self._lock:
                        self._documents[key] = read
                    self._on_read()
        except Exception:  # noqa: BLE001, S110 - a channel the NAS refused: the other readers take its share
            pass

    def found(self, timeout_s: float) -> Found:
        """What is there now; a document not read yet is said to be so."""
        self._given_up.set()
        late = OpsctlError(f"not read within {timeout_s:.0f} s: the storage answered too slowly",
                           "run it again, or give it longer with --timeout")
        with self._lock:
            documents = {key: self._documents.get(key, late) for key in self.listing.documents}
        return Found(self.location, self.listing, documents)


def _read_one(reader: FleetReader, key: Key) -> bytes | OpsctlError:
    """One document, or why it could not be read: one that fails is that host's problem, never the fleet's."""
    policy, host = key
    try:
        return reader.read(policy, host)
    except OpsctlError as exc:  # a link, a folder, too large, or the storage refused
        return exc
    except Exception as exc:  # noqa: BLE001 - gone, or a client library's own error: listed with the reason
        return OpsctlError(f"{FOLDER}/{policy}/{file_name(policy, host)} could not be read ({described(exc)})")
