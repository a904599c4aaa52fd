-- Range- and time-sharded tables: shard-key lookups and ranges, ordering,
-- aggregates, DML and shard-key moves over data on all four shards.
-- The fortress comments after each CREATE TABLE give its sharding options.
CREATE TABLE rng_orders (id int PRIMARY KEY, cust int NOT NULL, status text, amount numeric(10,2), qty int, weight bigint, note varchar(20), placed date) /*fortress: WITH (strategy = 'range', shard_key = 'id', split_points = '25, 50, 75') */;
INSERT INTO rng_orders VALUES
  (1, 11, 'paid', 280, 20, 5000852442, 'fragile', '2023-12-05'), (2, 5, 'new', 158.53, 16, 9000916208, NULL, '2023-09-02'), (3, 6, 'paid', 65.66, 19, 4000919668, NULL, '2023-08-07'),
  (4, 2, 'paid', 109.94, NULL, 7000782369, 'gift', '2023-01-05'), (5, 2, 'paid', 483.34, 4, 6000701325, 'rush', '2023-04-22'), (6, 2, 'new', 104.56, 7, 7000898822, 'repeat', '2023-09-20'),
  (7, 3, 'shipped', 457.21, 3, 6000459660, NULL, '2023-12-02'), (8, 9, 'new', 172.35, 19, 2000250539, NULL, '2023-06-07'), (9, 7, 'shipped', 54.17, 12, 3000842490, 'rush', '2023-01-03'),
  (10, 3, 'paid', 393.32, 10, 5000487097, 'fragile', '2023-08-08'), (11, 4, 'new', 68.52, 12, 1000809260, NULL, '2023-12-06'), (12, 6, NULL, 105.64, 2, 4000918921, 'gift', '2023-07-28'),
  (14, 3, 'paid', 354.75, 4, 9000618067, 'fragile', '2023-03-15'), (15, 3, 'paid', 47.73, 5, 2000285656, 'gift', '2023-11-07'), (16, 7, NULL, 156.3, 6, 1000334935, 'repeat', '2023-09-22'),
  (17, 11, 'void', NULL, 14, 7000646888, NULL, '2023-09-24'), (18, 9, 'new', 496.73, 4, 3000546411, 'repeat', '2023-07-06'), (19, 3, 'paid', 143.36, 12, 8000442012, 'rush', '2023-07-11'),
  (20, 10, 'paid', 23.52, 4, 2000565996, 'rush', '2023-02-10'), (21, 1, NULL, 28.55, 2, 9000678769, 'fragile', '2023-09-09'), (22, 6, 'shipped', 241.87, 20, 2000621990, 'fragile', '2023-11-28'),
  (23, 7, 'paid', 322.47, 12, 5000400930, NULL, '2023-09-17'), (24, 9, 'new', NULL, NULL, 7000865518, NULL, '2023-02-21'), (25, 6, 'shipped', 74.06, 6, 6000423738, NULL, '2023-06-24'),
  (26, 4, NULL, 440.04, NULL, 4000697580, 'gift', '2023-12-03'), (27, 2, NULL, 9.55, 19, 3000420698, 'bulk', '2023-05-14'), (28, 4, NULL, 456.06, 13, 8000052360, NULL, '2023-03-23'),
  (29, 4, NULL, 128.21, 4, 9000211676, NULL, '2023-08-29'), (30, 9, 'shipped', 265.93, 18, 7000541387, NULL, '2023-08-10'), (31, 8, NULL, 314.38, 9, 9000164507, NULL, '2023-08-19'),
  (32, 10, 'new', 175.62, 7, 1000053134, 'repeat', '2023-09-25'), (33, 7, 'new', 245.18, 10, 7000696388, NULL, '2023-02-07'), (34, 5, 'void', 290.87, NULL, 4000256334, 'repeat', '2023-05-14'),
  (35, 10, 'shipped', NULL, 9, 8000771605, 'rush', '2023-01-14'), (36, 11, 'shipped', 313.21, 11, 3000393971, 'gift', '2023-12-14'), (38, 12, 'shipped', 83.23, 11, 6000436957, NULL, '2023-10-30'),
  (39, 6, 'shipped', 363.05, 16, 9000604784, 'repeat', '2023-01-26'), (40, 11, 'void', 193.4, 10, 9000871618, NULL, '2023-01-02'), (41, 8, 'shipped', NULL, 16, 3000053400, 'rush', '2023-07-27'),
  (42, 7, 'void', 446.59, 9, 7000789939, 'bulk', '2023-05-03'), (43, 3, NULL, 116.35, 9, 9000014792, 'rush', '2023-06-11'), (44, 12, 'paid', 106.4, NULL, 6000412673, 'bulk', '2023-08-07'),
  (45, 11, 'new', 76.88, 14, 8000138843, NULL, '2023-07-29'), (46, 5, 'void', 378.34, 4, 5000833493, 'gift', '2023-11-24'), (47, 2, 'shipped', 43.14, 18, 1000666357, 'gift', '2023-06-06'),
  (48, 2, NULL, 147.44, 13, 1000987414, 'fragile', '2023-01-19');
