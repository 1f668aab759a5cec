"""A folder per test with its policy, password files and repositories, and a way to run opsctl."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
# See tests/support/faulty.py.
FAULT_VARIABLES = {"OPSCTL_TEST_KILL_AT", "OPSCTL_TEST_TAMPER_SQL", "OPSCTL_TEST_NO_FINGERPRINTS",
                   "OPSCTL_TEST_KILL_IN_MOVE", "OPSCTL_TEST_KILL_ONCE_PACKS_IN"}


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Workspace:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.repository_password = "repo-" + os.urandom(12).hex()
        self.secret("repository.pass", self.repository_password)

    def secret(self, name: str, value: str, mode: int = 0o600) -> Path:
        path = self.root / name
        path.write_text(value + "\n")
        path.chmod(mode)
        return path

    def write_policy(self, database: dict, targets: list[dict] | None = None, name: str = "policy.yaml",
                     **extra) -> Path:
        policy = {
            "name": "crm-test",
            "database": database,
            "targets": targets or [{"name": "local", "kind": "local", "path": "repo-local"}],
            "repository_password": {"file": "repository.pass"},
            "state_dir": "state",
            **extra,
        }
        path = self.root / name
        path.write_text(yaml.safe_dump(policy, sort_keys=False))
        return path

    def opsctl(self, *args: str, policy: str = "policy.yaml", env: dict | None = None,
               timeout: float = 600) -> Result:
        """Run opsctl as an operator would: a separate process, no terminal, policy by --policy."""
        full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "XDG_CACHE_HOME": str(self.root / ".cache"),
                    **(env or {})}
        full_env.pop("OPSCTL_POLICY", None)
        # A fault to inject needs the test harness: the installed opsctl ignores these variables.
        module = "tests.support.faulty" if set(env or {}) & FAULT_VARIABLES else "opsctl"
        proc = subprocess.run([sys.executable, "-m", module, "--policy", str(self.root / policy), *args],
                              cwd=self.root, env=full_env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def audit_lines(self) -> list[str]:
        """The trail's entries, one JSON line each (the chain's first line, which names the policy, left out)."""
        log = self.root / "state" / "audit.jsonl"
        lines = log.read_text().splitlines() if log.exists() else []
        return [line for line in lines if '"kind": "genesis"' not in line]


def made(stdout: str, target: int = 0) -> dict:
    """The first snapshot a `--json backup` reports for one target, with that target's bytes_added."""
    import json

    row = json.loads(stdout)["targets"][target]
    return {**row["snapshots"][0], "bytes_added": row["bytes_added"], "error": row["error"]}
