#!/usr/bin/env python3
"""Benchmark: what verification costs, measured in the same run on a pgbench database (random filler).

    .venv/bin/python tests/bench/bench_verify.py [--scale 40] [--rounds 2] [--crm-rows 0]

Prints (1) opsctl backup wall time with fingerprints / without (harness: OPSCTL_TEST_NO_FINGERPRINTS=1), goal <= 1.20,
and (2) opsctl verify wall time / raw `restic dump | pg_restore --single-transaction` into a fresh
database, goal <= 1.5. Best of --rounds for each, alternated. --crm-rows N adds a CRM-shaped table of N rows
whose columns the fingerprint hashes by their text form (enum, numeric, float, jsonb, text[], interval), the
costliest kind for it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.bench_postgres_backup import DB, Bench, pgbench_bench

REPO_ROOT = Path(__file__).resolve().parents[2]


def backup_time(bench: Bench, name: str, fingerprints: bool) -> tuple[float, Path]:
    policy = bench.write_policy(bench.fresh_repository(name))
    previous = os.environ.pop("OPSCTL_TEST_NO_FINGERPRINTS", None)
    if not fingerprints:
        os.environ["OPSCTL_TEST_NO_FINGERPRINTS"] = "1"
    try:
        return bench.opsctl_backup(policy)[0], policy
    finally:
        os.environ.pop("OPSCTL_TEST_NO_FINGERPRINTS", None)
        if previous is not None:
            os.environ["OPSCTL_TEST_NO_FINGERPRINTS"] = previous


def verify_time(bench: Bench, policy: Path) -> float:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "opsctl", "--policy", str(policy), "verify"], cwd=bench.root,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    return elapsed


def raw_restore_time(bench: Bench, repo: Path, index: int) -> float:
    """restic dump | pg_restore into a fresh database (the manifest trailer after the dump is ignored)."""
    target = f"raw_restore_{index}"
    started = time.monotonic()
    bench.psql(f"CREATE DATABASE {target}")
    dump = subprocess.Popen(["restic", "-r", str(repo), "dump", "latest", f"/{DB}.pgdump"], env=bench.restic_env,
                            stdout=subprocess.PIPE)
    subprocess.run(["pg_restore", "--exit-on-error", "--single-transaction", f"--dbname={target}"],
                   stdin=dump.stdout, env=bench.pg_env, check=True)
    dump.stdout.close()
    dump.wait()
    elapsed = time.monotonic() - started
    bench.psql(f"DROP DATABASE {target}")
    return elapsed


CRM_TABLE = """
CREATE TYPE stage AS ENUM ('new', 'qualified', 'won', 'lost');
CREATE TABLE customers AS SELECT g AS id, md5(g::text) AS name, md5(g::text) || '@example.com' AS email,
  (g % 100000) / 100.0::numeric(12, 2) AS balance, now() - g * interval '1 minute' AS created,
  (ARRAY['new', 'qualified', 'won', 'lost'])[1 + g % 4]::stage AS stage, random() AS score,
  ARRAY[md5(g::text), 'vip'] AS tags, jsonb_build_object('source', 'web', 'visits', g % 50) AS profile,
  make_interval(days => g % 90) AS cycle
FROM generate_series(1, {rows}) g;
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=40, help="pgbench scale (40: ~600 MB database)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--crm-rows", type=int, default=0, help="add a CRM-shaped table of this many rows")
    args = parser.parse_args()

    with pgbench_bench(args.scale, realistic=True) as bench:
        if args.crm_rows:
            bench.psql(CRM_TABLE.format(rows=args.crm_rows))
            print(f"plus a CRM-shaped table of {args.crm_rows:,} rows (enum, numeric, float, jsonb, text[], interval)")
        size = subprocess.run(["psql", "-Atc", f"SELECT pg_database_size('{DB}')"], env=bench.pg_env,
                              capture_output=True, text=True, check=True).stdout.strip()
        print(f"database: pgbench scale {args.scale} (random filler), {int(size) / 2**20:.0f} MiB")
        plain, printed, policy = [], [], None
        for i in range(args.rounds):
            plain.append(backup_time(bench, f"plain-{i}", fingerprints=False)[0])
            elapsed, policy = backup_time(bench, f"fingerprinted-{i}", fingerprints=True)
            printed.append(elapsed)
        print(f"(1) backup without fingerprints {min(plain):.2f} s, with {min(printed):.2f} s: "
              f"ratio {min(printed) / min(plain):.3f} (goal <= 1.20)")
        repo = bench.root / f"fingerprinted-{args.rounds - 1}"
        raw, ours = [], []
        for i in range(args.rounds):
            raw.append(raw_restore_time(bench, repo, i))
            ours.append(verify_time(bench, policy))
        print(f"(2) raw restic dump | pg_restore {min(raw):.2f} s, opsctl verify {min(ours):.2f} s: "
              f"ratio {min(ours) / min(raw):.3f} (goal <= 1.5)")


if __name__ == "__main__":
    main()
