-- Joins, subqueries, set operations and aggregates across tables of every
-- sharding strategy: co-located hash tables, a replicated table, and range,
-- list, time and hybrid tables joined on non-shard-key columns.
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, city text, segment text NOT NULL, credit numeric(10,2), joined date);
CREATE TABLE orders (cust_id int NOT NULL, id int NOT NULL, sku text NOT NULL, qty int NOT NULL, price numeric(8,2) NOT NULL, status text NOT NULL, ordered date NOT NULL, PRIMARY KEY (cust_id, id)) /*fortress: WITH (shard_key = 'cust_id') */;
CREATE TABLE products (sku text PRIMARY KEY, title text NOT NULL, category text NOT NULL, list_price numeric(8,2), weight_g int) /*fortress: WITH (replicated = true) */;
CREATE TABLE shipments (id int PRIMARY KEY, order_id int NOT NULL, region text NOT NULL, shipped date, cost numeric(8,2), carrier text) /*fortress: WITH (strategy = 'range', shard_key = 'id', split_points = '20, 40, 60') */;
CREATE TABLE warehouses (region text NOT NULL, wh_id int NOT NULL, city text NOT NULL, capacity int, PRIMARY KEY (region, wh_id)) /*fortress: WITH (strategy = 'list', shard_key = 'region', list = 'eu:0; us:1; apac:2; latam:3') */;
CREATE TABLE visits (ts timestamp PRIMARY KEY, cust_id int NOT NULL, page text NOT NULL, ms int) /*fortress: WITH (strategy = 'time', shard_key = 'ts', interval = 'month') */;
CREATE TABLE wallets (region text NOT NULL, id int NOT NULL, cust_id int NOT NULL, balance numeric(10,2), PRIMARY KEY (region, id)) /*fortress: WITH (strategy = 'hybrid', shard_key = 'region', hash_key = 'id', list = 'eu:0,1; us:2,3') */;
INSERT INTO customers VALUES
  (1, 'cust01', 'pune', 'smb', 8903.66, '2022-03-03'), (2, 'cust02', 'rome', 'retail', 130.56, '2022-11-02'), (3, 'cust03', 'lima', 'retail', 3094.61, '2018-04-18'),
  (4, 'cust04', 'lima', 'enterprise', 7386.29, '2018-01-29'), (5, 'cust05', 'oslo', 'enterprise', 9265.52, '2019-12-11'), (6, 'cust06', 'kyiv', 'retail', 9138.86, '2018-04-02'),
  (7, 'cust07', 'rome', 'smb', 3567.1, '2022-09-10'), (8, 'cust08', 'pune', 'retail', 5590.85, '2019-12-03'), (9, 'cust09', 'pune', 'enterprise', 6584.02, '2021-06-04'),
  (10, 'cust10', 'lima', 'smb', 5094.29, '2018-11-03'), (11, 'cust11', 'pune', 'enterprise', 4111.15, '2018-02-02'), (12, 'cust12', 'oslo', 'smb', 8490.91, '2022-10-28'),
  (13, 'cust13', 'pune', 'retail', 4504.57, '2021-09-14'), (14, 'cust14', 'kyiv', 'enterprise', 8233.07, '2021-04-21'), (15, 'cust15', 'oslo', 'enterprise', 7632.98, '2022-01-11'),
  (16, 'cust16', 'rome', 'retail', 4502.1, '2018-07-31'), (17, 'cust17', 'kyiv', 'enterprise', 8009.59, '2021-07-22'), (18, 'cust18', 'oslo', 'smb', 741.26, '2022-07-02'),
  (19, 'cust19', 'rome', 'retail', 5234.82, '2018-02-03'), (20, 'cust20', 'rome', 'enterprise', 6817.49, '2018-05-31'), (21, 'cust21', 'rome', 'smb', 4756.31, '2021-12-28'),
  (22, 'cust22', NULL, 'retail', 5477.42, '2020-12-18'), (23, 'cust23', 'oslo', 'smb', 6958.68, '2021-07-15'), (24, 'cust24', 'lima', 'smb', 3285.02, '2019-01-19'),
  (25, 'cust25', 'lima', 'enterprise', 8027.52, '2020-12-27'), (26, 'cust26', NULL, 'enterprise', 8490.09, '2018-08-12'), (27, 'cust27', 'pune', 'enterprise', 7364.93, '2022-11-06'),
  (28, 'cust28', 'pune', 'enterprise', 2700.4, '2019-07-13'), (29, 'cust29', NULL, 'smb', 8001.43, '2022-02-27'), (30, 'cust30', 'rome', 'retail', 6189.74, '2020-04-20'),
  (31, 'cust31', 'kyiv', 'smb', 9547.39, '2018-07-27'), (32, 'cust32', 'rome', 'enterprise', 9793.37, '2019-04-15'), (33, 'cust33', 'kyiv', 'retail', NULL, '2019-11-13'),
  (34, 'cust34', 'oslo', 'retail', 5804.54, '2018-11-18'), (35, 'cust35', 'rome', 'enterprise', 5969.04, '2019-01-04'), (36, 'cust36', 'pune', 'retail', 428.36, '2023-06-13'),
  (37, 'cust37', NULL, 'smb', 3857.64, '2020-07-03'), (38, 'cust38', 'oslo', 'smb', 4446.27, '2019-02-07'), (39, 'cust39', 'pune', 'enterprise', 2005.8, '2019-04-13'),
  (40, 'cust40', 'rome', 'enterprise', 3106.72, '2022-02-22'), (41, 'cust41', 'lima', 'enterprise', 4068.32, '2019-03-17'), (42, 'cust42', NULL, 'enterprise', 3086.11, '2018-06-30'),
  (43, 'cust43', 'rome', 'retail', 5461.2, '2019-09-03'), (44, 'cust44', 'lima', 'enterprise', 7147.3, '2020-06-12'), (45, 'cust45', 'lima', 'enterprise', 6329.11, '2019-08-21'),
  (46, 'cust46', 'kyiv', 'enterprise', 1763.02, '2020-04-11'), (47, 'cust47', 'lima', 'smb', 683.45, '2020-01-03'), (48, 'cust48', NULL, 'smb', 8431.81, '2018-02-10');
