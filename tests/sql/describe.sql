-- psql describe commands: run by tests/psql.rs against fortress and compared
-- with describe.out, which PostgreSQL 15 printed for this same file.
CREATE TABLE t (id int PRIMARY KEY, name text NOT NULL DEFAULT 'x', email text UNIQUE);
CREATE TABLE t2 (a int PRIMARY KEY, b varchar(20) DEFAULT 'x', c numeric(10,2) DEFAULT 1.5, d int DEFAULT -1, e date DEFAULT '2024-01-01', f timestamptz DEFAULT now(), g bool DEFAULT true, h char(4), i real, j numeric);
CREATE TABLE pairs (x int, y text, z uuid, PRIMARY KEY (x, y), UNIQUE (y, z));
CREATE INDEX t2_b_idx ON t2 (b);
CREATE INDEX ON pairs (z, x);
\dt
\d t
\d t2
\d pairs
\di
\dt t*
\d nosuch
ALTER TABLE t ADD COLUMN extra bigint DEFAULT 7;
ALTER TABLE t DROP COLUMN email;
\d t
