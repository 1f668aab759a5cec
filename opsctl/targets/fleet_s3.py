"""The fleet folder beside a repository in an S3 bucket: keys under the parent of the target's prefix.

A PUT replaces a document whole. With Object Lock each PUT adds a version that stays until its lock
ends: the folder then keeps every published document (a few KiB each), which is fine; readers get the
newest. Reading needs no more than list and get under the fleet folder (`opsctl iam-policy --role
fleet`), so nothing here asks about the repository's own prefix.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from typing import Any, TypeVar

import botocore.exceptions

from opsctl.targets.errors import TargetUnreachable
from opsctl.targets.fleet import FOLDER, MAX_DOCUMENT, Listing, Tally, file_name, too_big

T = TypeVar("T")
_PAGE = 1000


class S3Fleet:
    """fleet/ as the keys under `folder/` (no leading or trailing slash) in one bucket."""

    def __init__(self, client: Any, bucket: str, folder: str, display: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = f"{folder}/"
        self.display = display

    def publish(self, policy: str, host: str, content: bytes) -> None:
        key = f"{self.prefix}{policy}/{file_name(policy, host)}"
        # AWS refuses a PUT without Content-MD5 into a bucket with a default retention (see S3Files.write_new).
        digest = base64.b64encode(hashlib.md5(content, usedforsecurity=False).digest()).decode()
        self._asked(lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=content, ContentMD5=digest,
                                                   ContentType="application/json"), "write")

    def listing(self) -> Listing:
        """The fleet folder's "folders" (one per policy), then each of them on its own: keys flooding one policy's
        folder cut that folder only, and keys deeper down are one entry per "subfolder"."""
        tally = Tally(spools=False)
        for name, folder in tally.entries(f"{FOLDER}/", self._entries(self.prefix)):
            if tally.policy_folder(name, folder):
                for document, deeper in tally.entries(f"{FOLDER}/{name}/", self._entries(f"{self.prefix}{name}/")):
                    tally.document(name, document, folder=deeper)
        return tally.listing()

    def _entries(self, prefix: str) -> Iterator[tuple[str, bool]]:
        """The names right below `prefix`, page by page as S3 lists them; True for a "folder" (keys deeper down)."""
        pages = iter(self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, Delimiter="/", PaginationConfig={"PageSize": _PAGE}))
        while (page := self._asked(lambda: next(pages, None), "list")) is not None:
            for common in page.get("CommonPrefixes", ()):
                yield common["Prefix"].removeprefix(prefix).removesuffix("/"), True
            for item in page.get("Contents", ()):
                if item["Key"] != prefix:  # a "folder" marker (the console, s3fs) is no entry
                    yield item["Key"].removeprefix(prefix), False

    def reader(self) -> nullcontext[S3Fleet]:
        """This folder itself: boto3's client serves many threads at once."""
        return nullcontext(self)

    def read(self, policy: str, host: str) -> bytes:
        name = f"{policy}/{file_name(policy, host)}"
        where = f"{FOLDER}/{name}"
        answer = self._asked(lambda: self.client.get_object(Bucket=self.bucket, Key=self.prefix + name), "read")
        body = answer["Body"]
        try:
            if answer.get("ContentLength", 0) > MAX_DOCUMENT:
                raise too_big(where)
            data: bytes = self._asked(lambda: body.read(MAX_DOCUMENT + 1), "read")  # the length may be a lie
        finally:
            body.close()
        if len(data) > MAX_DOCUMENT:
            raise too_big(where)
        return data

    def _asked(self, call: Callable[[], T], what: str) -> T:
        """An S3 request; its failure in the operator's words (the error code only: a message may quote keys)."""
        try:
            return call()
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            raise TargetUnreachable(f"{self.display}: S3 refused to {what} the fleet folder ({code})",
                                    _hint(code, what)) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise TargetUnreachable(f"{self.display} cannot be reached: {exc.__class__.__name__}",
                                    "check that the endpoint is up and reachable from this host") from None


def _hint(code: str, what: str) -> str:
    if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        role = "backup" if what == "write" else "fleet"
        return (f"check the keys and their rights on the fleet folder: opsctl iam-policy --target NAME --role {role} "
                "prints them")
    if code in ("404", "NoSuchBucket"):
        return "check the bucket name in the policy"
    if code == "NoSuchKey":
        return "it was removed while being read; run the command again"
    return "check the endpoint and the bucket"