INSERT INTO products VALUES
  ('sku-01', 'hammer', 'tools', 227.52, 6888), ('sku-02', 'drill', 'tools', 250.85, 5157), ('sku-03', 'saw', 'tools', NULL, 3321),
  ('sku-04', 'wrench', 'tools', NULL, 3482), ('sku-05', 'hose', 'garden', 359.95, NULL), ('sku-06', 'rake', 'garden', 214.25, NULL),
  ('sku-07', 'shovel', 'garden', 287.67, 3151), ('sku-08', 'pan', 'kitchen', 170.06, 1265), ('sku-09', 'knife', 'kitchen', 327.71, NULL),
  ('sku-10', 'kettle', 'kitchen', 148.77, 7553), ('sku-11', 'mug', 'kitchen', 166.69, 4973), ('sku-12', 'desk', 'office', 218.6, 3913),
  ('sku-13', 'lamp', 'office', 231.2, 1579), ('sku-14', 'chair', 'office', 208.16, 6030);
INSERT INTO orders VALUES
  (29, 1001, 'sku-11', 9, 109.04, 'paid', '2024-08-14'), (41, 1002, 'sku-03', 12, 57.27, 'paid', '2024-08-23'), (49, 1003, 'sku-91', 8, 98.28, 'open', '2023-08-15'),
  (35, 1004, 'sku-09', 6, 32.75, 'paid', '2024-01-21'), (19, 1005, 'sku-10', 1, 95.86, 'cancelled', '2023-02-01'), (35, 1006, 'sku-11', 7, 242.48, 'shipped', '2023-09-17'),
  (25, 1007, 'sku-14', 5, 119.4, 'cancelled', '2024-04-04'), (17, 1008, 'sku-03', 11, 141.4, 'paid', '2023-08-06'), (3, 1009, 'sku-13', 12, 195, 'open', '2023-07-20'),
  (44, 1010, 'sku-06', 5, 234.45, 'shipped', '2023-04-20'), (21, 1011, 'sku-06', 5, 154.34, 'shipped', '2023-07-03'), (25, 1012, 'sku-05', 1, 209.23, 'open', '2024-02-10'),
  (29, 1013, 'sku-90', 2, 121.32, 'shipped', '2023-01-29'), (22, 1014, 'sku-12', 4, 108.58, 'paid', '2023-05-12'), (3, 1015, 'sku-08', 9, 323.64, 'paid', '2023-08-09'),
  (11, 1016, 'sku-09', 3, 247.68, 'shipped', '2023-04-29'), (13, 1017, 'sku-12', 2, 92.45, 'cancelled', '2023-02-15'), (11, 1018, 'sku-10', 12, 6.89, 'cancelled', '2023-09-24'),
  (4, 1019, 'sku-02', 4, 195.24, 'paid', '2023-09-13'), (51, 1020, 'sku-03', 2, 126.62, 'cancelled', '2023-04-16'), (22, 1021, 'sku-13', 6, 122.51, 'cancelled', '2024-03-18'),
  (30, 1022, 'sku-11', 2, 180.64, 'open', '2024-07-27'), (22, 1023, 'sku-14', 4, 164.6, 'open', '2023-10-19'), (22, 1024, 'sku-05', 9, 230.26, 'shipped', '2024-04-27'),
  (23, 1025, 'sku-06', 7, 213.23, 'paid', '2023-09-08'), (39, 1026, 'sku-07', 8, 18.58, 'open', '2023-04-07'), (41, 1027, 'sku-09', 9, 112.48, 'paid', '2023-10-05'),
  (17, 1028, 'sku-09', 11, 193.5, 'shipped', '2023-01-28'), (5, 1029, 'sku-01', 10, 161.27, 'open', '2023-04-08'), (17, 1030, 'sku-11', 8, 170.31, 'paid', '2024-06-28'),
  (14, 1031, 'sku-09', 8, 87.61, 'open', '2023-05-06'), (14, 1032, 'sku-10', 8, 348.61, 'cancelled', '2024-01-19'), (5, 1033, 'sku-06', 10, 10.14, 'paid', '2023-12-28'),
  (30, 1034, 'sku-05', 6, 249.77, 'open', '2024-08-11'), (20, 1035, 'sku-05', 5, 19.61, 'cancelled', '2023-09-09'), (26, 1036, 'sku-91', 4, 300.45, 'cancelled', '2023-02-12'),
  (52, 1037, 'sku-08', 10, 167.54, 'paid', '2023-10-28'), (30, 1038, 'sku-10', 10, 227.78, 'open', '2024-03-24'), (24, 1039, 'sku-90', 2, 244.32, 'shipped', '2024-06-09'),
  (8, 1040, 'sku-01', 1, 324.81, 'open', '2023-09-20'), (9, 1041, 'sku-06', 12, 238.15, 'cancelled', '2024-05-12'), (26, 1042, 'sku-08', 1, 124.17, 'open', '2023-09-07'),
  (38, 1043, 'sku-06', 6, 349.58, 'cancelled', '2024-01-19'), (21, 1044, 'sku-09', 3, 310.1, 'paid', '2023-07-13'), (32, 1045, 'sku-09', 1, 208.67, 'open', '2023-03-17'),
  (29, 1046, 'sku-09', 9, 98.28, 'cancelled', '2023-08-22'), (20, 1047, 'sku-11', 9, 127.68, 'cancelled', '2023-05-21'), (41, 1048, 'sku-01', 9, 269.59, 'paid', '2023-01-29'),
  (13, 1049, 'sku-12', 11, 299.08, 'shipped', '2023-08-03'), (43, 1050, 'sku-13', 3, 50.41, 'cancelled', '2023-09-23');
