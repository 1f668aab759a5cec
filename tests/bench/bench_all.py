#!/usr/bin/env python3
"""Every figure of issue 22 in one run and one markdown table: opsctl beside raw restic, a hand-made tee, borgmatic.

    scripts/bench [--scale 60] [--rounds 3] [--rss-factor 4] [--skip-borgmatic] [--quick]

Starts its own PostgreSQL, sshd and moto_server on loopback ports and builds two pgbench databases with random
filler: --scale (60: ~600 MB `pg_dump -Fc -Z0`) and --small-scale (1: ~10 MB). Then --rounds rounds, the order of
the tools rotated each round, each on fresh repositories:

- first backups: raw `pg_dump | restic backup --stdin` to a local repository; one pg_dump `tee`d into three restic
  processes (local, sftp, s3); borgmatic with three repositories; opsctl with 1 target and with 3 targets;
- a no-change backup (raw, opsctl 1 target); +1% rows; the next day's backups (raw, opsctl 1 and 3 targets);
  the rows are deleted again, so that every round backs up the same data;
- the ~10 MB database: raw 1 target against opsctl 3 targets;
- restores from s3 into a new database: raw `restic dump | pg_restore`, `opsctl restore --no-verify`, verified.
Last, opsctl's peak RSS on a database --rss-factor times larger (1x comes from each round's 1-target backup).
opsctl runs from a copy of opsctl/ taken at the start. Prints medians and minimums, ratios to the raw figure of
the same run against issue 22's goals, and CPU-seconds per process; writes the table to tests/bench/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from tests.bench.bench_postgres_backup import DB, ROLE, ROLE_PASSWORD, Bench
from tests.bench.bench_restore_s3 import RESTORES, S3Restores, restore_step
from tests.bench.bench_three_targets import (
    Borgmatic,
    CpuSampler,
    Opsctl,
    Servers,
    change_a_day,
    code_version,
    measure_dump,
    record_phases,
    snapshot_code,
    start_servers,
)
from tests.bench.bench_three_targets import Figures as Phases
from tests.bench.common import sh
from tests.bench.report import Figures, Row, ratio_at_most, save, seconds_over_at_most, table
from tests.support.moto import REGION, MotoServer
from tests.support.sshd import SshServer, _descendants

T = TypeVar("T")
MB = 10**6
SMALL_DB, RSS_DB = "bench_small", "bench_rss"
DEFAULT_SCALE, QUICK_SCALE = 60, 2


def rows(rss_factor: int) -> list[Row]:
    """The table, top to bottom, with issue 22's goals; lanes name the tool whose failure a row reports."""
    n = rss_factor if rss_factor > 1 else "N"
    return [
        Row("raw `pg_dump | restic backup --stdin`, 1 target (local): first", "raw first", "raw"),
        Row("hand-made `tee` into 3 restic (local, sftp, s3): first", "tee first", "tee", "raw first"),
        Row("borgmatic, 3 repositories (local, ssh, local): first", "borgmatic first", "borgmatic", "raw first"),
        Row("opsctl, 1 target: first", "opsctl-1 first", "opsctl-1", "raw first", ratio_at_most(1.05)),
        Row("opsctl, 3 targets (local, sftp, s3): first", "opsctl-3 first", "opsctl-3", "raw first",
            ratio_at_most(1.25)),
        Row("raw: no-change backup", "raw no-change", "raw"),
        Row("opsctl, 1 target: no-change backup", "opsctl-1 no-change", "opsctl-1", "raw no-change"),
        Row("raw: next day (+1% rows)", "raw next day", "raw"),
        Row("opsctl, 1 target: next day", "opsctl-1 next day", "opsctl-1", "raw next day", ratio_at_most(1.05)),
        Row("opsctl, 3 targets: next day", "opsctl-3 next day", "opsctl-3", "raw next day", ratio_at_most(1.15)),
        Row("~10 MB database, raw, 1 target: first", "small raw", "small raw"),
        Row("~10 MB database, opsctl, 3 targets: first", "small opsctl-3", "small opsctl", "small raw",
            seconds_over_at_most(1.0)),
        Row("restore from s3, raw `restic dump | pg_restore`", "restore raw", "restore raw"),
        Row("opsctl restore --no-verify (from s3)", "restore no-verify", "restore no-verify", "restore raw",
            ratio_at_most(1.10)),
        Row("opsctl restore, verified (from s3)", "restore verified", "restore verified", "restore raw",
            ratio_at_most(1.35)),
        Row("bytes added, no-change backup: raw", "bytes raw no-change", "raw", unit="MiB"),
        Row("bytes added, no-change backup: opsctl 1 target", "bytes opsctl-1 no-change", "opsctl-1",
            "bytes raw no-change", unit="MiB"),
        Row("bytes added, +1% rows: raw", "bytes raw next day", "raw", unit="MiB"),
        Row("bytes added, +1% rows: opsctl 1 target", "bytes opsctl-1 next day", "opsctl-1", "bytes raw next day",
            unit="MiB"),
        Row("bytes added, +1% rows: opsctl 3 targets (primary)", "bytes opsctl-3 next day", "opsctl-3",
            "bytes raw next day", unit="MiB"),
        Row("peak RSS of opsctl, 1x database (1 target, first)", "rss 1x", "opsctl-1", unit="MiB"),
        Row(f"peak RSS of opsctl, {n}x database (ratio: {n}x / 1x)", "rss nx", "rss",
            "rss 1x", ratio_at_most(1.10, "flat, ~1.0 (≤ 1.10)"), unit="MiB"),
    ]


