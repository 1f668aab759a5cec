"""One error tree for opsctl: every failure carries a calm message and a hint for the operator."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of the opsctl command, documented in the README."""

    OK = 0
    FAILURE = 1
    BAD_INPUT = 2
    PARTIAL = 3
    SKIPPED = 75  # a scheduled run that did not start: the run before it still held the policy (EX_TEMPFAIL)
    INTERRUPTED = 130


class OpsctlError(Exception):
    """Base of every error opsctl reports to a person. Never carries secrets or row data."""

    exit_code = ExitCode.FAILURE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class BadInput(OpsctlError):
    """The operator asked for something that cannot be done as asked (exit 2)."""

    exit_code = ExitCode.BAD_INPUT


class PolicyInvalid(BadInput):
    """The policy file has one or more problems; each names its field."""

    def __init__(self, source: str, problems: list[str]) -> None:
        count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
        super().__init__(
            f"{source}: {count} found",
            "fix each field named above, then run: opsctl policy validate",
        )
        self.source = source
        self.problems = problems


class NotSupportedYet(BadInput):
    """A feature the policy schema accepts but this version cannot run yet."""


class SecretUnavailable(BadInput):
    """A password source (file, environment variable or command) gave nothing usable."""


class IntegrityError(OpsctlError):
    """Restored data does not match what the backup recorded."""


class PolicyBusy(OpsctlError):
    """Another opsctl run of the same policy holds the run lock (exit 1: try again later)."""


class JobSkipped(OpsctlError):
    """A scheduled run found the policy still busy when its next run was due: skipped, not queued (exit 75)."""

    exit_code = ExitCode.SKIPPED


def described(error: BaseException) -> str:
    """A library's exception in words that hold no data: its class, and the system's own text for an OSError.

    A driver's message may quote a row ("Duplicate entry 'bob@example.com'"); the details go to the
    --verbose log only.
    """
    name = error.__class__.__name__
    if isinstance(error, OSError) and error.strerror:
        return f"{name}: {error.strerror}"
    return name