INSERT INTO orders VALUES
  (34, 1051, 'sku-06', 1, 22.95, 'paid', '2024-07-29'), (7, 1052, 'sku-91', 9, 64.1, 'cancelled', '2023-06-08'), (44, 1053, 'sku-09', 5, 182.32, 'open', '2024-06-27'),
  (52, 1054, 'sku-03', 11, 168.87, 'paid', '2024-03-23'), (38, 1055, 'sku-12', 8, 320.75, 'open', '2023-10-01'), (1, 1056, 'sku-12', 4, 196.2, 'shipped', '2023-02-25'),
  (43, 1057, 'sku-11', 2, 156.41, 'paid', '2023-06-14'), (2, 1058, 'sku-06', 12, 138.83, 'paid', '2023-09-19'), (32, 1059, 'sku-13', 10, 141.22, 'paid', '2023-07-26'),
  (12, 1060, 'sku-09', 12, 269.8, 'cancelled', '2024-01-03'), (27, 1061, 'sku-01', 3, 302.38, 'open', '2023-10-15'), (43, 1062, 'sku-06', 6, 188.84, 'paid', '2023-08-27'),
  (7, 1063, 'sku-12', 4, 261.78, 'open', '2023-02-11'), (25, 1064, 'sku-05', 1, 291.36, 'cancelled', '2023-04-01'), (19, 1065, 'sku-09', 6, 338.61, 'paid', '2024-02-12'),
  (38, 1066, 'sku-01', 6, 163.62, 'shipped', '2023-11-26'), (21, 1067, 'sku-12', 1, 239.94, 'paid', '2023-03-22'), (6, 1068, 'sku-09', 5, 197.62, 'paid', '2024-04-16'),
  (3, 1069, 'sku-03', 11, 170.49, 'paid', '2024-01-27'), (43, 1070, 'sku-05', 6, 337.48, 'cancelled', '2023-03-10'), (51, 1071, 'sku-13', 7, 318.43, 'paid', '2023-05-16'),
  (20, 1072, 'sku-01', 3, 42.99, 'shipped', '2023-06-19'), (22, 1073, 'sku-09', 6, 297.3, 'shipped', '2024-08-18'), (44, 1074, 'sku-12', 3, 85.24, 'paid', '2023-09-13'),
  (32, 1075, 'sku-02', 7, 277.88, 'cancelled', '2024-01-14'), (18, 1076, 'sku-14', 1, 49.78, 'cancelled', '2023-10-30'), (34, 1077, 'sku-13', 12, 193.27, 'paid', '2023-06-30'),
  (2, 1078, 'sku-08', 3, 283.95, 'shipped', '2024-04-22'), (29, 1079, 'sku-05', 3, 171.6, 'open', '2023-06-28'), (8, 1080, 'sku-10', 3, 323.11, 'open', '2023-11-13'),
  (34, 1081, 'sku-07', 4, 161.63, 'cancelled', '2023-02-04'), (16, 1082, 'sku-05', 9, 176.66, 'paid', '2024-04-06'), (9, 1083, 'sku-14', 1, 17.71, 'open', '2024-04-19'),
  (37, 1084, 'sku-12', 10, 120.01, 'shipped', '2023-04-23'), (10, 1085, 'sku-90', 1, 159.78, 'cancelled', '2023-07-25'), (1, 1086, 'sku-07', 8, 112.89, 'open', '2023-12-23'),
  (6, 1087, 'sku-07', 11, 139.21, 'paid', '2024-07-07'), (51, 1088, 'sku-10', 6, 84.69, 'paid', '2023-07-12'), (15, 1089, 'sku-14', 3, 91.33, 'shipped', '2023-06-27'),
  (4, 1090, 'sku-04', 2, 245.62, 'open', '2024-06-17'), (2, 1091, 'sku-04', 9, 66.69, 'cancelled', '2023-05-14'), (9, 1092, 'sku-10', 2, 45.24, 'paid', '2023-04-30'),
  (39, 1093, 'sku-90', 5, 95.87, 'shipped', '2024-01-07'), (35, 1094, 'sku-08', 12, 298.44, 'open', '2023-02-10'), (42, 1095, 'sku-01', 6, 341.92, 'paid', '2023-06-23'),
  (29, 1096, 'sku-05', 11, 33.21, 'shipped', '2023-10-14'), (37, 1097, 'sku-01', 7, 100.92, 'cancelled', '2023-11-02'), (38, 1098, 'sku-12', 10, 297.73, 'shipped', '2024-02-21'),
  (39, 1099, 'sku-06', 10, 182.09, 'open', '2024-06-20'), (31, 1100, 'sku-14', 2, 220.44, 'open', '2023-08-12');
