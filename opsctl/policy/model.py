"""The policy schema: one typed model for everything opsctl enforces.

Every field carries a description; the loader uses it to tell the operator what a missing field
is for. Relative paths resolve against the policy file's folder (given as validation context).
"""

from __future__ import annotations

import math
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from opsctl.policy.compliance import Compliance, Metrics, ObjectLock, retention_span
from opsctl.policy.durations import format_duration
from opsctl.policy.fields import (
    NAME_RULE,
    Duration,
    GroupName,
    Name,
    PolicyPath,
    Secret,
    Strict,
    check_private_file,
    is_valid_name,
    opens_files,
)
from opsctl.policy.fleet import Fleet
from opsctl.policy.notify import Notify
from opsctl.policy.recovery import RecoveryServer, Standby
from opsctl.policy.schedule import Schedule
from opsctl.policy.tls import (
    SYSTEM_CA_FILE,
    VERIFYING_TLS_MODES,
    DatabaseTls,
    TlsMode,
    is_local_host,
    usable_ca_file,
)
from opsctl.policy.trust import untrusted


class ServerDatabase(Strict):
    """Connection to a database server; several databases of one server may be backed up together."""

    host: str = Field("localhost", description="server host name, address, or a Unix socket folder")
    port: int = Field(..., ge=1, le=65535, description="server TCP port")
    user: str = Field(..., min_length=1, description="the role that runs the dump")
    password: Secret | None = Field(None, description="where the database password comes from")
    names: tuple[Name, ...] = Field(..., min_length=1, description="the databases to back up, e.g. [crm]")
    tls: DatabaseTls = Field(DatabaseTls(), description="encryption in transit: mode and ca_file")

    @model_validator(mode="after")
    def _tls_fits(self) -> ServerDatabase:
        mode = self.tls_mode
        if mode not in (None, "disable") and self.host.startswith("/") and "," not in self.host:
            raise ValueError(f"tls.mode {mode} cannot apply to the Unix socket {self.host}: its traffic never leaves "
                             "this machine; remove tls, or set database.host to the server's host name")
        if self.tls.ca_file is not None and mode not in VERIFYING_TLS_MODES:
            raise ValueError(f"tls.ca_file is used only by tls.mode verify-ca or verify-full (mode here: {mode}); "
                             "set tls.mode: verify-full, or remove tls.ca_file")
        if mode == "verify-ca" and self.tls.ca_file is None:
            raise ValueError("tls.mode verify-ca checks only who signed the certificate, so with the system's CAs any "
                             "public certificate passes; set tls.ca_file to your own CA, or use tls.mode: verify-full")
        if mode in VERIFYING_TLS_MODES and self.tls.ca_file is None and not SYSTEM_CA_FILE.is_file():
            raise ValueError(f"tls.mode {mode} needs tls.ca_file (the CA certificate that signed the server's): "
                             f"the system's trust store {SYSTEM_CA_FILE} is missing")
        return self

    @property
    def tls_mode(self) -> TlsMode | None:
        """The mode in force: the policy's; else verify-full off this machine or with a ca_file; else the client's."""
        if self.tls.mode is not None:
            return self.tls.mode
        return "verify-full" if self.tls.ca_file is not None or not is_local_host(self.host) else None

    @property
    def tls_ca_file(self) -> Path | None:
        """The CA file the verify modes check the server's certificate against."""
        if self.tls_mode not in VERIFYING_TLS_MODES:
            return None
        return self.tls.ca_file or SYSTEM_CA_FILE

    @model_validator(mode="before")
    @classmethod
    def _name_or_names(cls, data: object) -> object:
        if isinstance(data, dict) and "name" in data:
            data = dict(data)
            if "names" in data:
                raise ValueError("give either name or names, not both")
            data["names"] = [data.pop("name")]
        return data

    @field_validator("names")
    @classmethod
    def _unique(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(names)) != len(names):
            raise ValueError("each database may be listed only once")
        return names


class PostgresConfig(ServerDatabase):
    engine: Literal["postgresql"]
    port: int = Field(5432, ge=1, le=65535, description="server TCP port")
    lock_wait_timeout: Duration = Field(
        timedelta(minutes=5), description="how long pg_dump waits for a table lock before giving up"
    )


