-- List- and hybrid-sharded tables plus replicated reference tables: lookups by
-- list value, ranges over the list column, ordering, aggregates, joins and
-- DML that moves rows between shards. Sharding options are in fortress comments.
CREATE TABLE ref_regions (code text PRIMARY KEY, name text NOT NULL, currency varchar(3) NOT NULL, vat numeric(4,3)) /*fortress: WITH (replicated = true) */;
INSERT INTO ref_regions VALUES
  ('eu', 'Europe', 'EUR', 0.200), ('us', 'United States', 'USD', 0.070), ('apac', 'Asia Pacific', 'SGD', 0.090), ('latam', 'Latin America', 'BRL', 0.170), ('mena', 'Middle East', 'AED', NULL);
CREATE TABLE ref_tiers (tier text PRIMARY KEY, discount numeric(4,2) NOT NULL, lvl int NOT NULL) /*fortress: WITH (replicated = true) */;
INSERT INTO ref_tiers VALUES
  ('gold', 0.15, 1), ('silver', 0.10, 2), ('bronze', 0.05, 3), ('iron', 0.00, 4);
SELECT * FROM ref_regions ORDER BY code;
SELECT code, currency FROM ref_regions WHERE vat > 0.1 ORDER BY vat DESC, code;
SELECT count(*), count(vat), sum(vat), max(vat) FROM ref_regions;
CREATE TABLE lst_customers (region text NOT NULL, id int NOT NULL, name text NOT NULL, tier text, balance numeric(10,2), visits int, since date, vip boolean NOT NULL, PRIMARY KEY (region, id)) /*fortress: WITH (strategy = 'list', shard_key = 'region', list = 'eu:0; us:1; apac:2; latam:3') */;
INSERT INTO lst_customers VALUES
  ('us', 1, 'ben1', 'silver', 36.39, 20, '2023-06-11', false), ('eu', 2, 'cai2', 'silver', 1830.64, 11, '2021-10-25', false),
  ('apac', 3, 'dua3', 'silver', 1367.38, 28, '2020-02-22', false), ('latam', 4, 'eli4', 'gold', 431.28, 9, '2021-12-21', false),
  ('us', 5, 'fay5', 'bronze', 1897.72, 32, '2019-01-31', true), ('latam', 6, 'gus6', 'silver', 1739.78, 6, '2021-03-16', false),
  ('apac', 7, 'hal7', 'gold', 632.95, 16, '2021-09-08', false), ('eu', 8, 'ivy8', 'bronze', 1732.52, 13, '2023-10-09', false),
  ('us', 9, 'jon9', 'gold', 1626.84, 37, '2022-02-16', false), ('us', 10, 'kai10', NULL, NULL, NULL, '2023-07-22', false),
  ('apac', 11, 'lea11', 'bronze', 1188.8, 6, '2019-05-04', false), ('eu', 12, 'max12', 'gold', 1850.15, 35, '2019-02-10', true),
  ('latam', 13, 'nia13', 'bronze', 1229.19, 29, '2022-07-26', true), ('apac', 14, 'oto14', 'gold', 848.73, 35, '2022-06-09', false),
  ('eu', 15, 'pia15', 'gold', 1591.03, 27, '2023-08-05', false), ('eu', 16, 'ana16', 'silver', 1422.96, 23, '2019-04-10', false),
  ('us', 17, 'ben17', 'silver', 896.83, 2, '2021-08-29', false), ('latam', 18, 'cai18', 'bronze', 883.97, 23, '2021-01-22', false),
  ('us', 19, 'dua19', 'bronze', 280.84, 23, '2022-12-25', false), ('eu', 20, 'eli20', 'silver', 999.31, 23, '2023-04-30', false),
  ('latam', 21, 'fay21', 'bronze', NULL, 21, '2021-08-03', true), ('apac', 22, 'gus22', 'gold', 1434.68, 27, '2021-10-07', false),
  ('eu', 23, 'hal23', 'silver', 1532.92, 24, '2023-05-21', false), ('us', 24, 'ivy24', 'silver', 1038.66, 18, '2021-01-21', false),
  ('us', 25, 'jon25', NULL, 1003.95, 11, '2022-06-07', false), ('apac', 26, 'kai26', 'silver', 1894.29, 19, '2021-08-25', false),
  ('us', 27, 'lea27', 'silver', 357, 38, '2023-10-06', false), ('apac', 28, 'max28', 'silver', 1941.39, 30, '2021-08-02', false),
  ('latam', 29, 'nia29', 'bronze', 611.67, NULL, '2020-10-20', false), ('latam', 30, 'oto30', 'bronze', 431.61, 29, '2019-11-09', false),
  ('eu', 31, 'pia31', 'silver', 40.5, 3, '2022-03-02', false), ('apac', 32, 'ana32', 'gold', 1183.23, 34, '2023-01-06', false);