INSERT INTO shipments VALUES
  (1, 1021, 'eu', '2023-07-20', 79.5, NULL), (2, 1018, 'us', '2024-02-05', 24.98, 'fedex'), (3, 1088, 'apac', '2023-10-17', 69.79, 'ups'),
  (4, 1026, 'latam', '2023-10-06', 23.71, 'dhl'), (5, 1022, 'apac', '2023-08-03', 60.47, 'dhl'), (6, 1005, 'apac', '2023-09-05', 37.5, 'post'),
  (7, 1046, 'eu', '2024-03-19', 4.89, 'ups'), (8, 1079, 'eu', '2023-03-17', 31.49, 'post'), (9, 1086, 'latam', '2024-07-29', 26.55, 'post'),
  (10, 1084, 'apac', '2024-03-02', NULL, 'fedex'), (11, 2011, 'apac', '2023-06-05', 21.64, 'dhl'), (12, 1019, 'apac', '2024-06-03', 74.89, 'dhl'),
  (13, 1089, 'apac', '2023-05-17', 38.26, 'ups'), (14, 1043, 'eu', '2023-03-23', 11.12, 'fedex'), (15, 1026, 'latam', '2023-08-19', 24.24, 'post'),
  (16, 1051, 'latam', '2024-05-02', 76.01, 'dhl'), (17, 1088, 'eu', '2024-09-13', 49.76, 'fedex'), (18, 1082, 'latam', '2023-04-29', 48.06, 'ups'),
  (19, 1068, 'apac', '2023-02-09', 80.25, 'dhl'), (20, 1081, 'apac', '2023-06-27', 8.1, 'dhl'), (21, 1007, 'eu', '2024-01-01', 14.88, 'dhl'),
  (22, 2022, 'us', '2024-09-04', 27.5, 'ups'), (23, 1016, 'apac', '2023-09-10', 38.72, 'ups'), (24, 1021, 'eu', '2023-05-24', NULL, 'ups'),
  (25, 1020, 'us', '2023-09-05', 16.83, 'ups'), (26, 1036, 'latam', '2023-10-15', 77.88, 'post'), (27, 1052, 'eu', NULL, 17, 'dhl'),
  (28, 1030, 'latam', '2023-04-25', 84.88, 'ups'), (29, 1068, 'apac', '2024-02-14', 38.6, 'post'), (30, 1059, 'apac', NULL, NULL, NULL),
  (31, 1053, 'latam', '2023-09-01', 35.91, 'ups'), (32, 1001, 'eu', '2023-08-07', 36.05, 'ups'), (33, 2033, 'eu', '2023-02-07', 61.51, 'post'),
  (34, 1012, 'latam', '2024-01-15', 13.61, 'fedex'), (35, 1078, 'us', '2024-03-22', 68.84, 'post'), (36, 1024, 'eu', '2024-05-10', 88.31, 'dhl'),
  (37, 1079, 'us', '2024-05-17', 3.25, 'ups'), (38, 1080, 'latam', '2024-09-11', 60.17, 'post'), (39, 1025, 'eu', '2023-12-07', 27.73, 'ups'),
  (40, 1059, 'eu', '2023-05-07', NULL, 'post'), (41, 1096, 'us', '2023-08-19', NULL, 'ups'), (42, 1017, 'us', NULL, 3.68, 'ups'),
  (43, 1044, 'latam', '2024-09-21', NULL, 'ups'), (44, 2044, 'latam', '2023-07-23', 30.55, 'dhl'), (45, 1084, 'latam', NULL, 36.14, 'fedex'),
  (46, 1072, 'latam', '2023-04-15', 86.16, 'fedex'), (47, 1022, 'us', '2023-11-17', 81.99, 'fedex'), (48, 1052, 'us', '2023-10-10', 11.75, 'dhl'),
  (49, 1090, 'latam', '2023-12-09', 16.45, 'ups'), (50, 1072, 'eu', '2023-09-27', 80.28, NULL), (51, 1050, 'eu', '2024-06-21', 4.7, 'ups'),
  (52, 1031, 'latam', '2024-03-12', 18.5, 'ups'), (53, 1098, 'latam', '2024-08-02', 56.78, 'fedex'), (54, 1004, 'latam', '2023-10-18', NULL, 'fedex'),
  (55, 2055, 'apac', '2023-04-29', 46, 'dhl'), (56, 1084, 'apac', '2023-03-23', 46.08, 'fedex'), (57, 1068, 'eu', '2024-05-20', 68.75, 'post'),
  (58, 1073, 'us', '2023-07-18', 18.68, 'ups'), (59, 1031, 'apac', '2023-06-10', 9.87, 'dhl'), (60, 1011, 'eu', '2024-06-14', 84.75, 'ups'),
  (61, 1031, 'us', '2023-08-02', 32.26, 'post'), (62, 1094, 'latam', '2024-06-11', 84.31, 'ups'), (63, 1030, 'us', '2023-04-19', 68.59, 'fedex'),
  (64, 1066, 'latam', '2023-10-01', 64.79, 'ups'), (65, 1078, 'apac', '2024-06-08', 54.83, 'ups'), (66, 2066, 'latam', '2023-04-05', 82.3, 'ups'),
  (67, 1025, 'apac', '2024-05-12', 62.77, 'ups'), (68, 1086, 'us', NULL, NULL, NULL), (69, 1086, 'eu', '2023-04-19', 51.08, 'post'),
  (70, 1053, 'eu', '2024-07-24', 65.28, NULL), (71, 1033, 'eu', '2023-12-05', 32.3, 'dhl'), (72, 1034, 'apac', '2023-12-02', 11.22, 'ups'),
  (73, 1015, 'us', NULL, NULL, 'dhl'), (74, 1068, 'latam', '2023-08-23', 65.35, NULL), (75, 1084, 'latam', '2024-06-28', 69.3, NULL);
INSERT INTO warehouses VALUES
  ('eu', 1, 'paris', NULL), ('eu', 4, 'berlin', 300), ('eu', 7, 'madrid', 3200), ('eu', 10, 'milan', 3400),
  ('eu', 13, 'vienna', 3000), ('eu', 16, 'prague', 3700), ('us', 19, 'dallas', 600), ('us', 22, 'reno', 1500),
  ('us', 25, 'tampa', 900), ('us', 28, 'omaha', 2600), ('us', 31, 'miami', 3900), ('apac', 34, 'osaka', 3000),
  ('apac', 37, 'perth', 1200), ('apac', 40, 'manila', 2500), ('apac', 43, 'seoul', 200), ('apac', 46, 'hanoi', 3200),
  ('latam', 49, 'quito', 400), ('latam', 52, 'lima', 3700), ('latam', 55, 'bogota', 1300), ('latam', 58, 'cali', 2700);
