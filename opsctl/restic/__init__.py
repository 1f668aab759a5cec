"""restic, driven through subprocess: the runner, its argument builders and its typed errors."""

from opsctl.restic.repository import Repository
from opsctl.restic.runner import Restic

__all__ = ["Repository", "Restic"]
