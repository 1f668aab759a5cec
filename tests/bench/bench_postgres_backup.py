#!/usr/bin/env python3
"""Benchmark: opsctl backup of a pgbench database against the raw pipeline, measured in the same run.

    .venv/bin/python tests/bench/bench_postgres_backup.py [--scale 40] [--rss-scale-factor 4]

Prints (1) opsctl backup wall time / raw `pg_dump -Fc -Z0 | restic backup --stdin` (goal <= 1.10),
(2) bytes restic adds on a second backup with no change, after ~1% new rows, after 0.1% scattered
updates, each as a share of the dump, (3) peak RSS of the opsctl Python process at 1x and Nx size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from tests.bench.common import ResticBench, measure_speed, sh
from tests.support.servers import PostgresServer, postgres_bindir
from tests.support.workspace import made

ROLE, ROLE_PASSWORD, DB = "bench", "bench-pw", "bench"


class Bench(ResticBench):
    """Raw and opsctl backups of one database of the server; opsctl is imported from `code` (default: this checkout)."""

    def __init__(self, root: Path, server: PostgresServer, database: str = DB, code: Path = REPO_ROOT) -> None:
        super().__init__(root, ROLE_PASSWORD)
        self.server, self.database, self.code = server, database, code
        self.pg_env = {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(server.port), "PGUSER": ROLE,
                       "PGPASSWORD": ROLE_PASSWORD, "PGDATABASE": database}

    def raw_backup(self, repo: Path) -> float:
        started = time.monotonic()
        dump = subprocess.Popen(["pg_dump", "-Fc", "-Z0"], env=self.pg_env, stdout=subprocess.PIPE)
        sh(["restic", "-r", str(repo), "backup", "--stdin", "--stdin-filename", "bench.pgdump", "-q"],
           stdin=dump.stdout, env=self.restic_env)
        dump.stdout.close()
        assert dump.wait() == 0
        return time.monotonic() - started

    @property
    def opsctl_env(self) -> dict[str, str]:
        """os.environ as it is now (bench_verify sets the harness's switch late), opsctl imported from code."""
        # code first; the checkout after it for the test harness (tests.support.faulty)
        return {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys([str(self.code), str(REPO_ROOT)]))}

    def raw_backup_json(self, repo: Path) -> tuple[float, int]:
        """raw_backup with restic's --json, as opsctl runs it: wall time and data_added (before compression)."""
        started = time.monotonic()
        dump = subprocess.Popen(["pg_dump", "-Fc", "-Z0"], env=self.pg_env, stdout=subprocess.PIPE)
        backup = sh(["restic", "-r", str(repo), "backup", "--stdin", "--stdin-filename", "bench.pgdump", "--json"],
                    stdin=dump.stdout, env=self.restic_env, stdout=subprocess.PIPE, text=True)
        dump.stdout.close()
        assert dump.wait() == 0
        elapsed = time.monotonic() - started
        summary = json.loads(backup.stdout.strip().splitlines()[-1])
        assert summary["message_type"] == "summary", summary
        return elapsed, int(summary["data_added"])

    def write_policy(self, repo: Path, state_dir: Path | None = None) -> Path:
        return super().write_policy(repo, {"engine": "postgresql", "host": "127.0.0.1", "port": self.server.port,
                                           "user": ROLE, "name": self.database}, state_dir)

    def opsctl_init(self, policy: Path) -> None:
        """`opsctl init`: creates the policy's repository as an operator would."""
        done = subprocess.run([sys.executable, "-m", "opsctl", "--policy", str(policy), "init"], cwd=self.root,
                              env=self.opsctl_env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr

    def opsctl_backup(self, policy: Path) -> tuple[float, dict, int]:
        """Wall time, the JSON result, and the peak RSS (KiB) of the opsctl process itself."""
        started = time.monotonic()
        # Without fingerprints (bench_verify's baseline) needs the test harness: opsctl itself has no such switch.
        module = "tests.support.faulty" if os.environ.get("OPSCTL_TEST_NO_FINGERPRINTS") else "opsctl"
        proc = subprocess.Popen([sys.executable, "-m", module, "--json", "--policy", str(policy), "backup"],
                                stdout=subprocess.PIPE, text=True, cwd=self.root, env=self.opsctl_env)
        peak = 0
        status = Path(f"/proc/{proc.pid}/status")
        while proc.poll() is None:
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
            except OSError:
                pass
            time.sleep(0.02)
        out = proc.stdout.read()
        elapsed = time.monotonic() - started
        assert proc.returncode == 0, out
        return elapsed, made(out), peak

    def psql(self, sql: str) -> None:
        sh(["psql", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], env=self.pg_env, stdout=subprocess.DEVNULL)

    def pgbench_init(self, scale: int, realistic: bool = False) -> None:
        sh([str(self.server.bindir / "pgbench"), "-i", "-q", "-s", str(scale)], env=self.pg_env,
           stderr=subprocess.DEVNULL)
        if realistic:  # pgbench's filler is blank padding that compresses ~100:1; real rows do not
            self.psql("UPDATE pgbench_accounts SET filler = substr(md5(random()::text) || md5(random()::text) "
                      "|| md5(random()::text), 1, 84)")
            self.psql("VACUUM FULL pgbench_accounts")
        # Only pgbench's tables: the role owns no catalog, and VACUUM of everything warns about each one.
        self.psql("VACUUM ANALYZE pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history")


@contextmanager
def pgbench_bench(scale: int, realistic: bool) -> Iterator[Bench]:
    """A throwaway server holding a pgbench database of that scale, and a Bench in a scratch folder."""
    server = PostgresServer(postgres_bindir()).start()
    try:
        server.create_role_and_database(ROLE, ROLE_PASSWORD, DB)
        with tempfile.TemporaryDirectory(prefix="opsctl-bench-", dir=os.environ.get("BENCH_DIR")) as folder:
            bench = Bench(Path(folder), server)
            bench.pgbench_init(scale, realistic)
            yield bench
    finally:
        server.cleanup()


def measure_dedup(bench: Bench, policy: Path, dump_bytes: int) -> dict:
    figures = {}
    figures["no change"] = bench.opsctl_backup(policy)[1]["bytes_added"]
    bench.psql("INSERT INTO pgbench_accounts (aid, bid, abalance, filler) "
               "SELECT aid, 1, 0, '' FROM generate_series((SELECT max(aid) + 1 FROM pgbench_accounts), "
               "(SELECT max(aid) * 101 / 100 FROM pgbench_accounts)) aid")
    figures["+1% rows (inserts)"] = bench.opsctl_backup(policy)[1]["bytes_added"]
    bench.psql("UPDATE pgbench_accounts SET abalance = abalance + 1 "
               "WHERE aid IN (SELECT aid FROM pgbench_accounts TABLESAMPLE BERNOULLI (0.1))")
    figures["0.1% rows updated (scattered)"] = bench.opsctl_backup(policy)[1]["bytes_added"]
    return {k: (v, v / dump_bytes) for k, v in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=40, help="pgbench scale (40: ~600 MB database)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rss-scale-factor", type=int, default=4, help="0 to skip the large RSS run")
    parser.add_argument("--realistic", action="store_true", help="random filler instead of pgbench's blank padding")
    args = parser.parse_args()

    with pgbench_bench(args.scale, args.realistic) as bench:
        raw, ours, results = measure_speed(bench, args.rounds)
        dump_bytes = results[0]["dump_bytes"]
        filler = "random filler" if args.realistic else "pgbench's blank filler"
        print(f"database: pgbench scale {args.scale} ({filler}), dump {dump_bytes / 2**20:.0f} MiB")
        print(f"(1) raw pg_dump | restic backup: {raw:.2f} s   opsctl backup: {ours:.2f} s   "
              f"ratio {ours / raw:.3f} (goal <= 1.10)")
        policy = bench.write_policy(bench.root / "opsctl-0")
        _, _, rss_1x = bench.opsctl_backup(policy)
        for label, (added, share) in measure_dedup(bench, policy, dump_bytes).items():
            print(f"(2) bytes added, {label}: {added / 2**20:.2f} MiB = {share:.2%} of the dump")
        print(f"(3) peak RSS of the opsctl process at 1x: {rss_1x / 1024:.1f} MiB")
        if args.rss_scale_factor > 1:
            bench.pgbench_init(args.scale * args.rss_scale_factor, args.realistic)
            big = bench.write_policy(bench.fresh_repository("opsctl-big"))
            _, result, rss_nx = bench.opsctl_backup(big)
            print(f"(3) peak RSS at {args.rss_scale_factor}x (dump {result['dump_bytes'] / 2**20:.0f} MiB): "
                  f"{rss_nx / 1024:.1f} MiB   ratio {rss_nx / rss_1x:.2f} (goal: flat, ~1.0)")


if __name__ == "__main__":
    main()
