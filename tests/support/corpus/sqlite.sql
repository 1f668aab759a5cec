-- Awkward SQLite schema: type affinity lets one column hold integers, reals, text and blobs; TEXT
-- may hold bytes that are not UTF-8; STRICT and WITHOUT ROWID tables, generated columns, a
-- full-text index (a virtual table and its shadow tables), AUTOINCREMENT and odd names.
-- Each table has at least two rows that differ in every column.
CREATE TABLE anything (id INTEGER PRIMARY KEY, v, n NUMERIC, i INTEGER, r REAL, t TEXT, b BLOB);
INSERT INTO anything (v, n, i, r, t, b) VALUES
  (1, '1e3', 'abc', 1, 1, x'00'),
  (1.0, '0012', 2.5, '2.5', 2.0, 'text in a blob column'),
  ('1', 12.0, x'0102', x'03', x'04', 3),
  (x'31', NULL, '', -0.0, '', x''),
  (NULL, 9223372036854775807, -9223372036854775808, 1e308, 'ünïcødé 🙂', NULL),
  (CAST(x'ff00fe' AS TEXT), 'NaN', '0x10', 4.9e-324, CAST(x'c328' AS TEXT), x'ff'),
  (9e999, -9e999, 1e999, -1e999, 'inf', 'nan');

CREATE TABLE invoices (id INTEGER PRIMARY KEY AUTOINCREMENT, amount INTEGER NOT NULL, note TEXT) STRICT;
INSERT INTO invoices (amount, note) VALUES (100, 'a'), (-5, NULL), (0, '');
DELETE FROM invoices WHERE id = 3;

CREATE TABLE tags (id TEXT PRIMARY KEY, label ANY, weight REAL) STRICT, WITHOUT ROWID;
INSERT INTO tags VALUES ('a', 1, 0.5), ('b', 'one', 1.5), ('c', x'01', NULL), ('d', 1.0, -0.0);

CREATE TABLE orders (qty INTEGER, price REAL, total REAL GENERATED ALWAYS AS (qty * price) STORED,
                     label TEXT GENERATED ALWAYS AS ('#' || qty) VIRTUAL);
INSERT INTO orders (qty, price) VALUES (2, 9.99), (0, 0.01), (1000, 12345678.9);

CREATE TABLE no_key (label TEXT, amount INTEGER);
INSERT INTO no_key VALUES ('twin', 1), ('twin', 1), ('twin', 1), ('single', 2);

CREATE TABLE "Order Items; DROP TABLE x" ("select" INTEGER, "Ä Ö ü" TEXT, "with""quote" TEXT, "" TEXT);
INSERT INTO "Order Items; DROP TABLE x" VALUES (1, 'ä', 'q"', 'empty name'), (2, 'ö', '', NULL);

CREATE VIRTUAL TABLE notes USING fts5(body, author);
INSERT INTO notes VALUES ('The customers were calling', 'ann'), ('Quarterly review', 'ben');

CREATE INDEX anything_t ON anything (t);
CREATE VIEW big_orders AS SELECT * FROM orders WHERE qty > 1;
CREATE TRIGGER stamp AFTER INSERT ON invoices BEGIN UPDATE invoices SET note = 'new' WHERE id = NEW.id; END;