INSERT INTO rng_orders VALUES
  (49, 11, 'new', 183.67, 13, 9000027877, 'fragile', '2023-02-23'), (50, 8, NULL, 438.33, 11, 4000342796, NULL, '2023-06-18'), (51, 2, 'shipped', 107.77, 12, 5000005371, 'fragile', '2023-10-20'),
  (52, 2, NULL, 349.42, 19, 1000536761, 'repeat', '2023-11-25'), (53, 12, NULL, 171.58, 5, 1000673461, 'fragile', '2023-01-19'), (54, 10, 'void', 76.99, 1, 2000638679, 'fragile', '2023-05-28'),
  (55, 9, 'paid', 342.33, 17, 2000232261, 'bulk', '2023-09-23'), (56, 12, NULL, 450.83, 15, 2000751064, 'repeat', '2023-03-12'), (57, 11, 'void', 370.38, 19, 3000034945, 'fragile', '2023-05-31'),
  (58, 7, NULL, 190.06, 10, 3000379156, NULL, '2023-03-24'), (59, 2, 'new', 199.66, 11, 8000224357, 'bulk', '2023-10-08'), (60, 4, 'new', 17.12, 8, 1000611846, 'repeat', '2023-10-30'),
  (61, 1, NULL, 48.5, 3, 2000993104, 'fragile', '2023-01-13'), (63, 4, 'shipped', 378.1, 4, 7000945477, 'repeat', '2023-04-15'), (64, 4, 'void', NULL, 1, 6000639363, 'gift', '2023-03-10'),
  (65, 10, 'new', NULL, 17, 3000210409, 'rush', '2023-12-15'), (66, 7, 'new', 70.27, 19, 3000987218, NULL, '2023-05-13'), (67, 3, NULL, 109.43, 19, 7000207259, 'repeat', '2023-05-25'),
  (68, 2, NULL, 342.02, 2, 6000899183, 'repeat', '2023-05-26'), (69, 9, 'void', 226.93, 9, 6000681771, NULL, '2023-11-10'), (70, 12, 'void', 112.8, 7, 4000143321, 'rush', '2023-10-25'),
  (71, 7, 'new', NULL, 20, 6000146531, 'rush', '2023-07-02'), (72, 3, NULL, 412.32, 16, 8000420525, 'repeat', '2023-08-14'), (73, 3, 'paid', 227.53, 3, 7000142078, NULL, '2023-11-28'),
  (74, 3, NULL, 319.71, 20, 3000636751, NULL, '2023-12-11'), (75, 3, 'paid', 113.23, 14, 1000989447, 'repeat', '2023-02-10'), (76, 11, 'new', 457.55, 5, 7000621288, 'gift', '2023-12-02'),
  (77, 4, NULL, 498.13, NULL, 6000662598, NULL, '2023-05-19'), (78, 4, 'new', NULL, NULL, 7000484995, 'rush', '2023-04-18'), (79, 8, 'void', 65.4, 19, 1000654980, 'gift', '2023-01-30'),
  (80, 9, 'paid', 82.17, 1, 9000280838, 'bulk', '2023-07-19'), (81, 10, 'paid', 293.15, NULL, 1000933542, NULL, '2023-04-15'), (82, 5, 'void', 45.66, 19, 4000629185, NULL, '2023-04-06'),
  (83, 10, 'new', 327.29, NULL, 4000352725, 'fragile', '2023-05-16'), (84, 12, 'void', 45.21, NULL, 1000856810, 'repeat', '2023-12-31'), (85, 7, 'shipped', 162.29, 14, 2000791177, NULL, '2023-05-14'),
  (86, 1, 'paid', 363.86, 10, 4000646564, 'rush', '2023-12-06'), (87, 2, 'void', 399, 7, 5000032940, NULL, '2023-01-09'), (89, 2, 'new', NULL, 17, 1000848844, NULL, '2023-01-01'),
  (90, 12, NULL, 102.8, 14, 9000767130, NULL, '2023-08-20'), (91, 3, 'shipped', 391.26, 14, 2000585062, NULL, '2023-01-09'), (92, 11, 'shipped', 442.57, 13, 2000869298, NULL, '2023-06-18'),
  (93, 5, 'void', 228.94, 19, 4000352413, NULL, '2023-04-25'), (94, 9, 'void', 67.58, 16, 2000412517, NULL, '2023-07-26'), (95, 10, 'new', 426.92, 8, 9000843019, 'repeat', '2023-02-23'),
  (96, 12, 'new', NULL, 17, 2000862988, NULL, '2023-03-27');
