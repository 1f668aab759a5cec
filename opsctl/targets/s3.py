"""A repository in an S3 bucket (any S3-compatible endpoint): restic's s3 backend, boto3 for opsctl's own work.

Credentials come from a private file or the environment and reach restic only through its environment,
never its command line. Without them restic would go anonymous and blame the repository, so opsctl
checks them first and says what is missing. A command that deletes files (Access.DELETE) uses the
target's prune_credentials when the policy gives them; every other command uses keys that cannot delete.

A target with `object_lock` gets a bucket whose default retention locks every object it receives: init
creates it so (or refuses a bucket that does not keep as much), doctor and status read the real state.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import botocore.exceptions

from opsctl.errors import BadInput
from opsctl.policy.compliance import ObjectLock
from opsctl.policy.fields import check_private_file
from opsctl.policy.model import S3Credentials, S3TargetConfig
from opsctl.restic.repository import Repository
from opsctl.targets import fleet
from opsctl.targets.base import Access, ConfiguredTarget, Fact, Immutability
from opsctl.targets.errors import MISSING_REPOSITORY_HINT, TargetUnreachable, hostile
from opsctl.targets.fleet_s3 import S3Fleet
from opsctl.targets.replicate import MAX_FILE_SIZE, TOO_BIG, audit_copy_name, check_writable, climbs

# boto3's S3 client, typed by mypy-boto3-s3 (not installed: boto3-stubs alone types client("s3") as Any).
S3Client = Any
CONNECT_TIMEOUT_S = 15
_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
# restic's S3 library (minio-go) tries these before a credentials file: left in its environment, they would
# silently replace the policy's keys (a MinIO admin's, say), and the least-privilege split with them.
_COMPETING_KEYS = (*_KEYS, "AWS_CONFIG_FILE", "AWS_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_ROLE_ARN",
                   "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                   "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN", "MINIO_ROOT_USER",
                   "MINIO_ROOT_PASSWORD", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY")
# How AWS (and MinIO, and moto) answer for a bucket that has never had Object Lock: a state, not an error.
_NO_LOCK_CODES = ("ObjectLockConfigurationNotFoundError", "NoSuchObjectLockConfiguration")
_SNAPSHOT_ID = re.compile(r"[0-9a-f]{64}")
_LOCK_RIGHT = "s3:GetBucketObjectLockConfiguration"


@dataclass(frozen=True)
class BucketLock:
    """A bucket's Object Lock: whether it is on, and the default retention every new object gets."""

    enabled: bool
    mode: str | None = None
    days: int | None = None

    @property
    def locked(self) -> bool:
        """True when every object written from now on is locked."""
        return self.enabled and self.mode is not None and bool(self.days)

    def describe(self) -> str:
        if self.locked:
            return f"object lock {self.mode}, {self.days} day{'' if self.days == 1 else 's'}"
        if self.enabled:
            return "object lock on, but no default retention: new files are not locked"
        return "object lock off"

    def missing(self, wanted: ObjectLock) -> str | None:
        """What the bucket lacks of the policy's object_lock, said after "the bucket ..."; None: nothing."""
        if not self.enabled:
            return "has no Object Lock"
        if not self.locked:
            return "has Object Lock but no default retention, so new files are not locked"
        # COMPLIANCE keeps more than GOVERNANCE (which a key with s3:BypassGovernanceRetention can lift): enough.
        if wanted.mode == "COMPLIANCE" and self.mode != "COMPLIANCE":
            return f"locks new files in {self.mode} mode, which a key allowed to bypass it can lift, not COMPLIANCE"
        if (self.days or 0) < wanted.days:
            return f"locks new files for {self.days} days, fewer than {wanted.days}"
        return None


