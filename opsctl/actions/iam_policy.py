"""opsctl iam-policy: the least-privilege AWS IAM policy for one S3 target and one role.

backup: list the prefix, read and add objects under it, delete only restic's lock files (every
restic command removes its own lock). prune: backup's rights, deleting anything under the prefix,
and listing the whole bucket (restic init asks whether the bucket exists). audit: list and read the
audit trail's copy (`opsctl-audit/` under the prefix) and the bucket's versioning and lock settings,
and nothing else: no repository file (its data and keys are the restorer's need, not the auditor's),
no write, no delete. fleet: list and read the fleet folder beside the repository (`fleet/` in the
prefix's parent: every host's status, `opsctl fleet status`) and nothing else; refused for a repository
itself named fleet, whose files that folder would be.

When the policy publishes to the target (fleet.publish_to, which then requires fleet.host), backup and
prune may also put one object: `<fleet folder>/<policy>/<fleet.host>.json`, this host's own document
(S3 replaces it whole: no temporary name). Their keys cannot write another host's document, nor add
anything else to the fleet folder. One exception: a target without a prefix keeps its repository at
the bucket's root, so its keys may write anywhere in the bucket, the fleet folder included; give each
repository a prefix to keep hosts apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any

from opsctl.actions.context import App, Session
from opsctl.actions.outcome import Outcome
from opsctl.actions.runner import Command
from opsctl.audit import offsite
from opsctl.errors import BadInput
from opsctl.policy.fleet import refuse_fleet_repository
from opsctl.policy.model import Policy, S3TargetConfig
from opsctl.targets import fleet

Statement = dict[str, Any]


class S3Role(Enum):
    """Who uses the keys: the backing-up host, the host that prunes, or someone who only reads."""

    BACKUP = "backup"
    PRUNE = "prune"
    AUDIT = "audit"
    FLEET = "fleet"


@dataclass(frozen=True)
class IamPolicyRequest:
    target: str
    role: S3Role = S3Role.BACKUP


@dataclass(frozen=True)
class IamPolicy(Outcome):
    """The policy document for one target and role."""

    target: str
    role: S3Role
    document: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "role": self.role.value, "policy": self.document}

    def show(self, app: App) -> None:
        # Plain JSON on stdout, ready for `aws iam put-user-policy --policy-document file:///dev/stdin`.
        app.out.print(json.dumps(self.document, indent=2), markup=False, highlight=False)


def policy_document(config: S3TargetConfig, role: S3Role, policy: Policy) -> dict[str, Any]:
    """The IAM policy that lets `role` do its part on the target's bucket and prefix, and nothing else."""
    bucket = f"arn:aws:s3:::{config.bucket}"
    prefix = config.prefix.strip("/")
    if role is S3Role.FLEET:  # nothing else: the bucket's settings are the operator's and the auditor's business
        refuse_fleet_repository(config)
        return {"Version": "2012-10-17", "Statement": _fleet_statements(bucket, fleet.s3_folder(prefix))}
    if role is S3Role.AUDIT:
        folder = f"{prefix}/{offsite.FOLDER}" if prefix else offsite.FOLDER
        readable, statements = f"{bucket}/{folder}/*", _audit_statements(bucket, folder)
    else:
        readable = f"{bucket}/{prefix}/*" if prefix else f"{bucket}/*"
        statements = _repository_statements(bucket, prefix, role, readable)
        statements += _publishing(bucket, prefix, config.name, policy)
    statements.append(_allow("BucketFacts", ["s3:GetBucketVersioning", "s3:GetBucketObjectLockConfiguration"],
                             bucket))  # read by opsctl doctor: whether deleted files can be recovered
    if config.object_lock is not None:
        # Without it S3 leaves the lock's end out of HEAD answers: doctor and status could not say until when.
        # Never s3:BypassGovernanceRetention: that right would let these keys lift a GOVERNANCE lock.
        statements.append(_allow("ReadRetention", ["s3:GetObjectRetention"], readable))
    return {"Version": "2012-10-17", "Statement": statements}


def _repository_statements(bucket: str, prefix: str, role: S3Role, objects: str) -> list[Statement]:
    """backup and prune: list and read the repository, add to it, delete its locks (prune: anything in it)."""
    locks = f"{bucket}/{prefix}/locks/*" if prefix else f"{bucket}/locks/*"
    deleting = _allow("DeleteFiles", ["s3:DeleteObject"], objects) if role is S3Role.PRUNE else _allow(
        "DeleteLocksOnly", ["s3:DeleteObject"], locks)
    return [_listing(bucket, prefix, whole_bucket=role is S3Role.PRUNE),
            _allow("ReadRepository", ["s3:GetObject"], objects),
            _allow("AddFiles", ["s3:PutObject"], objects), deleting]


def _audit_statements(bucket: str, folder: str) -> list[Statement]:
    """audit: list and read the audit trail's copy alone; the repository's data, index and keys stay out of reach."""
    # Versions too: `audit verify --against` reads a copy's first version and reports one written again.
    listing = _allow("ListAuditCopy", ["s3:ListBucket", "s3:ListBucketVersions"], bucket)
    listing["Condition"] = {"StringLike": {"s3:prefix": [f"{folder}/*"]}}
    return [listing, _allow("ReadAuditCopy", ["s3:GetObject", "s3:GetObjectVersion"], f"{bucket}/{folder}/*")]


def _fleet_statements(bucket: str, folder: str) -> list[Statement]:
    """fleet: list and read every host's status document; no repository, no trail copy, no write."""
    listing = _allow("ListFleet", ["s3:ListBucket"], bucket)
    listing["Condition"] = {"StringLike": {"s3:prefix": [f"{folder}/*"]}}
    return [listing, _allow("ReadFleet", ["s3:GetObject"], f"{bucket}/{folder}/*")]


def _publishing(bucket: str, prefix: str, target: str, policy: Policy) -> list[Statement]:
    """Put this host's own status document into the fleet folder, when the policy publishes there and the folder lies
    outside the prefix (without one, the repository's own rights already cover the whole bucket)."""
    if target not in policy.fleet.publish_to or not prefix:
        return []
    # fleet.host is set: the policy's validation requires it for an S3 target published to.
    document = f"{fleet.s3_folder(prefix)}/{policy.name}/{fleet.file_name(policy.name, policy.fleet.host_name())}"
    return [_allow("PublishFleetStatus", ["s3:PutObject"], f"{bucket}/{document}")]


def _listing(bucket: str, prefix: str, whole_bucket: bool) -> Statement:
    """s3:ListBucket, limited to the prefix; the prune role's init needs the whole bucket (HeadBucket)."""
    statement = _allow("ListRepository", ["s3:ListBucket"], bucket)
    if prefix and not whole_bucket:
        # Only "prefix/...": a bare "prefix" would also list sibling prefixes such as prefix-hr/.
        statement["Condition"] = {"StringLike": {"s3:prefix": [f"{prefix}/*"]}}
    return statement


def _allow(sid: str, actions: list[str], resource: str) -> Statement:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resource}


def _iam_policy(session: Session, request: IamPolicyRequest) -> IamPolicy:
    config = session.target_configs(request.target)[0]
    if not isinstance(config, S3TargetConfig):
        raise BadInput(f"target '{config.name}' is a {config.kind} target; IAM policies exist only for S3 targets",
                       "name an S3 target with --target (kind: s3 in the policy)")
    return IamPolicy(config.name, request.role, policy_document(config, request.role, session.policy))


IAM_POLICY = Command("iam-policy", _iam_policy)
