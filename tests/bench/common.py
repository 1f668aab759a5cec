"""What both backup benchmarks share: restic repositories, a policy per repository, the speed rounds."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path


def sh(argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, **kw)


class ResticBench:
    """A scratch folder with a repository password; subclasses add raw_backup and opsctl_backup."""

    def __init__(self, root: Path, db_password: str) -> None:
        self.root = root
        self.password_file = root / "repo.pass"
        self.password_file.write_text("bench-repository-password\n")
        self.password_file.chmod(0o600)
        (root / "db.pass").write_text(db_password + "\n")
        (root / "db.pass").chmod(0o600)
        self.restic_env = {**os.environ, "RESTIC_PASSWORD_FILE": str(self.password_file)}

    def fresh_repository(self, name: str) -> Path:
        repo = self.root / name
        sh(["restic", "-r", str(repo), "init", "-q"], env=self.restic_env, stdout=subprocess.DEVNULL)
        return repo

    def write_policy(self, repo: Path, database: dict, state_dir: Path | None = None) -> Path:
        """A policy backing up `database` (its password from db.pass) to repo alone; state in state_dir."""
        policy = self.root / f"policy-{repo.name}.yaml"
        policy.write_text(json.dumps({
            "name": "bench", "state_dir": str(state_dir or self.root / "state"),
            "database": {**database, "password": {"file": str(self.root / "db.pass")}},
            "targets": [{"name": "local", "kind": "local", "path": str(repo)}],
            "repository_password": {"file": str(self.password_file)},
        }))
        return policy


def measure_speed(bench, rounds: int) -> tuple[float, float, list]:
    """Best of `rounds` for the raw pipeline and for opsctl, alternated, each into a fresh repository."""
    raw_times, opsctl_times, results = [], [], []
    for i in range(rounds):
        raw_times.append(bench.raw_backup(bench.fresh_repository(f"raw-{i}")))
        elapsed, result = bench.opsctl_backup(bench.write_policy(bench.fresh_repository(f"opsctl-{i}")))[:2]
        opsctl_times.append(elapsed)
        results.append(result)
    return min(raw_times), min(opsctl_times), results
