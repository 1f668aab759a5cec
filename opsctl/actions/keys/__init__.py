"""Repository key rotation (keys rotate) and inspection (keys status)."""

from opsctl.actions.keys.rotate import KEYS_ROTATE, RotateRequest
from opsctl.actions.keys.status import KEYS_STATUS

__all__ = ["KEYS_ROTATE", "KEYS_STATUS", "RotateRequest"]