SELECT count(*) FROM rng_orders;
SELECT * FROM rng_orders WHERE id = 1;
SELECT * FROM rng_orders WHERE id = 50;
SELECT id, cust, amount FROM rng_orders WHERE id = 24 OR id = 25;
SELECT id, cust, amount FROM rng_orders WHERE id IN (3, 26, 51, 76, 95) ORDER BY id;
SELECT id FROM rng_orders WHERE id IN (13, 37, 200);
SELECT id FROM rng_orders WHERE id = 62;
SELECT id, status FROM rng_orders WHERE id < 10 ORDER BY id;
SELECT id FROM rng_orders WHERE id <= 25 AND id >= 20 ORDER BY id;
SELECT id FROM rng_orders WHERE id > 70 AND id < 80 ORDER BY id DESC;
SELECT count(*) FROM rng_orders WHERE id >= 50;
SELECT count(*), sum(qty) FROM rng_orders WHERE id BETWEEN 20 AND 55;
SELECT id, status FROM rng_orders WHERE id BETWEEN 40 AND 60 AND status = 'paid' ORDER BY id;
SELECT id, qty FROM rng_orders WHERE id NOT BETWEEN 10 AND 90 ORDER BY id;
SELECT id FROM rng_orders WHERE id > 24 AND id <= 26 OR id > 74 AND id <= 76 ORDER BY id;
SELECT id, cust, status FROM rng_orders WHERE cust = 7 ORDER BY id;
SELECT id, amount FROM rng_orders WHERE amount > 400 ORDER BY amount DESC, id;
SELECT id, note FROM rng_orders WHERE note IS NULL AND id > 60 ORDER BY id;
SELECT id, status, qty FROM rng_orders WHERE status IN ('void', 'new') AND qty >= 10 ORDER BY status, id;
SELECT id, placed FROM rng_orders WHERE placed >= '2023-06-01' AND placed < '2023-07-01' ORDER BY placed, id;
SELECT id, cust, amount FROM rng_orders ORDER BY cust, amount DESC NULLS LAST, id LIMIT 15;
SELECT id, qty FROM rng_orders ORDER BY qty NULLS FIRST, id DESC LIMIT 10 OFFSET 5;
SELECT id, status, amount FROM rng_orders ORDER BY status DESC NULLS LAST, amount ASC NULLS FIRST, id LIMIT 12 OFFSET 20;
SELECT id FROM rng_orders ORDER BY id DESC LIMIT 5;
SELECT id FROM rng_orders ORDER BY id LIMIT 5 OFFSET 45;
SELECT id, placed FROM rng_orders WHERE id >= 30 ORDER BY placed DESC, id LIMIT 8;
SELECT id, note FROM rng_orders ORDER BY note NULLS FIRST, id OFFSET 85;
SELECT id, weight FROM rng_orders ORDER BY weight DESC, id LIMIT 4;
SELECT count(*), count(qty), count(amount), count(note), count(DISTINCT cust), count(DISTINCT status) FROM rng_orders;
SELECT sum(qty), sum(amount), sum(weight), min(amount), max(amount), min(weight), max(weight) FROM rng_orders;
SELECT avg(qty), avg(amount), avg(weight) FROM rng_orders;
SELECT min(placed), max(placed), min(status), max(note) FROM rng_orders;
SELECT sum(amount), avg(qty) FROM rng_orders WHERE id < 25 OR id >= 75;
SELECT cust, count(*), sum(amount), max(qty) FROM rng_orders GROUP BY cust ORDER BY cust;
SELECT status, count(*), count(amount), avg(amount) FROM rng_orders GROUP BY status ORDER BY status NULLS FIRST;
SELECT id / 25 AS bucket, count(*), sum(qty), min(id), max(id) FROM rng_orders GROUP BY id / 25 ORDER BY bucket;
SELECT cust, sum(qty) FROM rng_orders GROUP BY cust HAVING sum(qty) > 50 ORDER BY cust;
SELECT cust, status, count(*) FROM rng_orders WHERE id BETWEEN 10 AND 80 GROUP BY cust, status HAVING count(*) >= 2 ORDER BY cust, status NULLS LAST;
SELECT cust, sum(amount) AS total FROM rng_orders GROUP BY cust ORDER BY total DESC NULLS LAST, cust LIMIT 3;
SELECT count(*) FILTER (WHERE status = 'paid') AS paid, sum(amount) FILTER (WHERE id < 50) AS low_sum, count(DISTINCT cust) FILTER (WHERE qty > 10) AS busy FROM rng_orders;
SELECT cust, count(*) FROM rng_orders WHERE id > 1000 GROUP BY cust;
SELECT count(*), sum(qty), max(amount) FROM rng_orders WHERE id > 1000;
SELECT DISTINCT status FROM rng_orders ORDER BY status NULLS LAST;
SELECT DISTINCT cust, status FROM rng_orders WHERE id > 40 ORDER BY cust, status NULLS FIRST;
SELECT count(*) FROM (SELECT DISTINCT cust, status FROM rng_orders) AS d;
SELECT id, amount FROM rng_orders WHERE amount > (SELECT avg(amount) * 1.8 FROM rng_orders) ORDER BY id;
UPDATE rng_orders SET status = 'archived' WHERE id = 10;
SELECT id, status FROM rng_orders WHERE id = 10;
UPDATE rng_orders SET qty = coalesce(qty, 0) + 1 WHERE id BETWEEN 22 AND 28;
SELECT id, qty FROM rng_orders WHERE id BETWEEN 22 AND 28 ORDER BY id;
UPDATE rng_orders SET amount = amount * 2 WHERE id > 90 AND amount IS NOT NULL RETURNING id, amount;
SELECT id, amount FROM rng_orders WHERE id > 88 ORDER BY id;
UPDATE rng_orders SET note = 'checked' WHERE cust = 3;
SELECT id, note FROM rng_orders WHERE note = 'checked' ORDER BY id;
DELETE FROM rng_orders WHERE id = 2;
DELETE FROM rng_orders WHERE id >= 70 AND id < 78;
SELECT count(*), min(id), max(id) FROM rng_orders;
SELECT id FROM rng_orders WHERE id BETWEEN 66 AND 80 ORDER BY id;
UPDATE rng_orders SET id = 99 WHERE id = 3;
SELECT id, cust, amount FROM rng_orders WHERE id IN (3, 99) ORDER BY id;
UPDATE rng_orders SET id = id + 100 WHERE id BETWEEN 45 AND 52;
SELECT id, cust FROM rng_orders WHERE id >= 40 AND id <= 55 OR id > 140 ORDER BY id;
SELECT count(*), sum(qty) FROM rng_orders;
UPDATE rng_orders SET id = 5 WHERE id = 6;
SELECT id FROM rng_orders WHERE id IN (5, 6) ORDER BY id;
INSERT INTO rng_orders (id, cust) VALUES (1, 1);
SELECT id, qty / 0 FROM rng_orders WHERE id = 1;
SELECT nope FROM rng_orders WHERE id = 1;
CREATE TABLE rng_names (name text PRIMARY KEY, score int, grp varchar(8) NOT NULL, active boolean NOT NULL) /*fortress: WITH (strategy = 'range', shard_key = 'name', split_points = 'g, n, t') */;
INSERT INTO rng_names VALUES
  ('alpha', 44, 'red', true), ('bravo', 64, 'blue', true), ('charlie', 4, 'blue', true), ('delta', 32, 'blue', false),
  ('echo', 23, 'red', true), ('foxtrot', 99, 'green', true), ('golf', 72, 'blue', true), ('hotel', 72, 'green', true),
  ('india', 15, 'red', false), ('juliet', 4, 'red', true), ('kilo', NULL, 'red', true), ('lima', 54, 'blue', false),
  ('mike', 100, 'green', true), ('november', 52, 'green', true), ('oscar', 73, 'red', true), ('papa', 12, 'red', true),
  ('quebec', 2, 'green', false), ('romeo', NULL, 'green', false), ('sierra', NULL, 'red', true), ('tango', 63, 'red', true),
  ('uniform', NULL, 'blue', false), ('victor', 14, 'green', false), ('whiskey', 65, 'red', false), ('xray', 96, 'green', true),
  ('yankee', NULL, 'blue', true), ('zulu', NULL, 'green', false), ('Apple', 81, 'red', false), ('Zeta', NULL, 'blue', true),
  ('g', 36, 'red', true), ('n', 40, 'blue', false), ('t', 10, 'green', true), ('amber', 74, 'blue', true),
  ('basil', 90, 'blue', true), ('cedar', 34, 'red', true), ('fern', NULL, 'blue', true), ('hazel', NULL, 'green', true),
  ('iris', 58, 'green', false), ('maple', NULL, 'red', false), ('nutmeg', 38, 'blue', false), ('olive', 63, 'red', true),
  ('pine', 29, 'green', true), ('rose', 76, 'red', true), ('sage', 83, 'red', true), ('thyme', NULL, 'green', false),
  ('violet', 39, 'red', false), ('willow', 12, 'red', true), ('yarrow', 44, 'green', false), ('zinnia', 72, 'red', false);