INSERT INTO lst_customers VALUES
  ('us', 33, 'ben33', 'gold', 1385.1, 25, '2023-04-01', false), ('us', 34, 'cai34', NULL, 766.18, 19, '2022-05-18', true),
  ('us', 35, 'dua35', 'gold', 624.72, 14, '2021-11-26', false), ('us', 36, 'eli36', NULL, 35.3, 1, '2023-05-25', false),
  ('apac', 37, 'fay37', 'gold', NULL, 9, '2019-03-22', false), ('latam', 38, 'gus38', 'bronze', 1869.71, 31, '2021-07-26', false),
  ('latam', 39, 'hal39', 'silver', 1475.98, 30, '2021-12-18', false), ('apac', 40, 'ivy40', 'bronze', 532.11, 21, '2022-11-07', false),
  ('latam', 41, 'jon41', 'bronze', 1918.87, NULL, '2022-06-24', false), ('eu', 42, 'kai42', 'silver', 287.07, 36, '2019-12-27', false),
  ('latam', 43, 'lea43', 'bronze', 1440.53, 4, '2019-12-10', false), ('apac', 44, 'max44', 'gold', 1113.28, 38, '2023-03-21', false),
  ('us', 45, 'nia45', 'silver', 1480.39, 40, '2023-03-30', false), ('eu', 46, 'oto46', 'gold', 252.76, 20, '2022-07-05', false),
  ('latam', 47, 'pia47', 'bronze', 1878.56, 37, '2020-06-27', false), ('us', 48, 'ana48', 'bronze', 1271.5, NULL, '2021-10-08', true),
  ('apac', 49, 'ben49', 'silver', 1802.07, 33, '2020-03-21', false), ('eu', 50, 'cai50', NULL, 1444.62, NULL, '2020-06-20', false),
  ('eu', 51, 'dua51', 'bronze', NULL, 9, '2022-02-15', true), ('eu', 52, 'eli52', NULL, 198.9, 34, '2021-08-02', false),
  ('latam', 53, 'fay53', 'bronze', 409.83, 37, '2022-05-01', false), ('latam', 54, 'gus54', 'gold', 1308.07, 33, '2023-08-24', false),
  ('apac', 55, 'hal55', 'silver', NULL, NULL, '2019-11-29', false), ('eu', 56, 'ivy56', 'gold', 1201.26, 30, '2021-05-23', false),
  ('eu', 57, 'jon57', NULL, 1248.29, 32, '2022-04-01', true), ('apac', 58, 'kai58', 'bronze', 1406.4, 32, '2022-08-31', true),
  ('us', 59, 'lea59', 'gold', 388.94, 28, '2022-09-05', false), ('eu', 60, 'max60', 'gold', 1209.6, 35, '2019-04-29', false),
  ('eu', 61, 'nia61', 'gold', 443.93, 33, '2019-07-16', false), ('eu', 62, 'oto62', 'gold', 107.9, 8, '2022-04-23', false),
  ('latam', 63, 'pia63', 'silver', 1861.22, 14, '2022-12-09', false), ('apac', 64, 'ana64', 'bronze', 433.13, 2, '2019-06-02', false);
