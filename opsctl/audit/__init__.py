"""The audit trail of everything opsctl did to backups."""

from opsctl.audit.trail import AuditRecord, append

__all__ = ["AuditRecord", "append"]