INSERT INTO visits VALUES
  ('2023-01-10 11:00:00', 3, 'search', 4321), ('2023-01-17 16:15:00', 12, 'cart', 2641), ('2023-01-18 06:15:00', 26, 'search', 101),
  ('2023-02-11 03:30:00', 33, 'home', 3649), ('2023-02-18 08:15:00', 14, 'home', 82), ('2023-03-02 20:00:00', 5, 'cart', 4598),
  ('2023-03-13 22:45:00', 23, 'cart', 169), ('2023-03-21 01:15:00', 41, 'search', 325), ('2023-04-14 07:15:00', 33, 'cart', 4340),
  ('2023-04-26 02:00:00', 9, 'cart', 1662), ('2023-05-11 15:30:00', 36, 'search', 372), ('2023-05-14 18:45:00', 49, 'help', 4573),
  ('2023-07-01 23:00:00', 34, 'home', 522), ('2023-07-07 11:15:00', 48, 'search', 1728), ('2023-07-09 03:15:00', 23, 'home', 3706),
  ('2023-07-10 06:15:00', 7, 'search', 3486), ('2023-07-17 05:15:00', 48, 'help', 4959), ('2023-07-21 14:15:00', 7, 'help', 2282),
  ('2023-08-18 08:30:00', 45, 'cart', 4327), ('2023-09-07 10:30:00', 43, 'cart', 4434), ('2023-09-17 14:45:00', 40, 'help', 2390),
  ('2023-09-20 07:00:00', 40, 'help', 736), ('2023-09-20 14:30:00', 45, 'search', 1689), ('2023-09-21 00:15:00', 14, 'help', 713),
  ('2023-09-28 02:45:00', 47, 'help', 4347), ('2023-10-15 01:30:00', 2, 'home', 880), ('2023-10-26 15:45:00', 29, 'home', 227),
  ('2023-11-11 21:00:00', 12, 'cart', 1864), ('2023-11-13 22:45:00', 33, 'help', NULL), ('2023-11-15 10:30:00', 2, 'search', 2871),
  ('2023-11-28 19:00:00', 36, 'home', NULL), ('2023-12-29 07:00:00', 22, 'search', 4452), ('2023-12-31 17:15:00', 42, 'search', 2111),
  ('2024-01-14 02:15:00', 4, 'help', 4971), ('2024-01-23 22:15:00', 10, 'help', 4517), ('2024-01-26 19:00:00', 33, 'help', 218),
  ('2024-02-01 12:15:00', 10, 'help', 3169), ('2024-02-01 22:15:00', 35, 'cart', 2693), ('2024-02-07 10:30:00', 26, 'cart', 4489),
  ('2024-02-16 02:15:00', 25, 'home', 2095), ('2024-02-29 00:45:00', 31, 'cart', 4473), ('2024-03-15 08:45:00', 28, 'help', 3537),
  ('2024-04-19 13:00:00', 38, 'home', 3004), ('2024-04-26 19:45:00', 26, 'home', 3113), ('2024-05-19 01:15:00', 32, 'search', NULL),
  ('2024-05-22 22:30:00', 12, 'help', 4868), ('2024-05-23 01:00:00', 50, 'cart', 4042), ('2024-05-30 02:15:00', 15, 'cart', 4110),
  ('2024-06-06 01:00:00', 30, 'help', 4737), ('2024-06-18 08:00:00', 51, 'cart', 130), ('2024-06-29 16:00:00', 17, 'help', 1078),
  ('2024-07-04 04:45:00', 41, 'help', 41), ('2024-07-12 21:45:00', 15, 'cart', 377), ('2024-07-15 08:30:00', 5, 'help', 3238),
  ('2024-08-09 15:30:00', 19, 'help', 1993), ('2024-08-16 05:15:00', 31, 'home', 4182), ('2024-10-07 17:45:00', 31, 'search', NULL),
  ('2024-10-12 17:00:00', 37, 'search', 4420), ('2024-11-02 09:30:00', 34, 'home', 1705), ('2024-11-10 22:15:00', 39, 'cart', 198),
  ('2024-11-13 08:30:00', 8, 'home', 106), ('2024-11-14 15:15:00', 10, 'help', 4393), ('2024-11-25 18:15:00', 36, 'search', 1936),
  ('2024-11-27 04:00:00', 30, 'cart', 3039);
INSERT INTO wallets VALUES
  ('eu', 507, 25, 1031.52), ('eu', 514, 2, NULL), ('us', 521, 46, 462.25), ('eu', 528, 41, 2607.1),
  ('eu', 535, 16, 1571.68), ('us', 542, 9, 1273.18), ('eu', 549, 18, 247.4), ('eu', 556, 22, 1665.62),
  ('us', 563, 11, 928.11), ('eu', 570, 38, 4.72), ('eu', 577, 20, 1828.73), ('us', 584, 4, 1873.55),
  ('eu', 591, 15, 429.25), ('eu', 598, 32, NULL), ('us', 605, 32, 1447.09), ('eu', 612, 12, 1936.64),
  ('eu', 619, 43, 744.85), ('us', 626, 31, 2798), ('eu', 633, 41, NULL), ('eu', 640, 40, 1166.12),
  ('us', 647, 22, 174.25), ('eu', 654, 17, 2619.39), ('eu', 661, 6, 1180.29), ('us', 668, 25, 127.38),
  ('eu', 675, 34, 1563.6), ('eu', 682, 24, 1720.37), ('us', 689, 49, 1122.4), ('eu', 696, 34, 2331.28),
  ('eu', 703, 38, 118.23), ('us', 710, 44, 327.97), ('eu', 717, 5, 2010.16), ('eu', 724, 12, 711.88),
  ('us', 731, 28, 691.72), ('eu', 738, 13, 140.35), ('eu', 745, 22, 2784.81), ('us', 752, 10, 1810.86),
  ('eu', 759, 21, 1925.26), ('eu', 766, 27, 109.59), ('us', 773, 25, 2886.43), ('eu', 780, 27, -85.33),
  ('eu', 787, 43, 1329.36), ('us', 794, 12, 739.51), ('eu', 801, 13, 633.55), ('eu', 808, 40, 2646.24);
