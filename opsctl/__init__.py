"""opsctl: protect a CRM database with verified, encrypted 3-2-1 backups."""

import os

__version__ = "0.2.0"

# opsctl uses no pydantic plugin. One installed on the host (an observability hook) would see every policy
# opsctl validates, and looking for them scans every installed package's metadata at each start (~75 ms).
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