SELECT region, count(*) FROM lst_customers GROUP BY region ORDER BY region;
SELECT * FROM lst_customers WHERE region = 'eu' AND id = 2;
SELECT id, name FROM lst_customers WHERE region = 'us' ORDER BY id;
SELECT region, id, name FROM lst_customers WHERE region IN ('apac', 'latam') AND visits > 20 ORDER BY region, id;
SELECT region, id FROM lst_customers WHERE region IN ('mena', 'eu') AND id < 20 ORDER BY id;
SELECT count(*) FROM lst_customers WHERE region = 'mena';
SELECT region, id FROM lst_customers WHERE id = 9;
SELECT region, id, name FROM lst_customers WHERE id IN (15, 7, 21, 999) ORDER BY id;
SELECT region, id FROM lst_customers WHERE region < 'f' AND balance > 1500 ORDER BY region, id;
SELECT region, count(*), sum(balance) FROM lst_customers WHERE region >= 'latam' GROUP BY region ORDER BY region;
SELECT region, id FROM lst_customers WHERE region BETWEEN 'b' AND 'm' AND vip ORDER BY region DESC, id;
SELECT DISTINCT region FROM lst_customers WHERE region > 'apac' AND region < 'us' ORDER BY region;
SELECT region, id, tier FROM lst_customers WHERE tier IS NULL ORDER BY region, id;
SELECT region, id, since FROM lst_customers WHERE since < '2019-06-01' ORDER BY since, region, id;
SELECT region, id, balance FROM lst_customers WHERE balance BETWEEN 100 AND 300 OR visits = 0 ORDER BY balance NULLS FIRST, region, id;
SELECT region, id, balance FROM lst_customers ORDER BY region, balance DESC NULLS LAST, id LIMIT 12;
SELECT region, id, tier, visits FROM lst_customers ORDER BY tier NULLS FIRST, visits DESC NULLS FIRST, region, id LIMIT 10 OFFSET 6;
SELECT name, since FROM lst_customers ORDER BY since DESC, name LIMIT 5 OFFSET 50;
SELECT region, id FROM lst_customers WHERE vip ORDER BY region DESC, id DESC LIMIT 4;
SELECT count(*), count(tier), count(balance), count(DISTINCT tier), count(DISTINCT region), sum(visits), sum(balance), avg(balance), min(since), max(since) FROM lst_customers;
SELECT region, count(*), count(tier), sum(balance), avg(visits), min(balance), max(balance) FROM lst_customers GROUP BY region ORDER BY region;
SELECT tier, count(*), sum(balance), avg(balance) FROM lst_customers GROUP BY tier ORDER BY tier NULLS LAST;
SELECT region, tier, count(*), max(visits) FROM lst_customers GROUP BY region, tier ORDER BY region, tier NULLS FIRST;
SELECT region, sum(balance) FROM lst_customers GROUP BY region HAVING sum(balance) > 8000 ORDER BY region;
SELECT tier, region, count(*) AS n FROM lst_customers WHERE vip = false GROUP BY tier, region HAVING count(*) >= 3 ORDER BY n DESC, tier NULLS LAST, region;
SELECT region, avg(balance) AS avg_bal FROM lst_customers GROUP BY region ORDER BY avg_bal DESC, region LIMIT 2;
SELECT vip, count(*), count(DISTINCT region) FILTER (WHERE balance > 1000) FROM lst_customers GROUP BY vip ORDER BY vip;
SELECT DISTINCT tier FROM lst_customers ORDER BY tier NULLS FIRST;
SELECT DISTINCT region, vip FROM lst_customers ORDER BY region, vip;
SELECT c.region, r.name, r.currency, count(*) FROM lst_customers c JOIN ref_regions r ON r.code = c.region GROUP BY c.region, r.name, r.currency ORDER BY c.region;
SELECT r.code, count(c.id), coalesce(sum(c.balance), 0) FROM ref_regions r LEFT JOIN lst_customers c ON c.region = r.code GROUP BY r.code ORDER BY r.code;
SELECT c.region, c.id, c.balance, c.balance * (1 - t.discount) AS net FROM lst_customers c JOIN ref_tiers t ON t.tier = c.tier WHERE c.region = 'latam' ORDER BY c.id;
SELECT c.region, c.id, t.lvl FROM lst_customers c LEFT JOIN ref_tiers t ON t.tier = c.tier WHERE c.region = 'apac' ORDER BY t.lvl NULLS LAST, c.id;
SELECT t.tier, count(c.id) AS n FROM ref_tiers t LEFT JOIN lst_customers c ON c.tier = t.tier AND c.vip GROUP BY t.tier ORDER BY t.tier;
SELECT region, id FROM lst_customers WHERE region IN (SELECT code FROM ref_regions WHERE vat > 0.1) AND visits > 30 ORDER BY region, id;
SELECT code FROM ref_regions r WHERE NOT EXISTS (SELECT 1 FROM lst_customers c WHERE c.region = r.code);
UPDATE lst_customers SET balance = balance + 100 WHERE region = 'eu';
SELECT id, balance FROM lst_customers WHERE region = 'eu' ORDER BY id;
UPDATE lst_customers SET tier = 'iron' WHERE region = 'us' AND id = 9 RETURNING region, id, tier;
UPDATE lst_customers SET visits = coalesce(visits, 0) * 2 WHERE region > 'l';
SELECT region, sum(visits) FROM lst_customers GROUP BY region ORDER BY region;
DELETE FROM lst_customers WHERE region = 'apac' AND visits < 10;
SELECT region, count(*) FROM lst_customers GROUP BY region ORDER BY region;
UPDATE lst_customers SET region = 'apac' WHERE region = 'eu' AND id = 2;
SELECT region, id, name, balance FROM lst_customers WHERE id = 2;
SELECT count(*) FROM lst_customers WHERE region = 'eu' AND id = 2;
UPDATE lst_customers SET region = 'latam' WHERE region = 'us' AND vip;
SELECT region, count(*), sum(balance) FROM lst_customers GROUP BY region ORDER BY region;
SELECT region, id FROM lst_customers WHERE region = 'us' AND vip;
INSERT INTO lst_customers (region, id, name, vip) VALUES ('latam', 21, 'dup', false);
SELECT region, id, name FROM lst_customers WHERE region = 'latam' AND id = 21;
SELECT region, balance / (visits - visits) FROM lst_customers WHERE region = 'eu' AND visits IS NOT NULL;
SELECT region, nope FROM lst_customers;
CREATE TABLE lst_stores (country varchar(2) NOT NULL, store_id int NOT NULL, city text NOT NULL, opened date, sqm int, revenue numeric(12,2), PRIMARY KEY (country, store_id)) /*fortress: WITH (strategy = 'list', shard_key = 'country', list = 'de:0; fr:1; us:2', default_shard = 3) */;
INSERT INTO lst_stores VALUES
  ('de', 105, 'hamburg', '2015-01-08', 1655, 534201.56), ('fr', 113, 'paris', '2016-04-17', NULL, 80493.28), ('us', 115, 'denver', '2012-09-21', 2171, NULL),
  ('br', 116, 'recife', NULL, 2158, 393035.16), ('jp', 124, 'kobe', '2012-02-18', 703, 307352.78), ('au', 127, 'hobart', '2021-04-10', 178, 512834.05),
  ('de', 135, 'berlin', '2019-08-30', 1409, 242581.21), ('fr', 137, 'nice', '2013-12-12', 1476, 111239.9), ('us', 141, 'denver', NULL, 733, 389729.33),
  ('br', 144, 'recife', '2010-07-09', 2177, 454052.61), ('jp', 148, 'osaka', '2012-05-27', 1203, 592643.08), ('au', 152, 'hobart', NULL, NULL, 279725.66),
  ('de', 155, 'munich', '2021-10-31', NULL, 17378.72), ('fr', 160, 'lyon', '2018-05-06', 684, 889402.96), ('us', 163, 'boston', '2015-03-06', 1873, NULL),
  ('br', 164, 'santos', '2020-09-19', NULL, 734258.54), ('jp', 171, 'osaka', '2020-12-28', 2074, 722561.4), ('au', 177, 'perth', '2016-01-21', 948, 473130.61),
  ('de', 183, 'munich', NULL, 1028, 510728.46), ('fr', 189, 'lyon', '2011-03-28', 1641, 464013.1), ('us', 198, 'boston', '2021-01-02', 1131, 662799.64),
  ('br', 207, 'santos', '2013-05-26', 2025, 855658.63), ('jp', 215, 'kobe', NULL, 175, 704120.87), ('au', 218, 'perth', '2010-11-01', 596, 806221.11),
  ('de', 222, 'munich', '2019-03-08', 1556, 530819.15), ('fr', 226, 'paris', '2017-05-21', 1375, 788081.93), ('us', 231, 'austin', '2018-04-15', 674, 703974.48),
  ('br', 233, 'recife', '2011-12-05', 1362, 232234.16), ('jp', 235, 'kobe', '2013-02-28', NULL, 549795.66), ('au', 242, 'hobart', NULL, 1672, NULL),
  ('de', 245, 'berlin', '2011-08-07', 919, 838665.57), ('fr', 252, 'paris', '2016-04-18', 564, 766791.76), ('us', 261, 'boston', '2012-08-26', 270, NULL),
  ('br', 270, 'recife', '2018-08-04', 1610, 633693.37), ('jp', 272, 'osaka', '2014-04-17', 1507, 96548.54), ('au', 280, 'hobart', '2012-01-16', 1644, 794522.48),
  ('de', 284, 'munich', NULL, 938, 502963.7), ('fr', 287, 'nice', '2010-11-30', 1031, 221196.08), ('us', 289, 'denver', '2023-07-05', 1934, 634135.54),
  ('br', 295, 'santos', '2018-09-27', 725, NULL), ('jp', 300, 'osaka', '2020-01-04', 1161, 751895.63), ('au', 305, 'perth', '2015-06-23', 1589, 783704.23),
  ('de', 306, 'munich', '2021-07-05', NULL, 746448.75), ('fr', 315, 'lyon', '2016-06-21', 406, 709159.17), ('us', 316, 'austin', '2010-03-13', 1617, 47871.27),
  ('br', 318, 'santos', NULL, 2404, NULL), ('jp', 321, 'osaka', '2017-02-05', 407, NULL), ('au', 329, 'hobart', '2021-06-26', 407, 507488.04),
  ('de', 331, 'hamburg', '2017-01-09', 1570, 589509.13), ('fr', 340, 'lyon', '2022-10-19', 160, NULL);
