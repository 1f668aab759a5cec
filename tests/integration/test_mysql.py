"""MariaDB end to end: the real opsctl, a real server, real restic, a local repository."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time

from opsctl.sources.mysql import IN_FLIGHT
from tests.conftest import MY_PASSWORD, MY_USER, write_mysql_policy
from tests.integration.test_no_secrets_leak import ProcScanner
from tests.support.servers import free_port

AWKWARD_SCHEMA = [
    """CREATE TABLE `Customer List` (
        id BIGINT AUTO_INCREMENT PRIMARY KEY,
        `full name` VARCHAR(200), note TEXT, photo LONGBLOB, profile JSON, balance DECIMAL(20, 6),
        tier ENUM('bronze', 'silver', 'gold'), flags BIT(10), seen DATETIME(6),
        name_length INT AS (CHAR_LENGTH(`full name`)) STORED,
        shout VARCHAR(200) AS (UPPER(`full name`)) VIRTUAL
    ) ENGINE=InnoDB""",
    """CREATE TABLE `odd``name` (id INT PRIMARY KEY, customer_id BIGINT,
        FOREIGN KEY (customer_id) REFERENCES `Customer List` (id)) ENGINE=InnoDB""",
    "CREATE TABLE audit_log (customer_id BIGINT, action VARCHAR(20)) ENGINE=InnoDB",
    "CREATE VIEW `rich customers` AS SELECT id, `full name` FROM `Customer List` WHERE balance > 1000",
    ("CREATE TRIGGER `after insert` AFTER INSERT ON `Customer List` FOR EACH ROW "
     "INSERT INTO audit_log VALUES (NEW.id, 'insert')"),
    "CREATE PROCEDURE `count customers`(OUT n INT) SELECT count(*) INTO n FROM `Customer List`",
    "CREATE FUNCTION double_it(x INT) RETURNS INT DETERMINISTIC RETURN x * 2",
    "CREATE EVENT purge_audit ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM audit_log",
]
AWKWARD_ROWS = [
    ("Nguyễn Thị Thảo 🚀", "Khách hàng thân thiết — gọi sau 17h", b"\x00\x01\x02\xff\x00",
     '{"tier": "gold", "langs": ["vi", "en"]}', "12345678901234.123456", "gold", 0b1010000001,
     "2026-11-20 03:00:00.123456"),
    ("Empty note", "", b"", "{}", "0", "bronze", 0, "1970-01-02 00:00:00.000001"),
    ("Null note", None, None, None, None, None, None, None),
    ("O'Brien \"quoted\"; DROP TABLE x;-- `tick`", "tab\there\nnewline\\backslash", bytes(range(256)),
     '{"nested": {"a": [1, 2, {"b": null}]}}', "-0.000001", "silver", 0b1111111111, "2038-01-19 03:14:08.999999"),
]


def fill_awkward(conn) -> None:
    with conn.cursor() as cur:
        for statement in AWKWARD_SCHEMA:
            cur.execute(statement)
        cur.executemany("INSERT INTO `Customer List` (`full name`, note, photo, profile, balance, tier, flags, seen) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", AWKWARD_ROWS)
        cur.execute("INSERT INTO `Customer List` (`full name`) VALUES ('deleted later')")
        cur.execute("DELETE FROM `Customer List` WHERE `full name` = 'deleted later'")  # the counter stays at 6
        cur.execute("INSERT INTO `odd``name` VALUES (1, 1), (2, 4), (3, NULL)")


def contents(conn) -> dict:
    with conn.cursor() as cur:
        found = {}
        for name, query in (("customers", "SELECT * FROM `Customer List` ORDER BY id"),
                            ("odd", "SELECT * FROM `odd``name` ORDER BY id"),
                            ("audit", "SELECT * FROM audit_log ORDER BY customer_id"),
                            ("view", "SELECT * FROM `rich customers` ORDER BY id"),
                            ("function", "SELECT double_it(21)")):
            cur.execute(query)
            found[name] = cur.fetchall()
        cur.execute("CALL `count customers`(@n)")
        cur.execute("SELECT @n")
        found["procedure"] = cur.fetchall()
        return found


def test_awkward_types_and_objects_come_back_equal(my_policy, mariadb_server, my_database):
    with mariadb_server.connect(my_database, MY_USER, MY_PASSWORD) as conn:
        fill_awkward(conn)
        before = contents(conn)

    backup = my_policy.opsctl("backup")
    assert backup.returncode == 0, backup.output
    assert "warning" not in backup.stdout
    restored = my_database + "_restored"
    restore = my_policy.opsctl("restore", "--yes", "--snapshot", "latest", "--to", restored)
    assert restore.returncode == 0, restore.output
    assert "row counts match the backup: 3 tables, 12 rows" in restore.stdout

    with mariadb_server.connect(restored, MY_USER, MY_PASSWORD) as conn, conn.cursor() as cur:
        assert contents(conn) == before
        cur.execute("INSERT INTO `Customer List` (`full name`) VALUES ('new')")  # counter and trigger both back
        assert cur.lastrowid == 6
        cur.execute("SELECT action FROM audit_log WHERE customer_id = 6")
        assert cur.fetchall() == (("insert",),)
        cur.execute("SELECT EVENT_NAME, STATUS FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s", (restored,))
        assert cur.fetchall() == (("purge_audit", "DISABLED"),)
        cur.execute("SELECT REFERENCED_TABLE_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS "
                    "WHERE CONSTRAINT_SCHEMA = %s", (restored,))
        assert cur.fetchall() == (("Customer List",),)
    with mariadb_server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s",
                    (my_database + "%",))
        assert sorted(r[0] for r in cur.fetchall()) == [my_database, restored], "no staging database may stay"


def _tables(server, database: str) -> list[str]:
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s ORDER BY 1", (database,))
        return [r[0] for r in cur.fetchall()]


def _guarded_database(server, name: str, value: int | None = None) -> str:
    """A database of the application: one table, a trigger on it, and a row if `value` is given."""
    with server.connect(user=MY_USER, password=MY_PASSWORD) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
        cur.execute(f"CREATE TABLE {name}.precious (v INT)")
        if value is not None:
            cur.execute(f"INSERT INTO {name}.precious VALUES (%s)", (value,))
        cur.execute(f"CREATE TRIGGER {name}.guard BEFORE INSERT ON {name}.precious FOR EACH ROW SET NEW.v = NEW.v")
    return name


def test_replace_moves_the_old_database_aside_with_its_objects(my_policy, mariadb_server, my_database):
    with mariadb_server.connect(my_database, MY_USER, MY_PASSWORD) as conn:
        fill_awkward(conn)
    assert my_policy.opsctl("backup").returncode == 0
    other = _guarded_database(mariadb_server, my_database + "_busy", value=7)

    refused = my_policy.opsctl("restore", "--yes", "--to", other)
    assert refused.returncode == 2
    assert "already exists and is not empty" in refused.stderr
    source = my_policy.opsctl("restore", "--yes", "--to", my_database, "--replace")
    assert source.returncode == 2
    assert f"--confirm-source {my_database}" in source.stderr

    replaced = my_policy.opsctl("restore", "--yes", "--to", other, "--replace")
    assert replaced.returncode == 0, replaced.output
    aside = replaced.stdout.split("renamed to ")[1].split()[0]
    assert _tables(mariadb_server, aside) == ["precious"]
    with mariadb_server.connect(aside) as conn, conn.cursor() as cur:
        cur.execute("SELECT v FROM precious")
        assert cur.fetchall() == ((7,),)
        cur.execute("SHOW TRIGGERS")
        assert [r[0] for r in cur.fetchall()] == ["guard"]
    assert sorted(_tables(mariadb_server, other)) == ["Customer List", "audit_log", "odd`name", "rich customers"]

    confirmed = my_policy.opsctl("restore", "--yes", "--to", my_database, "--replace", "--confirm-source", my_database)
    assert confirmed.returncode == 0, confirmed.output
    assert "previous database was kept" in confirmed.stdout


def _triggers(server, database: str) -> list[tuple[str, str]]:
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT TRIGGER_NAME, DEFINER FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s",
                    (database,))
        return list(cur.fetchall())


def test_replace_never_loses_triggers_this_user_may_not_recreate(my_policy, mariadb_server, my_database):
    with mariadb_server.connect(my_database, MY_USER, MY_PASSWORD) as conn:
        fill_awkward(conn)
    assert my_policy.opsctl("backup").returncode == 0
    other = my_database + "_guarded"
    with mariadb_server.connect() as conn, conn.cursor() as cur:  # as root: a trigger owned by someone else
        cur.execute(f"CREATE DATABASE {other}")
        cur.execute(f"CREATE TABLE {other}.precious (v INT)")
        cur.execute(f"CREATE DEFINER=root@localhost TRIGGER {other}.guard BEFORE INSERT ON {other}.precious "
                    "FOR EACH ROW SET NEW.v = NEW.v")

    refused = my_policy.opsctl("restore", "--yes", "--to", other, "--replace")
    assert refused.returncode == 2, refused.output
    assert "defined by root@localhost" in refused.stderr and f"GRANT SET USER ON *.* TO {MY_USER}" in refused.stderr
    assert _triggers(mariadb_server, other) == [("guard", "root@localhost")]
    assert _tables(mariadb_server, other) == ["precious"]
    with mariadb_server.connect() as conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE %s", (f"{my_database}%",))
        assert sorted(r[0] for r in cur.fetchall()) == [my_database, other]  # no staging or aside copy left

    with mariadb_server.granted(MY_USER, "SET USER"):
        replaced = my_policy.opsctl("restore", "--yes", "--to", other, "--replace")
    assert replaced.returncode == 0, replaced.output
    aside = replaced.stdout.split("renamed to ")[1].split()[0]
    assert _triggers(mariadb_server, aside) == [("guard", "root@localhost")]


def test_a_move_killed_after_dropping_the_triggers_keeps_their_definitions_on_the_server(my_policy, mariadb_server,
                                                                                          my_database):
    """A table with triggers cannot change database: between the drop and the re-creation they live in a table."""
    assert my_policy.opsctl("backup").returncode == 0
    other = _guarded_database(mariadb_server, my_database + "_kept")
    killed = my_policy.opsctl("restore", "--yes", "--to", other, "--replace", env={"OPSCTL_TEST_KILL_IN_MOVE": "1"})
    assert killed.returncode == -9, killed.output
    with mariadb_server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT TABLE_SCHEMA FROM information_schema.TABLES WHERE TABLE_NAME = 'opsctl_triggers_in_flight' "
                    "AND TABLE_SCHEMA LIKE %s", (f"{other}_before_restore_%",))
        (aside,), = cur.fetchall()
        cur.execute(f"SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_STATEMENT FROM `{aside}`.{IN_FLIGHT}")
        assert cur.fetchall() == (("guard", "precious", "SET NEW.v = NEW.v"),)


def test_an_existing_empty_database_is_moved_aside_not_dropped(my_policy, mariadb_server, my_database):
    assert my_policy.opsctl("backup").returncode == 0
    other = my_database + "_empty"
    with mariadb_server.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {other} CHARACTER SET latin1 COLLATE latin1_swedish_ci")  # a setting, no data
    restored = my_policy.opsctl("restore", "--yes", "--to", other)
    assert restored.returncode == 0, restored.output
    aside = restored.stdout.split("renamed to ")[1].split()[0]
    with mariadb_server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (aside,))
        assert cur.fetchall() == (("latin1_swedish_ci",),)


def test_two_databases_of_one_server_each_get_their_own_snapshot(workspace, mariadb_server, my_database):
    reporting = my_database + "_reporting"
    mariadb_server.create_user_and_database(MY_USER, MY_PASSWORD, reporting)
    for name, rows in ((my_database, 3), (reporting, 5)):
        with mariadb_server.connect(name, MY_USER, MY_PASSWORD) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE t (v INT)")
            cur.executemany("INSERT INTO t VALUES (%s)", [(i,) for i in range(rows)])
    write_mysql_policy(workspace, mariadb_server, [my_database, reporting])
    assert workspace.opsctl("init").returncode == 0

    backup = workspace.opsctl("--json", "backup")
    assert backup.returncode == 0, backup.output
    results = json.loads(backup.stdout)["targets"][0]["snapshots"]
    assert [(r["database"], r["rows"]) for r in results] == [(my_database, 3), (reporting, 5)]
    assert results[0]["snapshot_id"] != results[1]["snapshot_id"]

    assert workspace.opsctl("restore", "--yes", "--to", "x_any").returncode == 2  # which one? the operator must say
    restore = workspace.opsctl("restore", "--yes", "--database", reporting, "--to", reporting + "_back")
    assert restore.returncode == 0, restore.output
    with mariadb_server.connect(reporting + "_back") as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM t")
        assert cur.fetchone() == (5,)


def _snapshot_ids(workspace) -> list[str]:
    listing = workspace.opsctl("--json", "snapshots")
    assert listing.returncode == 0, listing.output
    return [s["id"] for s in json.loads(listing.stdout)["snapshots"]]


def test_wrong_password_unknown_database_and_server_down_are_clear(my_policy, mariadb_server, my_database):
    my_policy.secret("db.pass", "not-the-password")
    wrong = my_policy.opsctl("backup")
    my_policy.secret("db.pass", MY_PASSWORD)
    write_mysql_policy(my_policy, mariadb_server, ["no_such_db"])
    unknown = my_policy.opsctl("backup")
    my_policy.write_policy({"engine": "mysql", "host": "127.0.0.1", "port": free_port(), "user": MY_USER,
                            "password": {"file": "db.pass"}, "names": [my_database]})
    down = my_policy.opsctl("backup")

    assert wrong.returncode == 1, wrong.output
    assert f"MySQL refused the login of user {MY_USER} at mysql://{MY_USER}@127.0.0.1" in wrong.stdout
    assert "database.password" in wrong.stdout
    assert unknown.returncode == 1, unknown.output
    assert "database no_such_db does not exist" in unknown.stdout and "database.names" in unknown.stdout
    assert down.returncode == 1, down.output
    assert "cannot connect to MySQL at mysql://" in down.stdout and "is running" in down.stdout
    for result in (wrong, unknown, down):
        assert "Traceback" not in result.output and MY_PASSWORD not in result.output
    write_mysql_policy(my_policy, mariadb_server, [my_database])
    assert _snapshot_ids(my_policy) == []


def test_a_user_without_reload_is_told_which_grant_is_missing(workspace, mariadb_server, my_database):
    with mariadb_server.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE USER IF NOT EXISTS reader@'127.0.0.1' IDENTIFIED BY 'reader-pw'")
        cur.execute("GRANT SELECT, SHOW VIEW, TRIGGER, EVENT ON *.* TO reader@'127.0.0.1'")
    workspace.secret("db.pass", "reader-pw")
    workspace.write_policy({"engine": "mysql", "host": "127.0.0.1", "port": mariadb_server.port, "user": "reader",
                            "password": {"file": "db.pass"}, "names": [my_database]})
    assert workspace.opsctl("init").returncode == 0
    backup = workspace.opsctl("backup")
    assert backup.returncode == 1, backup.output
    assert "may not hold commits" in backup.stdout and "GRANT RELOAD ON *.* TO reader" in backup.stdout
    assert _snapshot_ids(workspace) == []


def _fill_big(server, database: str, rows: int) -> None:
    with server.connect(database) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE big (id INT PRIMARY KEY, payload TEXT) ENGINE=InnoDB")
        cur.execute(f"INSERT INTO big SELECT seq, REPEAT(MD5(seq), 8) FROM seq_1_to_{rows}")


def _dump_connection(server, database: str, timeout: float = 60) -> int:
    """The id of mariadb-dump's session once it is reading table rows."""
    deadline = time.monotonic() + timeout
    with server.connect() as conn, conn.cursor() as cur:
        while time.monotonic() < deadline:
            cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND INFO LIKE '%%opsctl-%%' "
                        "AND ID <> CONNECTION_ID()", (database,))
            row = cur.fetchone()
            if row:
                return row[0]
            time.sleep(0.005)
    raise AssertionError("mariadb-dump never started reading rows")