SELECT * FROM rng_names WHERE name = 'kilo';
SELECT * FROM rng_names WHERE name = 'n';
SELECT name, score FROM rng_names WHERE name IN ('alpha', 'golf', 'november', 'tango', 'zulu', 'nothing') ORDER BY name;
SELECT name FROM rng_names WHERE name < 'g' ORDER BY name;
SELECT name FROM rng_names WHERE name >= 'g' AND name < 'n' ORDER BY name DESC;
SELECT name FROM rng_names WHERE name BETWEEN 'm' AND 'p' ORDER BY name;
SELECT name FROM rng_names WHERE name > 'sierra' ORDER BY name;
SELECT name, grp FROM rng_names WHERE grp = 'blue' AND name <= 't' ORDER BY name;
SELECT count(*), count(score), sum(score), min(name), max(name) FROM rng_names;
SELECT grp, count(*), sum(score), avg(score), min(name), max(name) FROM rng_names GROUP BY grp ORDER BY grp;
SELECT active, count(*), max(score) FROM rng_names GROUP BY active HAVING count(*) > 5 ORDER BY active;
SELECT name, score FROM rng_names ORDER BY score DESC NULLS LAST, name LIMIT 5;
SELECT name, active, score FROM rng_names ORDER BY active, score NULLS FIRST, name DESC LIMIT 10 OFFSET 10;
SELECT DISTINCT grp, active FROM rng_names ORDER BY grp, active;
UPDATE rng_names SET name = 'zz-' || name WHERE name = 'alpha';
SELECT name, score FROM rng_names WHERE name LIKE 'zz%' OR name = 'alpha' ORDER BY name;
DELETE FROM rng_names WHERE name >= 'n' AND name < 't';
SELECT count(*), min(name), max(name) FROM rng_names;
SELECT name FROM rng_names WHERE name > 'm' ORDER BY name LIMIT 4;
CREATE TABLE rng_days (day date PRIMARY KEY, visits int NOT NULL, revenue numeric(12,2), channel text) /*fortress: WITH (strategy = 'range', shard_key = 'day', split_points = '2023-04-01, 2023-07-01, 2023-10-01') */;
INSERT INTO rng_days VALUES
  ('2023-01-04', 554, 1873.22, 'store'), ('2023-01-11', 310, 6449.44, 'web'), ('2023-01-18', 575, 8229.95, 'store'), ('2023-01-25', 415, 8885.82, 'store'),
  ('2023-02-01', 64, 630.26, 'web'), ('2023-02-08', 326, 1573.68, NULL), ('2023-02-15', 622, 3603.32, 'store'), ('2023-02-22', 335, 3998.99, 'store'),
  ('2023-03-01', 751, 8063.91, 'store'), ('2023-03-08', 565, NULL, 'web'), ('2023-03-15', 473, 8225.91, 'store'), ('2023-03-22', 388, 1564.3, 'phone'),
  ('2023-03-29', 150, 7383.47, 'phone'), ('2023-04-05', 665, 8240.74, 'store'), ('2023-04-12', 833, 5363.69, 'web'), ('2023-04-19', 389, NULL, 'store'),
  ('2023-04-26', 884, 6106.38, 'web'), ('2023-05-03', 51, NULL, NULL), ('2023-05-10', 439, 1781.76, NULL), ('2023-05-17', 752, 6528.87, 'phone'),
  ('2023-05-24', 498, 2400.77, 'store'), ('2023-05-31', 259, 1095.56, 'store'), ('2023-06-07', 674, 5078.24, NULL), ('2023-06-14', 164, 5814.15, 'phone'),
  ('2023-06-21', 39, 164.56, NULL), ('2023-06-28', 529, NULL, 'phone'), ('2023-07-05', 418, NULL, 'store'), ('2023-07-12', 767, 8521.52, 'store'),
  ('2023-07-19', 214, NULL, 'store'), ('2023-07-26', 71, 8660.28, 'phone'), ('2023-08-02', 425, 8318.78, 'phone'), ('2023-08-09', 360, 6285, 'web'),
  ('2023-08-16', 638, 4190.74, NULL), ('2023-08-23', 669, 5852.7, 'phone'), ('2023-08-30', 102, 4776.07, 'web'), ('2023-09-06', 326, 3836.45, 'store'),
  ('2023-09-13', 882, 6210.3, 'phone'), ('2023-09-20', 62, 7076.05, 'store'), ('2023-09-27', 396, 5194.04, NULL), ('2023-10-04', 605, 7225.53, 'phone'),
  ('2023-10-11', 67, 3059.01, 'store'), ('2023-10-18', 499, NULL, 'store'), ('2023-10-25', 346, 1543.03, 'store'), ('2023-11-01', 352, 7943.2, 'phone'),
  ('2023-11-08', 444, 3145.86, 'web'), ('2023-11-15', 757, NULL, 'phone'), ('2023-11-22', 167, 7657.61, 'web'), ('2023-11-29', 524, 3072.43, 'store'),
  ('2023-12-06', 762, 1088.16, 'phone'), ('2023-12-13', 616, 5492.75, 'store'), ('2023-12-20', 242, 5714.56, NULL), ('2023-12-27', 41, 5497.56, 'web'),
  ('2023-04-01', 500, 1234.50, 'web'), ('2023-07-01', 450, 999.99, 'store'), ('2023-10-01', 300, NULL, 'phone');