SELECT country, count(*), sum(sqm), sum(revenue) FROM lst_stores GROUP BY country ORDER BY country;
SELECT * FROM lst_stores WHERE country = 'br' AND store_id = 164;
SELECT country, store_id, city FROM lst_stores WHERE country = 'jp' ORDER BY store_id;
SELECT country, store_id FROM lst_stores WHERE country IN ('au', 'de') AND sqm > 1000 ORDER BY country, store_id;
SELECT country, store_id, city FROM lst_stores WHERE country NOT IN ('de', 'fr', 'us') AND city <> 'perth' ORDER BY store_id;
SELECT count(*) FROM lst_stores WHERE country > 'd' AND country < 'g';
SELECT city, count(*), min(opened), max(opened), avg(sqm) FROM lst_stores GROUP BY city HAVING count(*) > 2 ORDER BY city;
SELECT country, store_id, revenue FROM lst_stores ORDER BY revenue DESC NULLS LAST, store_id LIMIT 5;
SELECT country, store_id, opened FROM lst_stores WHERE opened IS NOT NULL ORDER BY opened, store_id LIMIT 6 OFFSET 3;
SELECT country, max(revenue) - min(revenue) AS spread FROM lst_stores GROUP BY country ORDER BY spread DESC NULLS LAST, country LIMIT 3;
SELECT DISTINCT country, city FROM lst_stores WHERE store_id > 200 ORDER BY country, city;
UPDATE lst_stores SET country = 'au' WHERE country = 'de' AND store_id = 135;
UPDATE lst_stores SET country = 'fr', city = 'lille' WHERE country = 'br' AND store_id = 164;
SELECT country, store_id, city FROM lst_stores WHERE store_id IN (135, 164) ORDER BY store_id;
SELECT country, count(*) FROM lst_stores GROUP BY country ORDER BY country;
DELETE FROM lst_stores WHERE country = 'jp' OR sqm < 200;
SELECT country, count(*), count(sqm) FROM lst_stores GROUP BY country ORDER BY country;
CREATE TABLE hyb_accounts (region text NOT NULL, id int NOT NULL, owner text NOT NULL, kind text NOT NULL, balance numeric(12,2), opened date, flags int, PRIMARY KEY (region, id)) /*fortress: WITH (strategy = 'hybrid', shard_key = 'region', hash_key = 'id', list = 'eu:0,1; us:2,3') */;
INSERT INTO hyb_accounts VALUES
  ('eu', 11, 'ben_eu', 'checking', 1635.5, '2021-10-28', 1), ('us', 23, 'cai_us', 'savings', 10550.02, '2021-07-29', 6), ('eu', 31, 'dua_eu', 'savings', 10724.41, '2016-11-21', 2),
  ('us', 41, 'eli_us', 'checking', -485.18, '2019-11-20', 7), ('eu', 52, 'fay_eu', 'savings', 9771.16, '2020-03-03', 6), ('us', 60, 'gus_us', 'savings', 2394.39, '2020-08-04', 3),
  ('eu', 73, 'hal_eu', 'savings', 16964.93, '2019-10-05', 6), ('us', 83, 'ivy_us', 'checking', 2567.93, '2021-05-14', NULL), ('eu', 92, 'jon_eu', 'savings', 18164.79, '2021-01-03', 4),
  ('us', 104, 'kai_us', 'checking', 9877.77, '2020-01-18', 3), ('eu', 115, 'lea_eu', 'checking', -257.28, '2020-08-06', 2), ('us', 122, 'max_us', 'checking', 4052.19, '2020-07-02', 6),
  ('eu', 133, 'nia_eu', 'loan', 18413.68, '2015-04-04', 0), ('us', 141, 'oto_us', 'loan', 5327.93, '2017-11-14', 1), ('eu', 153, 'pia_eu', 'loan', 1567.35, '2016-01-10', NULL),
  ('us', 160, 'ana_us', 'savings', 4846.72, '2021-05-29', 7), ('eu', 172, 'ben_eu', 'savings', 11602.19, '2016-05-30', 5), ('us', 182, 'cai_us', 'checking', 7300.74, '2019-05-16', 4),
  ('eu', 195, 'dua_eu', 'savings', 17246.26, '2017-08-06', 2), ('eu', 201, 'eli_eu', 'loan', 15176.08, '2021-09-06', 5), ('eu', 210, 'fay_eu', 'savings', 2162.32, '2015-07-09', 7),
  ('us', 220, 'gus_us', 'checking', -272.25, '2020-09-23', 4), ('eu', 232, 'hal_eu', 'loan', 16615.25, '2018-10-23', NULL), ('us', 244, 'ivy_us', 'savings', 13411.42, '2022-07-13', 1),
  ('eu', 255, 'jon_eu', 'loan', -422.57, '2016-09-17', NULL), ('us', 264, 'kai_us', 'checking', 1103.44, '2019-10-24', 3), ('eu', 270, 'lea_eu', 'checking', 3595.64, '2021-12-08', 2),
  ('us', 283, 'max_us', 'loan', 12282.59, '2021-01-19', NULL), ('eu', 294, 'nia_eu', 'savings', 1666.26, '2019-10-13', NULL), ('us', 303, 'oto_us', 'savings', 14967.21, '2015-08-07', 5);
