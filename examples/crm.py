#!/usr/bin/env python3
"""The bundled example CRM: a small SQLite customer database with made-up people and deals.

    python examples/crm.py create crm.sqlite3 [--customers 5000]
    python examples/crm.py activity crm.sqlite3      # a day of CRM work: new customers, deals, notes

All names and addresses are generated; none belong to real people.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
from datetime import datetime, timedelta

SCHEMA = """
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS companies (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, country TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS customers (
    id INTEGER PRIMARY KEY, company_id INTEGER REFERENCES companies(id), full_name TEXT NOT NULL,
    email TEXT UNIQUE NOT NULL, phone TEXT, city TEXT, balance_cents INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deals (
    id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id), title TEXT NOT NULL,
    amount_cents INTEGER NOT NULL, stage TEXT NOT NULL CHECK (stage IN ('lead','proposal','won','lost')),
    updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS activities (
    id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id), kind TEXT NOT NULL,
    happened_at TEXT NOT NULL, note TEXT);
CREATE INDEX IF NOT EXISTS activities_by_customer ON activities(customer_id, happened_at);
CREATE VIEW IF NOT EXISTS open_pipeline AS
    SELECT c.full_name, d.title, d.amount_cents FROM deals d JOIN customers c ON c.id = d.customer_id
    WHERE d.stage IN ('lead', 'proposal');
"""

FIRST = ["Anna", "Bao", "Carlos", "Dana", "Elif", "Femi", "Grace", "Hiro", "Ines", "Jonas", "Kofi", "Lena",
         "Minh", "Nora", "Omar", "Priya", "Quang", "Rosa", "Sven", "Thảo", "Uma", "Viktor", "Wen", "Yusuf", "Zoë"]
LAST = ["Adeyemi", "Berg", "Chen", "Dubois", "Esposito", "Fischer", "García", "Hansen", "Ivanova", "Jensen",
        "Kowalski", "Lê", "Müller", "Nguyễn", "O'Brien", "Petrov", "Quispe", "Rossi", "Schmidt", "Tanaka"]
CITIES = ["Hà Nội", "Lisbon", "Lagos", "Oslo", "Lima", "Osaka", "Berlin", "Dublin", "Austin", "Kraków"]
COUNTRIES = ["VN", "PT", "NG", "NO", "PE", "JP", "DE", "IE", "US", "PL"]
KINDS = ["call", "email", "meeting", "demo"]
STAGES = ["lead", "proposal", "won", "lost"]


def _when(rng: random.Random, days_back: int = 720) -> str:
    moment = datetime(2026, 11, 1) - timedelta(minutes=rng.randrange(days_back * 24 * 60))
    return moment.isoformat(timespec="seconds")


def add_customers(conn: sqlite3.Connection, rng: random.Random, count: int) -> None:
    """Add `count` customers, each with a company, a few deals and a history of activities."""
    start = conn.execute("SELECT coalesce(max(id), 0) FROM customers").fetchone()[0] + 1
    for cid in range(start, start + count):
        conn.execute("INSERT INTO companies (name, country, created_at) VALUES (?, ?, ?)",
                     (f"{rng.choice(LAST)} {rng.choice(['GmbH', 'Ltd', 'AS', 'JSC', 'LLC'])}",
                      rng.choice(COUNTRIES), _when(rng)))
        company = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        conn.execute(
            "INSERT INTO customers (id, company_id, full_name, email, phone, city, balance_cents, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (cid, company, name, f"customer{cid}@example.test", f"+47 {rng.randrange(10**7, 10**8)}",
             rng.choice(CITIES), rng.randrange(0, 500_000), _when(rng)))
        for _ in range(rng.randrange(1, 4)):
            conn.execute("INSERT INTO deals (customer_id, title, amount_cents, stage, updated_at) VALUES (?,?,?,?,?)",
                         (cid, f"{rng.choice(['Renewal', 'Upgrade', 'Pilot', 'Support plan'])} {cid}",
                          rng.randrange(10_000, 5_000_000), rng.choice(STAGES), _when(rng)))
        for _ in range(rng.randrange(2, 8)):
            conn.execute("INSERT INTO activities (customer_id, kind, happened_at, note) VALUES (?, ?, ?, ?)",
                         (cid, rng.choice(KINDS), _when(rng), rng.choice([None, "", "Follow up next week.",
                                                                           "Sent the proposal.", "Gọi lại sau."])))


def create(path: str, customers: int, seed: int = 7) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.executescript(SCHEMA)
        add_customers(conn, random.Random(seed), customers)
    conn.close()


def activity(path: str) -> None:
    """A day of CRM work: ~1% new customers, a few deals move stage."""
    conn = sqlite3.connect(path)
    rng = random.Random()
    with conn:
        total = conn.execute("SELECT count(*) FROM customers").fetchone()[0]
        add_customers(conn, rng, max(1, total // 100))
        conn.execute("UPDATE deals SET stage = 'won', updated_at = ? WHERE id IN "
                     "(SELECT id FROM deals WHERE stage = 'proposal' ORDER BY random() LIMIT 5)",
                     (datetime.now().isoformat(timespec="seconds"),))
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    made = sub.add_parser("create", help="create the example CRM")
    made.add_argument("path")
    made.add_argument("--customers", type=int, default=5000)
    day = sub.add_parser("activity", help="simulate a day of CRM work")
    day.add_argument("path")
    args = parser.parse_args()
    if args.command == "create":
        create(args.path, args.customers)
    else:
        activity(args.path)


if __name__ == "__main__":
    main()
