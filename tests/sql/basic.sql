-- psql script test: run by tests/psql.rs against fortress and compared with
-- basic.out, which was produced by PostgreSQL 15 from this same file.
CREATE TABLE accounts (
    id integer PRIMARY KEY,
    owner varchar(20) NOT NULL,
    balance numeric(12,2) DEFAULT 0,
    opened date,
    active boolean DEFAULT true,
    score double precision
);
CREATE TABLE IF NOT EXISTS accounts (id integer PRIMARY KEY);
INSERT INTO accounts VALUES
    (1, 'ann', 100.5, '2020-01-15', true, 1.5),
    (2, 'bob', 0, '2021-06-30', false, -2.25),
    (3, 'cyd', 99999.999, NULL, NULL, 1e20),
    (4, 'dee', DEFAULT, '1999-12-31', DEFAULT, 0.0001);
INSERT INTO accounts (owner, id) VALUES ('eve', 5);
SELECT * FROM accounts ORDER BY id;
SELECT id, owner FROM accounts WHERE balance > 50 AND active ORDER BY id;
SELECT id FROM accounts WHERE opened IS NULL OR NOT active ORDER BY id DESC;
SELECT id, balance FROM accounts WHERE balance <> 0 ORDER BY balance DESC LIMIT 2;
SELECT id, score FROM accounts WHERE id = 3;
SELECT id, score * 2 AS doubled, balance + 1 AS plus_one FROM accounts WHERE id <= 2 ORDER BY id;
SELECT id FROM accounts WHERE owner = NULL;
UPDATE accounts SET balance = balance * 2, active = false WHERE id = 1;
SELECT id, balance, active FROM accounts WHERE id = 1;
DELETE FROM accounts WHERE id >= 4;
SELECT count_me FROM accounts;
INSERT INTO accounts VALUES (1, 'dup');
INSERT INTO accounts (id) VALUES (9);
INSERT INTO accounts VALUES (9, 'this name is far too long for the column');
INSERT INTO accounts VALUES (9, 'x', 'lots');
SELECT * FROM nowhere;
SELECT 7 / 0;
SELECT id FROM accounts ORDER BY id;
SHOW standard_conforming_strings;
SET application_name = 'psql-test';
SHOW application_name;
DROP TABLE accounts;
DROP TABLE accounts;
DROP TABLE IF EXISTS accounts;