INSERT INTO hyb_accounts VALUES
  ('eu', 314, 'pia_eu', 'loan', -228.8, '2022-01-04', 3), ('us', 323, 'ana_us', 'savings', NULL, '2017-06-22', NULL), ('eu', 333, 'ben_eu', 'loan', 16700.67, '2021-02-02', 3),
  ('us', 341, 'cai_us', 'loan', 14379.31, '2020-02-03', NULL), ('eu', 353, 'dua_eu', 'savings', 12736.38, '2023-02-06', 1), ('us', 361, 'eli_us', 'loan', NULL, '2020-11-13', 5),
  ('eu', 373, 'fay_eu', 'checking', NULL, '2022-08-10', 2), ('us', 382, 'gus_us', 'checking', 6153.12, '2017-02-03', 6), ('eu', 391, 'hal_eu', 'savings', 13619.56, '2021-11-08', 3),
  ('eu', 404, 'ivy_eu', 'savings', 17810.88, '2017-04-02', 1), ('eu', 414, 'jon_eu', 'loan', 7667.56, '2017-08-16', NULL), ('us', 425, 'kai_us', 'loan', NULL, '2016-09-30', 6),
  ('eu', 430, 'lea_eu', 'checking', 13215.38, '2016-09-10', 6), ('us', 443, 'max_us', 'checking', 13219.34, '2019-12-24', 3), ('eu', 451, 'nia_eu', 'savings', 1571.62, '2022-07-18', 3),
  ('us', 465, 'oto_us', 'checking', 7296.05, '2020-07-07', 0), ('eu', 470, 'pia_eu', 'savings', 13818.28, '2020-02-28', 0), ('us', 482, 'ana_us', 'loan', 11813.07, '2022-06-06', 5),
  ('eu', 491, 'ben_eu', 'loan', 396.06, '2021-07-11', NULL), ('us', 501, 'cai_us', 'loan', 19421.38, '2016-09-18', NULL), ('eu', 514, 'dua_eu', 'loan', -334.4, '2022-09-23', 1),
  ('us', 521, 'eli_us', 'savings', 713.27, '2021-02-05', 5), ('eu', 534, 'fay_eu', 'loan', 7029.47, '2020-09-08', 0), ('us', 540, 'gus_us', 'checking', 19869.97, '2022-08-17', 1),
  ('eu', 553, 'hal_eu', 'loan', 9564.66, '2018-09-09', 5), ('us', 564, 'ivy_us', 'loan', 1479.07, '2020-04-02', 6), ('eu', 571, 'jon_eu', 'savings', 3444.09, '2016-07-01', 2),
  ('us', 582, 'kai_us', 'savings', 6247.56, '2021-04-18', NULL), ('eu', 594, 'lea_eu', 'checking', 15471.88, '2015-09-13', 0), ('us', 603, 'max_us', 'loan', 15030.3, '2016-11-09', 2);