# --- running steps ---------------------------------------------------------------------------------

class Steps:
    """Runs each step in its lane (a tool): a failed step stops its lane, says why in the table; the run goes on."""

    def __init__(self, figures: Figures) -> None:
        self.figures = figures

    def attempt(self, lane: str, step: Callable[[], T]) -> T | None:
        """step()'s result, or None when the lane is stopped already or stops now."""
        if lane in self.figures.problems:
            return None
        try:
            return step()
        except Exception as error:  # noqa: BLE001 (one tool failing must not lose the other figures of a long run)
            print(f"  {lane}: FAILED, left out from now on:\n{error}", flush=True)
            first_line = (str(error).strip().splitlines() or [""])[0][:120]
            self.figures.problems[lane] = f"FAILED: {type(error).__name__} {first_line}"
            return None

    def timed(self, lane: str, key: str, label: str, step: Callable[[], object]) -> None:
        """Run step under a CPU sampler: its wall time and CPU-seconds per process go to the figure `key`."""
        def measured() -> None:
            os.sync()  # the writes of the step before are not paid for by this one
            with CpuSampler() as cpu:
                started = time.monotonic()
                step()
                elapsed = time.monotonic() - started
            self.figures.add(key, elapsed, cpu.by_name())
            print(f"  {label}: {elapsed:.2f} s   [cpu s: {cpu.line()}]", flush=True)
        self.attempt(lane, measured)


# --- the servers, the data and the tools -----------------------------------------------------------

def started_servers(stack: contextlib.ExitStack) -> Servers:
    """The servers, and on close, first of all, whatever an interrupted step left running."""
    servers = start_servers(stack)
    stack.callback(stop_children)
    return servers


