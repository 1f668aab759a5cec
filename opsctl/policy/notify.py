"""The policy's `notify:` section: who hears about a run, and when.

Three kinds of channel: a healthchecks-style ping URL (a dead man's switch: silence is an alarm
too), a webhook that receives JSON, and a program run with the outcome in its environment. A
URL may carry a token (a healthchecks UUID, a Slack path), so it can come from a private file.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from opsctl.policy.fields import Duration, PolicyPath, Strict, check_private_file
from opsctl.policy.trust import untrusted

When = Literal["start", "success", "failure", "skipped"]
NotifiedCommand = Literal["backup", "prune", "check", "verify", "drill", "restore", "init", "keys rotate",
                          "standby refresh"]
_URL = r"^https?://[^/@\s]+(/\S*)?$"


class ChannelBase(Strict):
    commands: tuple[NotifiedCommand, ...] = Field(
        ("backup", "prune", "check", "verify", "drill", "standby refresh"), min_length=1,
        description="the commands this channel hears about; default the scheduled jobs")


class UrlChannel(ChannelBase):
    url: str | None = Field(None, pattern=_URL, description="the http(s) URL, without user:password@")
    url_file: PolicyPath | None = Field(None, description="a private file (mode 600) holding the URL, for URLs "
                                                          "that carry a token")

    @model_validator(mode="after")
    def _one_url(self) -> UrlChannel:
        if (self.url is None) == (self.url_file is None):
            raise ValueError("give exactly one of url or url_file (a private file holding the URL)")
        return self


class HealthchecksChannel(UrlChannel):
    """A ping URL: /start when a run starts, the URL on success, /<exit code> on failure, /log when skipped."""

    kind: Literal["healthchecks"]
    events: tuple[When, ...] = Field(("start", "success", "failure", "skipped"), min_length=1)


class WebhookChannel(UrlChannel):
    """A JSON POST with the command, verdict, exit code, duration and each target's result."""

    kind: Literal["webhook"]
    events: tuple[When, ...] = Field(("failure", "skipped"), min_length=1)
    secret_file: PolicyPath | None = Field(
        None, description="a private file whose contents sign each request (header X-Opsctl-Signature)")


class CommandChannel(ChannelBase):
    """A program (never a shell) run with OPSCTL_* variables that describe the run."""

    kind: Literal["command"]
    events: tuple[When, ...] = Field(("failure",), min_length=1)
    argv: tuple[str, ...] = Field(..., min_length=1, description="the program (absolute path) and its arguments")
    timeout: Duration = Field(timedelta(seconds=60), le=timedelta(seconds=60),
                              description="the program is stopped after this long (at most 60s)")

    @field_validator("argv")
    @classmethod
    def _absolute_program(cls, argv: tuple[str, ...]) -> tuple[str, ...]:
        if not Path(argv[0]).is_absolute() or any(re.search(r"[\x00-\x1f]", word) for word in argv):
            raise ValueError(f"{argv[0]!r}: give the program's absolute path, e.g. /usr/local/bin/page-oncall "
                             "(opsctl runs it without a shell or a search of PATH)")
        return argv


def channel_problem(channel: HealthchecksChannel | WebhookChannel | CommandChannel) -> str | None:
    """Why a channel cannot be used now (a file gone, readable or changeable by others), or None.

    Checked when a notification is sent, not when the policy is read: a channel that cannot be used is
    a failed notification, never the reason a backup does not run. `policy validate` reports it too.
    """
    try:
        if isinstance(channel, CommandChannel):
            return _program_problem(channel.argv)
        for path in (channel.url_file, getattr(channel, "secret_file", None)):
            if path is not None:
                check_private_file(path)
    except ValueError as exc:
        return str(exc)
    return None


def _program_problem(argv: tuple[str, ...]) -> str | None:
    program = Path(argv[0])
    if not program.is_file() or not os.access(program, os.X_OK):
        return f"{program} does not exist or cannot be run; install it, or fix the path"
    # Another user who can change the program, or a script it is given (sh /path/hook.sh), runs code as opsctl.
    for word in argv:
        distrust = untrusted(Path(word)) if word.startswith("/") else None
        if distrust is not None:
            return str(distrust)
    return None


Channel = Annotated[HealthchecksChannel | WebhookChannel | CommandChannel, Field(discriminator="kind")]


class Notify(Strict):
    """Notifications: each channel, how long one attempt may take, and how often to retry."""

    channels: tuple[Channel, ...] = Field((), description="healthchecks, webhook or command channels")
    timeout: Duration = Field(timedelta(seconds=10), description="one attempt to reach a URL gives up after this")
    retries: int = Field(2, ge=0, le=5, description="more attempts after a failed one (a dead endpoint never "
                                                      "stalls the job: all of them end within 30 s)")