CREATE TABLE hyb_txns (region text NOT NULL, acct int NOT NULL, seq int NOT NULL, amount numeric(10,2) NOT NULL, memo text, PRIMARY KEY (region, acct, seq)) /*fortress: WITH (strategy = 'hybrid', shard_key = 'region', hash_key = 'acct', list = 'eu:0,1; us:2,3') */;
INSERT INTO hyb_txns VALUES
  ('eu', 11, 1, -76.76, 'rent'), ('us', 23, 1, 606.53, NULL), ('us', 23, 2, 633.04, 'fee'),
  ('eu', 31, 1, -190.14, 'fee'), ('us', 41, 1, 774.12, 'fee'), ('eu', 52, 1, 687.24, 'rent'),
  ('eu', 52, 2, 35.58, 'food'), ('us', 60, 1, 46.45, 'food'), ('us', 83, 1, 236.77, 'rent'),
  ('us', 83, 2, 709.73, 'salary'), ('us', 104, 1, 747.31, 'food'), ('us', 104, 2, -43.28, 'food'),
  ('us', 104, 3, 631.45, 'fee'), ('eu', 115, 1, 265.03, 'fee'), ('us', 122, 1, 392.15, 'fee'),
  ('us', 122, 2, 368.75, 'food'), ('us', 141, 1, 625.44, 'food'), ('us', 141, 2, 405.72, 'rent'),
  ('us', 141, 3, -124.64, 'salary'), ('eu', 153, 1, 140.23, 'fee'), ('eu', 172, 1, 37.82, 'fee'),
  ('eu', 172, 2, 721.75, 'salary'), ('us', 182, 1, 675.26, 'rent'), ('us', 182, 2, -269.89, 'food'),
  ('us', 182, 3, -250.8, 'fee'), ('eu', 210, 1, 883.45, 'salary'), ('eu', 210, 2, -238.74, 'rent'),
  ('eu', 210, 3, 652.61, NULL), ('eu', 232, 1, 694.75, 'fee'), ('us', 244, 1, -204.09, 'salary'),
  ('eu', 255, 1, -218.79, 'food'), ('eu', 255, 2, -242.43, 'food'), ('eu', 255, 3, 233.79, 'salary'),
  ('us', 264, 1, 27.91, NULL), ('eu', 270, 1, 763.25, 'salary'), ('eu', 270, 2, 134.63, 'fee'),
  ('us', 283, 1, 372.81, 'food'), ('eu', 294, 1, 596.7, 'fee'), ('us', 303, 1, -246.5, 'food'),
  ('us', 303, 2, 349.37, 'food'), ('us', 303, 3, 600.74, 'food'), ('eu', 333, 1, -178.86, NULL),
  ('eu', 333, 2, -239.35, NULL), ('eu', 333, 3, 768.93, 'fee'), ('us', 341, 1, 775.98, 'food');