def bucket_lock(answer: dict[str, Any]) -> BucketLock:
    """A get_object_lock_configuration answer as a BucketLock (a retention in years counts 365 days each)."""
    config = answer.get("ObjectLockConfiguration", {})
    retention = config.get("Rule", {}).get("DefaultRetention", {})
    days = retention.get("Days") or 365 * (retention.get("Years") or 0) or None
    return BucketLock(config.get("ObjectLockEnabled") == "Enabled", retention.get("Mode"), days)


def lock_configuration(wanted: ObjectLock) -> dict[str, Any]:
    """The ObjectLockConfiguration that gives every new object the policy's retention."""
    return {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": wanted.mode, "Days": wanted.days}}}


def error_code(exc: botocore.exceptions.ClientError) -> str:
    """The S3 error code of an answer (AccessDenied, NoSuchBucket, ...); never its message, which may quote keys."""
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Target(ConfiguredTarget[S3TargetConfig]):
    kind = "s3"

    @property
    def display(self) -> str:
        c = self.config
        return f"{self.name} (s3 {c.endpoint.rstrip('/')}/{c.bucket}{self._key_prefix('/')})"

    def repository(self, password: bytes) -> Repository:
        c = self.config
        options = (f"s3.bucket-lookup={'path' if c.path_style else 'dns'}", f"s3.region={c.region}")
        location = f"s3:{c.endpoint.rstrip('/')}/{c.bucket}{self._key_prefix('/')}"
        cacert = str(c.ca_file) if c.ca_file is not None else None
        if self._key_source.env:  # the operator chose the environment: restic inherits it as it is
            return Repository(location, self.display, password, options, cacert=cacert)
        # Keys from the policy's file reach restic as a private credentials file, never as variables.
        return Repository(location, self.display, password, options, environment=(("AWS_PROFILE", "default"),),
                          unset_environment=_COMPETING_KEYS,
                          secret_files=(("AWS_SHARED_CREDENTIALS_FILE", _credentials_ini(self._credentials)),),
                          cacert=cacert)

    @property
    def _key_source(self) -> S3Credentials:
        """The keys this command may use: the deleting ones only for a command that deletes, and only if given."""
        c = self.config
        if self.access is Access.DELETE and c.prune_credentials is not None:
            return c.prune_credentials
        return c.credentials

    @property
    def _key_field(self) -> str:
        return "prune_credentials" if self._key_source is self.config.prune_credentials else "credentials"

    def probe(self) -> None:
        self._bucket_answers(missing_ok=False)

    def prepare_init(self) -> None:
        """Check the endpoint and the credentials, and create the bucket if it is missing, with the policy's
        Object Lock; an existing bucket must already keep at least that lock, or nothing is written to it."""
        wanted = self.config.object_lock
        if self._bucket_answers(missing_ok=True):
            if wanted is not None:
                self._check_lock(wanted)
            return
        self._create_bucket(wanted)
        if wanted is not None:
            self._set_default_retention(wanted)

    def _create_bucket(self, wanted: ObjectLock | None) -> None:
        c = self.config
        where: dict[str, Any] = {} if c.region == "us-east-1" else {
            "CreateBucketConfiguration": {"LocationConstraint": c.region}}
        if wanted is not None:  # most S3 services allow Object Lock only on a bucket created with it
            where["ObjectLockEnabledForBucket"] = True
        try:
            self._client.create_bucket(Bucket=c.bucket, **where)
        except botocore.exceptions.ClientError as exc:
            rights = " (with Object Lock: also s3:PutBucketObjectLockConfiguration and s3:PutBucketVersioning)"
            raise TargetUnreachable(f"{self.display}: the bucket could not be created ({error_code(exc)})",
                                    "create it in the S3 console, or give the key the right to create buckets"
                                    + (rights if wanted is not None else "")) from None

    def _set_default_retention(self, wanted: ObjectLock) -> None:
        try:
            self._client.put_object_lock_configuration(Bucket=self.config.bucket,
                                                       ObjectLockConfiguration=lock_configuration(wanted))
        except botocore.exceptions.ClientError as exc:
            raise TargetUnreachable(
                f"{self.display}: the bucket {self.config.bucket} was created with Object Lock, but its default "
                f"retention could not be set ({error_code(exc)})", self._retention_fix(wanted)) from None

    def _check_lock(self, wanted: ObjectLock) -> None:
        """Refuse an existing bucket that keeps less than the policy's object_lock asks."""
        try:
            lock = self._read_lock()
        except botocore.exceptions.ClientError as exc:
            raise TargetUnreachable(f"{self.display}: the bucket's Object Lock settings are not readable with the "
                                    f"keys of {self._key_field} ({error_code(exc)})", self._unreadable_hint()) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise TargetUnreachable(f"{self.display} cannot be reached: {exc.__class__.__name__}",
                                    f"check that {self.config.endpoint} is up and reachable from this host") from None
        gap = lock.missing(wanted)
        if gap is not None:
            # BadInput, like a local folder that holds other files: the storage is there, the policy asks what it
            # cannot give, and nothing was written.
            raise BadInput(f"{self.display}: the policy's object_lock asks for {wanted.mode}, {wanted.days} days, "
                           f"but the bucket {self.config.bucket} {gap}; nothing was written to it",
                           self._lock_fix(lock, wanted))

    def immutability(self, newest_snapshot_id: str | None) -> Immutability:
        """What the bucket's Object Lock keeps now, with what it lacks of the policy's object_lock; never raises."""
        try:
            lock = self._read_lock()
        except (TargetUnreachable, botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            return self._unreadable(exc)
        return Immutability(lock.locked, lock.describe(), lock.mode if lock.locked else None,
                            lock.days if lock.locked else None,
                            self._retained_until(newest_snapshot_id) if lock.enabled else None, self._policy_gap(lock))

    def _unreadable(self, exc: Exception) -> Immutability:
        """An Object Lock nobody could read: not locked as far as opsctl knows, and why (never a key)."""
        if isinstance(exc, TargetUnreachable):  # no usable keys: the message names the file or variable
            return Immutability(False, f"not readable: {exc.message}", hint=exc.hint, known=False)
        if isinstance(exc, botocore.exceptions.ClientError):
            return Immutability(False, f"not readable with this key ({error_code(exc)})", hint=self._unreadable_hint(),
                                known=False)
        return Immutability(False, f"not readable ({exc.__class__.__name__})",
                            hint=f"check that {self.config.endpoint} is up and reachable from this host", known=False)

    def _policy_gap(self, lock: BucketLock) -> str | None:
        """What the bucket lacks of the policy's object_lock, and how to fix it; None when it lacks nothing."""
        wanted = self.config.object_lock
        gap = None if wanted is None else lock.missing(wanted)
        if wanted is None or gap is None:
            return None
        return (f"the policy's object_lock asks for {wanted.mode}, {wanted.days} days, but the bucket "
                f"{self.config.bucket} {gap}: {self._lock_fix(lock, wanted)}")

    def _read_lock(self) -> BucketLock:
        """The bucket's Object Lock configuration; botocore's errors when it cannot be read."""
        try:
            answer = self._client.get_object_lock_configuration(Bucket=self.config.bucket)
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) in _NO_LOCK_CODES:
                return BucketLock(enabled=False)
            raise
        return bucket_lock(answer)

    def _retained_until(self, snapshot_id: str | None) -> datetime | None:
        """When the snapshot file's own lock ends; None when unknown (no full ID, no such file, no right)."""
        if snapshot_id is None or not _SNAPSHOT_ID.fullmatch(snapshot_id):
            return None
        prefix = self._key_prefix("")
        key = f"{prefix}/snapshots/{snapshot_id}" if prefix else f"snapshots/{snapshot_id}"
        try:
            # HEAD, not GetObjectRetention: fewer S3-compatible servers implement that (moto answers it with 500).
            until = self._client.head_object(Bucket=self.config.bucket, Key=key).get("ObjectLockRetainUntilDate")
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
            return None
        return until.astimezone(UTC) if isinstance(until, datetime) else None

    def _unreadable_hint(self) -> str:
        return (f"allow {_LOCK_RIGHT} on the bucket to the keys of {self._key_field} "
                f"(opsctl iam-policy --target {self.name} prints the rights)")

    def _lock_fix(self, lock: BucketLock, wanted: ObjectLock) -> str:
        """How to give the bucket the lock the policy asks for, with the AWS CLI or the console."""
        if lock.enabled:
            return self._retention_fix(wanted)
        versioning = self._aws_cli("put-bucket-versioning", "--versioning-configuration Status=Enabled")
        return (f"AWS S3 can turn Object Lock on for an existing bucket once versioning is on: {versioning}, then "
                f"{self._lock_command(wanted)} (console: the bucket's Properties, Object Lock, Edit); files already "
                "there stay unlocked. Older S3 and many S3-compatible services allow Object Lock only when a bucket "
                "is created: there, name a new bucket in the policy and run opsctl init, which creates it so")

    def _retention_fix(self, wanted: ObjectLock) -> str:
        return (f"set the bucket's default retention: {self._lock_command(wanted)} "
                "(console: the bucket's Properties, Object Lock, Edit default retention)")

    def _lock_command(self, wanted: ObjectLock) -> str:
        document = json.dumps(lock_configuration(wanted), separators=(",", ":"))
        return self._aws_cli("put-object-lock-configuration", f"--object-lock-configuration '{document}'")

    def _aws_cli(self, operation: str, arguments: str) -> str:
        """An `aws s3api` command line for this bucket; a non-AWS endpoint is named (it carries no credentials)."""
        endpoint = self.config.endpoint.rstrip("/")
        where = "" if endpoint.endswith(".amazonaws.com") else f" --endpoint-url {endpoint}"
        return f"aws s3api {operation}{where} --bucket {self.config.bucket} {arguments}"

    @contextmanager
    def files(self) -> Iterator[S3Files]:
        self.probe()
        yield S3Files(self._client, self.config.bucket, self._key_prefix(""), self.display)

    @contextmanager
    def fleet(self) -> Iterator[S3Fleet]:
        """No probe: it lists the repository's prefix, which keys of the fleet role may not (on AWS)."""
        folder = fleet.s3_folder(self.config.prefix)
        yield S3Fleet(self._client, self.config.bucket, folder,
                      f"{self.name} (s3 {self.config.endpoint.rstrip('/')}/{self.config.bucket}/{folder})")

    def facts(self) -> list[Fact]:
        try:
            self.probe()
        except TargetUnreachable as exc:
            return [Fact("bucket", False, exc.message, exc.hint)]
        return [Fact("bucket", True, f"{self.config.bucket} answers with these credentials"),
                self._versioning_fact(), self._object_lock_fact()]

    def _versioning_fact(self) -> Fact:
        try:
            status = self._client.get_bucket_versioning(Bucket=self.config.bucket).get("Status", "Disabled")
        except botocore.exceptions.ClientError as exc:
            return Fact("versioning", True, f"not readable with this key ({error_code(exc)})",
                        "allow s3:GetBucketVersioning to see whether deleted files can be recovered")
        if status == "Enabled":
            return Fact("versioning", True, "versioning enabled")
        # Keys that may not delete may still overwrite (a PUT replaces an object): only versions keep the old one.
        split = self.config.prune_credentials is not None
        return Fact("versioning", not split, f"versioning {status.lower()}",
                    "enable bucket versioning: without it, the backup keys cannot delete but can overwrite every file"
                    if split else "enable bucket versioning so a deleted file can be recovered")

    def _object_lock_fact(self) -> Fact:
        """The bucket's Object Lock as it is: a problem only when the policy's object_lock asks for more."""
        state = self.immutability(None)
        if self.config.object_lock is not None:
            return Fact("object lock", state.hint is None, state.detail, state.hint)
        if state.locked or state.hint is not None:
            return Fact("object lock", True, state.detail, state.hint)
        return Fact("object lock", True, f"{state.detail} (no immutable copy: 3-2-1-1-0 needs one)")

    def _key_prefix(self, lead: str) -> str:
        prefix = self.config.prefix.strip("/")
        return f"{lead}{prefix}" if prefix else ""

    @cached_property
    def _credentials(self) -> dict[str, str]:
        """The access keys, from the policy's private file or from the environment; never logged."""
        source = self._key_source
        if source.file is not None:
            try:
                check_private_file(source.file)
            except ValueError as exc:
                raise TargetUnreachable(f"{self.display}: S3 {self._key_field} file: {exc}", None) from None
            values = _parse_credentials(source.file.read_text(encoding="utf-8"))
            where = f"the file {source.file}"
        else:
            values = {key: os.environ[key] for key in _KEYS if os.environ.get(key)}
            where = "the environment"
        missing = [key for key in _KEYS[:2] if not values.get(key)]
        if missing:
            raise TargetUnreachable(f"{self.display}: no S3 {self._key_field}: {' and '.join(missing)} missing "
                                    f"from {where}", "set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY there")
        return values

    @cached_property
    def _client(self) -> S3Client:
        # boto3 takes a quarter of a second to import, and a restore that restic serves never needs it.
        import boto3
        from botocore.config import Config

        c = self.config
        credentials = self._credentials
        config = Config(
            region_name=c.region, connect_timeout=CONNECT_TIMEOUT_S, read_timeout=self.stall_timeout_s,
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": "path" if c.path_style else "virtual"},
            # Optional checksums of newer boto3 releases are refused by some S3-compatible servers.
            request_checksum_calculation="when_required", response_checksum_validation="when_required",
        )
        verify = str(c.ca_file) if c.ca_file is not None else None  # None: the system's CAs
        return boto3.session.Session().client(
            "s3", endpoint_url=c.endpoint, config=config, verify=verify,
            aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=credentials.get("AWS_SESSION_TOKEN"))

    def _bucket_answers(self, missing_ok: bool) -> bool:
        """True when the bucket exists; False when it does not and missing_ok.

        A listing under the prefix, not HeadBucket: that needs s3:ListBucket on the whole bucket, which
        the least-privilege policies (opsctl iam-policy) grant only for the prefix.
        """
        c, prefix = self.config, self._key_prefix("")
        try:
            self._client.list_objects_v2(Bucket=c.bucket, Prefix=f"{prefix}/" if prefix else "", MaxKeys=1)
        except botocore.exceptions.ClientError as exc:
            code = error_code(exc)
            if code in ("404", "NoSuchBucket"):
                if missing_ok:
                    return False
                raise TargetUnreachable(f"{self.display}: the bucket {c.bucket} does not exist",
                                        f"check the bucket name; {MISSING_REPOSITORY_HINT}") from None
            if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise TargetUnreachable(f"{self.display}: the S3 service refused the keys of {self._key_field} "
                                        f"({code})", "check the access key, its secret, and the key's rights on the "
                                        f"bucket (opsctl iam-policy --target {self.name} prints them)") from None
            raise TargetUnreachable(f"{self.display}: S3 answered {code}", "check the endpoint and bucket") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise TargetUnreachable(f"{self.display} cannot be reached: {exc.__class__.__name__}",
                                    f"check that {c.endpoint} is up and reachable from this host") from None
        return True


def _credentials_ini(values: dict[str, str]) -> bytes:
    lines = ["[default]"] + [f"{key.lower()} = {value}" for key, value in values.items()]
    return ("\n".join(lines) + "\n").encode()


def _parse_credentials(text: str) -> dict[str, str]:
    """KEY=VALUE lines (shell-style `export` and quotes tolerated); unknown keys are ignored."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip().removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if sep and key.strip() in _KEYS:
            values[key.strip()] = value.strip().strip("'\"")
    return values


class S3Files:
    """A repository's files as objects under the bucket's prefix; an upload appears whole or not at all."""

    def __init__(self, client: S3Client, bucket: str, prefix: str, display: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.display = display

    def list(self, folder: str) -> set[str]:
        found: set[str] = set()
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                      Prefix=f"{self.prefix}{folder}/")
        for page in pages:
            # A key ending in "/" is a "folder" marker (the AWS console, s3fs): not a file, and no harm.
            found.update(self._listed(item["Key"], folder) for item in page.get("Contents", ())
                         if not item["Key"].endswith("/"))
        return found

    def _listed(self, key: str, folder: str) -> str:
        """A key the bucket listed, as a repository name; one outside the folder asked for (`..`) is hostile."""
        name = key.removeprefix(self.prefix)
        if not key.startswith(f"{self.prefix}{folder}/") or climbs(name):
            raise hostile(self.display, "a key outside its folder", key)
        return name

    def read(self, name: str) -> bytes:
        check_writable(name, self.display)
        version = self._first_version(name) if audit_copy_name(name) else None
        answer = self.client.get_object(Bucket=self.bucket, Key=self.prefix + name,
                                        **({"VersionId": version} if version else {}))
        if answer.get("ContentLength", 0) > MAX_FILE_SIZE:
            answer["Body"].close()
            raise hostile(self.display, TOO_BIG, name)
        data: bytes = answer["Body"].read(MAX_FILE_SIZE + 1)  # a server may lie about the length
        if len(data) > MAX_FILE_SIZE:
            raise hostile(self.display, TOO_BIG, name)
        return data

    def _first_version(self, name: str) -> str | None:
        """The first version of an audit copy: the backup keys may PUT a key again (Object Lock keeps the old
        version), and a copy rewritten that way is refused rather than read."""
        key = self.prefix + name
        try:
            answer = self.client.list_object_versions(Bucket=self.bucket, Prefix=key, MaxKeys=100)
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) in ("AccessDenied", "NotImplemented"):
                return None  # keys without ListBucketVersions, or a store without versions: the object as it is
            raise
        versions = [v for v in answer.get("Versions", ()) if v.get("Key") == key]
        if len({v.get("ETag") for v in versions}) > 1:  # the same bytes again (a retried PUT) change nothing
            raise hostile(self.display, f"{len(versions)} versions (it was written again after opsctl wrote it)",
                          name)
        first = min(versions, key=lambda v: str(v.get("LastModified", "")), default=None)
        return str(first["VersionId"]) if first and first.get("VersionId") not in (None, "null") else None

    def exists(self, name: str) -> bool:
        # By listing, not HEAD: AWS answers a HEAD of a missing key with 403, not 404, to keys whose ListBucket
        # right is limited to a prefix (the backup role), and "forbidden" is no answer to "is it there?".
        check_writable(name, self.display)
        key = self.prefix + name
        found = self.client.list_objects_v2(Bucket=self.bucket, Prefix=key, MaxKeys=1).get("Contents", ())
        return any(item["Key"] == key for item in found)

    def make_layout(self) -> None:
        """Object storage has no folders."""

    def clean_spool(self, older_than_s: float = 3600) -> None:
        """An S3 upload appears whole or not at all: there is no spool."""

    def write_new(self, name: str, content: bytes) -> bool:
        # Content-addressed names hold the same bytes wherever they exist; the config and the audit copies do not,
        # so they take the extra round trip to be sure nothing is replaced.
        check_writable(name, self.display)
        if (name == "config" or audit_copy_name(name)) and self.exists(name):
            return False
        # AWS refuses a PUT without Content-MD5 (or a checksum header) into a bucket with a default retention,
        # and the client sends no checksum of its own (request_checksum_calculation="when_required").
        digest = base64.b64encode(hashlib.md5(content, usedforsecurity=False).digest()).decode()
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + name, Body=content, ContentMD5=digest)
        return True
