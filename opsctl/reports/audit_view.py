"""The text views of `opsctl audit verify` and `opsctl audit show`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from opsctl.audit.chain import ChainCheck
    from opsctl.audit.offsite import Comparison
    from opsctl.audit.trail import AuditEntry
    from opsctl.reports.console import Terminal

_ERROR_SHOWN = 80  # characters of an entry's error in the table; --json has it whole
# Control characters (and C1 codes) a line of the trail may hold: shown as "?", never sent to the terminal.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _shown(text: str) -> str:
    return escape(_CONTROL.sub("?", text))


def show_chain_check(app: Terminal, check: ChainCheck, comparison: Comparison | None) -> None:
    """INTACT or BROKEN with the first bad line, notes, then the target's verdict when asked."""
    count = max(len(check.links) - 1, 0)
    if check.intact:
        app.out.print(f"INTACT: {_shown(str(check.path))} holds {count} chained entries"
                      + (f" (chain {check.chain_id[:16]})" if check.chain_id else ""))
    else:
        app.out.print(f"BROKEN: {_shown(check.problem or 'the chain does not hold')}")
        app.out.print(f"  file: {_shown(str(check.path))}; the {count} entries before that line are intact")
    for note in check.notes:
        app.out.print(f"  note: {_shown(note)}")
    if comparison is not None:
        word = "AGREES" if comparison.agrees else "DIVERGES"
        app.out.print(f"{word}: {_shown(comparison.message)}")
    if not check.intact or (comparison is not None and not comparison.agrees):
        app.out.print("  Keep this file and the targets' copies as they are: they are the evidence. "
                      "See the README, \"For auditors\".")


def show_entries(app: Terminal, entries: Sequence[AuditEntry], check: ChainCheck | None) -> None:
    """One row per entry, oldest first, then one line on the chain."""
    if not entries:
        app.out.print("No entries match.")
    else:
        table = Table("time", "who", "command", "outcome", "targets", "error")
        for e in entries:
            error = e.error or ""
            table.add_row(_shown(e.time), _shown(f"{e.user} (uid {e.uid})@{e.host}"), _shown(e.command),
                          _shown(e.outcome), _shown(", ".join(e.targets)),
                          _shown(error if len(error) <= _ERROR_SHOWN else error[:_ERROR_SHOWN - 1] + "…"))
        app.out.print(table)
    if check is not None:
        verdict = "intact" if check.intact else f"BROKEN: {check.problem}; run opsctl audit verify"
        app.out.print(f"chain: {_shown(verdict)}")