def stop_children() -> None:
    """SIGTERM every process this run started that still runs (restic, pg_dump, ... of an interrupted step)."""
    for pid in _descendants(os.getpid()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


class Database:
    """The big pgbench database; +1% rows for the next day, deleted after, so that every round backs up the same."""

    def __init__(self, bench: Bench, scale: int) -> None:
        self.bench = bench
        bench.pgbench_init(scale, realistic=True)
        self.last_aid = int(query(bench, "SELECT max(aid) FROM pgbench_accounts"))
        self.dump_bytes = self.settle()

    def change(self) -> None:
        change_a_day(self.bench, "inserts")
        self.settle()

    def undo(self) -> None:
        self.bench.psql(f"DELETE FROM pgbench_accounts WHERE aid > {self.last_aid}")
        self.settle()

    def settle(self) -> int:
        """Hint bits set, dirty pages written, pages in the cache: no measured step pays for the change."""
        settle(self.bench)
        return measure_dump(self.bench)[0]


def settle(bench: Bench) -> None:
    bench.psql("VACUUM ANALYZE pgbench_accounts")
    with bench.server.connect() as conn:
        conn.execute("CHECKPOINT")


def query(bench: Bench, sql: str) -> str:
    return subprocess.run(["psql", "-Atc", sql], env=bench.pg_env, capture_output=True, text=True,
                          check=True).stdout.strip()


class TeeToThree:
    """One pg_dump `tee`d into three restic processes (local, sftp, s3): what an operator could script by hand."""

    def __init__(self, bench: Bench, ssh: SshServer, moto: MotoServer) -> None:
        self.bench, self.ssh, self.moto = bench, ssh, moto
        self.env = {**bench.restic_env, **moto.restic_env()}  # credentials in the environment, never on argv

    def fresh_repositories(self, round_no: int) -> list[list[str]]:
        """restic's options for three new repositories, initialised."""
        repositories = [
            ["-r", str(self.bench.root / f"tee-{round_no}-local")],
            ["-r", self.ssh.repository(f"tee-{round_no}"), "-o", f"sftp.command={self.ssh.sftp_command()}"],
            ["-r", self.moto.repository(f"bench-tee-{round_no}", "crm"), "-o", "s3.bucket-lookup=path",
             "-o", f"s3.region={REGION}"],
        ]
        for options in repositories:
            sh(["restic", *options, "init", "-q"], env=self.env, stdout=subprocess.DEVNULL)
        return repositories

    def backup(self, repositories: list[list[str]]) -> None:
        """pg_dump | tee /dev/fd/A /dev/fd/B | restic (third); A and B feed the other two restic processes."""
        dump = subprocess.Popen(["pg_dump", "-Fc", "-Z0"], env=self.bench.pg_env, stdout=subprocess.PIPE)
        backups = [subprocess.Popen(["restic", *options, "backup", "--stdin", "--stdin-filename", "bench.pgdump",
                                     "-q"], stdin=subprocess.PIPE, env=self.env) for options in repositories]
        side = [backup.stdin.fileno() for backup in backups[:-1]]
        tee = subprocess.Popen(["tee", *(f"/dev/fd/{fd}" for fd in side)], stdin=dump.stdout,
                               stdout=backups[-1].stdin, pass_fds=side)
        for stream in (dump.stdout, *(backup.stdin for backup in backups)):
            stream.close()  # the children hold the pipes now: each sees end of file when its writer ends
        codes = [process.wait() for process in (dump, tee, *backups)]
        if any(codes):
            raise RuntimeError(f"pg_dump, tee, restic local, sftp, s3 exited {codes}")


@dataclass
class Lab:
    """What every part of the run shares: its folder, servers, options, steps and the header's facts."""

    root: Path
    servers: Servers
    args: argparse.Namespace
    steps: Steps
    facts: dict[str, str]
    code: Path = REPO_ROOT  # then the copy of opsctl/ that is measured


@dataclass
class Tools:
    """Everything a round measures, set up once."""

    database: Database  # its bench: raw and opsctl 1 target
    tee: TeeToThree
    borgmatic: Borgmatic | None
    opsctl_3: Opsctl
    small: Bench
    small_3: Opsctl
    restores: S3Restores | None
    ssh: SshServer

    @property
    def bench(self) -> Bench:
        return self.database.bench


def folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def build(lab: Lab) -> Tools:
    """Databases, tools and the one backup the restores read; what each is, in the facts."""
    root, code, args, steps = lab.root, lab.code, lab.args, lab.steps
    postgres, ssh, moto = lab.servers
    for name in (DB, SMALL_DB):
        postgres.create_role_and_database(ROLE, ROLE_PASSWORD, name)
    print(f"making the data: pgbench scale {args.scale} and {args.small_scale}, random filler", flush=True)
    database = Database(Bench(folder(root / "big"), postgres, code=code), args.scale)
    small = Bench(folder(root / "small"), postgres, database=SMALL_DB, code=code)
    small_bytes = Database(small, args.small_scale).dump_bytes
    lab.facts["data"] = (f"pgbench with random filler, scale {args.scale}: `pg_dump -Fc -Z0` "
                         f"{database.dump_bytes / MB:.0f} MB; scale {args.small_scale}: {small_bytes / MB:.1f} MB")
    restores = steps.attempt("restore raw", lambda: backed_up(S3Restores(
        Bench(folder(root / "restore"), postgres, code=code), moto, code)))
    if restores is None:
        for kind in RESTORES[1:]:
            steps.figures.problems[f"restore {kind}"] = steps.figures.problems["restore raw"]
    return Tools(database=database, tee=TeeToThree(database.bench, ssh, moto),
                 borgmatic=borgmatic(lab),
                 opsctl_3=Opsctl(folder(root / "big-3"), postgres, ssh, moto, code=code),
                 small=small, small_3=Opsctl(folder(root / "small-3"), postgres, ssh, moto, database=SMALL_DB,
                                             code=code),
                 restores=restores, ssh=ssh)


def backed_up(restores: S3Restores) -> S3Restores:
    """The s3 repository the restores read: one opsctl backup of the big database as it is before any change."""
    restores.backup()
    return restores


def borgmatic(lab: Lab) -> Borgmatic | None:
    """borgmatic (pg_dump -Z0 as ours, borg's lz4) with Debian's borg, or None and the reason in the table."""
    binary = lab.args.borgmatic or shutil.which("borgmatic")
    why = ("skipped (--skip-borgmatic or --quick)" if lab.args.skip_borgmatic
           else "skipped: borgmatic not found (scripts/bench installs it)" if not binary
           else "skipped: borg not found (apt-get install borgbackup)" if not shutil.which("borg") else "")
    if why:
        lab.steps.figures.problems["borgmatic"] = why
        lab.facts["borgmatic"] = why
        return None
    lab.facts["borgmatic"] = f"{first_words(['borg', '--version'])}, borgmatic {first_words([binary, '--version'])}"
    return Borgmatic(folder(lab.root / "borg"), lab.servers.postgres, lab.servers.ssh, "lz4", "0", binary=binary)


# --- one round -------------------------------------------------------------------------------------

class Round:
    """One round: fresh repositories for every tool (not timed), then the steps, the order rotated by round."""

    def __init__(self, tools: Tools, steps: Steps, number: int) -> None:
        self.tools, self.steps, self.number = tools, steps, number
        self.phases = Phases()
        attempt, i = steps.attempt, number
        self.raw_repo = attempt("raw", lambda: tools.bench.fresh_repository(f"raw-{i}"))
        self.tee_repos = attempt("tee", lambda: tools.tee.fresh_repositories(i))
        self.borg_config = tools.borgmatic and attempt("borgmatic", lambda: tools.borgmatic.fresh_config(i))
        self.policy_1 = attempt("opsctl-1", lambda: self._one_target(tools.bench))
        self.policy_3 = attempt("opsctl-3", lambda: tools.opsctl_3.fresh_policy(i))
        self.small_repo = attempt("small raw", lambda: tools.small.fresh_repository(f"raw-{i}"))
        self.small_policy = attempt("small opsctl", lambda: tools.small_3.fresh_policy(i))

    def _one_target(self, bench: Bench) -> Path:
        """A 1-target policy with a state folder of its own, its repository made by `opsctl init`."""
        policy = bench.write_policy(bench.root / f"opsctl-{self.number}", bench.root / f"state-{self.number}")
        bench.opsctl_init(policy)
        return policy

    def run(self) -> None:
        self._phase([lambda: self._raw("first"), self._tee, self._borgmatic, lambda: self._opsctl_1("first"),
                     lambda: self._opsctl_3("first")])
        self._phase([lambda: self._raw("no-change"), lambda: self._opsctl_1("no-change")])
        print("  (+1% rows)", flush=True)
        self.tools.database.change()
        self._phase([lambda: self._raw("next day"), lambda: self._opsctl_1("next day"),
                     lambda: self._opsctl_3("next day")])
        self.tools.database.undo()
        self._phase([self._small_raw, self._small_opsctl])
        self._phase([lambda kind=kind: self._restore(kind) for kind in RESTORES])
        self._clean()

    def _phase(self, jobs: list[Callable[[], None]]) -> None:
        """Run the jobs, starting at a different one each round: no tool always goes first or last."""
        shift = self.number % len(jobs)
        for job in jobs[shift:] + jobs[:shift]:
            job()

    def _raw(self, when: str) -> None:
        def step() -> None:
            added = self.tools.bench.raw_backup_json(self.raw_repo)[1]
            if when != "first":
                self.steps.figures.add(f"bytes raw {when}", added)
        self.steps.timed("raw", f"raw {when}", f"raw pg_dump | restic backup, local, {when}", step)

    def _tee(self) -> None:
        self.steps.timed("tee", "tee first", "pg_dump | tee into 3 restic (local, sftp, s3), first",
                         lambda: self.tools.tee.backup(self.tee_repos))

    def _borgmatic(self) -> None:
        if self.tools.borgmatic:
            self.steps.timed("borgmatic", "borgmatic first", "borgmatic create, 3 repositories, first",
                             lambda: self.tools.borgmatic.create(self.borg_config))

    def _opsctl_1(self, when: str) -> None:
        def step() -> None:
            _, made, peak_kib = self.tools.bench.opsctl_backup(self.policy_1)
            assert not made["error"], made["error"]
            if when == "first":
                self.steps.figures.add("rss 1x", peak_kib * 1024)
            else:
                self.steps.figures.add(f"bytes opsctl-1 {when}", made["bytes_added"])
        self.steps.timed("opsctl-1", f"opsctl-1 {when}", f"opsctl backup, 1 target, {when}", step)

    def _opsctl_3(self, when: str) -> None:
        def step() -> None:
            targets = self.tools.opsctl_3.backup(self.policy_3)
            record_phases(self.phases, when, targets)
            if when != "first":
                primary = next(row for row in targets.values() if row["role"] == "primary")
                self.steps.figures.add(f"bytes opsctl-3 {when}", primary["bytes_added"])
        self.steps.timed("opsctl-3", f"opsctl-3 {when}", f"opsctl backup, 3 targets, {when}", step)

    def _small_raw(self) -> None:
        self.steps.timed("small raw", "small raw", "~10 MB database: raw, 1 target",
                         lambda: self.tools.small.raw_backup_json(self.small_repo))

    def _small_opsctl(self) -> None:
        self.steps.timed("small opsctl", "small opsctl-3", "~10 MB database: opsctl, 3 targets",
                         lambda: self.tools.small_3.backup(self.small_policy))

    def _restore(self, kind: str) -> None:
        """One restore from s3 into a new database, dropped afterwards (CHECKPOINT before and after)."""
        lane, s3 = f"restore {kind}", self.tools.restores
        prepared = self.steps.attempt(lane, lambda: restore_step(s3, kind, self.number))
        if prepared is None:
            return
        label, name, step = prepared
        s3.settle()
        self.steps.timed(lane, f"restore {kind}", label, step)
        self.steps.attempt(lane, lambda: s3.settle(name))

    def _clean(self) -> None:
        """Remove this round's repositories on disk (moto keeps its buckets in memory or its own temp files)."""
        i, tools = self.number, self.tools
        for path in (tools.bench.root / f"raw-{i}", tools.bench.root / f"opsctl-{i}",
                     tools.bench.root / f"tee-{i}-local", tools.opsctl_3.workspace.root / f"opsctl-{i}-local",
                     tools.small.root / f"raw-{i}", tools.small_3.workspace.root / f"opsctl-{i}-local",
                     *(tools.borgmatic.root.glob(f"borg-{i}-*") if tools.borgmatic else ()),
                     *tools.ssh.root.iterdir()):
            shutil.rmtree(path, ignore_errors=True)


def peak_rss(lab: Lab) -> None:
    """opsctl's peak RSS (figure "rss nx") backing up a database --rss-factor times the big one, first backup."""
    factor, scale = lab.args.rss_factor, lab.args.scale * lab.args.rss_factor

    def measure() -> None:
        lab.servers.postgres.create_role_and_database(ROLE, ROLE_PASSWORD, RSS_DB)
        bench = Bench(folder(lab.root / "rss"), lab.servers.postgres, database=RSS_DB, code=lab.code)
        print(f"RSS at {factor}x: making pgbench scale {scale}", flush=True)
        bench.pgbench_init(scale, realistic=True)
        policy = bench.write_policy(bench.root / "repository")
        bench.opsctl_init(policy)
        _, made, peak_kib = bench.opsctl_backup(policy)
        lab.steps.figures.add("rss nx", peak_kib * 1024)
        print(f"  opsctl backup, 1 target, {factor}x: peak RSS {peak_kib / 1024:.1f} MiB", flush=True)
        lab.facts["rss"] = f"; {factor}x for RSS: scale {scale}, {made['dump_bytes'] / MB:.0f} MB"
    if factor > 1:
        lab.steps.attempt("rss", measure)
    else:
        lab.steps.figures.problems["rss"] = "skipped (--rss-factor below 2)"


# --- the header and main ---------------------------------------------------------------------------

def first_words(argv: list[str], count: int = 2) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return " ".join(done.stdout.split()[:count]) or "?"


def tree_digest(code: Path) -> str:
    """A short SHA-256 of the measured copy of opsctl/: which code the figures are of, even when uncommitted."""
    digest = hashlib.sha256()
    for path in sorted(code.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(code)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.machine())
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores ({model}), {ram:.1f} GiB RAM, load average {os.getloadavg()[0]:.2f} "
            "at the start")


