"""Ed25519 signatures on reports, so an auditor holding only the public key can tell a report opsctl signed from
one edited afterwards. All of opsctl's cryptography is here.

A report's SHA-256 covers everything in it but `sha256` and `signature`, who ran it and when
included; the signature covers that hash behind a domain prefix, so it can never be passed off
as a signature over anything else. The private key lives outside the state folder: whoever may
read the reports must not be able to sign one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from opsctl.errors import BadInput
from opsctl.policy.fields import check_private_file
from opsctl.policy.model import default_signing_key
from opsctl.reports.sealed import is_key_id

if TYPE_CHECKING:
    from opsctl.policy import Policy

log = logging.getLogger(__name__)
ALGORITHM = "ed25519"
_DOMAIN = b"opsctl-report-signature/1\n"
_RAW_KEY_BYTES = 32
_SIGNATURE_BYTES = 64
_SIGNATURE_FIELDS = frozenset({"algorithm", "key_id", "public_key", "value"})
_KEY_ID_CHARS = 16
_INIT_HINT = "run: opsctl keys signing init (it never replaces an existing key)"


class Verdict(StrEnum):
    """What a signature check found; only VALID vouches for a report."""

    VALID = "VALID"
    ALTERED = "ALTERED"
    UNSIGNED = "UNSIGNED"
    WRONG_KEY = "WRONG KEY"


class SigningKeyUnusable(BadInput):
    """A signing key that is named or present but cannot sign (missing, unreadable, not private, not Ed25519)."""


@dataclass(frozen=True)
class PublicKey:
    """An Ed25519 public key, named by its key ID: the first 16 hex digits of the SHA-256 of its 32 bytes."""

    raw: bytes

    @property
    def key_id(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()[:_KEY_ID_CHARS]

    @property
    def text(self) -> str:
        """The 32 bytes in base64, as a report carries them."""
        return base64.b64encode(self.raw).decode("ascii")

    def pem(self) -> str:
        """PEM SubjectPublicKeyInfo, what `openssl pkey -pubin` and `opsctl report verify --public-key` read."""
        key = Ed25519PublicKey.from_public_bytes(self.raw)
        return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def verifies(self, sha256: str, value: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(value, _message(sha256))
        except InvalidSignature:
            return False
        return True

    @classmethod
    def from_pem(cls, data: bytes) -> PublicKey:
        """The key in a PEM file; ValueError when it is not an Ed25519 public key."""
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise ValueError("not a PEM public key") from None
        if isinstance(key, Ed25519PublicKey):
            return cls(_raw(key))
        raise ValueError("not an Ed25519 key")


@dataclass(frozen=True)
class Signer:
    """A loaded private key: signs report hashes. Its key material never appears in a repr, a log or an output."""

    path: Path
    public: PublicKey
    _key: Ed25519PrivateKey = field(repr=False, compare=False)

    def sign(self, sha256: str) -> dict[str, str]:
        """The `signature` field of a report whose SHA-256 is `sha256`."""
        value = self._key.sign(_message(sha256))
        return {"algorithm": ALGORITHM, "key_id": self.public.key_id, "public_key": self.public.text,
                "value": base64.b64encode(value).decode("ascii")}


@dataclass(frozen=True)
class ParsedSignature:
    """A report's `signature` field, exactly as opsctl writes it: its key ID always names its public key."""

    key_id: str
    public: PublicKey
    value: bytes


@dataclass(frozen=True)
class SignatureCheck:
    """A report's signature against a public key: the verdict, and the key ID the report names (if any)."""

    verdict: Verdict
    key_id: str | None = None


