"""opsctl: protect a CRM database with verified, encrypted 3-2-1 backups."""

__version__ = "0.2.0"
