-- Correlated subqueries in WHERE: EXISTS, NOT EXISTS, IN and scalar.
CREATE TABLE cust (id int PRIMARY KEY, name text, region text);
CREATE TABLE ord (id int PRIMARY KEY, cust_id int, amount int, status text);
INSERT INTO cust VALUES (1, 'ann', 'n'), (2, 'bob', 's'), (3, 'cid', 'n'), (4, 'dee', 'e'), (5, 'eve', NULL);
INSERT INTO ord VALUES (10, 1, 50, 'paid'), (11, 1, 20, 'open'), (12, 2, 70, 'paid'), (13, 3, 5, 'open'), (14, 9, 1, 'paid'), (15, NULL, 3, 'open');
SELECT name FROM cust c WHERE EXISTS (SELECT 1 FROM ord o WHERE o.cust_id = c.id) ORDER BY name;
SELECT name FROM cust c WHERE NOT EXISTS (SELECT 1 FROM ord o WHERE o.cust_id = c.id) ORDER BY name;
SELECT name FROM cust c WHERE EXISTS (SELECT 1 FROM ord o WHERE o.cust_id = c.id AND o.status = 'paid') ORDER BY name;
SELECT name FROM cust c WHERE (SELECT sum(amount) FROM ord o WHERE o.cust_id = c.id) > 30 ORDER BY name;
SELECT name FROM cust c WHERE (SELECT count(*) FROM ord o WHERE o.cust_id = c.id) = 0 ORDER BY name;
SELECT name FROM cust c WHERE 'paid' IN (SELECT status FROM ord o WHERE o.cust_id = c.id) ORDER BY name;
SELECT o.id FROM ord o WHERE o.amount > (SELECT avg(amount) FROM ord o2 WHERE o2.status = o.status) ORDER BY 1;
SELECT o.id FROM ord o WHERE EXISTS (SELECT 1 FROM cust c WHERE c.id = o.cust_id AND c.region = 'n') ORDER BY 1;
SELECT c.region, count(*) FROM cust c WHERE EXISTS (SELECT 1 FROM ord o WHERE o.cust_id = c.id) GROUP BY c.region ORDER BY 1;
SELECT name FROM cust c WHERE (SELECT amount FROM ord o WHERE o.cust_id = c.id) > 10 ORDER BY name;
SELECT name FROM cust c WHERE c.region = 'n' AND NOT EXISTS (SELECT 1 FROM ord o WHERE o.cust_id = c.id AND o.status = 'open') ORDER BY name;
SELECT name FROM cust WHERE EXISTS (SELECT 1 FROM ord WHERE ord.cust_id = cust.id AND amount > 60);
DROP TABLE cust, ord;
