"""Quoting the text of a schedule in a message: every module that refuses or explains one needs it."""

from __future__ import annotations

_SHOWN = 60


def quotable(text: str, limit: int = _SHOWN) -> str:
    """text as a message may quote it: printable, and not a pasted novel."""
    clean = "".join(char if char.isprintable() else "?" for char in text)
    return clean if len(clean) <= limit else clean[:limit] + "..."
