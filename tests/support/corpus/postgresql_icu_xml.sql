-- What needs a server built with ICU and libxml (Debian's is): a case-blind collation, whose own
-- hash would call 'Alice' and 'ALICE' equal, and XML documents (no hash function at all).
CREATE COLLATION case_blind (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE contacts_blind (id int, name text COLLATE case_blind, email varchar(40) COLLATE case_blind, profile xml);
INSERT INTO contacts_blind VALUES
  (1, 'Alice', 'alice@example.com', '<crm><note>é &amp; &lt;</note></crm>'),
  (2, 'ALICE', 'ALICE@example.com', 'just text'),
  (3, 'bob', NULL, '<a b="1"/>'),
  (4, NULL, 'Bob@Example.com', NULL);
