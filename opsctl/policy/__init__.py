"""The policy: one YAML file that says how the CRM database must be protected."""

from opsctl.policy.load import load_policy
from opsctl.policy.model import Policy

__all__ = ["Policy", "load_policy"]
