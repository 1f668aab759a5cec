"""The policy's `fleet:` section: which targets get this host's status after each job, and its name there.

Hosts whose repositories sit side by side (in one bucket, one NAS folder) then share one fleet folder
beside them, and `opsctl fleet status` shows them all in one table. Off by default: nothing is published.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import Field, field_validator, model_validator

from opsctl.errors import BadInput
from opsctl.policy.fields import NAME_RULE, Name, Strict, cross_reference, is_valid_name

if TYPE_CHECKING:
    from opsctl.policy.model import Target

FOLDER = "fleet"  # beside each repository: <the repository's parent>/fleet/<policy>/<host>.json


class Fleet(Strict):
    """Where this host publishes its offline status document, and the name it is listed under."""

    publish_to: tuple[Name, ...] = Field(
        (), description="the targets that get this host's status after each job; [] (the default) publishes nothing")
    host: Name | None = Field(None, description="the name this host is listed under; default: the machine's host "
                                                "name (required when publishing to an S3 target)")

    @field_validator("publish_to")
    @classmethod
    def _once_each(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(names)) != len(names):
            raise ValueError("each target may be listed only once")
        return names

    @model_validator(mode="after")
    def _nameable(self) -> Fleet:
        # Checked only when something is published: a policy that never publishes does not care how the machine
        # is called.
        if self.publish_to and self.host is None and not is_valid_name(socket.gethostname()):
            raise cross_reference("host", f"this machine's host name {socket.gethostname()[:80]!r} cannot name it in "
                                          f"the fleet; set fleet.host to the name it is listed under ({NAME_RULE})")
        return self

    def host_name(self) -> str:
        """The name this host publishes under."""
        return self.host or socket.gethostname()

    def checked_against(self, targets: Sequence[Target]) -> Fleet:
        """Each target published to is one of the policy's, is not itself a fleet folder, and (S3) the IAM policy can
        name this host's document."""
        by_name = {t.name: t for t in targets}
        for index, name in enumerate(self.publish_to):
            target = by_name.get(name)
            if target is None:
                raise cross_reference(f"publish_to[{index}]", f"'{name}' is not a target of this policy; name one "
                                                              f"of its targets: {', '.join(by_name)}")
            if is_fleet_folder(target):
                raise cross_reference(f"publish_to[{index}]", _inside_message(target) + "; move the repository to a "
                                      "folder with another name, or publish to another target")
            if target.kind == "s3" and self.host is None:
                raise cross_reference("host", f"target '{name}' is S3, where a host's keys may write its own status "
                                              "document only, named in the IAM policy (opsctl iam-policy): set "
                                              f"fleet.host to the name this host is listed under, e.g. {_example()}")
        return self


def repository_folder(target: Target) -> str:
    """Where a target's repository lies: its folder, or its S3 prefix."""
    return target.prefix if target.kind == "s3" else str(target.path)


def is_fleet_folder(target: Target) -> bool:
    """Whether a folder of the repository's path is named like the fleet folder: then it is that folder, or lies in
    the fleet folder of a repository beside one of its parents (and a policy's documents would land in it)."""
    return FOLDER in repository_folder(target).strip("/").split("/")


def refuse_fleet_repository(target: Target) -> None:
    """BadInput (exit 2) for a target whose repository is a fleet folder: reading it as one would read the
    repository."""
    if is_fleet_folder(target):
        raise BadInput(_inside_message(target) + "; nothing was read",
                       "move the repository to a folder with another name (restic's files may be moved as they are), "
                       "then point the target at it")


def _inside_message(target: Target) -> str:
    where = repository_folder(target) or "/"
    return (f"the repository of target '{target.name}' ({where}) lies in a folder named {FOLDER}, the name of the "
            "folders where hosts publish their status: documents could land inside a repository, and keys that read "
            "the fleet would read it")


def _example() -> str:
    name = socket.gethostname()
    return name if is_valid_name(name) else "crm-eu-1"
