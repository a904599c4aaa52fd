//! Sharding strategies through a real client: range, time, list and hybrid
//! tables place rows by their shard key, EXPLAIN shows the pruning, pruned
//! reads still find every row (so placement and routing agree), a row whose
//! key changes moves shards, and bad options fail with 22023.

mod common;

use common::{code, explain, Server};
use tokio_postgres::Client;

async fn ids(c: &Client, sql: &str) -> Vec<i32> {
    let mut v: Vec<i32> = c
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    v.sort_unstable();
    v
}

async fn fails(c: &Client, sql: &str) -> String {
    code(&c.batch_execute(sql).await.expect_err(sql))
}

#[tokio::test]
async fn range_tables_prune_by_split_points_and_keep_rows_reachable() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE r (id int PRIMARY KEY, v text) \
         WITH (strategy = 'range', split_points = '100, 200, 300')",
    )
    .await
    .unwrap();
    let values: Vec<String> = (0..400)
        .step_by(7)
        .map(|i| format!("({i}, 'v{i}')"))
        .collect();
    c.batch_execute(&format!("INSERT INTO r VALUES {}", values.join(",")))
        .await
        .unwrap();
    let ins = explain(&c, "INSERT INTO r VALUES (250, 'x')").await;
    assert!(ins.contains("shard 2 (single-shard)"), "{ins}");
    let cases = [
        (
            "id >= 150 AND id < 200",
            "shard 1 (single-shard: range strategy",
        ),
        ("id BETWEEN 150 AND 250", "shards 1, 2 (range strategy"),
        ("id > 199 AND id <= 300", "shards 1, 2, 3 (range strategy"),
        ("id < 100", "shard 0 (single-shard"),
        ("v = 'v7'", "all 4 shards (scatter-gather)"),
    ];
    for (filter, route) in cases {
        let plan = explain(&c, &format!("SELECT * FROM r WHERE {filter}")).await;
        assert!(plan.contains(route), "{filter}: {plan}");
        assert!(
            plan.contains("Sharding: range on id, split points 100, 200, 300"),
            "{plan}"
        );
    }
    let want: Vec<i32> = (0..400)
        .step_by(7)
        .filter(|i| (150..=250).contains(i))
        .collect();
    assert_eq!(
        ids(&c, "SELECT id FROM r WHERE id BETWEEN 150 AND 250").await,
        want
    );
    // A key update moves the row to the shard its new value belongs to.
    c.batch_execute("UPDATE r SET id = 302 WHERE id = 7")
        .await
        .unwrap();
    assert_eq!(
        ids(&c, "SELECT id FROM r WHERE id > 301 AND id < 303").await,
        [302]
    );
    assert!(ids(&c, "SELECT id FROM r WHERE id < 10").await == [0]);
    // The strategy is in the catalog: it survives a restart.
    drop(c);
    server.stop();
    server.restart();
    let c = server.client().await;
    let plan = explain(&c, "SELECT * FROM r WHERE id >= 300").await;
    assert!(
        plan.contains("shard 3 (single-shard: range strategy"),
        "{plan}"
    );
    let high: Vec<i32> = (0..400).step_by(7).filter(|&i| i >= 300).collect();
    let mut want = vec![302];
    want.extend(high);
    want.sort_unstable();
    assert_eq!(ids(&c, "SELECT id FROM r WHERE id >= 300").await, want);
}

#[tokio::test]
async fn time_tables_prune_month_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE ev (at date, id int, n int, PRIMARY KEY (at, id)) \
         WITH (strategy = 'time', shard_key = 'at', interval = 'month')",
    )
    .await
    .unwrap();
    let mut rows = Vec::new();
    for m in 1..=12 {
        for d in [1, 15, 28] {
            rows.push(format!("('2024-{m:02}-{d:02}', {}, {m})", m * 100 + d));
        }
    }
    c.batch_execute(&format!("INSERT INTO ev VALUES {}", rows.join(",")))
        .await
        .unwrap();
    let one = explain(
        &c,
        "SELECT * FROM ev WHERE at >= '2024-03-01' AND at < '2024-04-01'",
    )
    .await;
    assert!(one.contains("(single-shard: time strategy"), "{one}");
    assert!(one.contains("Sharding: time on at, month buckets"), "{one}");
    let two = explain(
        &c,
        "SELECT * FROM ev WHERE at BETWEEN '2024-03-10' AND '2024-04-10'",
    )
    .await;
    assert!(
        two.contains("time strategy: pruned by the shard key"),
        "{two}"
    );
    assert!(two.contains("shards "), "{two}");
    let year = explain(
        &c,
        "SELECT * FROM ev WHERE at >= '2024-01-01' AND at < '2025-01-01'",
    )
    .await;
    assert!(year.contains("all 4 shards"), "{year}");
    let got = ids(
        &c,
        "SELECT id FROM ev WHERE at BETWEEN '2024-03-10' AND '2024-04-10'",
    )
    .await;
    assert_eq!(got, [315, 328, 401]);
    let march = ids(
        &c,
        "SELECT n FROM ev WHERE at >= '2024-03-01' AND at < '2024-04-01'",
    )
    .await;
    assert_eq!(march, [3, 3, 3]);
    assert_eq!(
        fails(
            &c,
            "CREATE TABLE bad (id int PRIMARY KEY) WITH (strategy = 'time')"
        )
        .await,
        "22023"
    );
}

