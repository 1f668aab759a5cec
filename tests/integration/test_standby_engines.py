"""The standby's engine pieces against real servers: a verified copy swapped into a stable name, read-only, for
named readers only; the version check before a restore; the free space where a server keeps its data."""

from __future__ import annotations

import dataclasses
import grp
import os
import sqlite3
import stat
import threading
import uuid
from contextlib import closing, suppress
from pathlib import Path

import psycopg
import pymysql
import pytest
from psycopg import sql

from opsctl.actions.fingerprint_check import compare
from opsctl.leftovers import me
from opsctl.manifest import DumpFacts
from opsctl.sources.base import SERVER_VERSION
from opsctl.sources.errors import DestinationRefused
from opsctl.sources.mysql import MySQLSource
from opsctl.sources.mysql_client import MySQLServer
from opsctl.sources.mysql_standby import grant_name
from opsctl.sources.pg_client import PgServer
from opsctl.sources.pg_standby import STANDBY_COMMENT
from opsctl.sources.postgresql import PostgresSource
from opsctl.sources.sqlite import SQLiteSource
from tests.conftest import MY_PASSWORD, MY_USER, PG_ROLE, PG_ROLE_PASSWORD
from tests.support.mariadb_server import BACKUP_AND_RESTORE_PRIVILEGES
from tests.support.servers import LOOPBACK


def dumped(source) -> tuple[bytes, dict[str, str], DumpFacts]:
    with source.dump() as dump:
        data = b"".join(dump.chunks())
        assert dump.facts is not None
        return data, dump.properties, dump.facts


def staged(recovery, name: str, dump: tuple[bytes, dict[str, str], DumpFacts]) -> str:
    """A verified staging copy of `dump` beside `name`, made through the Source API as a refresh makes it."""
    data, properties, facts = dump
    recovery.check_restorable(properties)
    staging = recovery.create_staging(recovery.destination(name), properties)
    recovery.load(staging, [data])
    assert compare(facts.census, recovery.census(staging, facts)).ok
    return staging


def _watch(read) -> tuple[threading.Event, list, threading.Thread]:
    """A reader that reads in a loop until told to stop; each answer (or error class) is kept."""
    stop, seen = threading.Event(), []

    def loop() -> None:
        while not stop.is_set():
            try:
                seen.append(read())
            except Exception as exc:  # noqa: BLE001 - kept and judged by the test
                seen.append(exc)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return stop, seen, thread


# --- PostgreSQL -----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class PgRecovery:
    server: object
    restorer: str
    reader: str
    password: str

    def source(self, database: str, *, port: int | None = None) -> PostgresSource:
        pg = PgServer(host=LOOPBACK, port=port or self.server.port, user=self.restorer, password=self.password)
        return PostgresSource(pg, database, recovery=True)

    def connect(self, database: str, user: str | None = None) -> psycopg.Connection:
        return self.server.connect(database, user or self.reader, self.password)


def _pg_roles(server, *, signal: bool = True) -> PgRecovery:
    """A restorer (CREATEDB, not superuser) and a reader, unique to the test: roles are the whole server's."""
    tag = uuid.uuid4().hex[:8]
    found = PgRecovery(server, f"restorer_{tag}", f"support_{tag}", "pw-" + uuid.uuid4().hex)
    with server.connect() as conn:
        for role, extra in ((found.restorer, "CREATEDB"), (found.reader, "")):
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN {} PASSWORD {}").format(
                sql.Identifier(role), sql.SQL(extra), sql.Literal(found.password)))
        if signal:
            conn.execute(sql.SQL("GRANT pg_signal_backend TO {}").format(sql.Identifier(found.restorer)))
    return found


