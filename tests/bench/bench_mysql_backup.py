#!/usr/bin/env python3
"""Benchmark: opsctl backup of a MariaDB database against the raw pipeline, measured in the same run.

    .venv/bin/python tests/bench/bench_mysql_backup.py [--rows 1200000] [--rounds 2]

The database is CRM-like notes whose text is random base64 (it does not compress, as real text
mostly does a little). Prints (1) opsctl backup wall time / raw `mariadb-dump --single-transaction
| restic backup --stdin` (goal <= 1.10), (2) bytes restic adds on a second backup with no change
(goal < 1% of the dump) and after ~1% more rows (goal <= 5%).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.common import ResticBench, measure_speed, sh
from tests.support.mariadb_server import MariaDBServer
from tests.support.workspace import made

USER, PASSWORD, DB = "bench", "bench-pw", "bench"
# The raw pipeline dumps what opsctl dumps, minus opsctl's token and the snapshot coordination.
DUMP_OPTIONS = ["--single-transaction", "--routines", "--events", "--triggers", "--hex-blob",
                "--default-character-set=utf8mb4", "--skip-dump-date", "--no-tablespaces", "--skip-comments"]


class Bench(ResticBench):
    def __init__(self, root: Path, server: MariaDBServer) -> None:
        super().__init__(root, PASSWORD)
        self.server = server
        self.my_cnf = root / "my.cnf"
        self.my_cnf.write_text(f"[client]\npassword={PASSWORD}\n")
        self.my_cnf.chmod(0o600)

    def raw_backup(self, repo: Path) -> float:
        started = time.monotonic()
        dump = subprocess.Popen(["mariadb-dump", f"--defaults-extra-file={self.my_cnf}", f"--user={USER}",
                                 "--protocol=TCP", "--host=127.0.0.1", f"--port={self.server.port}", *DUMP_OPTIONS,
                                 DB], stdout=subprocess.PIPE)
        sh(["restic", "-r", str(repo), "backup", "--stdin", "--stdin-filename", "bench.sql", "-q"],
           stdin=dump.stdout, env=self.restic_env)
        dump.stdout.close()
        assert dump.wait() == 0
        return time.monotonic() - started

    def write_policy(self, repo: Path) -> Path:
        return super().write_policy(repo, {"engine": "mysql", "host": "127.0.0.1", "port": self.server.port,
                                           "user": USER, "name": DB})

    def opsctl_backup(self, policy: Path) -> tuple[float, dict]:
        started = time.monotonic()
        module = "tests.support.faulty" if os.environ.get("OPSCTL_TEST_NO_FINGERPRINTS") else "opsctl"
        done = subprocess.run([sys.executable, "-m", module, "--json", "--policy", str(policy), "backup"],
                              stdout=subprocess.PIPE, text=True, cwd=self.root, check=False,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
        elapsed = time.monotonic() - started
        assert done.returncode == 0, done.stdout
        return elapsed, made(done.stdout)

    def sql(self, statement: str) -> None:
        with self.server.connect(DB) as conn, conn.cursor() as cur:
            cur.execute(statement)

    def fill(self, first: int, last: int) -> None:
        """CRM notes: ~460 bytes of random text each, in batches the binlog can take."""
        for start in range(first, last + 1, 200_000):
            end = min(last, start + 199_999)
            self.sql(f"INSERT INTO notes SELECT seq, seq % 20000, '2026-01-01' + INTERVAL seq SECOND, "
                     f"TO_BASE64(RANDOM_BYTES(340)) FROM seq_{start}_to_{end}")


def measure_dedup(bench: Bench, policy: Path, rows: int, dump_bytes: int) -> dict:
    figures = {"no change": bench.opsctl_backup(policy)[1]["bytes_added"]}
    bench.fill(rows + 1, rows + rows // 100)
    figures["+1% rows (inserts)"] = bench.opsctl_backup(policy)[1]["bytes_added"]
    return {k: (v, v / dump_bytes) for k, v in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_200_000, help="notes rows (1.2M: ~560 MB dump)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    server = MariaDBServer().start()
    try:
        server.create_user_and_database(USER, PASSWORD, DB)
        with tempfile.TemporaryDirectory(prefix="opsctl-bench-", dir=os.environ.get("BENCH_DIR")) as folder:
            bench = Bench(Path(folder), server)
            bench.sql("CREATE TABLE notes (id INT PRIMARY KEY, customer_id INT, created DATETIME, body TEXT)")
            started = time.monotonic()
            bench.fill(1, args.rows)
            print(f"database filled in {time.monotonic() - started:.0f} s")
            raw, ours, results = measure_speed(bench, args.rounds)
            dump_bytes = results[0]["dump_bytes"]
            print(f"database: {args.rows:,} notes of random text, dump {dump_bytes / 2**20:.0f} MiB")
            print(f"(1) raw mariadb-dump | restic backup: {raw:.2f} s   opsctl backup: {ours:.2f} s   "
                  f"ratio {ours / raw:.3f} (goal <= 1.10)")
            policy = bench.write_policy(Path(folder) / "opsctl-0")
            for label, (added, share) in measure_dedup(bench, policy, args.rows, dump_bytes).items():
                print(f"(2) bytes added, {label}: {added / 2**20:.2f} MiB = {share:.2%} of the dump")
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
