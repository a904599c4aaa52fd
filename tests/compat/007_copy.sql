-- COPY FROM STDIN and TO STDOUT in text and CSV.
CREATE TABLE people (id int PRIMARY KEY, name text, score numeric(6,2), joined date, note text DEFAULT 'none');
COPY people (id, name, score, joined) FROM STDIN;
1	ann	10.50	2024-01-02
2	bob	\N	2024-02-03
3	tab\there	7	\N
4	back\\slash	-1.25	2023-12-31
\.
SELECT * FROM people ORDER BY id;
COPY people TO STDOUT;
COPY people (id, name) TO STDOUT WITH (FORMAT csv, HEADER true);
COPY (SELECT id, score * 2 AS doubled FROM people WHERE score IS NOT NULL ORDER BY id) TO STDOUT;
COPY (SELECT name FROM people ORDER BY id) TO STDOUT WITH (FORMAT csv);
COPY people FROM STDIN WITH (FORMAT csv, HEADER true);
id,name,score,joined,note
5,"eve, the ""great""",3.5,2024-05-05,
6,,1,2024-06-06,""
\.
SELECT id, name, score, note, note IS NULL AS null_note FROM people WHERE id >= 5 ORDER BY id;
COPY people (id, name) FROM STDIN;
7	x
1	duplicate
\.
SELECT count(*) FROM people;
COPY people (id, name) FROM STDIN;
8	y	extra
\.
COPY people (id, score) FROM STDIN;
9	notanumber
\.
COPY people (id, nosuch) FROM STDIN;
COPY nosuch FROM STDIN;
COPY people TO '/tmp/x';
COPY people FROM STDIN WITH (DELIMITER '|', NULL 'NULL');
10|pipe|NULL|2024-07-07|n
\.
COPY people (id, name) TO STDOUT WITH (DELIMITER '|');
DROP TABLE people;
