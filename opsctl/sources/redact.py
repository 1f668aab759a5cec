"""Database messages quote row values (PostgreSQL in double quotes, MariaDB in single ones); take them out.

Both engines also quote object names, in the same quotes: a quoted text is kept only when the word
before it names a kind of object (`relation "customers"`, `for key 'email'`) and it looks like a
name. Everything else quoted is a value and becomes …, as do row lists (`Key (email)=(…)`) and raw
bytes (`0x…`, `\\x…`). When in doubt a name is lost rather than a value shown.
"""

from __future__ import annotations

import re

REDACTED = "…"
WITHHELD = "(a message raised by a database function or trigger: withheld, as it may quote row data)"

# Words after which a quoted text names an object (PostgreSQL's `relation "x"`, MariaDB's `for key 'x'`).
_NAMING_WORDS = (
    "aggregate", "attribute", "collation", "column", "constraint", "conversion", "cursor", "database", "directory",
    "domain", "encoding", "event", "extension", "field", "file", "function", "index", "key", "language", "locale",
    "operator", "parameter", "partition", "policy", "portal", "procedure", "publication", "relation", "role",
    "routine", "rule", "savepoint", "schema", "sequence", "server", "socket", "statement", "subscription", "table",
    "tablespace", "trigger", "type", "user", "variable", "view",
)
_NAMED_BEFORE = re.compile(r"(?:^|[\s(,])(?:" + "|".join(_NAMING_WORDS) + r")\s*\Z", re.IGNORECASE)
# A name has a letter and no character a value like an e-mail or a card number needs; longer ones are lost.
_NAME = re.compile(r"(?=.*[^\W\d_])[\w$ .:/-]{1,128}")
_QUOTES = "\"'"
# What may follow a value in the engines' messages; a value runs to the quote before one of these,
# else to the last quote of the message (a value may hold quotes, unescaped, and line breaks).
_TAILS = (
    r" for key {q}[^{q}\n]*{q}",  # MariaDB: Duplicate entry '…' for key 'email'
    r" for column (?:{q}[^{q}\n]*{q}|`[^`\n]*`(?:\.`[^`\n]*`)*) at row \d+",  # MariaDB: Incorrect … value: '…'
    r" at line \d+",  # MariaDB: … near '…' at line 1
    r" is out of range for type [\w .]+",  # PostgreSQL: value "…" is out of range for type integer
    r" is invalid\.?",  # PostgreSQL JSON: Token "…" is invalid.
    r" when [a-z ]+",  # mariadb-dump: Got error: 1049: "…" when selecting the database
)
_ROW_LIST = re.compile(r"(\)\s*=\s*)\(.*\)", re.DOTALL)  # Key (email)=(…), Partition key … (a) = (…)
_FAILING_ROW = re.compile(r"(row contains\s*)\(.*\)", re.DOTALL | re.IGNORECASE)  # Failing row contains (…)
_HEX_BYTES = re.compile(r"0x[0-9a-fA-F]+(?:\s+0x[0-9a-fA-F]+)*")  # invalid byte sequence …: 0xe9 0x34 0x31
_ESCAPED_BYTES = re.compile(r"(?:\\x[0-9a-fA-F]{2})+")  # MariaDB: Incorrect string value: '\xE9…'
_UNQUOTED_VALUE = re.compile(r"(partition for value )\S+", re.IGNORECASE)  # MariaDB 1526 prints it bare


def redact_message(text: str) -> str:
    """One database message with every value, row list and raw byte replaced by …; object names kept."""
    text = _ROW_LIST.sub(rf"\1({REDACTED})", text)
    text = _FAILING_ROW.sub(rf"\1({REDACTED})", text)
    text = _UNQUOTED_VALUE.sub(rf"\1{REDACTED}", text)
    text = _redact_quoted(text)
    text = _HEX_BYTES.sub("0x" + REDACTED, text)
    return _ESCAPED_BYTES.sub("\\\\x" + REDACTED, text)


def _redact_quoted(text: str) -> str:
    """Quoted names kept, quoted values replaced, from left to right."""
    out: list[str] = []
    at = 0
    while (start := _next_quote(text, at)) is not None:
        q = text[start]
        out.append(text[at:start])
        name_end = _name_end(text, start, "".join(out))
        if name_end is not None:
            out.append(text[start:name_end + 1])
            at = name_end + 1
            continue
        end = _value_end(text, start)
        out.append(f"{q}{REDACTED}{q}" if end < len(text) else f"{q}{REDACTED}")
        at = end + 1
    out.append(text[at:])
    return "".join(out)