#[tokio::test]
async fn list_and_hybrid_tables_follow_their_lists() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE cust (region text, id int, PRIMARY KEY (region, id)) \
         WITH (strategy = 'list', list = 'eu:3; us:1; apac:2');
         CREATE TABLE acct (region text, id int, bal int, PRIMARY KEY (region, id)) \
         WITH (strategy = 'hybrid', hash_key = 'id', list = 'eu:0,1; us:2,3', default_shards = '3')",
    )
    .await
    .unwrap();
    c.batch_execute("INSERT INTO cust VALUES ('eu', 1), ('us', 2), ('apac', 3), ('eu', 4)")
        .await
        .unwrap();
    let eu = explain(&c, "SELECT * FROM cust WHERE region = 'eu'").await;
    assert!(eu.contains("shard 3 (single-shard: list strategy"), "{eu}");
    let two = explain(&c, "SELECT * FROM cust WHERE region IN ('us', 'apac')").await;
    assert!(two.contains("shards 1, 2 (list strategy"), "{two}");
    assert_eq!(
        ids(&c, "SELECT id FROM cust WHERE region = 'eu'").await,
        [1, 4]
    );
    // A value no shard is listed for is rejected, as PostgreSQL rejects a
    // row no partition accepts.
    assert_eq!(
        fails(&c, "INSERT INTO cust VALUES ('mars', 9)").await,
        "23514"
    );
    assert_eq!(
        fails(&c, "BEGIN; INSERT INTO cust VALUES ('mars', 9); COMMIT").await,
        "23514"
    );
    c.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        fails(&c, "UPDATE cust SET region = 'mars' WHERE id = 1").await,
        "23514"
    );
    assert_eq!(ids(&c, "SELECT id FROM cust").await, [1, 2, 3, 4]);

    let rows: Vec<String> = (0..60)
        .map(|i| format!("('{}', {i}, {i})", ["eu", "us", "latam"][i % 3]))
        .collect();
    c.batch_execute(&format!("INSERT INTO acct VALUES {}", rows.join(",")))
        .await
        .unwrap();
    let group = explain(&c, "SELECT * FROM acct WHERE region = 'eu'").await;
    assert!(group.contains("shards 0, 1 (hybrid strategy"), "{group}");
    assert!(group.contains("then hash of id"), "{group}");
    let one = explain(&c, "SELECT * FROM acct WHERE region = 'us' AND id = 4").await;
    assert!(one.contains("(single-shard: hybrid strategy"), "{one}");
    let eu_ids: Vec<i32> = (0..60).filter(|i| i % 3 == 0).collect();
    assert_eq!(
        ids(&c, "SELECT id FROM acct WHERE region = 'eu'").await,
        eu_ids
    );
    assert_eq!(
        ids(&c, "SELECT bal FROM acct WHERE region = 'us' AND id = 4").await,
        [4]
    );
    let latam: Vec<i32> = (0..60).filter(|i| i % 3 == 2).collect();
    assert_eq!(
        ids(&c, "SELECT id FROM acct WHERE region = 'latam'").await,
        latam
    );
    let sum: i64 = c
        .query_one("SELECT sum(bal) FROM acct", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sum, (0..60).sum::<i64>());
}

