"""opsctl keys signing init: make the Ed25519 key pair that signs reports, and hand out its public half.

The private key is kept outside the state folder (whoever may read the reports must not be able
to sign one) and is never replaced: a report signed with it must stay checkable, so rotating
means moving the old key away first. Each public key is kept next to the reports as
`signing-key-<key id>.pub`, old ones too, so every report ever signed still verifies.
"""

from __future__ import annotations

import os
import secrets
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.markup import escape

from opsctl.actions.context import App, Session
from opsctl.actions.outcome import AuditFacts, Outcome
from opsctl.actions.runner import Command
from opsctl.durable import create_synced, replace_synced, sync_folder
from opsctl.errors import BadInput
from opsctl.policy.trust import check_trusted
from opsctl.reports import sealed, signing
from opsctl.reports.signing import PublicKey


@dataclass(frozen=True)
class SigningInitRequest:
    key_file: Path | None = None  # None: the policy's signing_key, else the default outside the state folder


@dataclass(frozen=True)
class SigningKeyMade(Outcome):
    """The new key's ID, where its private half is kept, and its public half for auditors."""

    key_id: str
    key_file: Path
    public_file: Path
    public_pem: str
    used: bool
    """Whether reports will be signed with it: the policy's signing_key (or the default) is this file."""

    def to_json(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "key_file": str(self.key_file), "public_key_file": str(self.public_file),
                "public_key": self.public_pem, "signs_reports": self.used}

    def audit(self) -> AuditFacts:
        return AuditFacts(details={"key_id": self.key_id, "key_file": str(self.key_file),
                                   "public_key_file": str(self.public_file)})

    def show(self, app: App) -> None:
        app.out.print(f"Made signing key {self.key_id}. Its private key is {escape(str(self.key_file))} (mode 600): "
                      "keep it on this host, out of every backup of the reports.")
        app.out.print(f"Public key {self.key_id}, for auditors (also kept as {escape(str(self.public_file))}):")
        app.out.print(escape(self.public_pem.rstrip("\n")))
        if self.used:
            app.out.print("Reports written from now on are signed. Hand auditors the public key above yourself (not "
                          "alongside the reports, where whoever alters a report could swap it); they check a report "
                          "with: opsctl report verify REPORT --public-key KEY")
        else:
            app.out.print(f"[yellow]warning:[/] reports are NOT signed with it yet: the policy signs with another "
                          f"file. Set signing_key: {escape(str(self.key_file))} in the policy.")


def _init(session: Session, request: SigningInitRequest) -> SigningKeyMade:
    try:
        in_use = signing.key_path(session.policy)
    except RuntimeError as exc:  # the default place is under a home folder this process has none of
        raise BadInput(f"cannot find the default place for the signing key ({exc})",
                       "set HOME, or set signing_key: FILE in the policy (outside the state folder)") from None
    path = Path(os.path.abspath(request.key_file)) if request.key_file is not None else in_use
    _check_place(session, path)
    private, public = signing.new_key_pair()
    public_file = _keep_public(session, public)  # first: a key is never in use without its public half kept
    try:
        _create_key_file(path, private)
    except BaseException:
        public_file.unlink(missing_ok=True)
        raise
    return SigningKeyMade(public.key_id, path, public_file, public.pem(), used=path == in_use)


def _check_place(session: Session, path: Path) -> None:
    """Outside the state folder, never over an existing key, in a folder nobody else can change."""
    state_dir = Path(os.path.realpath(session.state_dir))
    if Path(os.path.realpath(path)).is_relative_to(state_dir):
        raise BadInput(f"{path} is inside the state folder {session.state_dir}: whoever may read the reports there "
                       "must not be able to sign one", "keep the key elsewhere: leave --key-file out for the default "
                       "place, or give a file outside the state folder")
    if os.path.lexists(path):
        raise BadInput(f"a signing key already exists at {path}; opsctl never replaces one, so reports it signed "
                       "stay checkable", _rotate_hint(session, path))
    _make_folder(path.parent)
    check_trusted(path.parent, "the signing key's folder")


def _rotate_hint(session: Session, path: Path) -> str:
    moved = shlex.quote(f"{path}.retired-{datetime.now(UTC):%Y%m%d}")
    return (f"to rotate it, move the old key away first (mv {shlex.quote(str(path))} {moved}), then run opsctl keys "
            f"signing init again; reports signed with the old key still verify with its public key, kept in "
            f"{session.state_dir / 'reports'}")


def _make_folder(folder: Path) -> None:
    """The key's folder, 0700 when opsctl makes it (an existing one keeps its mode: it may be /etc/opsctl)."""
    if folder.is_dir():
        return
    try:
        folder.mkdir(parents=True, mode=0o700)
        folder.chmod(0o700)  # whatever the umask
    except OSError as exc:
        raise BadInput(f"cannot make the folder {folder} for the signing key "
                       f"({exc.strerror or exc.__class__.__name__})", _PLACE_HINT) from None


def _create_key_file(path: Path, private: bytes) -> None:
    """Written whole aside (0600), then linked into place: link never replaces a file, so a key that appeared
    meanwhile is kept, and no half-written key is ever at `path`."""
    aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        create_synced(aside, private, 0o600)
    except OSError as exc:
        aside.unlink(missing_ok=True)
        raise BadInput(f"cannot write the signing key {path} ({exc.strerror or exc.__class__.__name__})",
                       _PLACE_HINT) from None
    try:
        os.link(aside, path)
    except FileExistsError:
        raise BadInput(f"a signing key appeared at {path} while this one was made; it was kept, and the new one "
                       "discarded", "run opsctl keys signing init again only if no key is there any more") from None
    except OSError as exc:  # a filesystem without hard links, say
        raise BadInput(f"cannot put the signing key in place at {path} ({exc.strerror or exc.__class__.__name__})",
                       _PLACE_HINT) from None
    finally:
        aside.unlink(missing_ok=True)
    sync_folder(path.parent)


def _keep_public(session: Session, public: PublicKey) -> Path:
    """`signing-key-<id>.pub` next to the reports (readable by the reports' readers); older ones are kept."""
    folder = session.state_dir / "reports"
    sealed.report_folder(folder, session.policy.report_group)
    path = folder / f"signing-key-{public.key_id}.pub"
    replace_synced(path, public.pem().encode("ascii"), 0o644)  # public: nothing secret in it
    return path


_PLACE_HINT = ("run it as the user that runs the backups (root for /etc/opsctl/signing), or give --key-file FILE "
               "in a folder that user can write, and set signing_key: FILE in the policy")
SIGNING_INIT = Command("keys signing init", _init, lock=True)