class MySQLConfig(ServerDatabase):
    engine: Literal["mysql"]
    port: int = Field(3306, ge=1, le=65535, description="server TCP port")
    lock_wait_timeout: Duration = Field(
        timedelta(minutes=5), description="how long opsctl waits for the brief backup lock (held by e.g. DDL)"
    )
    lock_non_transactional: bool = Field(
        False, description="true: hold commits for the whole dump so MyISAM/Aria tables are consistent too"
    )

    @model_validator(mode="after")
    def _tools_insist_on_tls(self) -> MySQLConfig:
        # MariaDB 10.11's dump and client tools fall back to plain text unless told to verify the server's
        # certificate: with require or verify-ca, someone in between could strip TLS from the dump itself.
        if self.tls.mode in ("require", "verify-ca"):
            raise ValueError(f"tls.mode {self.tls.mode} cannot be kept by MariaDB's tools (they would fall back to "
                             "plain text); set tls.mode: verify-full (with tls.ca_file for your own CA), or disable on "
                             "a network you trust")
        return self


class SQLiteConfig(Strict):
    engine: Literal["sqlite"]
    path: PolicyPath = Field(..., description="the SQLite database file")
    name: Name | None = Field(None, description="name used in snapshots; defaults to the file name without suffix")

    @model_validator(mode="after")
    def _usable_name(self) -> SQLiteConfig:
        if self.name is None and not is_valid_name(self.path.stem):
            raise ValueError(f"the file name '{self.path.stem}' cannot name snapshots; set name: to {NAME_RULE}")
        return self

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name or self.path.stem,)


Database = Annotated[
    PostgresConfig | MySQLConfig | SQLiteConfig, Field(discriminator="engine")
]


class Retention(Strict):
    """restic forget keep-rules; unset rules keep nothing by themselves."""

    keep_last: int | None = Field(None, ge=1)
    keep_hourly: int | None = Field(None, ge=1)
    keep_daily: int | None = Field(None, ge=1)
    keep_weekly: int | None = Field(None, ge=1)
    keep_monthly: int | None = Field(None, ge=1)
    keep_yearly: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _something_kept(self) -> Retention:
        if all(v is None for v in self.model_dump().values()):
            raise ValueError("set at least one keep_* rule, e.g. keep_daily: 14")
        return self


DEFAULT_RETENTION = Retention(keep_daily=7, keep_weekly=5, keep_monthly=12)


class TargetConfigBase(Strict):
    name: Name = Field(..., description="a short unique name for this target, e.g. local or offsite")
    offsite: bool = Field(False, description="true for the copy that survives losing the site (S3, a remote NAS)")
    offline: bool = Field(False, description="true for a copy kept disconnected between backups (a rotated disk, a NAS "
                                             "switched off): the offline copy of 3-2-1-1-0")
    retention: Retention | None = Field(None, description="keep-rules for this target; default: the policy's")


class LocalTargetConfig(TargetConfigBase):
    kind: Literal["local"]
    path: PolicyPath = Field(..., description="the folder that holds the restic repository")


class MountTargetConfig(TargetConfigBase):
    kind: Literal["mount"]
    path: PolicyPath = Field(..., description="the repository folder on a mounted NAS share")
    require_mountpoint: bool = Field(True, description="refuse to write when the share is not mounted")


# restic splits sftp.command on whitespace and quotes and has no escapes: such characters cannot pass.
_SSH_WORD = r"^[^\s'\"\\]+$"
_SSH_WORD_RULE = "no spaces, quotes or backslashes (restic passes it inside one ssh command line)"


class SftpTargetConfig(TargetConfigBase):
    kind: Literal["sftp"]
    host: str = Field(..., pattern=r"^[A-Za-z0-9._:\[\]-]+$", description="the NAS host name or address")
    port: int = Field(22, ge=1, le=65535)
    user: str = Field(..., pattern=r"^[A-Za-z0-9._][A-Za-z0-9._-]*$", description="the SSH user on the NAS")
    path: str = Field(..., pattern=r"^/", description="the absolute repository path on the NAS")
    identity_file: PolicyPath = Field(..., description="the private SSH key opsctl logs in with")
    known_hosts: PolicyPath = Field(..., description="a known_hosts file that pins the NAS host key")

    @field_validator("identity_file", "known_hosts")
    @classmethod
    def _plain_path(cls, path: Path, info: ValidationInfo) -> Path:
        if not re.match(_SSH_WORD, str(path)):
            raise ValueError(f"{path}: use a path with {_SSH_WORD_RULE}")
        # Another user's key or known_hosts would let them be the NAS; a missing one is the target's to report.
        distrust = untrusted(path, private=info.field_name == "identity_file") if opens_files(info) else None
        if distrust is not None:
            raise ValueError(str(distrust))
        return path