INSERT INTO hyb_txns VALUES
  ('us', 341, 2, -173.94, NULL), ('us', 341, 3, 122.29, 'food'), ('eu', 353, 1, 769.46, 'food'),
  ('eu', 353, 2, 48.61, 'fee'), ('eu', 353, 3, 284.29, 'salary'), ('us', 361, 1, 593.45, 'rent'),
  ('eu', 373, 1, -261.65, NULL), ('us', 382, 1, 869.53, 'salary'), ('us', 382, 2, -139.68, NULL),
  ('eu', 404, 1, -177.63, 'fee'), ('eu', 404, 2, 791.75, 'fee'), ('eu', 414, 1, 690.73, NULL),
  ('eu', 414, 2, 87.71, 'rent'), ('us', 425, 1, 699.09, 'salary'), ('eu', 451, 1, 361.18, 'food'),
  ('eu', 451, 2, 320.89, 'salary'), ('us', 465, 1, 208.23, 'salary'), ('eu', 470, 1, 748.72, 'rent'),
  ('eu', 470, 2, -82.88, NULL), ('us', 482, 1, 569.96, 'rent'), ('us', 482, 2, 97.6, NULL),
  ('us', 9999, 1, 5.00, 'orphan'), ('eu', 9998, 1, 7.50, 'orphan');