def _pg_generation(pg_server, database: str, marker: str) -> tuple[bytes, dict[str, str], DumpFacts]:
    with pg_server.connect(database, PG_ROLE, PG_ROLE_PASSWORD) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS generation (marker text)")
        conn.execute("CREATE TABLE IF NOT EXISTS customers (id serial PRIMARY KEY, name text)")
        conn.execute("CREATE OR REPLACE VIEW named AS SELECT name FROM customers")
        conn.execute("TRUNCATE generation, customers")
        conn.execute("INSERT INTO generation VALUES (%s)", (marker,))
        conn.execute("INSERT INTO customers (name) SELECT 'c' || g FROM generate_series(1, 50) g")
    source = PostgresSource(PgServer(host=LOOPBACK, port=pg_server.port, user=PG_ROLE, password=PG_ROLE_PASSWORD),
                            database)
    return dumped(source)


def _marker(conn: psycopg.Connection) -> str:
    return conn.execute("SELECT marker FROM generation").fetchone()[0]


def _databases(server, like: str) -> list[str]:
    with server.connect() as conn:
        return [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (like,))]


def test_postgres_standby_is_read_only_for_its_readers_and_swaps_whole(pg_server, pg_database):
    roles = _pg_roles(pg_server)
    recovery, name = roles.source(pg_database), f"{pg_database}_standby"
    first = _pg_generation(pg_server, pg_database, "one")
    assert first[1][SERVER_VERSION].split(".")[0] == str(pg_server.connect().info.server_version // 10000)
    assert not recovery.destination(pg_database).is_source, "on a recovery server no database is the policy's own"

    assert recovery.swap_standby(staged(recovery, name, first), name, (roles.reader,)) is None
    with roles.connect(name) as reader:
        assert _marker(reader) == "one"
        assert reader.execute("SELECT count(*) FROM named").fetchone()[0] == 50
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            reader.execute("INSERT INTO generation VALUES ('mine')")
        reader.execute("SET default_transaction_read_only = off")  # anyone may; the privileges still refuse
        for write in ("INSERT INTO generation VALUES ('mine')", "CREATE TABLE public.mine (v int)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                reader.execute(write)
    with roles.connect(name, roles.restorer) as owner, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        owner.execute("INSERT INTO generation VALUES ('mine')")
    state = recovery.standby_state(name)
    assert state is not None and state.readers == (roles.reader,) and state.read_only and state.size_bytes > 0
    assert recovery.standby_state(name + "_none") is None
    assert recovery.scratch_left_behind() == []
    with pg_server.connect() as conn:
        assert conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                            (name,)).fetchone()[0] == STANDBY_COMMENT

    # A previous standby a killed refresh left aside (its maker gone): the next refresh drops it.
    left = f"{name[:40]}_old_abcdef"
    with pg_server.connect(user=roles.restorer, password=roles.password) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(left)))
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(left), sql.Literal(dataclasses.replace(me(), started=1).mark())))

    second = staged(recovery, name, _pg_generation(pg_server, pg_database, "two"))
    held = roles.connect(name)
    stop, seen, thread = _watch(lambda: _fresh_marker(roles, name))
    try:
        replaced = recovery.swap_standby(second, name, (roles.reader,))
    finally:
        stop.set()
        thread.join()
    assert replaced is not None and replaced.startswith(f"{name[:40]}_old_")
    with held, suppress(psycopg.OperationalError):  # or ended cleanly by the server
        assert _marker(held) == "one"  # kept working on the old copy
    assert seen and all(s in ("one", "two") or isinstance(s, psycopg.OperationalError) for s in seen), seen
    assert seen[-1] == "two"
    with roles.connect(name) as reader:
        assert _marker(reader) == "two"
    assert _databases(pg_server, f"{name[:40]}%") == [name], "the old copy, the leftover and staging are gone"


def _fresh_marker(roles: PgRecovery, name: str) -> str:
    with roles.connect(name) as conn:
        return _marker(conn)