class S3Credentials(Strict):
    file: PolicyPath | None = Field(
        None, description="a private file with AWS_ACCESS_KEY_ID=... and AWS_SECRET_ACCESS_KEY=..."
    )
    env: bool = Field(False, description="true to take AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY from the environment")

    @model_validator(mode="after")
    def _exactly_one(self, info: ValidationInfo) -> S3Credentials:
        if (self.file is not None) == self.env:
            raise ValueError("give exactly one of file: (a private KEY=VALUE file) or env: true")
        if self.file is not None and opens_files(info):
            check_private_file(self.file)
        return self


class S3TargetConfig(TargetConfigBase):
    kind: Literal["s3"]
    # Declared before endpoint: the endpoint's check reads it.
    allow_plain_http: bool = Field(
        False, description="true to accept an http:// endpoint (meant for a loopback test server only)"
    )
    endpoint: str = Field(
        ..., pattern=r"^https?://[^/@\s]+(/[^@\s]*)?$",
        description="an https:// URL without credentials, e.g. https://s3.eu-west-1.amazonaws.com",
    )
    ca_file: PolicyPath | None = Field(
        None, description="a PEM file of the CA that signed the endpoint's certificate (default: the system's)"
    )
    bucket: str = Field(..., min_length=3, description="the bucket name")
    prefix: str = Field("", description="a folder inside the bucket")
    region: str = Field("us-east-1")
    path_style: bool = Field(True, description="path-style addressing (needed by most non-AWS endpoints)")
    credentials: S3Credentials = Field(..., description="where the S3 access keys come from (keys that cannot delete)")
    prune_credentials: S3Credentials | None = Field(
        None, description="keys that may also delete, used only by prune and keys rotate; default: credentials"
    )
    object_lock: ObjectLock | None = Field(
        None, description="S3 Object Lock: mode (GOVERNANCE or COMPLIANCE) and days; opsctl init creates the bucket "
                          "with it, status checks the bucket has it")

    @field_validator("offline")
    @classmethod
    def _reachable_bucket(cls, offline: bool) -> bool:
        if offline:
            raise ValueError("a bucket cannot be disconnected, so it is never the offline copy; give it object_lock "
                             "for the immutable copy of 3-2-1-1-0, or remove offline")
        return offline

    @field_validator("endpoint")
    @classmethod
    def _encrypted(cls, endpoint: str, info: ValidationInfo) -> str:
        # Plain HTTP lets anyone on the path read the requests and answer in the bucket's place.
        if endpoint.lower().startswith("http://") and info.data.get("allow_plain_http") is not True:
            raise ValueError("an http:// endpoint is not encrypted; use https://, or for a loopback test "
                             "endpoint only, set allow_plain_http: true on this target")
        return endpoint

    @field_validator("ca_file")
    @classmethod
    def _usable_ca(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        return None if path is None or not opens_files(info) else usable_ca_file(path, "ca_file")


Target = Annotated[
    LocalTargetConfig | MountTargetConfig | SftpTargetConfig | S3TargetConfig, Field(discriminator="kind")
]


class Objectives(Strict):
    rpo: Duration = Field(timedelta(hours=24), description="most data you may lose, e.g. 24h")
    rto: Duration = Field(timedelta(hours=4), description="longest a restore may take, e.g. 4h")


class Verification(Strict):
    read_data_subset: str = Field(
        "5%", pattern=r"^(\d{1,3}(\.\d+)?%|\d+/\d+|\d+[KMGT]?)$", description="how much pack data restic check reads"
    )


class Policy(Strict):
    """The whole policy file."""

    version: Literal[1] = Field(1, description="the policy format version; 1")
    name: Name = Field(..., description="the policy's name; tags every snapshot, e.g. crm-prod")
    database: Database = Field(..., description="the database to protect")
    targets: tuple[Target, ...] = Field(..., min_length=1, description="where backups go (local, mount, sftp, s3)")
    repository_password: Secret = Field(..., description="where the restic repository password comes from")
    retention: Retention = Field(DEFAULT_RETENTION, description="keep-rules applied by prune")
    objectives: Objectives = Field(Objectives(), description="recovery objectives checked by drills")
    verification: Verification = Field(Verification())
    compression: Literal["auto", "max", "off"] = Field("auto", description="restic compression for new data")
    lock_wait: Duration = Field(
        timedelta(minutes=2), description="how long to wait for another restic run's lock before giving up"
    )
    stall_timeout: Duration = Field(
        timedelta(minutes=5), description="a target that makes no progress this long is cut off; the others go on"
    )
    state_dir: PolicyPath | None = Field(None, description="where opsctl keeps its audit log and reports")
    max_key_age: Duration = Field(
        timedelta(days=365), description="keys status warns when opsctl's repository key is older than this"
    )
    schedule: Schedule = Field(Schedule(), description="when each job runs on its own (schedule install / run)")
    notify: Notify = Field(Notify(), description="who hears about runs: healthchecks pings, webhooks, commands")
    compliance: Compliance = Field(Compliance(), description="the rules opsctl status requires (default 3-2-1, rpo)")
    metrics: Metrics = Field(Metrics(), description="Prometheus textfile metrics written after every command")
    report_group: GroupName | None = Field(
        None, description="a group that may read the reports and status files (0640), and nothing else in state_dir"
    )
    signing_key: PolicyPath | None = Field(
        None, description="the Ed25519 private key that signs reports (default: see opsctl keys signing init)"
    )
    fleet: Fleet = Field(Fleet(), description="which targets get this host's status after each job (fleet status)")
    recovery_server: RecoveryServer | None = Field(
        None, description="a second server (SQLite: a folder) where verify, drill and standby restore, and restore "
                          "--server recovery on the night the database server is gone")
    standby: Standby = Field(Standby(), description="the read-only copy for customer service (opsctl standby)")

    def lock_problems(self) -> list[str]:
        """Each S3 lock shorter than its target's retention keeps a snapshot (a snapshot still kept would become
        deletable first). Checked by policy validate and init, not at every load: it costs a calendar search."""
        if not any(getattr(target, "object_lock", None) for target in self.targets):
            return []
        gap = self.schedule.backup.longest_gap() if self.schedule.backup is not None else None
        problems = []
        for index, target in enumerate(self.targets):
            lock = getattr(target, "object_lock", None)
            span = retention_span((target.retention or self.retention).model_dump(exclude_none=True), gap)
            needed = math.ceil(span / timedelta(days=1)) if span is not None else 0
            if lock is not None and lock.days < needed:
                problems.append(
                    f"targets[{index}].object_lock.days {lock.days} is shorter than the {needed} days its retention "
                    "keeps a snapshot: a snapshot still kept would become deletable (by anyone with the keys) before "
                    f"retention lets it go; set object_lock.days to at least {needed}, or keep snapshots for less "
                    "time on this target (targets[].retention)")
        return problems

    def compliance_note(self) -> str | None:
        """Why the rpo rule will fail between verifications (None when it cannot): it counts verified snapshots only.
        Scheduled verifies take the targets and databases in turn, so one database waits for the others."""
        verify = self.schedule.verify
        if "rpo" not in self.compliance.rules:
            return None
        if verify is None:
            return ("schedule.verify is off, but compliance.rules requires rpo, which counts only verified "
                    "snapshots: schedule verify, or run opsctl verify more often than objectives.rpo")
        turns = (len(self.database.names) - 1) * len(self.targets) + 1  # the longest wait for one database
        worst = verify.longest_gap() * turns + self.schedule.randomized_delay
        if worst <= self.objectives.rpo:
            return None
        return (f"schedule.verify '{verify.text}' leaves up to {format_duration(worst)} between verifications of a "
                f"database (they take the targets and databases in turn), more than objectives.rpo "
                f"{format_duration(self.objectives.rpo)}: the rpo rule of opsctl status counts only verified "
                "snapshots, so it would fail before each verification; verify more often")

    def rpo_note(self) -> str | None:
        """Why the backup schedule cannot keep the RPO (None when it can): a failure just before a backup loses more."""
        backup = self.schedule.backup
        if backup is None:
            return None
        worst = backup.longest_gap() + self.schedule.randomized_delay
        if worst <= self.objectives.rpo:
            return None
        return (f"schedule.backup '{backup.text}' leaves up to {format_duration(worst)} between backups (with "
                f"randomized_delay), more than objectives.rpo {format_duration(self.objectives.rpo)}; back up more "
                "often, or raise objectives.rpo")

    @field_validator("targets")
    @classmethod
    def _distinct_targets(cls, targets: tuple[Target, ...]) -> tuple[Target, ...]:
        names: set[str] = set()
        folders: dict[Path, str] = {}
        for target in targets:
            if target.name in names:
                raise ValueError(duplicate_names_message(target.name))
            names.add(target.name)
            folder = getattr(target, "path", None)
            if isinstance(folder, Path):
                if folder in folders:  # two "copies" in one folder are one copy
                    raise ValueError(f"targets {folders[folder]} and {target.name} use the same folder {folder}; "
                                     "each copy needs its own place")
                folders[folder] = target.name
        return targets

    @field_validator("fleet")
    @classmethod
    def _publishes_to_own_targets(cls, fleet: Fleet, info: ValidationInfo) -> Fleet:
        targets = info.data.get("targets")
        if targets is None:  # the targets' own errors are reported; nothing to compare with
            return fleet
        return fleet.checked_against(targets)

    @model_validator(mode="after")
    def _recovery_fits(self) -> Policy:
        if self.recovery_server is not None:
            self.recovery_database()  # its errors, named as recovery_server's, at load time
        return self

    def recovery_database(self, host: str | None = None, port: int | None = None,
                          user: str | None = None) -> Database | None:
        """The database settings with the recovery server's connection in place of the policy's own (None when
        no recovery_server is set); host, port and user override it, as restore's --host/--port/--user do."""
        recovery = self.recovery_server
        if recovery is None:
            return None
        return recovery_config(self.database, recovery, host=host, port=port, user=user)

    def target(self, name: str) -> Target | None:
        """The target with that name, or None."""
        return next((t for t in self.targets if t.name == name), None)


def recovery_config(database: Database, recovery: RecoveryServer, *, host: str | None = None,
                    port: int | None = None, user: str | None = None) -> Database:
    """`database` with the connection of `recovery` (its own credentials and TLS), checked as database is."""
    if isinstance(database, SQLiteConfig):
        if recovery.folder is None or recovery.model_fields_set - {"folder"}:
            raise ValueError("recovery_server for SQLite is a folder and nothing else: recovery_server: {folder: "
                             "/srv/recovery}")
        return database.model_copy(update={"path": recovery.folder / database.path.name,
                                           "name": database.names[0]})
    if recovery.folder is not None:
        raise ValueError("recovery_server.folder is for SQLite; for a database server give host, port, user and "
                         "password")
    if recovery.user is None and user is None:
        raise ValueError("recovery_server.user is missing: the role that restores on the recovery server")
    if (recovery.host or "localhost", recovery.port or database.port) == (database.host, database.port):
        raise ValueError("recovery_server names the database's own server (same host and port); give the second "
                         "server the copies should go to, or remove recovery_server")
    settings = {**database.model_dump(exclude={"host", "port", "user", "password", "tls"}),
                "host": host or recovery.host or "localhost", "port": port or recovery.port or database.port,
                "user": user or recovery.user, "password": recovery.password, "tls": recovery.tls}
    try:
        return type(database).model_validate(settings)
    except ValidationError as exc:
        raise ValueError("recovery_server: " + "; ".join(str(e["msg"]).removeprefix("Value error, ")
                                                         for e in exc.errors())) from None


def duplicate_names_message(name: object) -> str:
    return f"two targets are named '{name}'; give each target its own name"


def default_signing_key(policy_name: str) -> Path:
    """Outside state_dir, so whoever can read the reports cannot sign one: /etc/opsctl/signing/NAME.key for root,
    else $XDG_CONFIG_HOME/opsctl/signing/NAME.key."""
    if os.geteuid() == 0:
        return Path("/etc/opsctl/signing") / f"{policy_name}.key"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "opsctl" / "signing" / f"{policy_name}.key"


def default_state_dir(policy_name: str) -> Path:
    """Per-user state: /var/lib/opsctl/NAME for root, else $XDG_STATE_HOME/opsctl/NAME."""
    if os.geteuid() == 0:
        return Path("/var/lib/opsctl") / policy_name
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "opsctl" / policy_name