def header(facts: dict[str, str], args: argparse.Namespace, rounds_done: int) -> str:
    cut = "" if rounds_done == args.rounds else f" — INTERRUPTED after {rounds_done} of {args.rounds}"
    few = " (fewer than 3: not enough for the goals)" if args.rounds < 3 else ""
    lines = [f"# opsctl benchmark, {facts['date']}", "",
             f"- opsctl: {facts['code']}",
             f"- machine: {facts['machine']}",
             f"- tools: {facts['tools']}; borgmatic: {facts['borgmatic']}",
             f"- data: {facts['data']}{facts.get('rss', '')}",
             (f"- {args.rounds} round(s){few}{cut}, interleaved, the order rotated each round, fresh repositories; "
              "ratio = figure / the raw figure of the same run (restores: / raw restore; RSS: / 1x); "
              "next day = +1% rows; CPU-s: median per process name, OTHER = processes not of this run"),
             f"- command: `scripts/bench {shlex.join(sys.argv[1:])}`"]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, help=f"pgbench scale of the big database (default {DEFAULT_SCALE}: "
                        f"~600 MB dump; {QUICK_SCALE} with --quick)")
    parser.add_argument("--small-scale", type=int, default=1, help="pgbench scale of the small one (1: ~10 MB)")
    parser.add_argument("--rounds", type=int, help="interleaved repetitions (default 3; 1 with --quick)")
    parser.add_argument("--rss-factor", type=int, default=4, help="peak RSS at this times the big database (0: skip)")
    parser.add_argument("--skip-borgmatic", action="store_true")
    parser.add_argument("--borgmatic", help="the borgmatic to run (default: the one on PATH)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: small scale, 1 round, no borgmatic; "
                        "its table goes to results/<date>-quick.md")
    args = parser.parse_args()
    args.scale = args.scale or (QUICK_SCALE if args.quick else DEFAULT_SCALE)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.skip_borgmatic = args.skip_borgmatic or args.quick
    return args


