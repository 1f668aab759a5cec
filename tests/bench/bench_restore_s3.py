#!/usr/bin/env python3
"""Benchmark: `opsctl restore` from an S3 target (moto) against the raw pipeline, same repository, same run.

    .venv/bin/python tests/bench/bench_restore_s3.py [--scale 40] [--rounds 2]

A pgbench database with random filler (>= 500 MB on disk) in a throwaway PostgreSQL is backed up once by
`opsctl backup` to a policy with one s3 target on a throwaway moto_server. Then each round restores it three
ways into fresh databases, alternating, and the best of --rounds is kept:

- raw: `restic dump latest /bench.pgdump | pg_restore --exit-on-error --single-transaction` (the flags
  bench_verify.py and opsctl use); the database is created before the clock starts;
- `opsctl restore --yes --no-verify --to NAME`: the like-for-like run (it checks the dump's SHA-256 and
  the row counts), goal <= 1.10 of raw;
- `opsctl restore --yes --to NAME` (verified, the default): what proving the data costs on top.

Raw and opsctl share one restic cache (XDG_CACHE_HOME under the bench folder), so neither is favoured; a
CHECKPOINT runs before every timed restore. Printed: sizes, every run's wall time with CPU seconds per process,
the phases opsctl recorded in its audit trail (locate, fetch, restore, verify), the ratios, and where opsctl's
extra time goes: one `--verbose` run's timeline and the pieces opsctl adds, each timed alone.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from tests.bench.bench_postgres_backup import DB, ROLE, Bench, pgbench_bench
from tests.bench.bench_three_targets import (
    BENCH_ROOTS,
    CpuSampler,
    measure_dump,
    snapshot_code,
    timed,
)
from tests.support.moto import REGION, MotoServer, moto_server_binary
from tests.support.targets import s3_target
from tests.support.workspace import Result, Workspace, made

MB = 10**6
MIB = 2**20
MIN_DATABASE_BYTES = 500 * MB
GOAL = 1.10
PHASES = ("locate", "fetch", "restore", "verify")
RESTORES = ("raw", "no-verify", "verified")
BUSY_SHARE = 0.05
"""A run is unfair when processes outside the benchmark used more than this many CPU-seconds per second of it."""
PROBE = ("import sys, boto3; boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', "
         "aws_access_key_id='testing', aws_secret_access_key='testing').head_bucket(Bucket=sys.argv[2])")


class S3Restores:
    """One opsctl policy with a single s3 target on moto, backed up once; restores by raw restic and by opsctl."""

    def __init__(self, bench: Bench, moto: MotoServer, code: Path) -> None:
        self.bench = bench
        self.workspace = Workspace(bench.root)  # repository.pass; db.pass was written by Bench
        target = s3_target(moto, self.workspace, name="offsite")  # s3.env, mode 600; offsite: true
        self.moto, self.bucket = moto, target["bucket"]
        self.location = moto.repository(target["bucket"], target["prefix"])
        database = {"engine": "postgresql", "host": "127.0.0.1", "port": bench.server.port, "user": ROLE,
                    "password": {"file": "db.pass"}, "name": DB}
        self.workspace.write_policy(database, [target])
        self.opsctl_env = {"PYTHONPATH": str(code)}
        # What Workspace.opsctl gives opsctl's restic: one cache folder for every run, raw and opsctl alike.
        self.restic_env = {**os.environ, "XDG_CACHE_HOME": str(bench.root / ".cache"),
                           "RESTIC_PASSWORD_FILE": str(bench.root / "repository.pass"), **moto.restic_env()}
        self.restic_options = ["-o", "s3.bucket-lookup=path", "-o", f"s3.region={REGION}"]  # as opsctl passes them

    # --- opsctl ----------------------------------------------------------------------------------

    def opsctl(self, *args: str) -> Result:
        result = self.workspace.opsctl(*args, env=self.opsctl_env, timeout=3600)
        if result.returncode != 0:
            raise RuntimeError(f"`opsctl {' '.join(args)}` exited {result.returncode}:\n{result.output}")
        return result

    def backup(self) -> dict:
        self.opsctl("init")
        return made(self.opsctl("--json", "backup").stdout)

    def opsctl_restore(self, name: str, verify: bool, *extra: str) -> tuple[str, dict]:
        """opsctl's output and the audit entry of that restore."""
        output = self.opsctl(*extra, "restore", "--yes", "--to", name, *(() if verify else ("--no-verify",))).output
        entry = json.loads(self.workspace.audit_lines()[-1])
        assert entry["command"] == "restore" and entry["outcome"] == "ok", entry
        return output, entry

    # --- raw -------------------------------------------------------------------------------------

    def restic_argv(self, *args: str) -> list[str]:
        return ["restic", "-r", self.location, *self.restic_options, *args]

    def raw_restore(self, name: str) -> None:
        """restic dump | pg_restore into `name`, which exists already (the trailer after the dump is ignored)."""
        dump = subprocess.Popen(self.restic_argv("dump", "latest", f"/{DB}.pgdump"), env=self.restic_env,
                                stdout=subprocess.PIPE)
        restored = subprocess.run(["pg_restore", "--exit-on-error", "--single-transaction", f"--dbname={name}"],
                                  stdin=dump.stdout, env=self.bench.pg_env, check=False)
        dump.stdout.close()
        dump.wait()
        assert restored.returncode == 0, f"pg_restore exited {restored.returncode}"

    def relayed_restore(self, name: str) -> None:
        """The raw pipeline with the bytes passing through this Python process, hashed, as opsctl's stream does."""
        dump = subprocess.Popen(self.restic_argv("dump", "latest", f"/{DB}.pgdump"), env=self.restic_env,
                                stdout=subprocess.PIPE)
        restore = subprocess.Popen(["pg_restore", "--exit-on-error", "--single-transaction", f"--dbname={name}"],
                                   stdin=subprocess.PIPE, env=self.bench.pg_env)
        digest = hashlib.sha256()
        with contextlib.suppress(BrokenPipeError):  # pg_restore stops reading at the manifest trailer
            while chunk := os.read(dump.stdout.fileno(), MIB):
                digest.update(chunk)
                restore.stdin.write(chunk)
        restore.stdin.close()
        dump.stdout.close()
        dump.wait()
        assert restore.wait() == 0, f"pg_restore exited {restore.returncode}"

    # --- the server ------------------------------------------------------------------------------

    def superuser(self, sql: str) -> None:
        with self.bench.server.connect() as conn:
            conn.execute(sql)

    def settle(self, *drop: str) -> None:
        """Drop the restored databases and write out dirty pages, so that no run pays for the one before."""
        for name in drop:
            self.superuser(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.superuser("CHECKPOINT")


def database_bytes(bench: Bench, name: str) -> int:
    return int(subprocess.run(["psql", "-Atc", f"SELECT pg_database_size('{name}')"], env=bench.pg_env,
                              capture_output=True, text=True, check=True).stdout)


def phase_line(entry: dict) -> str:
    phases = entry["details"]["phases"]
    return ("phases: " + "  ".join(f"{p} {phases[p]:.2f}" for p in PHASES)
            + f"  (sum {sum(phases.values()):.2f}; audit duration {entry['duration_s']:.2f} s)")


def indented(text: str) -> str:
    return "\n".join("      | " + line for line in text.rstrip().splitlines())


class Run(NamedTuple):
    seconds: float
    audit: dict | None
    other_cpu_s: float
    """CPU seconds used by processes outside this benchmark while it ran: on 2 cores they slow it down."""


def timed_run(label: str, step) -> tuple[Run, object]:
    """Like bench_three_targets.timed, and keep what other processes used (the run is not fair if it is high).

    A step that returns (output, audit entry), as opsctl_restore does, has that entry kept in the Run.
    """
    with CpuSampler() as cpu:
        started = time.monotonic()
        result = step()
        elapsed = time.monotonic() - started
    print(f"  {label}: {elapsed:.2f} s   [cpu s: {cpu.line()}]", flush=True)
    audit = result[1] if isinstance(result, tuple) else None
    return Run(elapsed, audit, cpu.by_name().get("OTHER", 0.0)), result


def restore_step(s3: S3Restores, kind: str, round_no: int) -> tuple[str, str, Callable[[], object]]:
    """Label, database name and the step to time of one restore of `kind` (raw, no-verify or verified).

    The raw pipeline's database is created here, before the clock starts; opsctl creates its own.
    """
    if kind == "raw":
        name = f"raw_restore_{round_no}"
        s3.superuser(f"CREATE DATABASE {name} OWNER {ROLE}")
        return "raw restic dump | pg_restore", name, lambda: s3.raw_restore(name)
    name = f"opsctl_{kind.replace('-', '_')}_{round_no}"
    verify = kind == "verified"
    return (f"opsctl restore {'(verified)' if verify else '--no-verify'}", name,
            lambda: s3.opsctl_restore(name, verify))


def run_rounds(s3: S3Restores, rounds: int) -> dict[str, list[Run]]:
    """Raw, opsctl --no-verify and opsctl verified, alternated; each into a fresh database, dropped afterwards."""
    runs: dict[str, list[Run]] = {kind: [] for kind in RESTORES}
    for i in range(rounds):
        print(f"round {i + 1}/{rounds}", flush=True)
        for kind in RESTORES:
            label, name, step = restore_step(s3, kind, i)
            s3.settle()
            run, result = timed_run(label, step)
            if run.audit:
                print(f"    {phase_line(run.audit)}", flush=True)
                if i == 0:
                    print(indented(result[0]), flush=True)
            runs[kind].append(run)
            s3.settle(name)
    return runs


def timeline(s3: S3Restores) -> str:
    """One `opsctl --verbose restore --no-verify` (not counted): opsctl's debug lines with their milliseconds."""
    started = time.monotonic()
    output, entry = s3.opsctl_restore("opsctl_timeline", False, "--verbose")
    wall = time.monotonic() - started
    steps = [line for line in output.splitlines() if re.match(r"\s*\d+ms ", line)]
    shortened = [re.sub(r"(--password-file|--repo) \S+", r"\1 ...", re.sub(r"--option \S+ ", "", line))
                 for line in steps]
    return "\n".join([f"  wall {wall:.2f} s, {phase_line(entry)}", *("    " + line for line in shortened)])


def pieces(s3: S3Restores, rounds: int) -> list[tuple[str, float]]:
    """What opsctl does beyond the raw pipeline, each piece timed alone (best of rounds)."""
    def best(step) -> float:
        times = []
        for _ in range(rounds):
            started = time.monotonic()
            step()
            times.append(time.monotonic() - started)
        return min(times)

    def run(argv: list[str], env: dict | None = None) -> None:
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def count_rows() -> None:
        with s3.bench.server.connect("opsctl_timeline") as conn:
            for (table,) in conn.execute("SELECT relname FROM pg_class WHERE relkind = 'r' "
                                         "AND relnamespace = 'public'::regnamespace").fetchall():
                conn.execute(f"SELECT count(*) FROM ONLY public.{table}").fetchone()

    def relayed() -> None:
        s3.superuser(f"CREATE DATABASE opsctl_relayed OWNER {ROLE}")
        s3.settle()
        try:
            times.append(timed_run("raw pipeline relayed through Python + SHA-256",
                                   lambda: s3.relayed_restore("opsctl_relayed"))[0].seconds)
        finally:
            s3.settle("opsctl_relayed")

    def create_and_rename() -> None:
        s3.superuser("CREATE DATABASE opsctl_piece TEMPLATE template0")
        s3.superuser("ALTER DATABASE opsctl_piece RENAME TO opsctl_piece_renamed")
        s3.superuser("DROP DATABASE opsctl_piece_renamed")

    times: list[float] = []
    for _ in range(rounds):
        relayed()
    snapshot = json.loads(subprocess.run(s3.restic_argv("snapshots", "--json", "latest"), env=s3.restic_env,
                                         capture_output=True, check=True).stdout)[0]["id"]
    opsctl_env = {**os.environ, **s3.opsctl_env}
    found = [
        ("python -m opsctl --version (interpreter start + imports)",
         best(lambda: run([sys.executable, "-m", "opsctl", "--version"], opsctl_env))),
        ("python: boto3 S3 client + head_bucket (the target probe, with start)",
         best(lambda: run([sys.executable, "-c", PROBE, s3.moto.endpoint, s3.bucket], opsctl_env))),
        ("restic version", best(lambda: run(["restic", "version"]))),
        ("restic snapshots --json (S3)", best(lambda: run(s3.restic_argv("snapshots", "--json"), s3.restic_env))),
        ("restic ls --json SNAPSHOT (S3; the plan's size)",
         best(lambda: run(s3.restic_argv("ls", "--json", snapshot), s3.restic_env))),
        ("CREATE DATABASE TEMPLATE template0 + RENAME + DROP", best(create_and_rename)),
        ("count(*) of every table of the restored copy (--no-verify check)", best(count_rows)),
        ("the raw pipeline with the bytes relayed through Python + SHA-256 (whole restore)", min(times)),
    ]
    s3.settle("opsctl_timeline")
    return found


def summary(runs: dict[str, list[Run]]) -> None:
    best = {kind: min(done, key=lambda run: run.seconds) for kind, done in runs.items()}
    print(f"\n=== best of {len(runs['raw'])} round(s) ===")
    for kind, label in (("raw", "raw restic dump | pg_restore"), ("no-verify", "opsctl restore --no-verify"),
                        ("verified", "opsctl restore (verified)")):
        every = ", ".join(f"{run.seconds:.2f}" for run in runs[kind])
        phases = f"   {phase_line(best[kind].audit)}" if best[kind].audit else ""
        print(f"{label + ':':34} {best[kind].seconds:7.2f} s   (all: {every}){phases}")
    print(f"plan's dump size (restic ls, dump + manifest trailer): "
          f"{best['verified'].audit['details']['dump_bytes'] / MB:.0f} MB")
    raw, no_verify, verified = (best[kind].seconds for kind in ("raw", "no-verify", "verified"))
    verdict = "ok" if no_verify / raw <= GOAL else "MISSED"
    print(f"ratio opsctl restore --no-verify / raw: {no_verify / raw:.3f} (goal <= {GOAL}) {verdict}")
    print(f"ratio opsctl restore (verified) / raw:  {verified / raw:.3f} (no goal: what proving the data costs)")
    busy = {kind: run.other_cpu_s for kind, run in best.items() if run.other_cpu_s > BUSY_SHARE * run.seconds}
    if busy:
        print("NOT FAIR: other processes used CPU during the best runs ("
              + ", ".join(f"{kind} {cpu:.1f} CPU-s" for kind, cpu in busy.items())
              + "); run again when nothing else runs on this machine")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=40,
                        help="pgbench scale (40: ~600 MB database, ~410 MB dump, with random filler)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the servers and folders are cleaned up
    os.environ.pop("OPSCTL_TEST_NO_FINGERPRINTS", None)  # the backup must carry fingerprints for the verified restore

    with contextlib.ExitStack() as stack:
        moto = MotoServer(moto_server_binary())
        stack.callback(moto.cleanup)
        moto.start()
        started = time.monotonic()
        bench = stack.enter_context(pgbench_bench(args.scale, realistic=True))
        BENCH_ROOTS.add(int((bench.server.data / "postmaster.pid").read_text().split()[0]))
        size = database_bytes(bench, DB)
        print(f"database: pgbench scale {args.scale}, random filler, {size / MB:.0f} MB ({size / MIB:.0f} MiB)"
              f"{'' if size >= MIN_DATABASE_BYTES else '  BELOW 500 MB: raise --scale'}; "
              f"made in {time.monotonic() - started:.0f} s", flush=True)
        dump_bytes, dump_s = measure_dump(bench)
        print(f"dump: pg_dump -Fc -Z0 alone {dump_bytes / MB:.0f} MB ({dump_bytes / MIB:.0f} MiB) in {dump_s:.2f} s",
              flush=True)

        s3 = S3Restores(bench, moto, snapshot_code(bench.root / "code"))
        backup = timed("opsctl init + backup to s3 (moto)", s3.backup)[1]
        print(f"  snapshot {backup['snapshot_id']}: dump {backup['dump_bytes'] / MB:.0f} MB "
              f"({backup['dump_bytes'] / MIB:.0f} MiB), restic added {backup['bytes_added'] / MB:.0f} MB "
              "(before compression)", flush=True)

        runs = run_rounds(s3, args.rounds)
        summary(runs)
        print("\n=== where opsctl's time goes ===")
        print("one opsctl --verbose restore --no-verify (not counted; ms since opsctl's logging started):", flush=True)
        print(timeline(s3), flush=True)
        print(f"pieces opsctl adds to the raw pipeline, each alone (best of {args.rounds}):")
        for label, seconds in pieces(s3, args.rounds):
            print(f"  {label:82} {seconds:6.2f} s")


if __name__ == "__main__":
    main()