SELECT count(*), min(day), max(day) FROM rng_days;
SELECT * FROM rng_days WHERE day = '2023-07-01';
SELECT day, visits FROM rng_days WHERE day IN ('2023-01-04', '2023-04-01', '2023-08-02', '2023-12-27') ORDER BY day;
SELECT day, visits FROM rng_days WHERE day < '2023-02-01' ORDER BY day;
SELECT count(*), sum(visits), sum(revenue) FROM rng_days WHERE day >= '2023-04-01' AND day < '2023-07-01';
SELECT day FROM rng_days WHERE day BETWEEN DATE '2023-09-20' AND DATE '2023-10-11' ORDER BY day DESC;
SELECT channel, count(*), sum(visits), avg(revenue), max(day) FROM rng_days GROUP BY channel ORDER BY channel NULLS LAST;
SELECT day, visits, revenue FROM rng_days ORDER BY revenue DESC NULLS FIRST, day LIMIT 6;
SELECT day, channel FROM rng_days WHERE day > '2023-06-01' ORDER BY channel NULLS FIRST, day DESC LIMIT 7 OFFSET 2;
SELECT CASE WHEN day < '2023-04-01' THEN 'q1' WHEN day < '2023-07-01' THEN 'q2' WHEN day < '2023-10-01' THEN 'q3' ELSE 'q4' END AS quarter, count(*), sum(visits), min(visits) FROM rng_days GROUP BY 1 ORDER BY 1;
SELECT DISTINCT channel FROM rng_days WHERE day >= '2023-10-01' ORDER BY channel NULLS FIRST;
UPDATE rng_days SET revenue = 0 WHERE day >= '2023-03-15' AND day <= '2023-04-15';
SELECT day, revenue FROM rng_days WHERE day BETWEEN '2023-03-01' AND '2023-04-30' ORDER BY day;
UPDATE rng_days SET day = '2024-01-03' WHERE day = '2023-01-04';
SELECT day, visits FROM rng_days WHERE day IN ('2023-01-04', '2024-01-03');
DELETE FROM rng_days WHERE day > '2023-11-01' AND channel = 'web';
SELECT count(*), max(day) FROM rng_days;
CREATE TABLE rng_prices (price numeric(8,2) PRIMARY KEY, label text NOT NULL, stock int) /*fortress: WITH (strategy = 'range', shard_key = 'price', split_points = '10.00, 100.00, 1000.00') */;
INSERT INTO rng_prices VALUES
  (5.25, 'plus', 41), (6.61, 'max', 9), (7.52, 'plus', 8), (7.89, 'pro', 0), (7.91, 'max', 34),
  (9.26, 'pro', 25), (9.88, 'max', 5), (9.99, 'max', 20), (10.00, 'plus', 25), (30.75, 'max', 44),
  (36.1, 'plus', 32), (42.57, 'pro', 19), (49.44, 'basic', 13), (60.97, 'max', 45), (61.67, 'pro', 47),
  (66.06, 'basic', 38), (73.69, 'max', 5), (88.94, 'pro', 7), (92.83, 'pro', 43), (96.21, 'max', 35),
  (96.56, 'basic', 46), (100.00, 'pro', 32), (219.59, 'max', 12), (405.19, 'basic', 28), (452.09, 'max', 17),
  (484.8, 'plus', 40), (631.55, 'basic', 42), (744.74, 'pro', 29), (786.59, 'basic', 6), (819.08, 'plus', 36),
  (836.17, 'plus', 2), (873.62, 'basic', NULL), (979.26, 'pro', 3), (1381.09, 'pro', 16), (1466.18, 'plus', 1),
  (1583.7, 'pro', 29), (1657.53, 'max', 46), (2301.09, 'max', 6), (2804.51, 'plus', 46), (3164.53, 'pro', 30),
  (4290.52, 'pro', 45), (4631.96, 'pro', 30), (4711.86, 'plus', 49), (4968.39, 'max', 33);