def test_postgres_standby_refuses_a_missing_reader_and_a_restorer_that_cannot_end_sessions(pg_server, pg_database):
    roles = _pg_roles(pg_server, signal=False)
    recovery, name = roles.source(pg_database), f"{pg_database}_standby"
    dump = _pg_generation(pg_server, pg_database, "one")
    staging = staged(recovery, name, dump)
    with pytest.raises(DestinationRefused, match="ghost_reader") as refused:
        recovery.swap_standby(staging, name, (roles.reader, "ghost_reader"))
    assert "CREATE ROLE ghost_reader LOGIN PASSWORD ..." in refused.value.hint
    assert recovery.standby_state(name) is None
    recovery.swap_standby(staging, name, (roles.reader,))

    with roles.connect(name) as reader:  # a session of another role: ending it needs pg_signal_backend
        staging = staged(recovery, name, _pg_generation(pg_server, pg_database, "two"))
        with pytest.raises(DestinationRefused, match="may not end the sessions") as refused:
            recovery.swap_standby(staging, name, (roles.reader,))
        assert f"GRANT pg_signal_backend TO {roles.restorer}" in refused.value.hint
        assert _marker(reader) == "one"
    recovery.discard(staging)
    with roles.connect(name) as reader:  # still the previous standby, accepting connections again
        assert _marker(reader) == "one"


def test_postgres_15_dump_restores_into_18_and_never_the_other_way(pg_server, pg_other_major_server, pg_database):
    dump = _pg_generation(pg_server, pg_database, "one")
    newer = _pg_roles(pg_other_major_server).source(pg_database)
    staging = staged(newer, pg_database, dump)  # check_restorable, create_staging, load, census: all pass
    with pg_other_major_server.connect(staging) as conn:
        assert conn.info.server_version // 10000 == 18 and _marker(conn) == "one"
    newer.discard(staging)

    older = _pg_roles(pg_server).source(pg_database)
    newer_version = dict(dump[1], **{SERVER_VERSION: "18.1"})
    with pytest.raises(DestinationRefused, match=r"PostgreSQL 18\.1 .* runs PostgreSQL 15") as refused:
        older.check_restorable(newer_version)
    assert "PostgreSQL 18 or newer" in refused.value.hint
    older.check_restorable({k: v for k, v in dump[1].items() if k != SERVER_VERSION})  # an older snapshot: no check
    older.check_restorable(dict(dump[1], **{SERVER_VERSION: "9.6.24"}))


def test_postgres_free_bytes_needs_a_local_server_and_a_role_that_may_see_its_data_directory(pg_server):
    superuser = PostgresSource(PgServer(host=LOOPBACK, port=pg_server.port, user=pg_server.superuser,
                                        password=pg_server.password), "postgres")
    free = superuser.free_bytes()
    vfs = os.statvfs(pg_server.data)
    assert free is not None and 0 < free <= vfs.f_blocks * vfs.f_frsize
    assert _pg_roles(pg_server).source("postgres").free_bytes() is None  # no right to read data_directory
    far = PostgresSource(PgServer(host="db.example.invalid", port=5432, user="x"), "crm")
    assert far.free_bytes() is None  # elsewhere: never asked


# --- MariaDB --------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class MyRecovery:
    server: object
    restorer: str
    reader: str
    password: str

    def source(self, database: str) -> MySQLSource:
        my = MySQLServer(host=LOOPBACK, port=self.server.port, user=self.restorer, password=self.password)
        return MySQLSource(my, database, recovery=True)

    def connect(self, database: str | None = None) -> pymysql.connections.Connection:
        return self.server.connect(database, self.reader, self.password)


def _my_accounts(server) -> MyRecovery:
    tag = uuid.uuid4().hex[:8]
    found = MyRecovery(server, f"restorer_{tag}", f"support_{tag}", "pw-" + uuid.uuid4().hex)
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE USER %s@'127.0.0.1' IDENTIFIED BY %s", (found.restorer, found.password))
        # SET USER: the dump's views, routines and triggers name their definer (here root), as production's do.
        cur.execute(f"GRANT {BACKUP_AND_RESTORE_PRIVILEGES}, SET USER ON *.* TO %s@'127.0.0.1' WITH GRANT OPTION",
                    (found.restorer,))
        cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (found.reader, found.password))
    return found


