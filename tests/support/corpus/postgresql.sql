-- Awkward PostgreSQL schema: every built-in type family a CRM might hold, and the layouts that
-- trip fingerprints (catalog OIDs, dropped columns, column order, TOAST, partitions). It loads on
-- any PostgreSQL 14+ build; postgresql_icu_xml.sql adds what needs ICU and libxml (Debian has both).
-- Each table has at least two rows with different values in every column, so a test can change
-- one value by copying another row's.
CREATE TYPE stage AS ENUM ('new', 'qualified', 'won', 'lost');
CREATE DOMAIN positive_amount AS numeric(12, 2) CHECK (VALUE > 0);
CREATE DOMAIN stage_d AS stage;
CREATE DOMAIN email AS text CHECK (VALUE LIKE '%@%');
CREATE TYPE address AS (street text, zip varchar(10), since date, kind stage);
CREATE TYPE stage_range AS RANGE (subtype = stage);

CREATE TABLE numbers (id int, i2 smallint, i4 int, i8 bigint, n numeric, n2 numeric(12, 2),
                      r real, d double precision, m money, amount positive_amount);
INSERT INTO numbers VALUES
  (1, -32768, -2147483648, -9223372036854775808, 'NaN', -0.00, 'NaN', '-0', '-92233720368547758.08', 0.01),
  (2, 32767, 2147483647, 9223372036854775807, 'Infinity', 9999999999.99, 'Infinity', '-Infinity', '12.34', 99.5),
  (3, 0, 0, 0, '-Infinity', 0.5, '-0', '1e-308', '0', 1),
  (4, 1, 1, 1, 123456789012345678901234567890.123456789, 1.10, 1.17549435e-38, 2.2250738585072014e-308, '1.00', 2),
  (5, NULL, NULL, NULL, 0.1, NULL, 0.1, 0.1, NULL, NULL);

CREATE TABLE texts (id int, t text, v varchar(10), c char(5), ch "char", nm name, b bytea, e email);
INSERT INTO texts VALUES
  (1, '', '', '', 'a', 'alpha', '\x', 'a@b'),
  (2, E'tab\there\nnew line \\ back', 'ünïcødé', 'ab', 'b', 'beta', '\x00ff10', 'c@d'),
  (3, 'quote '' and "double"', 'x', 'abc  ', 'c', 'gamma', '\xdeadbeef', 'e@f'),
  (4, repeat('long value ', 400), 'y', NULL, NULL, NULL, decode(repeat('ab', 3000), 'hex'), NULL),
  (5, NULL, NULL, 'zz', 'z', 'omega', NULL, 'g@h');

CREATE TABLE times (id int, d date, t time, tz timetz, ts timestamp(6), tstz timestamptz, iv interval);
INSERT INTO times VALUES
  (1, 'infinity', '00:00', '00:00+00', 'infinity', '-infinity', '1 mon'),
  (2, '4713-01-01 BC', '23:59:59.999999', '12:00-14', '-infinity', 'infinity', '30 days'),
  (3, '2026-02-28', '12:34:56.5', '12:34:56.5+05:45', '2026-03-29 02:30:00', '2026-03-29 02:30:00+01', '-1 year 2 mons -3 days 04:05:06.789'),
  (4, '0001-01-01', '24:00', '24:00-15:59', '1999-12-31 23:59:59.999999', '1999-12-31 23:59:59.999999-12', '00:00:00.000001'),
  (5, NULL, NULL, NULL, NULL, NULL, NULL);