def test_dump_cut_mid_stream_leaves_no_snapshot(my_policy, mariadb_server, my_database):
    _fill_big(mariadb_server, my_database, 400_000)
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(r=my_policy.opsctl("backup")))
    runner.start()
    try:
        victim = _dump_connection(mariadb_server, my_database)
        with mariadb_server.connect() as conn, conn.cursor() as cur:
            cur.execute(f"KILL CONNECTION {victim}")
    finally:
        runner.join()
    backup = result["r"]
    assert backup.returncode == 1, backup.output
    assert f"mariadb-dump of database {my_database} failed" in backup.stdout
    assert _snapshot_ids(my_policy) == []


def test_restic_alone_can_restore_the_dump(my_policy, mariadb_server, my_database, restic_binary):
    """The README's recovery path without opsctl: sed drops the manifest trailer, the client loads the rest."""
    with mariadb_server.connect(my_database, MY_USER, MY_PASSWORD) as conn:
        fill_awkward(conn)
        before = contents(conn)
    assert my_policy.opsctl("backup").returncode == 0
    target = my_database + "_by_hand"
    with mariadb_server.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {target}")
        cur.execute(f"GRANT EXECUTE ON {target}.* TO %s@'127.0.0.1'", (MY_USER,))  # the routines' definer
    env = {**os.environ, "RESTIC_PASSWORD_FILE": str(my_policy.root / "repository.pass")}
    pipeline = (f"{restic_binary} -r {my_policy.root / 'repo-local'} dump latest /{my_database}.sql "
                f"| sed -n '/^\\x00OPSCTL-MANIFEST$/q;p' "
                f"| mariadb --socket={mariadb_server.socket} -u root {target}")
    done = subprocess.run(["bash", "-o", "pipefail", "-c", pipeline], env=env, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    with mariadb_server.connect(target) as conn:
        assert contents(conn) == before


def test_no_password_in_argv_or_environment_of_the_mysql_tools(my_policy, mariadb_server, my_database):
    with mariadb_server.connect(my_database, MY_USER, MY_PASSWORD) as conn:
        fill_awkward(conn)
    scanner = ProcScanner([MY_PASSWORD.encode()])
    scanner.start()
    try:
        for _ in range(3):  # a small dump is over in a blink: back up again until the scanner has seen it run
            backup = my_policy.opsctl("-v", "backup")
            if backup.returncode != 0 or "mariadb-dump" in scanner.processes_seen:
                break
        restore = my_policy.opsctl("-v", "restore", "--yes", "--to", my_database + "_copy", "--replace")
        replace = my_policy.opsctl("-v", "restore", "--yes", "--to", my_database + "_copy", "--replace")
    finally:
        scanner.stop.set()
        scanner.join()
    for result in (backup, restore, replace):
        assert result.returncode == 0, result.output
        assert MY_PASSWORD not in result.output and "Nguyễn" not in result.output
    assert {"restic", "mariadb-dump", "mariadb"} <= scanner.processes_seen, scanner.processes_seen
    assert scanner.hits == []