def _my_generation(server, database: str, marker: str) -> tuple[bytes, dict[str, str], DumpFacts]:
    with server.connect(database) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS generation (marker varchar(20)) ENGINE=InnoDB")
        cur.execute("CREATE TABLE IF NOT EXISTS customers (id int PRIMARY KEY AUTO_INCREMENT, name text)")
        cur.execute("CREATE OR REPLACE FUNCTION shout(s text) RETURNS text DETERMINISTIC RETURN upper(s)")
        cur.execute("CREATE OR REPLACE VIEW named AS SELECT shout(name) AS name FROM customers")
        cur.execute("CREATE OR REPLACE TRIGGER stamp BEFORE INSERT ON customers FOR EACH ROW SET NEW.name = NEW.name")
        cur.execute("DELETE FROM generation")
        cur.execute("DELETE FROM customers")
        cur.execute("INSERT INTO generation VALUES (%s)", (marker,))
        cur.execute("INSERT INTO customers (name) SELECT concat('c', seq) FROM seq_1_to_50")
    source = MySQLSource(MySQLServer(host=LOOPBACK, port=server.port, user=MY_USER, password=MY_PASSWORD), database)
    return dumped(source)


def _my_marker(conn) -> str:
    with conn.cursor() as cur:
        cur.execute("SELECT marker FROM generation")
        return cur.fetchone()[0]


def _my_databases(server, prefix: str) -> list[str]:
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT schema_name FROM information_schema.schemata WHERE LEFT(schema_name, %s) = %s",
                    (len(prefix), prefix))
        return sorted(r[0] for r in cur.fetchall())


def test_mariadb_standby_is_read_only_for_its_readers_and_its_tables_swap_in_one_step(mariadb_server, my_database):
    accounts = _my_accounts(mariadb_server)
    recovery, name = accounts.source(my_database), f"{my_database}_standby"
    first = _my_generation(mariadb_server, my_database, "one")
    with mariadb_server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        assert first[1][SERVER_VERSION] == cur.fetchone()[0]
        # Granted by hand before: the refresh leaves the reader only reading. And `_` in GRANT is a wildcard:
        # a database whose name differs there must stay out of the readers' reach.
        cur.execute(f"GRANT INSERT ON `{grant_name(name)}`.* TO %s@'%%'", (accounts.reader,))
        cur.execute(f"CREATE DATABASE `{name.replace('_standby', 'xstandby')}`")
        cur.execute(f"CREATE TABLE `{name.replace('_standby', 'xstandby')}`.secret (v int)")

    assert recovery.swap_standby(staged(recovery, name, first), name, (accounts.reader,)) is None
    with closing(accounts.connect(name)) as reader, reader.cursor() as cur:
        assert _my_marker(reader) == "one"
        cur.execute("SELECT count(*), min(name) FROM named")
        assert cur.fetchone() == (50, "C1")
        # No EXECUTE: a routine of the definer's rights could write. Views call them as their definer.
        with pytest.raises(pymysql.err.OperationalError, match="execute command denied"):
            cur.execute("SELECT shout('x')")
        with pytest.raises(pymysql.err.OperationalError, match="INSERT command denied"):
            cur.execute("INSERT INTO generation VALUES ('mine')")
        with pytest.raises(pymysql.err.OperationalError, match="denied"):
            cur.execute(f"SELECT * FROM `{name.replace('_standby', 'xstandby')}`.secret")
    state = recovery.standby_state(name)
    assert state is not None and state.readers == (f"{accounts.reader}@%",) and state.read_only
    assert recovery.standby_state(name + "_none") is None

    second = staged(recovery, name, _my_generation(mariadb_server, my_database, "two"))
    held = accounts.connect(name)
    stop, seen, thread = _watch(lambda: _my_marker(held))
    try:
        replaced = recovery.swap_standby(second, name, (accounts.reader,))
    finally:
        stop.set()
        thread.join()
    assert replaced is not None and replaced.startswith(f"{name[:40]}_old_")
    assert seen and set(seen) <= {"one", "two"}, seen  # the tables never go missing, never mix
    with closing(held):
        assert _my_marker(held) == "two", "the grant on the standby's name holds across the swap"
    with closing(accounts.connect(name)) as reader, reader.cursor() as cur:
        cur.execute("SELECT count(*), min(name) FROM named")
        assert cur.fetchone() == (50, "C1")
    assert _my_databases(mariadb_server, name[:40]) == [name], "the old copy and staging are gone"


