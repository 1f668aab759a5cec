"""The audit trail of everything opsctl did to backups."""

from opsctl.audit.trail import AuditRecord, append, read

__all__ = ["AuditRecord", "append", "read"]
