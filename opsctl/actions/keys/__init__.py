"""Repository key rotation (keys rotate) and inspection (keys status)."""

from opsctl.actions.keys.rotate import rotate
from opsctl.actions.keys.status import status

__all__ = ["rotate", "status"]
