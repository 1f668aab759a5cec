"""The fleet folder beside a repository on an SFTP server (a NAS), over one session.

SFTP has no descriptor-relative calls, so a folder checked by lstat may be swapped for a link before
it is used. opsctl checks again where it matters: before a document is renamed into place the folder
must still resolve (the server's realpath) to where the fleet folder is, and a document opened must be
the one lstat saw (same kind, size, time and owner) and resolve to its own path. A document is written
aside in the same folder and renamed over (posix-rename: a planted link is replaced, not followed).

What another account on the NAS can still race, in the instants between those checks and the calls:
the rename (this host's status then lands, under its own name, in a folder that account chose and this
account may write), and the read (the bytes are then those of another plain file this account may read
with the same size, time and owner; they count only as a valid status document of this very host). A
server that lies can answer anything: what a document says is believed only as compliance/fleet.py
allows, and nothing read is ever acted upon.
"""

from __future__ import annotations

import posixpath
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import paramiko

from opsctl.targets.fleet import (
    FILE_MODE,
    FOLDER,
    FOLDER_MODE,
    MAX_DOCUMENT,
    TAMPERED,
    Listing,
    RefusedDocument,
    Tally,
    file_name,
    left_by_killed_run,
    not_a_document,
    not_a_folder,
    spool_name,
    too_big,
)


