"""The compliance document as `opsctl status` makes it: one function, so the fleet's copy says what status says."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from opsctl.actions import rotation
from opsctl.compliance import document
from opsctl.compliance.picture import Look, Picture, picture
from opsctl.compliance.rules import RuleVerdict, evaluate, verdict
from opsctl.policy.model import Policy
from opsctl.policy.schedule import check_parts


@dataclass(frozen=True)
class Evaluated:
    """What is known of every target, the rules' verdicts over it, and the document that says both."""

    picture: Picture
    verdicts: tuple[RuleVerdict, ...]
    content: dict[str, Any]


def evaluated(policy: Policy, state_dir: Path, now: datetime, looks: Mapping[str, Look] | None) -> Evaluated:
    """The rules over the run record, and over each target's answer when there are looks (None: --offline)."""
    seen = picture(policy, state_dir, now, looks)
    verdicts = evaluate(seen)
    content = document.content(seen, verdicts, verdict(verdicts), check_cycles(policy, state_dir))
    return Evaluated(seen, verdicts, content)


def check_cycles(policy: Policy, state_dir: Path) -> dict[str, str]:
    """Per target, how much of its data the scheduled checks have read in this cycle (every pack once per cycle)."""
    cycle = check_parts(policy.verification.read_data_subset)
    if cycle is None:
        return {}
    turns = rotation.read(state_dir)
    return {t.name: f"{turns.check_part(t.name, cycle) - 1} of {cycle} parts read this cycle" for t in policy.targets}