def _next_quote(text: str, at: int) -> int | None:
    """The next opening quote; an apostrophe inside a word (doesn't, Can't) is not one."""
    for i in range(at, len(text)):
        if text[i] in _QUOTES and not _is_apostrophe(text, i):
            return i
    return None


def _is_apostrophe(text: str, i: int) -> bool:
    return text[i] == "'" and 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalpha()


def _name_end(text: str, start: int, before: str) -> int | None:
    """Where a quoted object name ends, when the quote at `start` opens one."""
    if not _NAMED_BEFORE.search(before):
        return None
    end = text.find(text[start], start + 1)
    if end < 0 or not _NAME.fullmatch(text[start + 1:end]):
        return None
    return end


def _value_end(text: str, start: int) -> int:
    """Where a quoted value ends: before a known tail, else at the message's last quote (or its end)."""
    q = text[start]
    rest = text[start + 1:]
    for tail in _TAILS:
        found = re.search(re.escape(q) + "(?=" + tail.format(q=re.escape(q)) + r"\s*\Z)", rest)
        if found:
            return start + 1 + found.start()
    last = rest.rfind(q)
    return start + 1 + last if last >= 0 else len(text)


# --- a database tool's stderr: messages, each a head line and its continuation lines -------------------

_STATEMENT_FENCE = "-" * 14  # the mariadb client prints a failing statement between two of these
_PROGRAMS = r"(?:pg_dump|pg_restore|pg_dumpall|psql|mariadb|mariadb-dump|mysql|mysqldump)"
_SEVERITIES = r"(?:ERROR|FATAL|PANIC|WARNING|NOTICE|INFO|LOG|HINT|Warning \(Code \d+\))"
# Lines that quote rows or statements (which hold rows): the server's DETAIL/CONTEXT/..., the tools' echo.
_VALUE_KINDS = r"(?:DETAIL|CONTEXT|LINE \d+|QUERY|STATEMENT|WHERE|Command was|Query was|Failing row|Key \()"
_HEAD = re.compile(rf"^\s*(?:{_PROGRAMS}:\s|{_SEVERITIES}\b|{_VALUE_KINDS}|ERROR \d+)")
# pg_dump's "detail: Error message from server: ERROR: …" is the error itself: kept, redacted.
_VALUE_HEAD = re.compile(rf"^\s*(?:{_PROGRAMS}:\s*(?:detail:\s*)?)?{_VALUE_KINDS}")
# CONTEXT: PL/pgSQL function f(text) line 3 at RAISE; PL/Python, PL/Perl and PL/Tcl raise whatever text they like.
RAISED_CONTEXT = re.compile(r"\bat (?:RAISE|ASSERT)\b|\bPL/(?:Python|Perl|Tcl)\w* function\b")
_RAISED_ERROR = re.compile(r"(ERROR:\s*).*", re.DOTALL)
_SIGNALLED = re.compile(r"^(\s*ERROR 164[234] \(\w+\)(?: at line \d+)?:\s*).*", re.DOTALL)  # MariaDB SIGNAL


def redact_tool_output(text: str, keep: int = 5) -> str:
    """The last few messages of a database tool's stderr, without the lines that quote rows, values redacted."""
    kept: list[str] = []
    for message in _messages(_outside_fences(text.splitlines())):
        if _VALUE_HEAD.match(message):
            if kept and RAISED_CONTEXT.search(message):
                kept[-1] = _withheld(kept[-1])
            continue
        kept.append(_SIGNALLED.sub(rf"\1{WITHHELD}", message))
    # A line a value left behind unquoted is dropped with the rest of its message's continuation lines.
    cleaned = [redact_message(message).strip().splitlines()[0] for message in kept if message.strip()]
    return "\n".join(cleaned[-keep:])


def _messages(lines: list[str]) -> list[str]:
    """Lines grouped into messages; lines before the first head (cut off by the tail kept) are dropped."""
    messages: list[list[str]] = []
    for line in lines:
        if _HEAD.match(line):
            messages.append([line])
        elif messages and line.strip():
            messages[-1].append(line)
    return ["\n".join(message) for message in messages]


def _withheld(message: str) -> str:
    """A message whose text a database function wrote (RAISE): it may say anything, values included."""
    if _RAISED_ERROR.search(message):
        return _RAISED_ERROR.sub(rf"\1{WITHHELD}", message, count=1)
    return WITHHELD


def _outside_fences(lines: list[str]) -> list[str]:
    """Lines that are not part of an echoed SQL statement (an INSERT holds whole rows)."""
    kept, inside = [], False
    for line in lines:
        if line.strip() == _STATEMENT_FENCE:
            inside = not inside
        elif not inside:
            kept.append(line)
    return kept
