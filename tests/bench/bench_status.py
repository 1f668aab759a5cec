"""How fast `opsctl status` answers, against the floor of starting opsctl at all.

Run: .venv/bin/python tests/bench/bench_status.py [--rounds 7]

A SQLite CRM backed up to two local repositories (init, backup, verify once), then, interleaved
round by round: `python -c pass` (the interpreter), `opsctl --version` (opsctl's imports),
`opsctl status --offline` and `opsctl status`. Prints the median and minimum wall time and the
CPU seconds of each, and each one's ratio to `opsctl --version` measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

OPSCTL = [sys.executable, "-m", "opsctl"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory(prefix="bench-status-") as scratch:
        policy = _prepared(Path(scratch))
        runs = {"python -c pass": [sys.executable, "-c", "pass"],
                "opsctl --version": [*OPSCTL, "--version"],
                "status --offline": [*OPSCTL, "--policy", str(policy), "status", "--offline"],
                "status (online)": [*OPSCTL, "--policy", str(policy), "status"]}
        measured: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        for _ in range(rounds):
            for name, argv in runs.items():
                measured[name].append(_timed(argv))
    floor = statistics.median(wall for wall, _ in measured["opsctl --version"])
    print(f"{'':20} {'median s':>9} {'min s':>7} {'cpu s':>6} {'/ --version':>11}")
    for name, samples in measured.items():
        walls = [wall for wall, _ in samples]
        cpu = statistics.median(cpu for _, cpu in samples)
        print(f"{name:20} {statistics.median(walls):9.3f} {min(walls):7.3f} {cpu:6.2f} "
              f"{statistics.median(walls) / floor:11.2f}")


def _prepared(root: Path) -> Path:
    with closing(sqlite3.connect(root / "crm.sqlite3")) as conn, conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT)")
        conn.executemany("INSERT INTO customers (email) VALUES (?)", [(f"c{i}@example.com",) for i in range(1000)])
    (root / "repo.pass").write_text("bench-repository-password\n")
    (root / "repo.pass").chmod(0o600)
    policy = root / "policy.yaml"
    policy.write_text(json.dumps({
        "name": "bench", "database": {"engine": "sqlite", "path": "crm.sqlite3"}, "state_dir": "state",
        "targets": [{"name": "local", "kind": "local", "path": "repo-a"},
                    {"name": "nas", "kind": "mount", "path": "repo-b", "require_mountpoint": False, "offsite": True}],
        "repository_password": {"file": "repo.pass"}, "metrics": {"textfile": str(root / "opsctl.prom")}}))
    for command in (["init"], ["backup"], ["verify", "--all-targets"]):
        subprocess.run([*OPSCTL, "--policy", str(policy), *command], check=True, capture_output=True)
    return policy


def _timed(argv: list[str]) -> tuple[float, float]:
    """Wall seconds, and CPU seconds (user + system) of the process and its children."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


if __name__ == "__main__":
    main()