#[tokio::test]
async fn bad_strategy_options_are_22023() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = server.client().await;
    let bad = [
        "CREATE TABLE b (id int PRIMARY KEY) WITH (strategy = 'range', split_points = '5, 3')",
        "CREATE TABLE b (id int PRIMARY KEY) WITH (strategy = 'range', split_points = '1,2,3,4,5')",
        "CREATE TABLE b (id int PRIMARY KEY) WITH (strategy = 'range', split_points = 'x')",
        "CREATE TABLE b (id int PRIMARY KEY) WITH (strategy = 'range')",
        "CREATE TABLE b (id int PRIMARY KEY) WITH (strategy = 'list', list = '1:9')",
        "CREATE TABLE b (id int PRIMARY KEY) WITH (strategy = 'list', list = '1:0,1')",
        "CREATE TABLE b (id int PRIMARY KEY) WITH (strategy = 'hash', interval = 'day')",
        "CREATE TABLE b (id int PRIMARY KEY) WITH (strategy = 'zigzag')",
        "CREATE TABLE b (id int PRIMARY KEY) WITH (strategy = 'list', list = '1:0', replicated = true)",
    ];
    for sql in bad {
        assert_eq!(fails(&c, sql).await, "22023", "{sql}");
    }
    let hybrid = "CREATE TABLE b (id int PRIMARY KEY, x int) \
                  WITH (strategy = 'hybrid', hash_key = 'x', list = '1:0')";
    assert_eq!(fails(&c, hybrid).await, "0A000");
    // Nothing half-created: the name is still free.
    c.batch_execute("CREATE TABLE b (id int PRIMARY KEY)")
        .await
        .unwrap();
}

#[tokio::test]
async fn co_located_joins_run_on_the_shards() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE cu (id int PRIMARY KEY, name text);
         CREATE TABLE od (cust int, id int, qty int, PRIMARY KEY (cust, id));
         CREATE TABLE item (sku int PRIMARY KEY, label text) WITH (replicated = true);
         CREATE TABLE rc (id int PRIMARY KEY, v int) WITH (strategy = 'range', split_points = '10, 20, 30')",
    )
    .await
    .unwrap();
    let custs: Vec<String> = (0..40).map(|i| format!("({i}, 'c{i}')")).collect();
    let orders: Vec<String> = (0..40)
        .flat_map(|i| (0..3).map(move |j| format!("({i}, {j}, {})", (i + j) % 5)))
        .collect();
    c.batch_execute(&format!(
        "INSERT INTO cu VALUES {}; INSERT INTO od VALUES {}; \
         INSERT INTO item VALUES (0, 'zero'), (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four')",
        custs.join(","),
        orders.join(",")
    ))
    .await
    .unwrap();
    c.batch_execute(&format!(
        "INSERT INTO rc VALUES {}",
        (0..40)
            .map(|i| format!("({i}, {i})"))
            .collect::<Vec<_>>()
            .join(",")
    ))
    .await
    .unwrap();
    let on_keys = "SELECT cu.name, od.qty FROM cu JOIN od ON od.cust = cu.id";
    let plan = explain(&c, on_keys).await;
    assert!(
        plan.contains("join on the shards (co-located on their shard keys) at all 4 shards"),
        "{plan}"
    );
    // A shard-key filter narrows the pushed join to one shard.
    let plan = explain(&c, &format!("{on_keys} WHERE cu.id = 7")).await;
    assert!(
        plan.contains("co-located on their shard keys) at shard "),
        "{plan}"
    );
    let rows = c
        .query(&format!("{on_keys} WHERE cu.id = 7 ORDER BY od.qty"), &[])
        .await
        .unwrap();
    let qty: Vec<i32> = rows.iter().map(|r| r.get(1)).collect();
    assert_eq!(qty, [2, 3, 4]);
    let with_ref = "SELECT od.id, item.label FROM od LEFT JOIN item ON item.sku = od.qty";
    let plan = explain(&c, with_ref).await;
    assert!(
        plan.contains("Left join on the shards (one side replicated)"),
        "{plan}"
    );
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM od LEFT JOIN item ON item.sku = od.qty WHERE item.label IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 120);
    // Not on the shard keys, or placed differently: joined at the proxy, with
    // each side still reading only what its filter allows.
    let off = explain(
        &c,
        "SELECT * FROM cu JOIN od ON od.id = cu.id WHERE cu.id < 3",
    )
    .await;
    assert!(off.contains("Inner join at the proxy"), "{off}");
    let mixed = explain(
        &c,
        "SELECT * FROM rc JOIN cu ON cu.id = rc.id WHERE rc.id < 10",
    )
    .await;
    assert!(mixed.contains("join at the proxy"), "{mixed}");
    assert!(
        mixed.contains("Scan on rc at shard 0 (single-shard: range strategy"),
        "{mixed}"
    );
    let sum: i64 = c
        .query_one(
            "SELECT sum(rc.v) FROM rc JOIN cu ON cu.id = rc.id WHERE rc.id < 10",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(sum, 45);
}