CREATE TABLE bits_and_flags (id int, ok boolean, b bit(8), vb varbit, u uuid, lsn pg_lsn);
INSERT INTO bits_and_flags VALUES
  (1, true, B'10101010', B'', '00000000-0000-0000-0000-000000000000', '0/0'),
  (2, false, B'00000001', B'1', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'FFFFFFFF/FFFFFFFF'),
  (3, NULL, NULL, B'0101010101010101010', NULL, NULL),
  (4, true, B'11111111', B'0', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A12', '16/B374D848');

CREATE TABLE network (id int, ip inet, net cidr, mac macaddr, mac8 macaddr8);
INSERT INTO network VALUES
  (1, '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', '08:00:2b:01:02:03:04:05'),
  (2, '::1', '2001:db8::/32', 'ff:ff:ff:ff:ff:ff', '00:00:00:00:00:00:00:00'),
  (3, '192.168.0.1', '192.168.0.0/24', NULL, NULL);

CREATE TABLE geometry (id int, p point, l line, s lseg, bx box, pa path, po polygon, c circle);
INSERT INTO geometry VALUES
  (1, '(0,0)', '{1,-1,0}', '[(0,0),(1,1)]', '(1,1),(0,0)', '[(0,0),(1,1),(2,0)]', '((0,0),(1,1),(2,0))', '<(0,0),1>'),
  (2, '(-1.5,2e300)', '{0,1,-2}', '[(-1,-1),(1,1)]', '(2,2),(-2,-2)', '((0,0),(1,1),(2,0))', '((0,0),(0,1),(1,1),(1,0))', '<(1,1),0.5>'),
  (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL);

CREATE TABLE documents (id int, j json, jb jsonb, tv tsvector, tq tsquery, cfg regconfig);
INSERT INTO documents VALUES
  (1, '{"b": 1, "a": [1, 2.50], "a": "dup"}', '{"b": 1, "a": [1, 2.50]}',
   to_tsvector('english', 'The customers were calling'), 'call & !cust', 'english'),
  (2, '[]', '{"n": 1.0, "s": "\u00e9", "null": null}', 'a:1A b:2B,3', 'x <-> y', 'simple'),
  (3, 'null', 'null', '', NULL, NULL),
  (4, '  {"spaces" :  true }  ', '{"nested": {"deep": [[], {}]}}', 'z', 'z:*', 'english');

CREATE TABLE arrays (id int, ints int[], txt text[], grid int[][], shifted int[], stages stage[], nums numeric[]);
INSERT INTO arrays VALUES
  (1, '{1,NULL,3}', '{"",NULL,"NULL","a,b"}', '{{1,2},{3,4}}', '[0:2]={1,2,3}', '{new,won}', '{1.0,NaN}'),
  (2, '{}', '{}', '{{5,6}}', '[-5:-4]={7,8}', '{}', '{}'),
  (3, NULL, '{"x"}', '{{NULL}}', '{1,2,3}', '{lost,NULL,new}', '{-0.000}'),
  (4, '{1,2,3}', '{y}', '{1,2,3,4}', '[1:3]={1,2,3}', '{qualified}', '{1.00}');

CREATE TABLE deals (id int PRIMARY KEY, s stage, sd stage_d, history stage[], at address, span stage_range,
                    windows stage_multirange);
INSERT INTO deals VALUES
  (1, 'new', 'won', '{new,qualified,won}', ROW('Main St 1', '10115', '2020-01-01', 'won'), '[new,won)', '{[new,qualified), [won,lost]}'),
  (2, 'won', 'lost', '{}', ROW(NULL, NULL, NULL, NULL), 'empty', '{}'),
  (3, 'lost', 'new', NULL, NULL, '[qualified,]', NULL),
  (4, NULL, NULL, '{lost}', ROW('', '', 'infinity', 'new'), NULL, '{[new,new]}');

CREATE TABLE ranges (id int, i4 int4range, i8 int8range, n numrange, ts tsrange, tz tstzrange, d daterange,
                     multi int4multirange, dm datemultirange);
INSERT INTO ranges VALUES
  (1, '[1,10)', '(,5]', '[1.5,2.5]', '[2026-01-01,2026-02-01)', '[2026-01-01 00:00+00,)', '[2026-01-01,2026-01-31]', '{[1,3), [5,7)}', '{}'),
  (2, 'empty', '[0,1)', '(,)', 'empty', '(,2026-01-01 00:00+05]', 'empty', '{}', '{[2026-01-01,2026-02-01)}'),
  (3, NULL, NULL, NULL, NULL, NULL, NULL, '{[1,2), [3,4), [5,6)}', NULL);

CREATE TABLE catalog_refs (id int, rel regclass, typ regtype, fn regproc, fns regprocedure, ns regnamespace,
                           op regoper, ops regoperator, o oid);
INSERT INTO catalog_refs VALUES
  (1, 'deals', 'stage', 'now', 'lower(anyrange)', 'public', '||/', '+(integer,integer)', 0),
  (2, 'numbers', 'address', 'clock_timestamp', 'upper(anymultirange)', 'pg_catalog', '!!', '-(integer,integer)', 4294967295),
  (3, 'pg_class', 'int4', NULL, NULL, NULL, NULL, NULL, 16384);

CREATE TABLE orders (id int, qty int, price numeric(10, 2),
                     total numeric GENERATED ALWAYS AS (qty * price) STORED, note text);
INSERT INTO orders (id, qty, price, note) VALUES (1, 2, 9.99, 'a'), (2, 0, 0.01, NULL), (3, 1000, 12345678.90, 'c');

-- A table whose columns were dropped (before, between and after the live ones).
CREATE TABLE reshaped (gone1 int, id int, gone2 text, name text, gone3 bytea);
INSERT INTO reshaped VALUES (1, 1, 'x', 'first', '\x01'), (2, 2, 'y', 'second', '\x02');
ALTER TABLE reshaped DROP COLUMN gone1, DROP COLUMN gone2, DROP COLUMN gone3;
ALTER TABLE reshaped ADD COLUMN added date DEFAULT '2026-01-01';
UPDATE reshaped SET added = NULL WHERE id = 2;

-- Rows without a single column.
CREATE TABLE bare ();
INSERT INTO bare DEFAULT VALUES;
INSERT INTO bare DEFAULT VALUES;

-- Inheritance where a child's columns are in another order than its parent's (pg_dump may reorder them).
CREATE TABLE party (id int, name text);
CREATE TABLE person (email text, name text, id int, born date);
ALTER TABLE person INHERIT party;
INSERT INTO party VALUES (1, 'Acme'), (2, 'Globex');
INSERT INTO person VALUES ('a@example.com', 'Ann', 3, '1990-01-01'), ('b@example.com', 'Ben', 4, NULL);
-- A column added to the parent after the child got its own: the child holds (id, vat, since),
-- a restore makes it (id, since, vat).
CREATE TABLE account (id int);
CREATE TABLE vendor (vat text) INHERITS (account);
ALTER TABLE account ADD COLUMN since date;
INSERT INTO account VALUES (10, '2021-01-01'), (11, NULL);
INSERT INTO vendor VALUES (1, 'DE123', '2020-01-01'), (2, NULL, NULL);

CREATE TABLE ledger (id int, booked date NOT NULL, amount numeric) PARTITION BY RANGE (booked);
CREATE TABLE ledger_2025 PARTITION OF ledger FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE ledger_rest PARTITION OF ledger DEFAULT;
INSERT INTO ledger VALUES (1, '2025-03-01', 10), (2, '2025-04-01', 11), (3, '2027-01-01', -5), (4, '1900-01-01', 0);

CREATE UNLOGGED TABLE sessions (token uuid, seen timestamptz);
INSERT INTO sessions VALUES ('11111111-1111-1111-1111-111111111111', '2026-11-30 10:00+00'),
                            ('22222222-2222-2222-2222-222222222222', '2026-11-30 11:00+00');

-- No key and duplicate rows: a lost duplicate must change the fingerprint.
CREATE TABLE no_key (label text, amount int);
INSERT INTO no_key VALUES ('twin', 1), ('twin', 1), ('twin', 1), ('single', 2);

CREATE SCHEMA "Sales ""EU""";
CREATE TABLE "Sales ""EU"""."Order Items; DROP TABLE x" ("select" int, "Ä Ö ü" text, "with""quote" text,
                                                          "UPPER" int, "a_name_that_is_exactly_sixty_three_characters_long_abcdefghijk" int);
INSERT INTO "Sales ""EU"""."Order Items; DROP TABLE x" VALUES (1, 'ä', 'q"', 1, 1), (2, 'ö', '', 2, 2);

-- Values big enough to be TOASTed, compressed and not.
CREATE TABLE attachments (id int, body text, raw bytea);
ALTER TABLE attachments ALTER COLUMN raw SET STORAGE EXTERNAL;
INSERT INTO attachments SELECT g, repeat(md5(g::text), 2000), decode(repeat(md5((g * 7)::text), 2000), 'hex')
FROM generate_series(1, 3) g;
