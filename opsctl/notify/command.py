"""A command hook: the operator's own program, told about the run through OPSCTL_* variables.

It runs from an argument list (never a shell), with no stdin and its output discarded, in an environment
without anyone's secrets (tool_environment). It gets its own process group so that at the timeout the
whole group is stopped, children included: a hook that started `curl &` must not outlive its time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import suppress
from pathlib import Path

from opsctl.errors import described
from opsctl.notify.channels import DeliveryFailed
from opsctl.notify.event import Event, clip
from opsctl.process import die_with_parent, tool_environment

GRACE_S = 2.0  # between SIGTERM and SIGKILL
_MAX_VALUE = 4_000  # bytes per variable: the kernel refuses an environment with a string over 128 KiB


class CommandHook:
    """Runs argv once per event; exit status 0 is delivered."""

    def __init__(self, argv: tuple[str, ...]) -> None:
        if not argv or not argv[0]:
            raise ValueError("a command hook needs a program to run")
        self._argv = argv
        self.display = os.path.basename(argv[0])  # its arguments may hold a token

    def __repr__(self) -> str:
        return f"CommandHook({self.display})"

    def send(self, event: Event, timeout_s: float) -> None:
        """Run the program and wait for it; raises DeliveryFailed (never retryable: it may have done its job)."""
        proc = self._start(event)
        try:
            status = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            stop_group(proc)
            raise DeliveryFailed(f"{self.display} did not finish within {timeout_s:g} s and was stopped",
                                 retryable=False) from None
        if status < 0:
            raise DeliveryFailed(f"{self.display} was killed by signal {-status}", retryable=False)
        if status != 0:
            raise DeliveryFailed(f"{self.display} exited with status {status}", retryable=False)

    def _start(self, event: Event) -> subprocess.Popen[bytes]:
        try:
            return subprocess.Popen(self._argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, env=hook_environment(event), start_new_session=True,
                                    preexec_fn=die_with_parent)  # noqa: PLW1509 - only prctl + getppid: async-signal-safe
        except FileNotFoundError:
            raise DeliveryFailed(f"program not found: {self._argv[0]}", retryable=False) from None
        except OSError as error:
            raise DeliveryFailed(f"cannot run {self._argv[0]}: {described(error)}", retryable=False) from None


def hook_environment(event: Event) -> dict[str, str]:
    """opsctl's environment without secrets, plus the event as OPSCTL_* variables (empty when not known)."""
    values = {"EVENT": event.kind, "COMMAND": event.command, "POLICY_NAME": event.policy, "HOST": event.host,
              "EXIT_CODE": "" if event.exit_code is None else str(event.exit_code), "OUTCOME": event.outcome or "",
              "FAILED_TARGETS": ",".join(event.failed_targets), "ERROR": event.error or "", "HINT": event.hint or "",
              "RUN_ID": event.run_id, "DURATION_S": "" if event.duration_s is None else f"{event.duration_s:.1f}"}
    # A NUL cannot be passed in an environment variable; Popen would refuse the whole hook.
    extra = {f"OPSCTL_{name}": clip(value.replace("\0", ""), _MAX_VALUE) for name, value in values.items()}
    return tool_environment() | extra


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the hook's process group; SIGKILL to whatever is left after GRACE_S; reap the hook."""
    _signal_group(proc.pid, signal.SIGTERM)
    end = time.monotonic() + GRACE_S
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=GRACE_S)
    # The hook's children are in its group too; while one lives, the group (and its id) lives.
    while time.monotonic() < end and _group_alive(proc.pid):
        time.sleep(0.05)
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


def _signal_group(group: int, signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):  # the group is gone; or a member changed its user
        os.killpg(group, signum)


def _group_alive(group: int) -> bool:
    """True while a process of the group runs; a zombie waiting for init to reap it does not count."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # a member changed its user: it still counts
    return any(_running_in(stat, group) for stat in Path("/proc").glob("[0-9]*/stat"))


def _running_in(stat: Path, group: int) -> bool:
    try:
        state, _parent, process_group = stat.read_text().rsplit(")", 1)[1].split()[:3]
    except (OSError, ValueError):
        return False  # gone since the listing
    return state not in ("Z", "X") and int(process_group) == group
