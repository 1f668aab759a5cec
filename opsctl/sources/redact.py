"""Database tools quote row values in their errors (DETAIL, CONTEXT, invalid input); strip them."""

from __future__ import annotations

import re

_VALUE_LINES = re.compile(r"^\s*(\S+:\s*)?(DETAIL|CONTEXT|LINE \d+|QUERY|STATEMENT):", re.I)
_QUOTED_LITERAL = re.compile(r"'(?:[^']|'')*'")
_INPUT_VALUE = re.compile(r'(input (?:syntax|value)[^:]*:\s*)"(?:[^"]|"")*"', re.I)


def redact_tool_output(text: str, keep: int = 5) -> str:
    """The last few lines of a database tool's stderr with anything that may be row data removed."""
    lines = [line for line in text.splitlines() if line.strip() and not _VALUE_LINES.match(line)]
    cleaned = [_INPUT_VALUE.sub(r'\1"…"', _QUOTED_LITERAL.sub("'…'", line)) for line in lines]
    return "\n".join(cleaned[-keep:])