class SftpFleet:
    """fleet/ at `folder` (an absolute path on the server), over an open SFTP session."""

    def __init__(self, sftp: paramiko.SFTPClient, folder: str, display: str) -> None:
        self.sftp = sftp
        self.folder = folder
        self.display = display
        self._resolved: str | None = None

    def _real(self) -> str:
        """Where the fleet folder is once the operator's own path (its parent, links there allowed) is resolved."""
        if self._resolved is None:
            self._resolved = posixpath.join(self.sftp.normalize(posixpath.dirname(self.folder)), FOLDER)
        return self._resolved

    def publish(self, policy: str, host: str, content: bytes) -> None:
        name = file_name(policy, host)
        folder = posixpath.join(self.folder, policy)
        for path in (self.folder, folder):
            self._folder_made(path)
        self._remove_stale(folder, name)
        spooled = posixpath.join(folder, spool_name(name))
        try:
            with self.sftp.open(spooled, "wxb") as handle:  # O_EXCL: never into a name (or a link) already there
                handle.chmod(FILE_MODE)
                handle.set_pipelined(True)
                handle.write(content)
            self._check_resolves(folder, policy)
            self.sftp.posix_rename(spooled, posixpath.join(folder, name))
        except BaseException:
            with suppress(OSError):
                self.sftp.remove(spooled)
            raise

    def listing(self) -> Listing:
        # Each folder's entries are taken whole (up to the budget) before the next request: paramiko's listing
        # reads ahead, and a request sent meanwhile would swallow its answers.
        tally = Tally()
        for entry in list(tally.entries(f"{FOLDER}/", self._entries(self.folder))):
            if tally.policy_folder(entry.filename, stat.S_ISDIR(entry.st_mode or 0)):
                self._list_policy(entry.filename, tally)
        return tally.listing()

    def _list_policy(self, policy: str, tally: Tally) -> None:
        try:
            names = [e.filename for e in tally.entries(f"{FOLDER}/{policy}/",
                                                        self._entries(posixpath.join(self.folder, policy)))]
        except (OSError, RefusedDocument):  # gone, or swapped for a link, since the fleet folder was listed
            tally.passed_over()
            return
        for name in names:
            tally.document(policy, name)

    def read(self, policy: str, host: str) -> bytes:
        where = f"{FOLDER}/{policy}/{file_name(policy, host)}"
        path = posixpath.join(self.folder, policy, file_name(policy, host))
        for _ in range(2):  # a first change is most likely its host publishing meanwhile (a rename)
            with suppress(_Replaced):
                return self._read_once(path, where)
        raise RefusedDocument(f"{where} changed between its check and its opening, twice; not read: a link may have "
                              "been swapped in", TAMPERED)

    def _read_once(self, path: str, where: str) -> bytes:
        seen = self.sftp.lstat(path)  # lstat: a link is seen as one
        _check_plain(seen.st_mode or 0, where)
        with self.sftp.open(path, "rb") as handle:
            opened = handle.stat()  # what was opened: a link swapped in after the lstat was followed
            if _kind(opened) != _kind(seen) or not self._resolves(path):
                raise _Replaced
            if (opened.st_size or 0) > MAX_DOCUMENT:
                raise too_big(where)
            data: bytes = handle.read(MAX_DOCUMENT + 1)  # the size a server reports may be a lie
        if len(data) > MAX_DOCUMENT:
            raise too_big(where)
        return data

    @contextmanager
    def reader(self) -> Iterator[SftpFleet]:
        """The same folder over a channel of its own: one SFTP session must not serve two threads at once."""
        channel = self.sftp.get_channel()
        transport = channel.get_transport() if channel is not None else None
        if transport is None:
            raise OSError("the SFTP session is closed")
        with paramiko.SFTPClient.from_transport(transport) as sftp:
            own = sftp.get_channel()
            if own is not None and channel is not None:  # a NAS that stops answering must not hang this reader
                own.settimeout(channel.gettimeout())
            yield SftpFleet(sftp, self.folder, self.display)  # resolves the folder over its own channel too

    def _check_resolves(self, folder: str, policy: str) -> None:
        """Refuse a policy's folder swapped for a link since it was checked (before a document is renamed into it)."""
        if not self._resolves(folder):
            raise not_a_folder(self.display, f"{FOLDER}/{policy}")

    def _resolves(self, path: str) -> bool:
        """Whether the server resolves a path below the fleet folder to where it is: no link was swapped in."""
        return bool(self.sftp.normalize(path) == posixpath.join(self._real(), posixpath.relpath(path, self.folder)))

    def _entries(self, path: str) -> Iterator[paramiko.SFTPAttributes]:
        """A folder's entries with lstat's modes (a link is listed as a link), as the server sends them; none when it
        is missing."""
        try:
            mode = self.sftp.lstat(path).st_mode or 0
        except FileNotFoundError:
            return iter(())
        if not stat.S_ISDIR(mode):
            raise self._not_a_folder(path)
        entries: Iterator[paramiko.SFTPAttributes] = self.sftp.listdir_iter(path)
        return entries

    def _folder_made(self, path: str) -> None:
        """A folder of the fleet, made when missing; a link or a file in its place is refused."""
        try:
            mode = self.sftp.lstat(path).st_mode or 0
        except FileNotFoundError:
            try:
                self.sftp.mkdir(path, mode=FOLDER_MODE)
            except OSError:
                mode = self.sftp.lstat(path).st_mode or 0  # made by another host meanwhile is fine
            else:
                return
        if not stat.S_ISDIR(mode):
            raise self._not_a_folder(path)

    def _not_a_folder(self, path: str) -> RefusedDocument:
        return not_a_folder(self.display, posixpath.relpath(path, posixpath.dirname(self.folder)))

    def _remove_stale(self, folder: str, name: str) -> None:
        """This host's half-written copies a killed run left behind (plain files of opsctl's spool form only)."""
        for entry in self.sftp.listdir_attr(folder):
            if stat.S_ISREG(entry.st_mode or 0) and left_by_killed_run(entry.filename, name,
                                                                       time.time() - (entry.st_mtime or 0)):
                with suppress(OSError):
                    self.sftp.remove(posixpath.join(folder, entry.filename))


class _Replaced(Exception):
    """The file opened is not the one checked."""


def _check_plain(mode: int, where: str) -> None:
    if stat.S_ISLNK(mode) or not stat.S_ISREG(mode):
        raise not_a_document(where, link=stat.S_ISLNK(mode))


def _kind(attrs: paramiko.SFTPAttributes) -> tuple[int, int | None, int | None, int | None]:
    """What must not change between the lstat and the open: the file's type, size, time and owner."""
    return stat.S_IFMT(attrs.st_mode or 0), attrs.st_size, attrs.st_mtime, attrs.st_uid
