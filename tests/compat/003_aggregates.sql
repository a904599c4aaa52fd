-- Aggregates, GROUP BY, HAVING and DISTINCT over rows on every shard.
CREATE TABLE sales (id int PRIMARY KEY, region text NOT NULL, item text, qty int, price numeric(8,2), weight float8);
INSERT INTO sales VALUES
  (1, 'north', 'apple', 10, 1.50, 0.5),
  (2, 'north', 'pear', 3, 2.25, 1.5),
  (3, 'south', 'apple', 7, 1.55, 0.25),
  (4, 'south', 'plum', NULL, 3.00, NULL),
  (5, 'east', 'apple', 1, 1.40, 2.0),
  (6, 'east', 'pear', 8, NULL, 1.0),
  (7, 'west', 'fig', 2, 4.10, 0.75),
  (8, 'north', 'apple', 5, 1.50, 0.5),
  (9, 'south', 'fig', 4, 4.00, 1.25),
  (10, 'west', 'plum', 6, 2.90, 3.5);
SELECT count(*), count(qty), count(price), count(DISTINCT item), count(DISTINCT region) FROM sales;
SELECT sum(qty), sum(price), sum(weight), avg(qty), avg(price), avg(weight) FROM sales;
SELECT min(qty), max(qty), min(item), max(item), min(price), max(weight) FROM sales;
SELECT sum(DISTINCT qty), avg(DISTINCT price) FROM sales;
SELECT region, count(*) FROM sales GROUP BY region ORDER BY region;
SELECT region, sum(qty) AS total, avg(qty) FROM sales GROUP BY region ORDER BY total DESC;
SELECT item, count(*), sum(qty * price) FROM sales GROUP BY item ORDER BY 1;
SELECT region, item, count(*) FROM sales GROUP BY region, item ORDER BY region, item;
SELECT region FROM sales GROUP BY region HAVING count(*) > 2 ORDER BY region;
SELECT region, max(price) - min(price) AS spread FROM sales GROUP BY region HAVING sum(qty) >= 10 ORDER BY spread;
SELECT item, count(*) AS n FROM sales GROUP BY item HAVING count(*) = 1;
SELECT count(*) FROM sales WHERE qty > 100;
SELECT sum(qty), avg(qty), min(qty), max(qty) FROM sales WHERE qty > 100;
SELECT region, count(*) FROM sales WHERE qty > 100 GROUP BY region;
SELECT count(*) + 1, sum(qty) / count(qty) FROM sales;
SELECT upper(region) AS r, count(*) FROM sales GROUP BY upper(region) ORDER BY r;
SELECT region, count(*) FROM sales GROUP BY 1 ORDER BY 2 DESC, 1;
SELECT qty > 5 AS big, count(*) FROM sales GROUP BY qty > 5 ORDER BY 1;
SELECT DISTINCT region FROM sales ORDER BY region;
SELECT DISTINCT item, region FROM sales ORDER BY item, region;
SELECT DISTINCT qty IS NULL FROM sales;
SELECT count(*) FROM (SELECT DISTINCT item FROM sales) AS d;
SELECT region, count(DISTINCT item) FROM sales GROUP BY region ORDER BY region;
SELECT CASE WHEN qty >= 5 THEN 'many' ELSE 'few' END AS size, count(*) FROM sales GROUP BY 1 ORDER BY 1;
SELECT region, item FROM sales GROUP BY region;
SELECT region, count(*) FROM sales;
SELECT sum(item) FROM sales;
SELECT * FROM sales WHERE count(*) > 1;
SELECT sum(count(*)) FROM sales;
SELECT DISTINCT region FROM sales ORDER BY qty;
SELECT avg(x) FROM (SELECT 1 AS x UNION ALL SELECT 2) s;
SELECT max(region) FROM sales GROUP BY item ORDER BY 1 LIMIT 2;
SELECT item, sum(qty) FROM sales GROUP BY item ORDER BY sum(qty) DESC NULLS LAST LIMIT 3 OFFSET 1;
DROP TABLE sales;
