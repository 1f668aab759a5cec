#!/usr/bin/env python3
"""Benchmark: 3-target opsctl backup (local + sftp + s3) against one raw restic backup and borgmatic, same data.

    .venv/bin/python tests/bench/bench_three_targets.py [--scale 60] [--rounds 1] [--change inserts|pgbench]
                                                        [--skip-borgmatic]

On a pgbench database with random (non-compressible) filler, served by a throwaway PostgreSQL, sshd and
moto_server on loopback, prints:
(1) opsctl 3-target wall time / raw `pg_dump -Fc -Z0 | restic backup --stdin` to local: first backup
    (goal <= 1.5) and the next day's backup after a small change (goal <= 1.3), with opsctl's phases
    (primary backup, each replica's copy time and bytes) from `--json`;
(2) opsctl 3-target / borgmatic with 3 repositories (local, ssh, local), first backup (goal <= 0.2).
Each step runs --rounds times on fresh repositories; medians are reported. CPU seconds per process name
during each step (sampled from /proc, approximate) show where the time goes.
Needs restic, PostgreSQL, sshd, moto[server]; for (2) borgbackup (apt) and borgmatic (pip) too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple, Self

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from tests.bench.bench_postgres_backup import DB, ROLE, ROLE_PASSWORD, Bench
from tests.bench.common import sh
from tests.support.moto import MotoServer, moto_server_binary
from tests.support.servers import PostgresServer, postgres_bindir
from tests.support.sshd import SshServer
from tests.support.targets import s3_target, sftp_target
from tests.support.workspace import Workspace

MB = 10**6
MIB = 2**20
MIN_DUMP_BYTES = 500 * MB
GOALS = {"first": 1.5, "next day": 1.3, "borgmatic": 0.2}
RANDOM_FILLER = "substr(md5(random()::text) || md5(random()::text) || md5(random()::text), 1, 84)"
BORG_PASSPHRASE = "bench-borg-passphrase"


# --- where the time goes ---------------------------------------------------------------------------

BENCH_ROOTS = {os.getpid()}  # and the postmaster: their descendants are this benchmark's processes


class CpuSampler:
    """CPU seconds per process name while a step runs, from /proc every 0.25 s (a pid's last 0.25 s may be lost).

    Processes outside this benchmark (another test run, kernel threads) are summed as "OTHER": on 2 cores
    they slow the step down, and the figure says so.
    """

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self._first: dict[int, tuple[str, float]] = {}
        self._last: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._tick = os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> Self:
        self._first = self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._last.update(self._sample())

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._last.update(self._sample())

    def _sample(self) -> dict[int, tuple[str, float]]:
        """pid -> (name, CPU seconds so far); the name is OTHER for processes outside this benchmark."""
        procs: dict[int, tuple[int, str, float]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            comm = text[text.index("(") + 1:text.rindex(")")]
            fields = text[text.rindex(")") + 2:].split()
            procs[int(stat.parent.name)] = (int(fields[1]), comm, (int(fields[11]) + int(fields[12])) / self._tick)
        children: dict[int, list[int]] = defaultdict(list)
        for pid, (ppid, _, _) in procs.items():
            children[ppid].append(pid)
        ours, todo = set(), [r for r in BENCH_ROOTS if r in procs]
        while todo:
            pid = todo.pop()
            ours.add(pid)
            todo += children[pid]
        return {pid: ("this script" if pid == os.getpid() else comm if pid in ours else "OTHER", cpu)
                for pid, (_, comm, cpu) in procs.items()}

    def by_name(self) -> dict[str, float]:
        """CPU seconds used during the step, per process name, largest first."""
        totals: dict[str, float] = defaultdict(float)
        for pid, (name, cpu) in self._last.items():
            totals[name] += cpu - self._first.get(pid, ("", 0.0))[1]
        return dict(sorted(((k, v) for k, v in totals.items() if v >= 0.1), key=lambda kv: -kv[1]))

    def line(self) -> str:
        return ", ".join(f"{name} {seconds:.1f}" for name, seconds in self.by_name().items()) or "-"


class Figures:
    """Every measured value by name, one per round; medians for the report."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = defaultdict(list)
        self.rounds_done = 0  # a round cut short by a failure is left out of the medians

    def add(self, name: str, value: float) -> None:
        self.values[name].append(value)

    def median(self, name: str) -> float:
        return statistics.median(self.values[name][:self.rounds_done])

    def __contains__(self, name: str) -> bool:
        return name in self.values


def timed(label: str, step):
    """Run step() under a CPU sampler; print its wall time and CPU use; return (seconds, step's result)."""
    with CpuSampler() as cpu:
        started = time.monotonic()
        result = step()
        elapsed = time.monotonic() - started
    print(f"  {label}: {elapsed:.2f} s   [cpu s: {cpu.line()}]", flush=True)
    return elapsed, result


# --- the database ----------------------------------------------------------------------------------

def measure_dump(bench: Bench) -> tuple[int, float]:
    """Size and time of `pg_dump -Fc -Z0` alone, read to the end and thrown away."""
    started = time.monotonic()
    dump = subprocess.Popen(["pg_dump", "-Fc", "-Z0"], env=bench.pg_env, stdout=subprocess.PIPE)
    size = 0
    while chunk := dump.stdout.read(MIB):
        size += len(chunk)
    assert dump.wait() == 0, "pg_dump failed"
    return size, time.monotonic() - started


def change_a_day(bench: Bench, kind: str) -> None:
    """The same "next day" change before raw's and opsctl's second backups: ~1% new rows, or 10 s of pgbench."""
    if kind == "inserts":
        bench.psql("INSERT INTO pgbench_accounts (aid, bid, abalance, filler) "
                   f"SELECT aid, 1, 0, {RANDOM_FILLER} "
                   "FROM generate_series((SELECT max(aid) + 1 FROM pgbench_accounts), "
                   "(SELECT max(aid) * 101 / 100 FROM pgbench_accounts)) aid")
    else:
        sh([str(bench.server.bindir / "pgbench"), "-n", "-T", "10"], env=bench.pg_env,
           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# --- opsctl with three targets ---------------------------------------------------------------------

class OpsctlFailed(RuntimeError):
    """opsctl exited non-zero or reported a failed target; the message is its output, verbatim."""


class Opsctl:
    """opsctl policies with local + sftp + s3 targets, one set of fresh repositories per round.

    opsctl is imported from `code` (a snapshot_code copy; one is made under root when none is given).
    """

    def __init__(self, root: Path, server: PostgresServer, ssh: SshServer, moto: MotoServer, *,
                 database: str = DB, code: Path | None = None) -> None:
        self.workspace = Workspace(root)  # writes repository.pass
        self.workspace.secret("db.pass", ROLE_PASSWORD)  # as Bench writes it, for a root of its own
        self.server, self.ssh, self.moto, self.database = server, ssh, moto, database
        self.code = code or snapshot_code(root / "code")

    def fresh_policy(self, round_no: int) -> str:
        """Write and `opsctl init` a policy whose three repositories are new; return its file name."""
        name = f"policy-{round_no}.yaml"
        database = {"engine": "postgresql", "host": "127.0.0.1", "port": self.server.port, "user": ROLE,
                    "password": {"file": "db.pass"}, "name": self.database}
        targets = [{"name": "local", "kind": "local", "path": f"opsctl-{round_no}-local"},
                   sftp_target(self.ssh, name="nas"), s3_target(self.moto, self.workspace, name="offsite")]
        # A state folder per round: each first backup is a first one, with nothing left by the round before.
        self.workspace.write_policy(database, targets, name=name, state_dir=f"state-{round_no}")
        self._run("init", policy=name)
        return name

    def backup(self, policy: str) -> dict[str, dict]:
        """One `opsctl --json backup`: the JSON row of each target, by target name."""
        out = self._run("--json", "backup", policy=policy)
        return {row["target"]: row for row in json.loads(out)["targets"]}

    def _run(self, *args: str, policy: str) -> str:
        result = self.workspace.opsctl(*args, policy=policy, timeout=3600, env={"PYTHONPATH": str(self.code)})
        failed = result.returncode != 0
        if not failed and args[-1] == "backup":
            failed = not all(row["ok"] for row in json.loads(result.stdout)["targets"])
        if failed:
            raise OpsctlFailed(f"`opsctl {' '.join(args)}` exited {result.returncode}:\n{result.output}")
        return result.stdout


def code_version() -> str:
    """The checkout's commit, and whether opsctl/ has uncommitted changes (read-only git commands)."""
    commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip() or "?"
    dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "opsctl"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return f"commit {commit}{' with uncommitted changes in opsctl/' if dirty else ''}"


def snapshot_code(folder: Path) -> Path:
    """Copy opsctl/ as it is now, so that edits in the work tree during the run do not change what is measured."""
    shutil.copytree(REPO_ROOT / "opsctl", folder / "opsctl", ignore=shutil.ignore_patterns("__pycache__"))
    print(f"opsctl measured: a copy of {REPO_ROOT / 'opsctl'} at {code_version()}", flush=True)
    return folder


def record_phases(figures: Figures, when: str, rows: dict[str, dict]) -> None:
    """Print and keep each target's role, duration and bytes from opsctl's --json."""
    for name, row in rows.items():
        what = "restic backup, data added (before compression)" if row["role"] == "primary" else "copy, files written"
        print(f"    {name:8} {row['role']:8} {row['duration_s']:6.2f} s   "
              f"{row['bytes_added'] / MIB:8.1f} MiB  ({what})", flush=True)
        figures.add(f"opsctl {when} {name} {row['role']} s", row["duration_s"])
        figures.add(f"opsctl {when} {name} {row['role']} MiB", row["bytes_added"] / MIB)


# --- borgmatic with three repositories -------------------------------------------------------------

class Borgmatic:
    """borgmatic configurations with three fresh borg repositories (local, ssh to the sshd, local) per round."""

    def __init__(self, root: Path, server: PostgresServer, ssh: SshServer, compression: str,
                 dump_compression: str, *, binary: str | None = None) -> None:
        self.root, self.ssh, self.compression = root, ssh, compression
        database = {"name": DB, "hostname": "127.0.0.1", "port": server.port, "username": ROLE,
                    "password": ROLE_PASSWORD, "format": "custom"}
        if dump_compression != "default":  # 0 = pg_dump -Fc -Z0, as ours; borgmatic's default is pg_dump's zlib
            database["compression"] = int(dump_compression)
        self.database = database
        self.binary = binary or str(Path(sys.executable).parent / "borgmatic")

    def fresh_config(self, round_no: int) -> Path:
        """Write a configuration with three new repositories and create them (repokey-blake2)."""
        ssh_repo = f"ssh://{self.ssh.user}@{self.ssh.host}:{self.ssh.port}{self.ssh.root / f'borg-{round_no}-nas'}"
        config = {
            "source_directories": [],
            "repositories": [{"path": str(self.root / f"borg-{round_no}-a"), "label": "local-a"},
                             {"path": ssh_repo, "label": "nas"},
                             {"path": str(self.root / f"borg-{round_no}-c"), "label": "local-c"}],
            "encryption_passphrase": BORG_PASSPHRASE,
            "compression": self.compression,
            "ssh_command": shlex.join(self.ssh.ssh_argv()[:-1]),  # without USER@HOST: borg adds it
            "borg_base_directory": str(self.root / "borg-home"),
            "user_runtime_directory": str(self.root / "borgmatic-run"),
            "user_state_directory": str(self.root / "borgmatic-state"),
            "postgresql_databases": [self.database],
        }
        path = self.root / f"borgmatic-{round_no}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        self._run(path, "repo-create", "--encryption", "repokey-blake2")
        return path

    def create(self, config: Path) -> None:
        self._run(config, "create")

    def _run(self, config: Path, *args: str) -> None:
        result = subprocess.run([self.binary, "--config", str(config), *args], capture_output=True, text=True,
                                stdin=subprocess.DEVNULL, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"borgmatic {' '.join(args)} exited {result.returncode}:\n"
                               f"{result.stdout}{result.stderr}")


# --- one round -------------------------------------------------------------------------------------

def run_round(i: int, args, bench: Bench, opsctl: Opsctl, *, borgmatic: Borgmatic | None, figures: Figures) -> None:
    """First backup by raw, borgmatic and opsctl on the same data; the change; next-day backups by raw and opsctl."""
    print(f"round {i + 1}/{args.rounds}", flush=True)
    raw_repo = bench.fresh_repository(f"raw-{i}")
    policy = opsctl.fresh_policy(i)
    config = borgmatic.fresh_config(i) if borgmatic else None

    figures.add("raw first", timed("raw first backup (pg_dump | restic, local)", lambda: bench.raw_backup(raw_repo))[0])
    if borgmatic:
        figures.add("borgmatic first", timed("borgmatic create, 3 repositories", lambda: borgmatic.create(config))[0])
    elapsed, rows = timed("opsctl first backup, 3 targets", lambda: opsctl.backup(policy))
    figures.add("opsctl first", elapsed)
    record_phases(figures, "first", rows)

    timed(f"change ({args.change})", lambda: change_a_day(bench, args.change))
    figures.add("raw next day", timed("raw next-day backup", lambda: bench.raw_backup(raw_repo))[0])
    elapsed, rows = timed("opsctl next-day backup, 3 targets", lambda: opsctl.backup(policy))
    figures.add("opsctl next day", elapsed)
    record_phases(figures, "next day", rows)
    figures.rounds_done += 1


def ratio_line(label: str, ours: float, theirs: float, goal: float) -> str:
    ratio = ours / theirs
    verdict = "ok" if ratio <= goal else "MISSED"
    return f"{label}: {ours:.2f} s / {theirs:.2f} s = ratio {ratio:.3f} (goal <= {goal}) {verdict}"


def summary(args, figures: Figures, dump_bytes: int, dump_s: float) -> None:
    """The closing block: medians, phases, and the three ratios."""
    m = figures.median
    print(f"\n=== summary (medians of {figures.rounds_done} complete round(s) of {args.rounds}) ===")
    print(f"database: pgbench scale {args.scale}, random filler; pg_dump -Fc -Z0 = {dump_bytes / MB:.0f} MB "
          f"({dump_bytes / MIB:.0f} MiB){'' if dump_bytes >= MIN_DUMP_BYTES else '  BELOW 500 MB: raise --scale'}; "
          f"pg_dump alone {dump_s:.2f} s; next-day change: {args.change}")
    print(f"raw pg_dump | restic backup --stdin (local):  first {m('raw first'):.2f} s   "
          f"next day {m('raw next day'):.2f} s")
    print(f"opsctl backup, local + sftp + s3:              first {m('opsctl first'):.2f} s   "
          f"next day {m('opsctl next day'):.2f} s")
    for when in ("first", "next day"):
        for name in sorted(n for n in figures.values if n.startswith(f"opsctl {when} ") and n.endswith(" s")):
            phase = name[len(f"opsctl {when} "):-2]
            print(f"  {when:8} {phase:18} {m(name):7.2f} s   {m(name[:-2] + ' MiB'):8.1f} MiB")
    if "borgmatic first" in figures:
        print(f"borgmatic create, 3 repositories (borg compression {args.borg_compression}, "
              f"pg_dump -Fc compression {args.borg_dump_compression}): {m('borgmatic first'):.2f} s")
    print(ratio_line("(1) first backup, opsctl 3 targets / raw 1 target", m("opsctl first"), m("raw first"),
                     GOALS["first"]))
    print(ratio_line("(1) next day, opsctl 3 targets / raw 1 target", m("opsctl next day"), m("raw next day"),
                     GOALS["next day"]))
    if "borgmatic first" in figures:
        print(ratio_line("(2) first backup, opsctl 3 targets / borgmatic 3 repositories", m("opsctl first"),
                         m("borgmatic first"), GOALS["borgmatic"]))


class Servers(NamedTuple):
    postgres: PostgresServer
    ssh: SshServer
    moto: MotoServer


def start_servers(stack: contextlib.ExitStack) -> Servers:
    """PostgreSQL, sshd and moto_server on free loopback ports, each stopped when the stack closes."""
    postgres = PostgresServer(postgres_bindir())
    stack.callback(postgres.cleanup)
    postgres.start()
    BENCH_ROOTS.add(int((postgres.data / "postmaster.pid").read_text().split()[0]))  # its backends are ours
    ssh = SshServer()
    stack.callback(ssh.cleanup)
    ssh.start()
    moto = MotoServer(moto_server_binary())
    stack.callback(moto.cleanup)
    moto.start()
    return Servers(postgres, ssh, moto)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=60, help="pgbench scale (60: ~615 MB dump with random filler)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each step on fresh repositories (median)")
    parser.add_argument("--change", choices=("inserts", "pgbench"), default="inserts",
                        help="next day's change: ~1%% new rows (default), or `pgbench -T 10` (scattered updates)")
    parser.add_argument("--skip-borgmatic", action="store_true")
    parser.add_argument("--borg-compression", default="lz4", help="borg's compression (default: borg's own, lz4)")
    parser.add_argument("--borg-dump-compression", default="0",
                        help="pg_dump -Z level in borgmatic's dumps: 0 (default) as ours, or 'default' for borgmatic's")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the servers and folders are cleaned up

    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="opsctl-bench3-",
                                                                    dir=os.environ.get("BENCH_DIR"))))
        os.environ["XDG_CACHE_HOME"] = str(root / ".cache")  # restic's and borg's caches, raw and opsctl alike
        server, ssh, moto = start_servers(stack)

        server.create_role_and_database(ROLE, ROLE_PASSWORD, DB)
        bench = Bench(root, server)
        timed(f"pgbench -i -s {args.scale} with random filler, VACUUM FULL",
                           lambda: bench.pgbench_init(args.scale, realistic=True))
        measure_dump(bench)  # warm the page cache, so that no measured step pays for it
        dump_bytes, dump_s = measure_dump(bench)
        print(f"dump: {dump_bytes / MB:.0f} MB in {dump_s:.2f} s (pg_dump -Fc -Z0 alone)", flush=True)

        opsctl = Opsctl(root, server, ssh, moto)
        borgmatic = None if args.skip_borgmatic else Borgmatic(root, server, ssh, args.borg_compression,
                                                             args.borg_dump_compression)
        figures = Figures()
        try:
            for i in range(args.rounds):
                run_round(i, args, bench, opsctl, borgmatic=borgmatic, figures=figures)
        finally:
            if figures.rounds_done:
                summary(args, figures, dump_bytes, dump_s)


if __name__ == "__main__":
    main()