SELECT * FROM rng_prices WHERE price = 9.99;
SELECT * FROM rng_prices WHERE price = 10;
SELECT price, label FROM rng_prices WHERE price IN (5.25, 100.00, 100.01) ORDER BY price;
SELECT price FROM rng_prices WHERE price >= 10 AND price < 100 ORDER BY price;
SELECT count(*), sum(stock), sum(price), avg(price) FROM rng_prices WHERE price > 50 AND price <= 2000;
SELECT label, count(*), sum(stock), min(price), max(price) FROM rng_prices GROUP BY label ORDER BY label;
SELECT label, count(*) FROM rng_prices GROUP BY label HAVING min(price) < 20 ORDER BY label;
SELECT price, stock FROM rng_prices ORDER BY stock DESC NULLS LAST, price DESC LIMIT 5 OFFSET 1;
UPDATE rng_prices SET price = price * 100 WHERE price = 5.25;
SELECT price, label FROM rng_prices WHERE price IN (5.25, 525) ORDER BY price;
DELETE FROM rng_prices WHERE price > 1000 RETURNING price;
SELECT count(*), max(price) FROM rng_prices;
CREATE TABLE tm_events (ts timestamp PRIMARY KEY, kind text NOT NULL, val int, amount numeric(10,2), src varchar(10)) /*fortress: WITH (strategy = 'time', shard_key = 'ts', interval = 'month') */;
INSERT INTO tm_events VALUES
  ('2022-01-07 02:00:00', 'view', 14, NULL, 'android'), ('2022-01-21 17:30:00', 'click', 38, 7.47, 'ios'), ('2022-01-28 13:30:00', 'buy', 48, 79.07, 'web'),
  ('2022-02-06 15:00:00', 'click', 47, 210.95, 'android'), ('2022-02-12 05:00:00', 'click', 16, 113, 'android'), ('2022-02-21 15:45:00', 'buy', 24, 140.26, 'web'),
  ('2022-03-18 02:15:00', 'view', 57, 19.32, 'android'), ('2022-03-20 09:00:00', 'buy', 60, 241.03, 'android'), ('2022-03-25 21:30:00', 'view', 20, 116.36, 'ios'),
  ('2022-04-02 16:00:00', 'view', NULL, NULL, NULL), ('2022-04-10 05:00:00', 'view', 46, 208.42, NULL), ('2022-04-28 15:30:00', 'buy', 7, NULL, 'web'),
  ('2022-05-09 14:45:00', 'buy', 52, 220.32, 'ios'), ('2022-05-18 20:30:00', 'refund', 42, 106.08, 'web'), ('2022-05-23 08:30:00', 'buy', 48, 213.05, 'web'),
  ('2022-06-08 04:15:00', 'view', 17, 200.46, 'web'), ('2022-06-15 17:30:00', 'view', 3, 239.87, 'ios'), ('2022-06-20 10:30:00', 'view', -4, 47.19, 'ios'),
  ('2022-07-04 01:00:00', 'view', NULL, 224.75, NULL), ('2022-07-25 11:15:00', 'click', 50, 43.82, 'web'), ('2022-07-26 15:30:00', 'refund', 16, 160.37, 'web'),
  ('2022-08-06 01:45:00', 'buy', -2, 11.84, 'web'), ('2022-08-09 01:15:00', 'view', 34, NULL, 'web'), ('2022-08-17 11:45:00', 'refund', 26, 238.99, 'ios'),
  ('2022-09-02 13:15:00', 'refund', -4, 49.66, 'ios'), ('2022-09-09 20:15:00', 'click', NULL, 48.82, 'ios'), ('2022-09-24 23:00:00', 'view', 30, 208.82, 'ios'),
  ('2022-10-15 06:45:00', 'buy', 22, 140.62, 'web'), ('2022-10-22 14:15:00', 'click', 9, 148.33, 'ios'), ('2022-10-27 19:30:00', 'buy', 19, 211.67, 'ios'),
  ('2022-11-04 01:45:00', 'click', 50, NULL, 'ios'), ('2022-11-06 05:00:00', 'buy', 29, 31.7, 'android'), ('2022-11-21 04:30:00', 'refund', 45, 181.94, 'ios'),
  ('2022-12-12 10:15:00', 'click', 28, 123.48, 'android'), ('2022-12-17 03:00:00', 'buy', 21, NULL, 'ios'), ('2022-12-19 16:15:00', 'refund', NULL, 247.39, 'ios');
INSERT INTO tm_events VALUES
  ('2023-01-07 00:45:00', 'buy', 34, 224.93, 'ios'), ('2023-01-13 04:30:00', 'refund', 37, 209.9, 'ios'), ('2023-01-19 10:00:00', 'click', 27, 205.61, 'android'),
  ('2023-02-16 17:45:00', 'view', 26, 26.03, 'android'), ('2023-02-18 21:15:00', 'click', 12, 111.9, 'android'), ('2023-02-25 02:30:00', 'view', 34, 237.28, NULL),
  ('2023-03-02 23:00:00', 'refund', 29, 66.66, 'web'), ('2023-03-03 12:15:00', 'view', 12, NULL, 'android'), ('2023-03-21 17:00:00', 'view', -2, 133.29, NULL),
  ('2023-04-01 04:30:00', 'refund', NULL, 190.77, 'ios'), ('2023-04-08 10:15:00', 'click', 46, 88.75, 'web'), ('2023-04-27 10:45:00', 'refund', 7, 95.63, 'android'),
  ('2023-05-11 18:15:00', 'click', 4, 211.46, 'android'), ('2023-05-13 09:15:00', 'click', 55, 222.44, 'web'), ('2023-05-28 03:45:00', 'buy', NULL, NULL, 'web'),
  ('2023-06-02 04:15:00', 'click', 30, 194.42, 'android'), ('2023-06-09 10:45:00', 'refund', 3, 170.87, 'web'), ('2023-06-11 03:30:00', 'click', 30, 109.23, 'android'),
  ('2023-07-02 07:15:00', 'click', 36, 41.6, 'ios'), ('2023-07-23 03:45:00', 'click', 51, 227.66, 'web'), ('2023-07-26 04:30:00', 'buy', 55, NULL, 'android'),
  ('2023-08-05 03:15:00', 'refund', 59, NULL, NULL), ('2023-08-09 09:00:00', 'click', 11, 187.19, NULL), ('2023-08-14 00:15:00', 'refund', 2, 143.23, 'ios'),
  ('2023-09-21 20:00:00', 'buy', 36, 180.56, 'web'), ('2023-09-25 11:15:00', 'click', NULL, 18.2, 'web'), ('2023-09-26 01:15:00', 'buy', 2, 108.84, 'web'),
  ('2023-10-10 20:15:00', 'view', 32, 203.15, NULL), ('2023-10-15 15:15:00', 'click', 13, 98.53, 'web'), ('2023-10-22 23:45:00', 'buy', 59, 228.95, 'ios'),
  ('2023-11-19 18:30:00', 'buy', NULL, 176.93, 'web'), ('2023-11-21 08:45:00', 'view', 26, 136.48, 'web'), ('2023-11-23 01:45:00', 'view', 41, 126.42, 'ios'),
  ('2023-12-04 21:30:00', 'buy', 2, 116.35, 'ios'), ('2023-12-15 04:00:00', 'buy', NULL, 230.46, 'ios'), ('2023-12-23 07:15:00', 'view', 34, 132.24, 'ios');