def test_mariadb_standby_refuses_a_missing_account(mariadb_server, my_database):
    accounts = _my_accounts(mariadb_server)
    recovery, name = accounts.source(my_database), f"{my_database}_standby"
    staging = staged(recovery, name, _my_generation(mariadb_server, my_database, "one"))
    with mariadb_server.connect() as conn, conn.cursor() as cur:  # a server whose GRANT would create accounts
        cur.execute("SELECT @@GLOBAL.sql_mode")
        mode = cur.fetchone()[0]
        cur.execute("SET GLOBAL sql_mode = 'STRICT_TRANS_TABLES'")
    try:
        with pytest.raises(DestinationRefused, match=r"ghost@10\.0\.0\.1") as refused:
            recovery.swap_standby(staging, name, (accounts.reader, "ghost@10.0.0.1"))
    finally:
        with mariadb_server.connect() as conn, conn.cursor() as cur:
            cur.execute("SET GLOBAL sql_mode = %s", (mode,))
    assert "CREATE USER 'ghost'@'10.0.0.1'" in refused.value.hint
    recovery.discard(staging)
    with mariadb_server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM mysql.user WHERE user = 'ghost'")
        assert cur.fetchone()[0] == 0, "a GRANT never creates the missing account"
    assert recovery.standby_state(name) is None


def test_mariadb_version_checks_and_free_space(mariadb_server, my_database):
    recovery = _my_accounts(mariadb_server).source(my_database)
    with mariadb_server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        here = cur.fetchone()[0]
    major, minor = (int(n) for n in here.split(".")[:2])
    recovery.check_restorable({SERVER_VERSION: here})
    recovery.check_restorable({SERVER_VERSION: f"{major}.{minor - 1}.2-MariaDB"})
    recovery.check_restorable({})
    with pytest.raises(DestinationRefused, match="older") as refused:
        recovery.check_restorable({SERVER_VERSION: f"{major}.{minor + 1}.1-MariaDB-log"})
    assert f"MariaDB {major}.{minor + 1} or newer" in refused.value.hint
    with pytest.raises(DestinationRefused, match="the two engines differ"):
        recovery.check_restorable({SERVER_VERSION: "8.0.36"})

    free = recovery.free_bytes()
    vfs = os.statvfs(mariadb_server.data)
    assert free is not None and 0 < free <= vfs.f_blocks * vfs.f_frsize
    far = MySQLSource(MySQLServer(host="db.example.invalid", port=3306, user="x"), "crm", recovery=True)
    assert far.free_bytes() is None


# --- SQLite ---------------------------------------------------------------------------------------------------

def _sqlite_generation(path: Path, marker: str, scratch: Path) -> tuple[bytes, dict[str, str], DumpFacts]:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE IF NOT EXISTS generation (marker TEXT)")
        conn.execute("DELETE FROM generation")
        conn.execute("INSERT INTO generation VALUES (?)", (marker,))
    return dumped(SQLiteSource(path, "crm", scratch))


def _open_ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)


def _sqlite_marker(path: Path) -> str:
    with closing(_open_ro(path)) as conn:
        return conn.execute("SELECT marker FROM generation").fetchone()[0]