def run(lab: Lab, progress: list[int]) -> None:
    """Snapshot opsctl/, build everything, run the rounds (each appended to progress when done), then the RSS step."""
    lab.facts["code"] = code_version()
    lab.code = snapshot_code(lab.root / "code")
    lab.facts["code"] += f", measured from a copy (tree sha256 {tree_digest(lab.code / 'opsctl')})"
    with lab.servers.postgres.connect() as conn:
        lab.facts["tools"] += f", PostgreSQL server {conn.execute('SHOW server_version').fetchone()[0]}"
    tools = build(lab)
    for i in range(lab.args.rounds):
        print(f"round {i + 1}/{lab.args.rounds}", flush=True)
        Round(tools, lab.steps, i).run()
        progress.append(i)
    peak_rss(lab)


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the servers and folders are cleaned up
    os.environ.pop("OPSCTL_TEST_NO_FINGERPRINTS", None)  # the verified restore needs fingerprints
    figures, done = Figures(), []
    facts = {"date": datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"), "machine": machine(),
             "tools": f"{first_words(['restic', 'version'])}, {first_words(['pg_dump', '--version'], 3)}, "
                      f"Python {platform.python_version()}", "borgmatic": "?", "code": "?", "data": "?"}
    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="opsctl-bench-all-",
                                                                    dir=os.environ.get("BENCH_DIR"))))
        os.environ["XDG_CACHE_HOME"] = str(root / ".cache")  # restic's cache: raw and opsctl share it
        try:
            run(Lab(root, started_servers(stack), args, Steps(figures), facts), done)
        finally:  # an interrupted run still shows what it measured (and is not saved)
            text = f"{header(facts, args, len(done))}\n\n{table(rows(args.rss_factor), figures)}\n"
            print(f"\n{text}", flush=True)
    path = save(text, facts["date"][:10], "-quick" if args.quick else "")
    print(f"written to {path.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
