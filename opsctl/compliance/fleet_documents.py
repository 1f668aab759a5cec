"""What `opsctl fleet status` believes of a document found at fleet/<policy>/<host>.json.

Documents come from storage others can write. Each is parsed into a strict model of only the fields the
fleet view shows (names must be names, times must carry a zone, numbers must be finite, verdicts must be
verdicts) and must say it is the host and policy its path names. One that does not is listed with the
problem, in opsctl's words (never the parser's, never more than a few characters of what it holds),
never dropped and never believed.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from opsctl.compliance.fleet import DOUBTFUL, INVALID, UNREADABLE, HostStatus, Published
from opsctl.policy.durations import human_duration

_SKEW = timedelta(minutes=5)  # a publication later than now by more than this: that host's clock runs ahead
_QUOTED = 60  # characters of a value a document made up, in a problem's text
_ERRORS_SHOWN = 2
# What is wrong with a field, by the kind of error the parser found there.
_WORDS = {"missing": "is missing", "literal_error": "is not a value opsctl writes there",
          "string_pattern_mismatch": "holds characters opsctl never writes there", "string_type": "is not text",
          "timezone_aware": "is a time without its zone", "too_long": "lists more than opsctl ever writes",
          "bool_type": "is not true or false", "dict_type": "is not a JSON object", "tuple_type": "is not a list"}
_NUMBER = ("greater_than", "less_than", "finite_number", "float_type", "float_parsing", "int_type")  # and _equal


def assess(policy: str, host: str, data: bytes, now: datetime) -> HostStatus:
    """The row for the document found at fleet/<policy>/<host>.json."""
    row = HostStatus(policy, host, now)
    claimed = _claimed(data)
    try:
        published = Published.model_validate_json(data)
    except ValidationError as exc:
        return _invalid(row, claimed, exc)
    if (published.host, published.policy, published.status.policy) != (host, policy, policy):
        return _not_its_own(row, published, claimed)
    if published.published_at - now > _SKEW:
        ahead = human_duration((published.published_at - now).total_seconds())
        return HostStatus(policy, host, now, published, DOUBTFUL,
                          f"published {ahead} in the future: the clock of {host} runs ahead, so how old its status "
                          "is cannot be told", f"set the clock of {host} right (timedatectl; chrony or "
                                               "systemd-timesyncd)")
    return HostStatus(policy, host, now, published)


def unreadable(policy: str, host: str, now: datetime, message: str, hint: str | None) -> HostStatus:
    """The row of a document that could not be read at all (a link, too large, gone, not read in time)."""
    return HostStatus(policy, host, now, flaw=UNREADABLE, problem=message, hint=hint or _rewritten(host))


def _claimed(data: bytes) -> tuple[object, object]:
    """The host and policy a document says it is, whatever else it holds (None when it is no JSON object)."""
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError):
        return None, None
    return (raw.get("host"), raw.get("policy")) if isinstance(raw, dict) else (None, None)


def _invalid(row: HostStatus, claimed: tuple[object, object], exc: ValidationError) -> HostStatus:
    if _differs(row, claimed):  # the stronger finding: someone put another host's file here
        return HostStatus(row.policy, row.host, row.now, None, DOUBTFUL, _claims(row, claimed), _planted(row.host))
    said = "; ".join(_in_own_words(e) for e in exc.errors()[:_ERRORS_SHOWN])
    return HostStatus(row.policy, row.host, row.now, None, INVALID,
                      f"{row.file} is not a valid opsctl status document: {said}", _rewritten(row.host))


def _in_own_words(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind.startswith("json") or (kind == "model_type" and not error["loc"]):
        return "it is not JSON" if kind == "json_invalid" else "it is not a JSON object"
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".") or "it"
    if kind.removesuffix("_equal") in _NUMBER:
        return f"{where} is not a number opsctl writes there"
    if kind.startswith("datetime"):
        return f"{where} is not a time"
    return f"{where} {_WORDS.get(kind, 'is not what opsctl writes there')}"


def _not_its_own(row: HostStatus, published: Published, claimed: tuple[object, object]) -> HostStatus:
    text = _claims(row, claimed) if _differs(row, claimed) else (
        f"{row.file} holds the status of policy {published.status.policy}, not {row.policy}")
    return HostStatus(row.policy, row.host, row.now, published, DOUBTFUL, text, _planted(row.host))


def _differs(row: HostStatus, claimed: tuple[object, object]) -> bool:
    host, policy = claimed
    return (isinstance(host, str) and host != row.host) or (isinstance(policy, str) and policy != row.policy)


def _claims(row: HostStatus, claimed: tuple[object, object]) -> str:
    host, policy = (_quoted(str(value)) for value in claimed)
    return (f"{row.file} says it is host '{host}' of policy '{policy}': a document copied or moved there, so it "
            f"does not count as {row.host}'s")


def _planted(host: str) -> str:
    return (f"find out who wrote it (someone may be hiding a failing host): compare with opsctl status on {host}; "
            f"the next job on {host} writes its own")


def _rewritten(host: str) -> str:
    return f"the next job on {host} writes it again; if it stays so, find out who else writes to the fleet folder"


def _quoted(text: str, length: int = _QUOTED) -> str:
    """A value a document made up, safe to print: no control characters, not too long."""
    printable = "".join(c if c.isprintable() else "?" for c in text)
    return printable if len(printable) <= length else printable[:length] + "..."
