"""Database tools quote row values in their errors (DETAIL, CONTEXT, invalid input); strip them."""

from __future__ import annotations

import re

_VALUE_LINES = re.compile(r"^\s*(\S+:\s*)?(DETAIL|CONTEXT|LINE \d+|QUERY|STATEMENT):", re.IGNORECASE)
_QUOTED_LITERAL = re.compile(r"'(?:[^']|'')*'")
_INPUT_VALUE = re.compile(r'(input (?:syntax|value)[^:]*:\s*)"(?:[^"]|"")*"', re.IGNORECASE)


_STATEMENT_FENCE = "-" * 14  # the mariadb client prints a failing statement between two of these


def redact_tool_output(text: str, keep: int = 5) -> str:
    """The last few lines of a database tool's stderr with anything that may be row data removed."""
    lines = [line for line in _outside_fences(text.splitlines()) if line.strip() and not _VALUE_LINES.match(line)]
    cleaned = [_INPUT_VALUE.sub(r'\1"…"', _QUOTED_LITERAL.sub("'…'", line)) for line in lines]
    return "\n".join(cleaned[-keep:])


def _outside_fences(lines: list[str]) -> list[str]:
    """Lines that are not part of an echoed SQL statement (an INSERT holds whole rows)."""
    kept, inside = [], False
    for line in lines:
        if line.strip() == _STATEMENT_FENCE:
            inside = not inside
        elif not inside:
            kept.append(line)
    return kept