def new_key_pair() -> tuple[bytes, PublicKey]:
    """A fresh private key (PEM PKCS8, unencrypted: it is protected by its file's mode) and its public half."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return private, PublicKey(_raw(key.public_key()))


def load_signer(path: Path) -> Signer:
    """The signer whose private key is in `path`; SigningKeyUnusable (with what to do) when it cannot sign."""
    if not _present(path):
        raise SigningKeyUnusable(f"the signing key {path} does not exist",
                                 f"{_INIT_HINT}, or fix the policy's signing_key")
    try:
        check_private_file(path)  # 0600/0400, ours, in folders nobody else can change
        data = path.read_bytes()
    except OSError as exc:
        raise SigningKeyUnusable(f"the signing key {path} cannot be read ({exc.strerror or exc.__class__.__name__})",
                                 "run opsctl as the user that owns the key, or point the policy's signing_key at "
                                 "the right file") from None
    except ValueError as exc:  # check_private_file's "problem; run: fix"
        problem, _, fix = str(exc).partition("; run: ")
        raise SigningKeyUnusable(f"the signing key cannot be used: {problem}",
                                 f"run: {fix}" if fix else "point the policy's signing_key at the right file") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):  # never the library's text: it may quote the file
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyUnusable(f"the signing key {path} is not an unencrypted Ed25519 private key (PEM)",
                                 f"move it away and {_INIT_HINT}, or point the policy's signing_key at the right file")
    return Signer(path, PublicKey(_raw(key.public_key())), key)


def key_path(policy: Policy) -> Path:
    """Where the policy's signing key is: its signing_key, else the default outside the state folder."""
    return policy.signing_key or default_signing_key(policy.name)


def find_signer(policy: Policy) -> Signer | None:
    """The policy's signer; None when no key was ever made; SigningKeyUnusable when one is named or present but
    cannot sign."""
    path = key_path(policy)
    if policy.signing_key is None and not _present(path):
        return None
    return load_signer(path)


def signer_or_warn(policy: Policy) -> Signer | None:
    """The policy's signer, or None: then the report is still written (the evidence matters), unsigned, with a
    warning when a key was named or present but could not sign."""
    try:
        return find_signer(policy)
    except SigningKeyUnusable as exc:
        log.warning("%s, so this report is written UNSIGNED (still sealed with its SHA-256). What to do: %s",
                    exc.message, exc.hint)
    except Exception as exc:  # noqa: BLE001 - e.g. no home folder for the default key: the report matters more
        log.warning("cannot find this policy's signing key (%s: %s), so this report is written UNSIGNED (still "
                    "sealed with its SHA-256). What to do: set HOME, or set signing_key in the policy",
                    exc.__class__.__name__, exc)
    return None


def check_signature(signature: object, sha256: str, key: PublicKey) -> SignatureCheck:
    """VALID only when the report names `key` and its signature over `sha256` verifies with it."""
    if signature is None:
        return SignatureCheck(Verdict.UNSIGNED)
    parsed = parse_signature(signature)
    if parsed is None:  # damaged: nothing in it is shown, not even its key ID
        return SignatureCheck(Verdict.ALTERED)
    if parsed.key_id != key.key_id:
        return SignatureCheck(Verdict.WRONG_KEY, parsed.key_id)
    if parsed.public != key or not key.verifies(sha256, parsed.value):
        return SignatureCheck(Verdict.ALTERED, parsed.key_id)
    return SignatureCheck(Verdict.VALID, parsed.key_id)


def parse_signature(signature: object) -> ParsedSignature | None:
    """A report's `signature` field; None unless it is exactly as opsctl writes one: these four fields, canonical
    base64 of the right lengths, and the key ID of the public key it carries."""
    if not isinstance(signature, dict) or set(signature) != _SIGNATURE_FIELDS or signature["algorithm"] != ALGORITHM:
        return None
    public, value = _b64(signature["public_key"]), _b64(signature["value"])
    if public is None or value is None or len(public) != _RAW_KEY_BYTES or len(value) != _SIGNATURE_BYTES:
        return None
    key = PublicKey(public)
    if not is_key_id(signature["key_id"]) or signature["key_id"] != key.key_id:
        return None
    return ParsedSignature(key.key_id, key, value)


def named_key(signature: object) -> str | None:
    """The key ID a report's `signature` field names, when that field is as opsctl writes one."""
    parsed = parse_signature(signature)
    return parsed.key_id if parsed is not None else None


def _b64(text: object) -> bytes | None:
    """Base64 in its one canonical spelling: other spellings of the same bytes are not what opsctl wrote."""
    if not isinstance(text, str):
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if base64.b64encode(raw).decode("ascii") == text else None


def _message(sha256: str) -> bytes:
    return _DOMAIN + sha256.encode("utf-8")


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _present(path: Path) -> bool:
    """Whether anything is at `path`; an unreadable folder counts as present, so loading says why."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True
    return True
