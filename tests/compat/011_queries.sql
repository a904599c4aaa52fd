-- Sorting, paging, NULL ordering and expressions over a wider table.
CREATE TABLE m (id int PRIMARY KEY, grp text, x int, y numeric(6,2), z float8, s text);
INSERT INTO m VALUES
  (1, 'a', 5, 1.10, 0.5, 'alpha'), (2, 'b', NULL, 2.20, NULL, 'Beta'), (3, 'a', 3, NULL, 1.5, NULL),
  (4, 'c', 9, 4.40, -1, 'gamma'), (5, 'b', 1, 0.00, 2.25, 'delta'), (6, NULL, 7, 6.60, 3, 'Eps'),
  (7, 'c', NULL, NULL, NULL, ''), (8, 'a', 2, 8.80, 0, 'eta'), (9, 'b', 8, 9.90, -0.5, 'theta'), (10, 'c', 4, 1.00, 10, 'iota');
SELECT id, x FROM m ORDER BY x, id;
SELECT id, x FROM m ORDER BY x DESC, id;
SELECT id, x FROM m ORDER BY x NULLS FIRST, id;
SELECT id, x FROM m ORDER BY x DESC NULLS LAST, id;
SELECT id, grp FROM m ORDER BY grp DESC, id DESC;
SELECT id FROM m ORDER BY id LIMIT 3;
SELECT id FROM m ORDER BY id LIMIT 3 OFFSET 8;
SELECT id FROM m ORDER BY id OFFSET 9;
SELECT id FROM m ORDER BY id LIMIT 0;
SELECT id FROM m ORDER BY id LIMIT ALL;
SELECT id FROM m ORDER BY id LIMIT -1;
SELECT id, s FROM m ORDER BY s NULLS FIRST;
SELECT id, lower(s) FROM m WHERE s ILIKE '%ETA' ORDER BY 1;
SELECT id FROM m WHERE s LIKE '_e%' ORDER BY id;
SELECT id FROM m WHERE s NOT LIKE '%a' ORDER BY id;
SELECT id FROM m WHERE x > 3 AND (y < 5 OR z > 2) ORDER BY id;
SELECT id FROM m WHERE NOT (x > 3) ORDER BY id;
SELECT id FROM m WHERE x IN (1, 2, 3) OR grp IS NULL ORDER BY id;
SELECT id FROM m WHERE x NOT IN (1, 2, 3) ORDER BY id;
SELECT id FROM m WHERE y BETWEEN 1 AND 5 ORDER BY id;
SELECT id, x * 2 + 1 AS v, y * 2, z / 2, x % 3 FROM m ORDER BY id;
SELECT id, CASE WHEN x IS NULL THEN 'none' WHEN x > 5 THEN 'big' ELSE 'small' END FROM m ORDER BY id;
SELECT id, coalesce(x, -1), coalesce(s, 'n/a'), nullif(grp, 'a') FROM m ORDER BY id;
SELECT grp, count(*), count(x), sum(x), avg(y), max(s) FROM m GROUP BY grp ORDER BY grp NULLS FIRST;
SELECT grp, string_agg_missing(s) FROM m GROUP BY grp;
SELECT x FROM m WHERE x IS NOT NULL ORDER BY x DESC LIMIT 1;
SELECT max(x), min(z), sum(z), avg(z) FROM m;
SELECT count(*) FILTER (WHERE x > 2) FROM m;
SELECT DISTINCT grp FROM m ORDER BY grp;
SELECT DISTINCT x % 2 AS parity FROM m ORDER BY parity;
SELECT id, length(s), upper(left(s, 2)) FROM m WHERE s IS NOT NULL ORDER BY id;
SELECT id FROM m WHERE s = '' ;
SELECT id FROM m WHERE s IS NULL;
SELECT id, z FROM m WHERE z < 0 ORDER BY z;
SELECT sum(x) / count(x), sum(x)::numeric / count(x) FROM m;
SELECT id, -x, abs(z), round(y, 1) FROM m WHERE id < 4 ORDER BY id;
SELECT id FROM m ORDER BY s COLLATE "C";
SELECT m.id, m2.id FROM m JOIN m m2 ON m.x = m2.x + 1 ORDER BY 1;
SELECT grp, x FROM m WHERE x = (SELECT max(x) FROM m);
SELECT grp, count(*) FROM m WHERE id IN (SELECT id FROM m WHERE x > 2) GROUP BY grp ORDER BY 1 NULLS LAST;
SELECT * FROM m WHERE id = 11;
SELECT count(*) FROM m WHERE id = 11;
DROP TABLE m;