SELECT region, count(*), min(id), max(id) FROM hyb_accounts GROUP BY region ORDER BY region;
SELECT * FROM hyb_accounts WHERE region = 'eu' AND id = 11;
SELECT region, id, owner FROM hyb_accounts WHERE region = 'us' AND id IN (41, 182, 465, 1) ORDER BY id;
SELECT region, id, kind FROM hyb_accounts WHERE id = 115;
SELECT region, id FROM hyb_accounts WHERE id IN (333, 465) ORDER BY id;
SELECT region, id, balance FROM hyb_accounts WHERE region = 'eu' AND id BETWEEN 100 AND 250 ORDER BY id;
SELECT region, id FROM hyb_accounts WHERE id >= 500 AND id < 560 ORDER BY id DESC;
SELECT region, id FROM hyb_accounts WHERE region >= 'f' AND id <= 150 ORDER BY id;
SELECT region, id, owner, kind FROM hyb_accounts WHERE kind = 'loan' AND balance > 5000 ORDER BY region, id;
SELECT region, id, flags FROM hyb_accounts WHERE flags IS NULL ORDER BY region, id;
SELECT region, id, balance FROM hyb_accounts ORDER BY balance DESC NULLS FIRST, region, id LIMIT 8;
SELECT region, id, kind, opened FROM hyb_accounts ORDER BY kind, opened DESC, region, id LIMIT 10 OFFSET 10;
SELECT region, id FROM hyb_accounts WHERE region = 'us' ORDER BY id DESC LIMIT 3 OFFSET 2;
SELECT count(*), count(balance), count(flags), count(DISTINCT kind), sum(balance), avg(balance), min(balance), max(balance), sum(flags), avg(flags) FROM hyb_accounts;
SELECT region, kind, count(*), sum(balance), min(opened), max(opened) FROM hyb_accounts GROUP BY region, kind ORDER BY region, kind;
SELECT kind, count(*), avg(balance) FROM hyb_accounts WHERE region = 'eu' GROUP BY kind ORDER BY kind;
SELECT flags, count(*) FROM hyb_accounts GROUP BY flags HAVING count(*) > 4 ORDER BY flags NULLS FIRST;
SELECT owner, sum(balance) AS total FROM hyb_accounts GROUP BY owner ORDER BY total DESC NULLS LAST, owner LIMIT 4;
SELECT DISTINCT kind FROM hyb_accounts ORDER BY kind;
SELECT DISTINCT region, kind FROM hyb_accounts WHERE balance > 0 ORDER BY region, kind;
SELECT region, count(*), sum(amount) FROM hyb_txns GROUP BY region ORDER BY region;
SELECT memo, count(*), sum(amount), min(amount), max(amount) FROM hyb_txns GROUP BY memo ORDER BY memo NULLS LAST;
SELECT a.region, a.id, a.owner, t.seq, t.amount FROM hyb_accounts a JOIN hyb_txns t ON t.region = a.region AND t.acct = a.id WHERE a.region = 'eu' AND a.id <= 200 ORDER BY a.id, t.seq;
SELECT a.region, a.id, count(t.seq) AS n, sum(t.amount) AS total FROM hyb_accounts a LEFT JOIN hyb_txns t ON t.region = a.region AND t.acct = a.id GROUP BY a.region, a.id ORDER BY total DESC NULLS LAST, a.region, a.id LIMIT 10;
SELECT a.region, a.id FROM hyb_accounts a LEFT JOIN hyb_txns t ON t.region = a.region AND t.acct = a.id WHERE t.acct IS NULL ORDER BY a.region, a.id;
SELECT a.kind, count(*), sum(t.amount) FROM hyb_txns t JOIN hyb_accounts a ON a.region = t.region AND a.id = t.acct GROUP BY a.kind HAVING count(*) > 5 ORDER BY a.kind;
SELECT t.region, t.acct FROM hyb_txns t WHERE NOT EXISTS (SELECT 1 FROM hyb_accounts a WHERE a.region = t.region AND a.id = t.acct) ORDER BY t.region, t.acct;
SELECT a.region, r.currency, count(*), sum(a.balance) FROM hyb_accounts a JOIN ref_regions r ON r.code = a.region GROUP BY a.region, r.currency ORDER BY a.region;
SELECT a.region, a.id, c.name FROM hyb_accounts a JOIN lst_customers c ON c.region = a.region AND c.id * 10 <= a.id AND c.id * 10 + 5 >= a.id ORDER BY a.region, a.id, c.name;
SELECT region, id FROM hyb_accounts WHERE balance > (SELECT avg(balance) FROM hyb_accounts WHERE region = 'us') AND region = 'eu' ORDER BY id;
UPDATE hyb_accounts SET balance = 0 WHERE region = 'eu' AND id = 11;
UPDATE hyb_accounts SET flags = coalesce(flags, 0) + 10 WHERE region = 'us' AND id > 400;
SELECT region, id, balance, flags FROM hyb_accounts WHERE region = 'eu' AND id = 11 OR region = 'us' AND id > 400 ORDER BY region, id;
UPDATE hyb_accounts SET kind = 'closed' WHERE id BETWEEN 300 AND 360 RETURNING region, id;
SELECT kind, count(*) FROM hyb_accounts GROUP BY kind ORDER BY kind;
UPDATE hyb_accounts SET region = 'us' WHERE region = 'eu' AND id = 115;
SELECT region, id, owner FROM hyb_accounts WHERE id = 115;
UPDATE hyb_accounts SET id = id + 5000 WHERE region = 'us' AND id = 182;
SELECT region, id, owner FROM hyb_accounts WHERE id IN (182, 182 + 5000) ORDER BY id;
UPDATE hyb_txns SET region = 'us' WHERE region = 'eu' AND acct = 115;
UPDATE hyb_txns SET acct = acct + 5000 WHERE region = 'us' AND acct = 182;
SELECT a.region, a.id, count(t.seq), sum(t.amount) FROM hyb_accounts a JOIN hyb_txns t ON t.region = a.region AND t.acct = a.id WHERE a.id IN (115, 182 + 5000) GROUP BY a.region, a.id ORDER BY a.id;
DELETE FROM hyb_accounts WHERE region = 'eu' AND balance < 1000;
DELETE FROM hyb_txns WHERE region = 'us' AND acct = 9999;
SELECT region, count(*), sum(balance) FROM hyb_accounts GROUP BY region ORDER BY region;
SELECT count(*), sum(amount) FROM hyb_txns;
INSERT INTO hyb_accounts (region, id, owner, kind) VALUES ('us', 465, 'dup', 'loan');
SELECT region, id, owner FROM hyb_accounts WHERE region = 'us' AND id = 465;
SELECT region, id, bogus FROM hyb_accounts WHERE region = 'eu';
DROP TABLE lst_customers, lst_stores, hyb_accounts, hyb_txns, ref_regions, ref_tiers;
