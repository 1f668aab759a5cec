-- Awkward MariaDB schema: every column type family a CRM might hold, and the layouts that trip
-- fingerprints (system versioning, invisible and generated columns, huge values, odd names).
-- Each table has at least two rows with different values in every column.
CREATE TABLE numbers (id INT, ti TINYINT, si SMALLINT UNSIGNED, mi MEDIUMINT, i8 BIGINT, u8 BIGINT UNSIGNED,
                      d DECIMAL(65, 30), d2 DECIMAL(12, 2), f FLOAT, db DOUBLE, b BIT(12), flag BOOLEAN);
INSERT INTO numbers VALUES
  (1, -128, 0, -8388608, -9223372036854775808, 18446744073709551615, -99999999999999999999999999999999999.999999999999999999999999999999, -0.01, -0, -0, b'0', TRUE),
  (2, 127, 65535, 8388607, 9223372036854775807, 0, 0.000000000000000000000000000001, 9999999999.99, 3.40282e38, 1.7976931348623157e308, b'111111111111', FALSE),
  (3, 0, 1, 0, 0, 1, 1.5, 0, 0.1, 0.1, b'101', NULL),
  (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 1.17549e-38, 2.2250738585072014e-308, NULL, TRUE);

CREATE TABLE texts (id INT, c CHAR(5), v VARCHAR(20), t TEXT, lt LONGTEXT, bn BINARY(4), vb VARBINARY(10),
                    bl BLOB, latin VARCHAR(10) CHARACTER SET latin1, ci VARCHAR(10) COLLATE utf8mb4_general_ci,
                    e ENUM('new', 'won', 'lost'), s SET('email', 'phone', 'post'));
INSERT INTO texts VALUES
  (1, '', '', '', '', x'00000000', x'', x'', 'Ärger', 'Alice', 'new', ''),
  (2, 'ab', 'ünïcødé 🙂', 'tab\there\nnew line \\ back', REPEAT('long value ', 400), x'ff000001', x'00ff', x'deadbeef', 'ß', 'ALICE', 'won', 'email,post'),
  (3, 'abc  ', 'quote '' and "double"', NULL, NULL, NULL, NULL, NULL, NULL, 'bob', 'lost', 'phone'),
  (4, NULL, NULL, 'x', 'y', x'01', x'02', x'03', 'y', 'Bob', NULL, NULL);

CREATE TABLE times (id INT, d DATE, t TIME(6), dt DATETIME(6), ts TIMESTAMP(6) NULL, y YEAR);
INSERT INTO times VALUES
  (1, '1000-01-01', '-838:59:59.000000', '1000-01-01 00:00:00', '1970-01-01 00:00:01', 1901),
  (2, '9999-12-31', '838:59:59.000000', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999', 2155),
  (3, '2026-03-29', '00:00:00.5', '2026-03-29 02:30:00', '2026-03-29 01:30:00.123456', 0),
  (4, NULL, NULL, NULL, NULL, NULL);

CREATE TABLE documents (id INT, j JSON, u UUID, ip6 INET6, ip4 INET4, g GEOMETRY, p POINT);
INSERT INTO documents VALUES
  (1, '{"b": 1, "a": [1, 2.50], "a": "dup"}', '00000000-0000-0000-0000-000000000000', '::1', '127.0.0.1', ST_GeomFromText('POLYGON((0 0,1 1,2 0,0 0))'), POINT(0, 0)),
  (2, '[]', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2001:db8::ff00:42:8329', '255.255.255.255', ST_GeomFromText('LINESTRING(0 0,1 1)', 4326), POINT(-1.5, 2e300)),
  (3, NULL, NULL, NULL, NULL, NULL, NULL);

CREATE TABLE orders (id INT PRIMARY KEY, qty INT, price DECIMAL(10, 2),
                     total DECIMAL(20, 2) AS (qty * price) STORED, label VARCHAR(40) AS (CONCAT('#', id)) VIRTUAL,
                     secret_note VARCHAR(20) INVISIBLE);
INSERT INTO orders (id, qty, price, secret_note) VALUES (1, 2, 9.99, 'a'), (2, 0, 0.01, NULL), (3, 1000, 12345678.90, 'c');

-- System-versioned: a restore stamps every row with a new start time, which must not count as a change.
CREATE TABLE contacts (id INT, email VARCHAR(60)) WITH SYSTEM VERSIONING;
INSERT INTO contacts VALUES (1, 'a@example.com'), (2, 'b@example.com');
UPDATE contacts SET email = 'a2@example.com' WHERE id = 1;

CREATE TABLE periods (id INT, email VARCHAR(60),
                      valid_from TIMESTAMP(6) GENERATED ALWAYS AS ROW START INVISIBLE,
                      valid_to TIMESTAMP(6) GENERATED ALWAYS AS ROW END INVISIBLE,
                      PERIOD FOR SYSTEM_TIME (valid_from, valid_to)) WITH SYSTEM VERSIONING;
INSERT INTO periods (id, email) VALUES (1, 'c@example.com'), (2, 'd@example.com');

CREATE TABLE no_key (label VARCHAR(10), amount INT);
INSERT INTO no_key VALUES ('twin', 1), ('twin', 1), ('twin', 1), ('single', 2);

CREATE TABLE `Order Items; DROP TABLE x` (`select` INT, `Ä Ö ü` TEXT, `with``tick` TEXT, `UPPER` INT,
                                         `a_name_that_is_exactly_sixty_four_characters_long_abcdefghijklm` INT);
INSERT INTO `Order Items; DROP TABLE x` VALUES (1, 'ä', 'q`', 1, 1), (2, 'ö', '', 2, 2);

CREATE TABLE archive (id INT, note TEXT) ENGINE = Aria;
INSERT INTO archive VALUES (1, 'old'), (2, 'older');

-- A value of megabytes (its hex form in the dump must still fit the server's 16 MiB max_allowed_packet).
CREATE TABLE attachments (id INT, body LONGBLOB);
INSERT INTO attachments VALUES (1, REPEAT('a', 4000000)), (2, REPEAT('b', 100));

-- A '%' in names: never a format placeholder in the queries opsctl builds.
CREATE TABLE `rates 100%` (id INT, `discount%` DECIMAL(5, 2), `%s` VARCHAR(10));
INSERT INTO `rates 100%` VALUES (1, 5.00, '%d'), (2, 10.50, '%%');