SELECT count(*), min(ts), max(ts) FROM tm_events;
SELECT * FROM tm_events WHERE ts = '2022-02-12 05:00:00';
SELECT ts, kind FROM tm_events WHERE ts IN ('2022-01-07 02:00:00', '2022-07-26 15:30:00', '2023-02-25 02:30:00', '2023-12-23 07:15:00') ORDER BY ts;
SELECT ts, kind, val FROM tm_events WHERE ts >= '2023-01-01' AND ts < '2023-02-01' ORDER BY ts;
SELECT ts FROM tm_events WHERE ts < '2022-03-01' ORDER BY ts DESC;
SELECT count(*), sum(val), sum(amount) FROM tm_events WHERE ts BETWEEN '2022-06-01' AND '2022-09-30 23:59:59';
SELECT ts, val FROM tm_events WHERE ts > '2023-11-15' ORDER BY ts;
SELECT ts, kind, amount FROM tm_events WHERE kind = 'refund' AND amount > 100 ORDER BY ts;
SELECT ts, src FROM tm_events WHERE src IS NULL ORDER BY ts;
SELECT kind, count(*), count(val), sum(val), avg(val), min(amount), max(amount) FROM tm_events GROUP BY kind ORDER BY kind;
SELECT src, kind, count(*) FROM tm_events GROUP BY src, kind ORDER BY src NULLS FIRST, kind;
SELECT CASE WHEN ts < '2023-01-01' THEN 2022 ELSE 2023 END AS yr, count(*), sum(val), sum(amount), count(DISTINCT kind) FROM tm_events GROUP BY 1 ORDER BY 1;
SELECT kind, sum(amount) AS total FROM tm_events WHERE ts >= '2022-07-01' GROUP BY kind HAVING sum(amount) > 500 ORDER BY total DESC, kind;
SELECT ts, val FROM tm_events ORDER BY ts DESC LIMIT 5;
SELECT ts, kind, val FROM tm_events ORDER BY kind, val DESC NULLS LAST, ts LIMIT 10 OFFSET 3;
SELECT ts, amount FROM tm_events WHERE ts >= '2022-10-01' ORDER BY amount NULLS FIRST, ts DESC LIMIT 6;
SELECT DISTINCT kind, src FROM tm_events WHERE ts < '2022-07-01' ORDER BY kind, src NULLS LAST;
SELECT count(*) FROM (SELECT DISTINCT src FROM tm_events) AS d;
UPDATE tm_events SET val = 1000 WHERE ts >= '2022-05-01' AND ts < '2022-06-01';
SELECT ts, val FROM tm_events WHERE val = 1000 ORDER BY ts;
UPDATE tm_events SET kind = 'archived' WHERE ts = '2022-03-20 09:00:00';
SELECT ts, kind FROM tm_events WHERE kind = 'archived';
DELETE FROM tm_events WHERE ts < '2022-03-01';
SELECT count(*), min(ts) FROM tm_events;
UPDATE tm_events SET ts = '2024-06-15 12:00:00' WHERE ts = '2022-04-10 05:00:00';
SELECT ts, kind, val FROM tm_events WHERE ts IN ('2022-04-10 05:00:00', '2024-06-15 12:00:00');
SELECT count(*), max(ts) FROM tm_events;
INSERT INTO tm_events VALUES ('2022-11-04 01:45:00', 'dup', 1, 1.00, 'web');
SELECT ts, val / (val - val) FROM tm_events WHERE ts = '2023-02-18 21:15:00' AND val IS NOT NULL;
CREATE TABLE tm_daily (day date PRIMARY KEY, temp_c int NOT NULL, rain numeric(5,1), station text NOT NULL) /*fortress: WITH (strategy = 'time', shard_key = 'day', interval = 'day') */;
INSERT INTO tm_daily VALUES
  ('2024-01-01', 3, NULL, 'south'), ('2024-01-02', 5, 21.2, 'south'), ('2024-01-03', 12, NULL, 'north'), ('2024-01-04', 9, 29, 'south'),
  ('2024-01-05', 5, 22.1, 'north'), ('2024-01-07', 10, 16, 'hill'), ('2024-01-08', 0, 17, 'north'), ('2024-01-09', -2, 13.2, 'north'),
  ('2024-01-10', 1, 19.2, 'south'), ('2024-01-11', 7, NULL, 'south'), ('2024-01-12', -2, 9.8, 'hill'), ('2024-01-13', -2, 27.4, 'hill'),
  ('2024-01-14', 4, NULL, 'north'), ('2024-01-15', 11, 4.9, 'south'), ('2024-01-16', -1, NULL, 'hill'), ('2024-01-17', 15, NULL, 'north'),
  ('2024-01-19', 3, 18.9, 'north'), ('2024-01-20', -7, 1.7, 'hill'), ('2024-01-21', 9, 10.9, 'south'), ('2024-01-22', 13, 3.5, 'south'),
  ('2024-01-23', 2, 16.1, 'north'), ('2024-01-24', 14, 14.8, 'north'), ('2024-01-25', 4, 28.4, 'hill'), ('2024-01-26', 10, NULL, 'north'),
  ('2024-01-27', 8, NULL, 'north'), ('2024-01-28', 14, 1.8, 'hill'), ('2024-01-29', 3, 12.4, 'south'), ('2024-01-30', 13, 12.5, 'hill'),
  ('2024-02-01', 9, 9.6, 'south'), ('2024-02-02', 8, 20.8, 'hill'), ('2024-02-03', 7, 22.5, 'north'), ('2024-02-04', 12, 12.4, 'hill'),
  ('2024-02-05', 12, 23.9, 'south'), ('2024-02-06', 2, 25, 'south'), ('2024-02-07', 9, 16.4, 'north'), ('2024-02-08', 2, 19.4, 'hill'),
  ('2024-02-09', 2, 8.8, 'south'), ('2024-02-10', 1, 1.2, 'south'), ('2024-02-11', -4, 2, 'south'), ('2024-02-12', 3, 15.3, 'hill'),
  ('2024-02-13', 9, NULL, 'south'), ('2024-02-14', 5, 10.3, 'south'), ('2024-02-15', 5, 2.3, 'south'), ('2024-02-16', 15, NULL, 'south'),
  ('2024-02-17', -3, NULL, 'south');