def _group() -> str:
    """A group other than ours where there is one (we run as root in CI), else ours."""
    for name in ("nogroup", "users"):
        try:
            grp.getgrnam(name)
        except KeyError:
            continue
        if os.geteuid() == 0:
            return name
    return grp.getgrgid(os.getegid()).gr_name


def test_sqlite_standby_is_a_read_only_file_renamed_whole(tmp_path):
    scratch, folder = tmp_path / "state", tmp_path / "recovery"
    production = tmp_path / "crm.sqlite3"
    first = _sqlite_generation(production, "one", scratch)
    assert first[1][SERVER_VERSION] == sqlite3.sqlite_version
    recovery = SQLiteSource(folder / production.name, "crm", scratch, recovery=True)
    name = str(folder / "crm_standby.sqlite3")
    assert not recovery.destination(str(folder / production.name)).is_source
    group = _group()

    assert recovery.swap_standby(staged(recovery, name, first), name, (group,)) is None
    found = os.stat(name)
    assert stat.S_IMODE(found.st_mode) == 0o440 and grp.getgrgid(found.st_gid).gr_name == group
    with closing(_open_ro(Path(name))) as reader:
        assert reader.execute("SELECT marker FROM generation").fetchone()[0] == "one"
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.execute("INSERT INTO generation VALUES ('mine')")
    state = recovery.standby_state(name)
    assert state is not None and state.readers == (group,) and state.read_only and state.size_bytes == found.st_size
    assert recovery.standby_state(name + ".none") is None

    second = staged(recovery, name, _sqlite_generation(production, "two", scratch))
    with closing(_open_ro(Path(name))) as held:
        held.execute("BEGIN")
        assert held.execute("SELECT marker FROM generation").fetchone()[0] == "one"
        stop, seen, thread = _watch(lambda: _sqlite_marker(Path(name)))
        try:
            assert recovery.swap_standby(second, name, (group,)) == name
        finally:
            stop.set()
            thread.join()
        assert seen and set(seen) <= {"one", "two"}, seen
        assert held.execute("SELECT marker FROM generation").fetchone()[0] == "one", "the old file, whole"
    with closing(_open_ro(Path(name))) as reader:
        assert reader.execute("SELECT marker FROM generation").fetchone()[0] == "two"
    assert sorted(p.name for p in folder.iterdir()) == ["crm_standby.sqlite3"], "no staging folder is left"
    assert not scratch.exists() or list(scratch.iterdir()) == []

    free = recovery.free_bytes()
    assert free is not None and free > 0
    recovery.check_restorable({SERVER_VERSION: "99.0.0"})  # any SQLite reads any SQLite 3 file


def test_sqlite_standby_refuses_an_unknown_group_two_groups_and_a_writable_file(tmp_path):
    scratch, folder = tmp_path / "state", tmp_path / "recovery"
    dump = _sqlite_generation(tmp_path / "crm.sqlite3", "one", scratch)
    recovery = SQLiteSource(folder / "crm.sqlite3", "crm", scratch, recovery=True)
    name = str(folder / "crm_standby.sqlite3")
    staging = staged(recovery, name, dump)
    with pytest.raises(DestinationRefused, match="no_such_group_here"):
        recovery.swap_standby(staging, name, ("no_such_group_here",))
    with pytest.raises(DestinationRefused, match="one group"):
        recovery.swap_standby(staging, name, ("a", "b"))
    Path(name).write_bytes(b"someone's own file")
    with pytest.raises(DestinationRefused, match="not a read-only standby"):
        recovery.swap_standby(staging, name, ())
    assert Path(name).read_bytes() == b"someone's own file"
    Path(name).unlink()
    recovery.swap_standby(staging, name, ())
    assert stat.S_IMODE(os.stat(name).st_mode) == 0o400 and recovery.standby_state(name).readers == ()
