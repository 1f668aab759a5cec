"""A small SQLite bank for tests: accounts whose balances always sum to TOTAL, and a writer that keeps it so."""

from __future__ import annotations

import os
import random
import sqlite3
import threading
from contextlib import closing

ACCOUNTS = 2_000
TOTAL = ACCOUNTS * 1_000


def make_bank(path) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT, balance INTEGER NOT NULL)")
        conn.execute("CREATE TABLE transfers (src INTEGER REFERENCES accounts, dst INTEGER REFERENCES accounts, "
                     "amount INTEGER)")  # no primary key, on purpose
        conn.executemany("INSERT INTO accounts VALUES (?, ?, 1000)",
                         [(i, f"Người dùng {i} 🚀") for i in range(ACCOUNTS)])


class Writer(threading.Thread):
    """Moves money in transactions, sometimes into a newly opened account.

    The sum of balances never changes in any committed state, and every transfer names existing accounts.
    """

    def __init__(self, path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.stop = threading.Event()
        self.commits = 0

    def run(self) -> None:
        rng = random.Random(1)
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as conn:
            while not self.stop.is_set():
                src, dst, amount = rng.randrange(ACCOUNTS), rng.randrange(ACCOUNTS), rng.randrange(1, 50)
                conn.execute("BEGIN IMMEDIATE")
                if rng.random() < 0.1:
                    dst = conn.execute("INSERT INTO accounts (owner, balance) VALUES ('new', 0)").lastrowid
                conn.execute("UPDATE accounts SET balance = balance - ? WHERE id = ?", (amount, src))
                conn.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (amount, dst))
                conn.execute("INSERT INTO transfers VALUES (?, ?, ?)", (src, dst, amount))
                conn.execute("COMMIT")
                self.commits += 1


def add_documents(path, count: int) -> None:
    """Incompressible rows (64 KiB each), so backups and copies have real bytes to move."""
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE IF NOT EXISTS documents (body BLOB)")
        conn.executemany("INSERT INTO documents VALUES (?)", [(os.urandom(64 * 1024),) for _ in range(count)])