SELECT (SELECT count(*) FROM customers) AS c, (SELECT count(*) FROM orders) AS o, (SELECT count(*) FROM products) AS p, (SELECT count(*) FROM shipments) AS s, (SELECT count(*) FROM warehouses) AS w, (SELECT count(*) FROM visits) AS v, (SELECT count(*) FROM wallets) AS wa;
SELECT c.id, c.name, o.id AS order_id, o.qty, o.price FROM customers c JOIN orders o ON o.cust_id = c.id WHERE c.id = 7 ORDER BY o.id;
SELECT * FROM customers WHERE id = 12;
SELECT id, name, city FROM customers WHERE id IN (1, 17, 33, 48, 99) ORDER BY id;
SELECT id, credit FROM customers WHERE id > 40 AND id <= 46 ORDER BY id DESC;
SELECT id, segment FROM customers WHERE id BETWEEN 20 AND 30 AND segment <> 'smb' ORDER BY id;
SELECT id, city, credit FROM customers ORDER BY city NULLS FIRST, credit DESC NULLS LAST, id LIMIT 10 OFFSET 5;
SELECT city, count(*), count(credit), sum(credit), avg(credit), min(joined), max(joined) FROM customers GROUP BY city ORDER BY city NULLS LAST;
SELECT segment, count(DISTINCT city) FROM customers GROUP BY segment HAVING count(*) > 10 ORDER BY segment;
SELECT DISTINCT city, segment FROM customers WHERE id < 25 ORDER BY city NULLS FIRST, segment;
SELECT * FROM orders WHERE cust_id = 9 ORDER BY id;
SELECT cust_id, id, qty FROM orders WHERE cust_id IN (4, 8, 15, 16) ORDER BY cust_id, id;
SELECT cust_id, id FROM orders WHERE cust_id BETWEEN 5 AND 8 AND qty > 5 ORDER BY cust_id, id;
SELECT cust_id, id, price FROM orders WHERE cust_id >= 40 ORDER BY price DESC, id LIMIT 4 OFFSET 1;
SELECT cust_id, id, ordered FROM orders WHERE cust_id = 11 AND ordered > '2023-06-30' ORDER BY ordered, id;
UPDATE customers SET credit = coalesce(credit, 0) + 500 WHERE id = 12;
UPDATE customers SET segment = 'vip' WHERE id >= 30 AND id < 34;
SELECT id, credit, segment FROM customers WHERE id = 12 OR id BETWEEN 29 AND 34 ORDER BY id;
UPDATE orders SET qty = qty + 100 WHERE cust_id = 9;
SELECT cust_id, sum(qty), count(*) FROM orders WHERE cust_id IN (8, 9, 10) GROUP BY cust_id ORDER BY cust_id;
DELETE FROM orders WHERE cust_id = 44 OR cust_id = 43 AND qty < 6;
SELECT cust_id, count(*) FROM orders WHERE cust_id >= 42 GROUP BY cust_id ORDER BY cust_id;
SELECT c.id, o.id FROM customers c JOIN orders o ON o.cust_id = c.id WHERE c.id IN (3, 14, 25, 36) ORDER BY c.id, o.id;
SELECT c.id, o.id, o.status FROM customers c JOIN orders o ON o.cust_id = c.id WHERE c.id BETWEEN 10 AND 14 AND o.status <> 'cancelled' ORDER BY o.id;
SELECT count(*), sum(o.qty), sum(o.qty * o.price), avg(o.price), min(o.ordered), max(o.ordered) FROM customers c JOIN orders o ON o.cust_id = c.id;
SELECT c.segment, count(*), count(DISTINCT c.id), sum(o.qty * o.price) AS revenue FROM customers c JOIN orders o ON o.cust_id = c.id GROUP BY c.segment ORDER BY c.segment;
SELECT c.city, o.status, count(*), sum(o.qty) FROM customers c JOIN orders o ON o.cust_id = c.id GROUP BY c.city, o.status ORDER BY c.city NULLS FIRST, o.status;
SELECT c.id, c.name, count(o.id) AS n, coalesce(sum(o.qty), 0) AS units FROM customers c LEFT JOIN orders o ON o.cust_id = c.id GROUP BY c.id, c.name ORDER BY n DESC, c.id LIMIT 8;
SELECT c.id, c.name FROM customers c LEFT JOIN orders o ON o.cust_id = c.id WHERE o.id IS NULL ORDER BY c.id;
SELECT c.id, count(o.id) FROM customers c LEFT JOIN orders o ON o.cust_id = c.id AND o.status = 'paid' WHERE c.id > 38 GROUP BY c.id ORDER BY c.id;
SELECT c.id, sum(o.qty * o.price) AS spent FROM customers c JOIN orders o ON o.cust_id = c.id GROUP BY c.id HAVING sum(o.qty * o.price) > 3000 ORDER BY spent DESC, c.id;
SELECT c.id, c.credit, sum(o.qty * o.price) AS spent FROM customers c JOIN orders o ON o.cust_id = c.id WHERE c.credit IS NOT NULL GROUP BY c.id, c.credit HAVING sum(o.qty * o.price) > c.credit ORDER BY c.id;
SELECT c.name, o.id, o.ordered FROM customers c JOIN orders o ON o.cust_id = c.id WHERE o.ordered >= '2024-06-01' ORDER BY o.ordered DESC, o.id LIMIT 6 OFFSET 2;
SELECT o.id, o.sku, p.title, p.category FROM orders o JOIN products p ON p.sku = o.sku WHERE o.cust_id = 5 ORDER BY o.id;
SELECT p.category, count(*), sum(o.qty), sum(o.qty * o.price), max(o.price) FROM orders o JOIN products p ON p.sku = o.sku GROUP BY p.category ORDER BY p.category;
SELECT o.id, o.sku FROM orders o LEFT JOIN products p ON p.sku = o.sku WHERE p.sku IS NULL ORDER BY o.id;
SELECT p.sku, p.title, count(o.id) AS n FROM products p LEFT JOIN orders o ON o.sku = p.sku GROUP BY p.sku, p.title ORDER BY n DESC, p.sku;
SELECT p.sku FROM products p LEFT JOIN orders o ON o.sku = p.sku AND o.qty > 10 WHERE o.id IS NULL ORDER BY p.sku;
SELECT c.segment, p.category, count(*), sum(o.qty) FROM customers c JOIN orders o ON o.cust_id = c.id JOIN products p ON p.sku = o.sku GROUP BY c.segment, p.category ORDER BY c.segment, p.category;
SELECT c.id, c.name, p.title, o.qty FROM customers c JOIN orders o ON o.cust_id = c.id JOIN products p ON p.sku = o.sku WHERE p.category = 'tools' AND c.city = 'oslo' ORDER BY c.id, o.id;
SELECT o.id, o.price, p.list_price, o.price - p.list_price AS diff FROM orders o JOIN products p ON p.sku = o.sku WHERE p.list_price IS NOT NULL ORDER BY diff DESC, o.id LIMIT 5;
SELECT DISTINCT c.city, p.category FROM customers c JOIN orders o ON o.cust_id = c.id JOIN products p ON p.sku = o.sku ORDER BY c.city NULLS LAST, p.category;
SELECT s.id, s.order_id, o.cust_id, o.status FROM shipments s JOIN orders o ON o.id = s.order_id WHERE s.id < 12 ORDER BY s.id;
SELECT s.region, count(*), sum(s.cost), sum(o.qty) FROM shipments s JOIN orders o ON o.id = s.order_id GROUP BY s.region ORDER BY s.region;
SELECT s.id, s.order_id FROM shipments s LEFT JOIN orders o ON o.id = s.order_id WHERE o.id IS NULL ORDER BY s.id;
SELECT o.status, count(DISTINCT s.id) AS shipments, count(DISTINCT o.id) AS orders FROM orders o JOIN shipments s ON s.order_id = o.id GROUP BY o.status ORDER BY o.status;
SELECT o.id, count(s.id) AS n FROM orders o LEFT JOIN shipments s ON s.order_id = o.id WHERE o.cust_id BETWEEN 20 AND 24 GROUP BY o.id ORDER BY o.id;
SELECT s.id, s.region, w.city FROM shipments s JOIN warehouses w ON w.region = s.region WHERE s.id BETWEEN 18 AND 22 ORDER BY s.id, w.wh_id;
SELECT w.region, w.city, count(s.id) AS n, sum(s.cost) FROM warehouses w LEFT JOIN shipments s ON s.region = w.region AND s.carrier = 'dhl' GROUP BY w.region, w.city ORDER BY w.region, w.city;
SELECT s.region, count(DISTINCT w.wh_id), sum(w.capacity) FROM shipments s JOIN warehouses w ON w.region = s.region WHERE s.id > 60 GROUP BY s.region ORDER BY s.region;
SELECT s.carrier, w.region, count(*) FROM shipments s JOIN warehouses w ON w.region = s.region AND w.capacity >= 2000 GROUP BY s.carrier, w.region HAVING count(*) > 3 ORDER BY s.carrier NULLS FIRST, w.region;
SELECT w.city, c.id, c.name FROM warehouses w JOIN customers c ON c.city = w.city ORDER BY w.city, c.id;
SELECT v.ts, v.page, c.name, c.segment FROM visits v JOIN customers c ON c.id = v.cust_id WHERE v.ts < '2023-03-01' ORDER BY v.ts;
SELECT c.segment, v.page, count(*), avg(v.ms), max(v.ms) FROM visits v JOIN customers c ON c.id = v.cust_id GROUP BY c.segment, v.page ORDER BY c.segment, v.page;
SELECT v.cust_id, count(*) AS n FROM visits v LEFT JOIN customers c ON c.id = v.cust_id WHERE c.id IS NULL GROUP BY v.cust_id ORDER BY v.cust_id;
SELECT c.id, count(v.ts) AS n, min(v.ts), max(v.ts) FROM customers c LEFT JOIN visits v ON v.cust_id = c.id AND v.ts >= '2024-01-01' GROUP BY c.id HAVING count(v.ts) >= 2 ORDER BY n DESC, c.id;
SELECT v.ts, v.cust_id, o.id, o.ordered FROM visits v JOIN orders o ON o.cust_id = v.cust_id AND o.ordered < '2023-04-01' WHERE v.ts < '2023-10-01' ORDER BY v.ts, o.id;
SELECT wa.region, wa.id, wa.balance, c.name FROM wallets wa JOIN customers c ON c.id = wa.cust_id WHERE wa.region = 'us' ORDER BY wa.id;
SELECT wa.region, count(*), sum(wa.balance), count(DISTINCT c.segment) FROM wallets wa JOIN customers c ON c.id = wa.cust_id GROUP BY wa.region ORDER BY wa.region;
SELECT wa.region, wa.id, w.city FROM wallets wa JOIN warehouses w ON w.region = wa.region WHERE wa.id < 540 ORDER BY wa.region, wa.id, w.wh_id;
SELECT c.id, sum(wa.balance) AS wallet, count(DISTINCT o.id) AS orders FROM customers c JOIN wallets wa ON wa.cust_id = c.id LEFT JOIN orders o ON o.cust_id = c.id GROUP BY c.id ORDER BY c.id;
SELECT wa.cust_id, wa.id FROM wallets wa LEFT JOIN customers c ON c.id = wa.cust_id WHERE c.id IS NULL ORDER BY wa.cust_id, wa.id;
SELECT a.sku, count(*) FROM orders a JOIN orders b ON b.sku = a.sku AND a.id < b.id GROUP BY a.sku ORDER BY a.sku;
SELECT a.id, b.id FROM customers a JOIN customers b ON a.city = b.city AND a.id < b.id WHERE a.id < 8 ORDER BY a.id, b.id;
SELECT id, name FROM customers WHERE id IN (SELECT cust_id FROM orders WHERE status = 'open' AND qty > 10) ORDER BY id;
SELECT id, name FROM customers c WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.cust_id = c.id) ORDER BY id;
SELECT id, sku, qty FROM orders WHERE sku IN (SELECT sku FROM products WHERE category = 'garden') AND qty >= 9 ORDER BY id;
SELECT id, cust_id FROM orders WHERE cust_id NOT IN (SELECT id FROM customers) ORDER BY id;
SELECT c.id, count(o.id) AS n, max(o.qty) AS top FROM customers c LEFT JOIN orders o ON o.cust_id = c.id WHERE c.id <= 10 GROUP BY c.id ORDER BY c.id;
SELECT id, region FROM shipments WHERE order_id IN (SELECT id FROM orders WHERE cust_id BETWEEN 10 AND 20) ORDER BY id;
SELECT region, wh_id FROM warehouses w WHERE EXISTS (SELECT 1 FROM shipments s WHERE s.region = w.region AND s.cost > 85) ORDER BY region, wh_id;
SELECT id, cost FROM shipments WHERE cost > (SELECT avg(cost) FROM shipments) AND id BETWEEN 30 AND 70 ORDER BY id;
SELECT ts, cust_id FROM visits WHERE cust_id IN (SELECT cust_id FROM wallets WHERE balance > 2500) ORDER BY ts;
WITH totals AS (SELECT cust_id, sum(qty * price) AS spent, count(*) AS n FROM orders GROUP BY cust_id) SELECT c.name, t.spent, t.n FROM totals t JOIN customers c ON c.id = t.cust_id ORDER BY t.spent DESC, c.name LIMIT 5;
WITH busy AS (SELECT cust_id FROM visits GROUP BY cust_id HAVING count(*) >= 2), rich AS (SELECT cust_id FROM wallets WHERE balance > 1000) SELECT b.cust_id FROM busy b JOIN rich r ON r.cust_id = b.cust_id ORDER BY 1;
WITH ship AS (SELECT order_id, sum(cost) AS cost FROM shipments GROUP BY order_id) SELECT o.status, count(*), sum(ship.cost) FROM orders o JOIN ship ON ship.order_id = o.id GROUP BY o.status ORDER BY o.status;
SELECT t.segment, t.n, t.total FROM (SELECT c.segment, count(*) AS n, sum(o.qty) AS total FROM customers c JOIN orders o ON o.cust_id = c.id GROUP BY c.segment) t WHERE t.n > 10 ORDER BY t.segment;
SELECT d.region, d.n, w.c FROM (SELECT region, count(*) AS n FROM shipments GROUP BY region) d JOIN (SELECT region, count(*) AS c FROM warehouses GROUP BY region) w ON w.region = d.region ORDER BY d.region;
SELECT cust_id FROM orders UNION SELECT cust_id FROM visits ORDER BY 1;
SELECT cust_id FROM orders INTERSECT SELECT cust_id FROM wallets ORDER BY 1;
SELECT id FROM customers EXCEPT SELECT cust_id FROM visits ORDER BY 1;
SELECT region FROM shipments UNION SELECT region FROM warehouses UNION SELECT region FROM wallets ORDER BY 1;
SELECT count(*) FROM (SELECT cust_id FROM orders UNION ALL SELECT cust_id FROM visits UNION ALL SELECT cust_id FROM wallets) u;
SELECT 'order' AS src, count(*) AS n FROM orders WHERE cust_id < 10 UNION ALL SELECT 'visit', count(*) FROM visits WHERE cust_id < 10 ORDER BY src;
SELECT cust_id, count(*) AS n, sum(qty) FROM orders GROUP BY cust_id ORDER BY n DESC, cust_id LIMIT 5;
SELECT status, count(*), count(DISTINCT cust_id), count(DISTINCT sku), sum(qty), avg(qty), min(price), max(price) FROM orders GROUP BY status ORDER BY status;
SELECT sku, sum(qty) AS units FROM orders GROUP BY sku HAVING sum(qty) >= 40 ORDER BY units DESC, sku;
SELECT count(*) FILTER (WHERE status = 'open') AS open, count(*) FILTER (WHERE cust_id > 48) AS orphans, sum(qty) FILTER (WHERE price > 100) AS big_units FROM orders;
SELECT DISTINCT status, sku FROM orders WHERE cust_id < 6 ORDER BY status, sku;
SELECT carrier, count(*), count(shipped), sum(cost), avg(cost) FROM shipments GROUP BY carrier ORDER BY carrier NULLS LAST;
SELECT page, count(*), sum(ms), min(ts), max(ts) FROM visits GROUP BY page ORDER BY page;
UPDATE orders SET status = 'shipped' WHERE status = 'paid' AND id IN (SELECT order_id FROM shipments);
SELECT status, count(*) FROM orders GROUP BY status ORDER BY status;
UPDATE orders SET cust_id = 2 WHERE cust_id = 49;
SELECT c.id, count(o.id) FROM customers c JOIN orders o ON o.cust_id = c.id WHERE c.id = 2 GROUP BY c.id;
SELECT id FROM orders WHERE cust_id > 48 ORDER BY id;
UPDATE customers SET id = 200 WHERE id = 45;
SELECT c.id, c.name, count(o.id) FROM customers c LEFT JOIN orders o ON o.cust_id = c.id WHERE c.id IN (45, 200) GROUP BY c.id, c.name ORDER BY c.id;
DELETE FROM shipments WHERE id BETWEEN 30 AND 45;
SELECT s.region, count(*) FROM shipments s JOIN orders o ON o.id = s.order_id GROUP BY s.region ORDER BY s.region;
UPDATE warehouses SET region = 'apac' WHERE region = 'latam' AND wh_id = 52;
SELECT region, count(*), sum(capacity) FROM warehouses GROUP BY region ORDER BY region;
SELECT w.region, count(s.id) FROM warehouses w JOIN shipments s ON s.region = w.region WHERE w.wh_id = 52 GROUP BY w.region;
UPDATE wallets SET balance = balance - 10 WHERE region = 'us' AND balance IS NOT NULL;
DELETE FROM wallets WHERE region = 'eu' AND id > 780;
SELECT wa.region, count(*), sum(wa.balance) FROM wallets wa JOIN customers c ON c.id = wa.cust_id GROUP BY wa.region ORDER BY wa.region;
DELETE FROM visits WHERE ts < '2023-04-01';
SELECT count(*), min(ts) FROM visits;
DELETE FROM customers WHERE id NOT IN (SELECT cust_id FROM orders) AND id < 100;
SELECT count(*) FROM customers c LEFT JOIN orders o ON o.cust_id = c.id WHERE o.id IS NULL;
INSERT INTO orders VALUES (29, 1001, 'sku-01', 1, 1.00, 'open', '2024-01-01');
SELECT id FROM customers c JOIN orders o ON o.cust_id = c.id WHERE c.id = 3;
SELECT c.nope FROM customers c JOIN orders o ON o.cust_id = c.id;
SELECT c.id, o.qty / (o.qty - o.qty) FROM customers c JOIN orders o ON o.cust_id = c.id WHERE c.id = 3;
DROP TABLE customers, orders, products, shipments, warehouses, visits, wallets;