SELECT * FROM tm_daily WHERE day = '2024-01-10';
SELECT day, temp_c FROM tm_daily WHERE day IN ('2024-01-01', '2024-01-02', '2024-01-03', '2024-01-04', '2024-01-06') ORDER BY day;
SELECT count(*), min(temp_c), max(temp_c), sum(temp_c), avg(temp_c), sum(rain) FROM tm_daily WHERE day >= '2024-01-15' AND day <= '2024-02-05';
SELECT station, count(*), avg(rain), min(day), max(day) FROM tm_daily GROUP BY station ORDER BY station;
SELECT day, temp_c, rain FROM tm_daily ORDER BY temp_c DESC, rain DESC NULLS LAST, day LIMIT 5;
SELECT day FROM tm_daily WHERE temp_c < 0 AND day > '2024-01-20' ORDER BY day;
DELETE FROM tm_daily WHERE day BETWEEN '2024-01-08' AND '2024-01-11';
UPDATE tm_daily SET day = '2024-03-01' WHERE day = '2024-01-07';
SELECT count(*), max(day) FROM tm_daily WHERE day < '2024-01-15' OR day > '2024-02-17';
CREATE TABLE tm_yearly (day date PRIMARY KEY, total bigint NOT NULL, note text) /*fortress: WITH (strategy = 'time', shard_key = 'day', interval = 'year') */;
INSERT INTO tm_yearly VALUES
  ('2010-02-08', 694683065930, 'plan'), ('2010-08-21', 20893682595, 'plan'), ('2010-08-26', 649959129919, 'plan'), ('2011-06-01', 625293013129, NULL),
  ('2011-07-15', 212486975730, 'close'), ('2011-08-29', 66039131324, 'audit'), ('2012-04-24', 823277445560, 'close'), ('2012-09-17', 336067390004, NULL),
  ('2012-10-21', 654584530632, 'close'), ('2013-01-29', 106416963242, 'audit'), ('2013-05-04', 193637347858, 'audit'), ('2013-06-19', 210353744298, 'close'),
  ('2014-01-30', 797134417429, 'audit'), ('2014-08-12', 232846290724, 'audit'), ('2014-10-13', 234669681544, 'close'), ('2015-01-04', 182095808735, NULL),
  ('2015-01-11', 68482957328, NULL), ('2015-01-13', 866072598600, 'close'), ('2016-06-05', 997232477909, 'close'), ('2016-07-24', 749177752505, NULL),
  ('2016-09-12', 556451639554, NULL), ('2017-03-27', 443229166572, 'audit'), ('2017-04-23', 544216403997, NULL), ('2017-09-08', 72244727739, 'close'),
  ('2018-03-10', 990359096513, 'close'), ('2018-07-15', 724512742697, NULL), ('2018-10-23', 152395138383, NULL), ('2019-01-06', 898681972589, 'audit'),
  ('2019-04-02', 906766425900, 'plan'), ('2019-09-18', 945708157606, NULL), ('2020-01-31', 496464314562, 'audit'), ('2020-04-11', 482523745610, 'plan'),
  ('2020-06-07', 873773958611, 'close'), ('2021-05-06', 85712148219, NULL), ('2021-07-28', 135135638230, NULL), ('2021-10-09', 454713729385, 'plan'),
  ('2022-01-03', 610180110980, NULL), ('2022-06-25', 339122823301, 'audit'), ('2022-09-13', 285796416219, NULL), ('2023-01-15', 697532957347, 'close'),
  ('2023-05-06', 181610975465, 'plan'), ('2023-06-30', 18582988850, 'plan'), ('2024-02-26', 319853872360, 'audit'), ('2024-05-02', 693288462620, 'close'),
  ('2024-08-22', 823155694125, 'audit');
SELECT count(*), sum(total), min(total), max(total), avg(total) FROM tm_yearly;
SELECT day, total FROM tm_yearly WHERE day >= '2013-01-01' AND day < '2016-01-01' ORDER BY day;
SELECT note, count(*), sum(total) FROM tm_yearly WHERE day > '2011-06-30' GROUP BY note ORDER BY note NULLS FIRST;
SELECT day, note FROM tm_yearly ORDER BY note DESC NULLS FIRST, day DESC LIMIT 5 OFFSET 4;
UPDATE tm_yearly SET total = total + 1 WHERE day < '2012-01-01';
SELECT day, total FROM tm_yearly WHERE day < '2012-01-01' ORDER BY day;
SELECT count(*) FROM rng_days d JOIN tm_daily t ON t.day = d.day;
SELECT d.day, d.visits, t.day AS yday, t.total FROM rng_days d JOIN tm_yearly t ON t.day < d.day WHERE d.day < '2023-02-01' AND t.day > '2023-01-01' ORDER BY d.day, t.day;
DROP TABLE rng_orders, rng_names, rng_days, rng_prices, tm_events, tm_daily, tm_yearly;
