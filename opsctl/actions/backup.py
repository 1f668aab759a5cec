"""opsctl backup: dump each database of the policy and stream it into each target's repository."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterator

from opsctl import __version__
from opsctl.actions.context import App, Session, exit_code_for, outcome_for
from opsctl.errors import ExitCode, OpsctlError
from opsctl.manifest import HashingStream, Manifest, encode_trailer
from opsctl.reports import console
from opsctl.reports.progress import byte_progress
from opsctl.sources import Dump, Source


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TargetBackup:
    """The outcome of one database backed up to one target."""

    database: str
    target: str
    location: str
    snapshot_id: str | None = None
    dump_bytes: int = 0
    bytes_added: int = 0
    tables: int = 0
    rows: int = 0
    duration_s: float = 0.0
    manifest_sha256: str | None = None
    warnings: tuple[str, ...] = ()
    error: str | None = None
    hint: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def backup(app: App, target_name: str | None = None) -> ExitCode:
    session = Session(app)
    configs = session.target_configs(target_name)
    with session.audited("backup") as record:
        _ = session.restic.version
        session.read_secrets()
        results = [_backup_one(app, session, source, config)
                   for source in session.sources for config in configs]
        record.targets = sorted({r.location for r in results})
        record.snapshot_ids = [r.snapshot_id for r in results if r.snapshot_id]
        code = exit_code_for(sum(r.ok for r in results), sum(not r.ok for r in results))
        record.outcome = outcome_for(code)
        record.details = {"bytes_added": sum(r.bytes_added for r in results)}
    console.show_backup(app, session.policy.name, results)
    return code


def _backup_one(app: App, session: Session, source: Source, config) -> TargetBackup:
    started = time.monotonic()
    display = config.name
    try:
        target = session.target(config)
        display = target.display
        repo = session.repository(target)
        with source.dump() as dump, byte_progress(app, f"{source.database} → {target.name}") as tracked:
            tags = [*session.snapshot_tags(source), f"opsctl-version={__version__}",
                    *(f"{key}={value}" for key, value in dump.properties.items() if "," not in value)]
            stream = _DumpWithManifest(session.policy.name, dump)
            summary = session.restic.backup_stream(
                repo, tracked(stream.chunks()), filename=source.file_name, tags=tags,
                compression=session.policy.compression)
    except Exception as exc:  # one target's failure, expected or not, must not stop the others
        if not isinstance(exc, OpsctlError):
            log.debug("unexpected failure", exc_info=True)
            exc = OpsctlError(f"unexpected error ({exc.__class__.__name__})", "run again with --verbose to see why")
        return TargetBackup(database=source.database, target=config.name, location=display, error=exc.message,
                            hint=exc.hint, duration_s=time.monotonic() - started)
    manifest = stream.manifest
    return TargetBackup(
        database=source.database, target=config.name, location=display, snapshot_id=summary.snapshot_id,
        dump_bytes=manifest.dump_bytes, bytes_added=summary.bytes_added,
        tables=len(manifest.facts.tables), rows=manifest.facts.total_rows,
        duration_s=time.monotonic() - started, manifest_sha256=manifest.sha256, warnings=manifest.facts.warnings,
    )


class _DumpWithManifest:
    """The dump's bytes, then the manifest trailer once the dump tool has ended cleanly."""

    def __init__(self, policy: str, dump: Dump) -> None:
        self._policy = policy
        self._dump = dump
        self.manifest: Manifest | None = None

    def chunks(self) -> Iterator[bytes]:
        started = _now()
        hashed = HashingStream(self._dump.chunks())
        yield from hashed
        log.debug("dump ended cleanly after %d bytes; writing the manifest", hashed.size)
        self.manifest = Manifest(
            policy=self._policy, opsctl_version=__version__, started_at=started, finished_at=_now(),
            dump_bytes=hashed.size, dump_sha256=hashed.sha256, facts=self._dump.facts,
        )
        yield encode_trailer(self.manifest)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
