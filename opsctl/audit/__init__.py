"""What opsctl did: the audit trail (every command, append-only) and the run record (the last outcome of each)."""

from opsctl.audit.trail import AuditEntry, append, read, trail_path

__all__ = ["AuditEntry", "append", "read", "trail_path"]
