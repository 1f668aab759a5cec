"""MariaDB under live writes: the dump, the row counts and the restore all show one committed moment."""

from __future__ import annotations

import random
import threading
import time

import pymysql

from tests.conftest import MY_PASSWORD, MY_USER, write_mysql_policy
from tests.support.workspace import made

ACCOUNTS = 2_000
TOTAL = ACCOUNTS * 1_000


def make_bank(server, database: str, myisam: bool = False) -> None:
    """accounts, then a filler table that takes the dump a while, then transfers (dumped in name order)."""
    with server.connect(database) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE accounts (id INT PRIMARY KEY, owner VARCHAR(100), balance BIGINT NOT NULL)")
        cur.execute("INSERT INTO accounts SELECT seq, CONCAT('Người dùng ', seq, ' 🚀'), 1000 "
                    f"FROM seq_1_to_{ACCOUNTS}")
        cur.execute("CREATE TABLE documents (id INT PRIMARY KEY, body TEXT)")
        cur.execute("INSERT INTO documents SELECT seq, REPEAT(MD5(seq), 12) FROM seq_1_to_150000")
        cur.execute("CREATE TABLE transfers (id BIGINT AUTO_INCREMENT PRIMARY KEY, src INT NOT NULL, dst INT NOT NULL, "
                    "amount INT NOT NULL, FOREIGN KEY (src) REFERENCES accounts (id), "
                    "FOREIGN KEY (dst) REFERENCES accounts (id))")
        if myisam:  # a log kept in MyISAM, as old CRMs do; written with every transfer
            cur.execute("CREATE TABLE zz_log (transfer BIGINT, note VARCHAR(40)) ENGINE=MyISAM")


class Writer(threading.Thread):
    """Moves money between accounts, sometimes into a newly opened one, each move one transaction.

    The sum of balances never changes in a committed state, and every transfer names existing accounts.
    """

    def __init__(self, server, database: str, seed: int, log_table: bool = False) -> None:
        super().__init__(daemon=True)
        self.conn = server.connect(database, MY_USER, MY_PASSWORD, autocommit=False)
        self.rng = random.Random(seed)
        self.seed = seed
        self.log_table = log_table
        self.stop = threading.Event()
        self.commits = 0
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            with self.conn, self.conn.cursor() as cur:
                while not self.stop.is_set():
                    self._transfer(cur)
                    self.conn.commit()
                    self.commits += 1
        except pymysql.err.MySQLError as exc:
            self.error = exc

    def _transfer(self, cur) -> None:
        src, amount = self.rng.randrange(1, ACCOUNTS + 1), self.rng.randrange(1, 50)
        dst = self.rng.randrange(1, ACCOUNTS + 1)
        if self.rng.random() < 0.1:
            dst = 1_000_000 * self.seed + self.commits
            cur.execute("INSERT INTO accounts VALUES (%s, 'new', 0)", (dst,))
        cur.execute("UPDATE accounts SET balance = balance - %s WHERE id = %s", (amount, src))
        cur.execute("UPDATE accounts SET balance = balance + %s WHERE id = %s", (amount, dst))
        cur.execute("INSERT INTO transfers (src, dst, amount) VALUES (%s, %s, %s)", (src, dst, amount))
        if self.log_table:
            cur.execute("INSERT INTO zz_log VALUES (LAST_INSERT_ID(), 'moved')")


def backup_under_load(workspace, server, database: str, log_table: bool = False):
    """Run opsctl backup while two writers move money; returns (result, commits before, commits after)."""
    writers = [Writer(server, database, seed, log_table) for seed in (1, 2)]
    for writer in writers:
        writer.start()
    try:
        while sum(w.commits for w in writers) < 100:
            time.sleep(0.01)
        before = sum(w.commits for w in writers)
        backup = workspace.opsctl("--json", "backup")
        after = sum(w.commits for w in writers)
    finally:
        for writer in writers:
            writer.stop.set()
            writer.join()
    assert [w.error for w in writers] == [None, None]
    assert backup.returncode == 0, backup.output
    return made(backup.stdout), before, after


def check_restored_bank(server, database: str) -> dict:
    with server.connect(database) as conn, conn.cursor() as cur:
        cur.execute("SELECT sum(balance) FROM accounts")
        assert cur.fetchone()[0] == TOTAL
        cur.execute("SELECT count(*) FROM transfers t LEFT JOIN accounts s ON s.id = t.src "
                    "LEFT JOIN accounts d ON d.id = t.dst WHERE s.id IS NULL OR d.id IS NULL")
        assert cur.fetchone()[0] == 0, "every transfer names accounts that exist"
        counts = {}
        for table in ("accounts", "documents", "transfers"):
            cur.execute(f"SELECT count(*) FROM {table}")
            counts[table] = cur.fetchone()[0]
        return counts


def test_money_moving_during_backup_restores_one_moment(my_policy, mariadb_server, my_database):
    make_bank(mariadb_server, my_database)
    result, before, after = backup_under_load(my_policy, mariadb_server, my_database)
    assert result["warnings"] == []
    assert after - before > 20, "commits must go on during the backup: the lock is held only for a moment"

    restore = my_policy.opsctl("restore", "--yes", "--to", my_database + "_back")
    assert restore.returncode == 0, restore.output
    assert "row counts match the backup: 3 tables" in restore.stdout
    counts = check_restored_bank(mariadb_server, my_database + "_back")
    assert result["rows"] == sum(counts.values())
    assert counts["transfers"] > 0 and counts["accounts"] > ACCOUNTS, "the load wrote before the snapshot"


def test_myisam_table_is_reported_and_left_uncounted(my_policy, mariadb_server, my_database):
    make_bank(mariadb_server, my_database, myisam=True)
    result, _, _ = backup_under_load(my_policy, mariadb_server, my_database, log_table=True)
    [warning] = result["warnings"]
    assert "non-transactional engine (MyISAM): zz_log" in warning and "lock_non_transactional: true" in warning
    text = my_policy.opsctl("backup")
    assert "warning:" in text.stdout and "zz_log" in text.stdout

    restore = my_policy.opsctl("restore", "--yes", "--to", my_database + "_back")  # zz_log grew meanwhile: not checked
    assert restore.returncode == 0, restore.output
    check_restored_bank(mariadb_server, my_database + "_back")


def test_lock_non_transactional_counts_myisam_rows_exactly(workspace, mariadb_server, my_database):
    make_bank(mariadb_server, my_database, myisam=True)
    write_mysql_policy(workspace, mariadb_server, [my_database], lock_non_transactional=True)
    assert workspace.opsctl("init").returncode == 0
    result, _, _ = backup_under_load(workspace, mariadb_server, my_database, log_table=True)
    assert result["warnings"] == []

    restore = workspace.opsctl("restore", "--yes", "--to", my_database + "_back")  # checks zz_log's count as well
    assert restore.returncode == 0, restore.output
    assert "row counts match the backup: 4 tables" in restore.stdout
    counts = check_restored_bank(mariadb_server, my_database + "_back")
    with mariadb_server.connect(my_database + "_back") as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM zz_log")
        assert cur.fetchone()[0] == counts["transfers"], "the log and the transfers were read at one moment"
