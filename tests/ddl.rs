//! Sharding DDL through a real client: `WITH (shard_key)`, replicated
//! reference tables, UNIQUE enforced across shards (also under concurrent
//! inserts), and EXPLAIN showing each statement's route.

mod common;

use common::{code, explain, Server};

/// A fresh server and a client; keep the directory alive with the server.
async fn start() -> (tempfile::TempDir, Server, tokio_postgres::Client) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = server.client().await;
    (dir, server, c)
}

#[tokio::test]
async fn explain_shows_single_shard_and_scatter_gather_routes() {
    let (_dir, _server, c) = start().await;
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let one = explain(&c, "SELECT * FROM t WHERE id = 7").await;
    assert!(one.contains("single-shard: shard key equality"), "{one}");
    let all = explain(&c, "SELECT * FROM t WHERE v = 'x' ORDER BY v LIMIT 3").await;
    assert!(all.contains("all 4 shards (scatter-gather)"), "{all}");
    assert!(all.contains("k-way merge"), "{all}");
    assert!(all.contains("LIMIT+OFFSET pushed to each shard"), "{all}");
    // An IN list on the shard key reads only the shards owning its values.
    let mut owner = std::collections::BTreeMap::new();
    for v in 1..40 {
        let plan = explain(&c, &format!("SELECT * FROM t WHERE id = {v}")).await;
        let shard: String = plan
            .split("at shard ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap()
            .to_string();
        owner.entry(shard).or_insert(v);
    }
    let picked: Vec<i32> = owner.values().take(2).copied().collect();
    let mut shards: Vec<String> = owner.keys().take(2).cloned().collect();
    shards.sort();
    let plan = explain(
        &c,
        &format!("SELECT * FROM t WHERE id IN ({}, {})", picked[0], picked[1]),
    )
    .await;
    assert!(
        plan.contains(&format!(
            "shards {} (IN list on the shard key)",
            shards.join(", ")
        )),
        "{plan}"
    );
    let agg = explain(&c, "SELECT v, count(*) FROM t GROUP BY v").await;
    assert!(
        agg.contains("Aggregate: partial on each shard, final at the proxy"),
        "{agg}"
    );
    let joined = explain(
        &c,
        "SELECT a.v, count(*) FROM t a JOIN t b ON a.id = b.id GROUP BY a.v",
    )
    .await;
    assert!(joined.contains("Aggregate at the proxy"), "{joined}");
    let distinct = explain(&c, "SELECT count(DISTINCT v), sum(id) FROM t").await;
    assert!(
        distinct.contains("DISTINCT by grouping on its argument"),
        "{distinct}"
    );
    let ins = explain(&c, "INSERT INTO t VALUES (1, 'a')").await;
    assert!(
        ins.contains("(single-shard)") && ins.contains("one WAL record"),
        "{ins}"
    );
    let upd = explain(&c, "UPDATE t SET v = 'b'").await;
    assert!(upd.contains("two-phase commit"), "{upd}");
}

#[tokio::test]
async fn shard_key_option_routes_by_the_named_column() {
    let (_dir, server, c) = start().await;
    c.batch_execute(
        "CREATE TABLE orders (id int, tenant int, total int, PRIMARY KEY (id, tenant)) \
         WITH (shard_key = 'tenant')",
    )
    .await
    .unwrap();
    let by_tenant = explain(&c, "SELECT * FROM orders WHERE tenant = 3").await;
    assert!(by_tenant.contains("single-shard"), "{by_tenant}");
    let by_id = explain(&c, "SELECT * FROM orders WHERE id = 3").await;
    assert!(by_id.contains("scatter-gather"), "{by_id}");
    // Rows of one tenant, written in transactions and autocommit, read back
    // through the single-shard route.
    for i in 0..40 {
        c.execute(
            "INSERT INTO orders VALUES ($1, $2, $3)",
            &[&i, &(i % 4), &(i * 10)],
        )
        .await
        .unwrap();
    }
    let mut t = server.client().await;
    let tx = t.transaction().await.unwrap();
    tx.execute("UPDATE orders SET total = total + 1 WHERE tenant = 1", &[])
        .await
        .unwrap();
    tx.execute("DELETE FROM orders WHERE id = 0 AND tenant = 0", &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let rows = c
        .query(
            "SELECT id, total FROM orders WHERE tenant = 1 ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 10);
    assert!(rows.iter().all(|r| r.get::<_, i32>(1) % 10 == 1));
    let n: i64 = c
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 39);
    let err = c
        .batch_execute("CREATE TABLE bad (id int PRIMARY KEY, t int) WITH (shard_key = 't')")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "0A000");
}

#[tokio::test]
async fn replicated_tables_live_on_every_shard() {
    let (_dir, _server, c) = start().await;
    c.batch_execute(
        "CREATE TABLE countries (code text PRIMARY KEY, name text) WITH (replicated = true);
         INSERT INTO countries VALUES ('no', 'Norway'), ('it', 'Italy');
         UPDATE countries SET name = 'Italia' WHERE code = 'it';",
    )
    .await
    .unwrap();
    let plan = explain(&c, "SELECT * FROM countries").await;
    assert!(plan.contains("replicated table"), "{plan}");
    let ins = explain(&c, "INSERT INTO countries VALUES ('se', 'Sweden')").await;
    assert!(ins.contains("every shard"), "{ins}");
    let rows = c
        .query("SELECT code, name FROM countries ORDER BY code", &[])
        .await
        .unwrap();
    let got: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        vec![
            ("it".into(), "Italia".into()),
            ("no".into(), "Norway".into())
        ]
    );
    // The primary key holds on the copies too.
    let err = c
        .execute("INSERT INTO countries VALUES ('no', 'again')", &[])
        .await
        .unwrap_err();
    assert_eq!(code(&err), "23505");
}

#[tokio::test]
async fn unique_holds_across_shards_under_concurrent_inserts() {
    let (_dir, server, c) = start().await;
    c.batch_execute("CREATE TABLE acct (id int PRIMARY KEY, email text UNIQUE)")
        .await
        .unwrap();
    // 8 clients race to claim the same 20 emails with distinct ids (so the
    // rows land on different shards); each email must be won exactly once.
    let mut tasks = Vec::new();
    for w in 0..8i32 {
        let client = server.client().await;
        tasks.push(tokio::spawn(async move {
            let mut won = 0;
            for e in 0..20i32 {
                let id = w * 1000 + e;
                let email = format!("user{e}@x.org");
                loop {
                    match client
                        .execute("INSERT INTO acct VALUES ($1, $2)", &[&id, &email])
                        .await
                    {
                        Ok(_) => {
                            won += 1;
                            break;
                        }
                        Err(err) if code(&err) == "23505" => break,
                        Err(err) if code(&err) == "40001" => continue,
                        Err(err) => panic!("unexpected error: {err:?}"),
                    }
                }
            }
            won
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 20, "each email is claimed exactly once");
    let distinct: i64 = c
        .query_one("SELECT count(DISTINCT email) FROM acct", &[])
        .await
        .unwrap()
        .get(0);
    let rows: i64 = c
        .query_one("SELECT count(*) FROM acct", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!((rows, distinct), (20, 20));
}

#[tokio::test]
async fn secondary_indexes_serve_lookups_across_restarts() {
    let (_dir, mut server, c) = start().await;
    c.batch_execute("CREATE TABLE ev (id int PRIMARY KEY, kind text, n int)")
        .await
        .unwrap();
    // Rows before the index exist: the build must cover them.
    for i in 0..200 {
        c.execute(
            "INSERT INTO ev VALUES ($1, $2, $3)",
            &[&i, &format!("k{}", i % 7), &i],
        )
        .await
        .unwrap();
    }
    c.batch_execute("CREATE INDEX ev_kind ON ev (kind)")
        .await
        .unwrap();
    let plan = explain(&c, "SELECT id FROM ev WHERE kind = 'k3'").await;
    assert!(plan.contains("Index lookup: ev_kind"), "{plan}");
    let by_scan = |k: &str| format!("SELECT id FROM ev WHERE kind || '' = '{k}' ORDER BY id");
    let by_index = |k: &str| format!("SELECT id FROM ev WHERE kind = '{k}' ORDER BY id");
    async fn ids(c: &tokio_postgres::Client, sql: &str) -> Vec<i32> {
        c.query(sql, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }
    assert_eq!(
        ids(&c, &by_index("k3")).await,
        ids(&c, &by_scan("k3")).await
    );
    // Changes after the build: moved, deleted and new rows.
    c.batch_execute(
        "UPDATE ev SET kind = 'k3' WHERE id < 10;
         DELETE FROM ev WHERE id BETWEEN 100 AND 120;
         INSERT INTO ev VALUES (1000, 'k3', 0)",
    )
    .await
    .unwrap();
    // A REPEATABLE READ snapshot still sees the index as of its start.
    let mut t = server.client().await;
    let tx = common::snapshot_txn(&mut t).await.unwrap();
    let before: Vec<i32> = tx
        .query(&by_index("k3"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    c.batch_execute("UPDATE ev SET kind = 'gone' WHERE id = 1000")
        .await
        .unwrap();
    let again: Vec<i32> = tx
        .query(&by_index("k3"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(before, again, "the index respects the snapshot");
    assert!(before.contains(&1000));
    tx.commit().await.unwrap();
    for k in ["k0", "k3", "gone"] {
        assert_eq!(
            ids(&c, &by_index(k)).await,
            ids(&c, &by_scan(k)).await,
            "{k}"
        );
    }
    let expected = ids(&c, &by_scan("k3")).await;
    drop(c);
    server.kill();
    server.restart();
    let c = server.client().await;
    assert_eq!(ids(&c, &by_index("k3")).await, expected, "after replay");
    c.batch_execute("DROP INDEX ev_kind").await.unwrap();
    let plan = explain(&c, "SELECT id FROM ev WHERE kind = 'k3'").await;
    assert!(!plan.contains("Index lookup"), "{plan}");
    assert_eq!(ids(&c, &by_index("k3")).await, expected);
}

#[tokio::test]
async fn information_schema_and_pg_catalog_describe_the_tables() {
    let (_dir, _server, c) = start().await;
    c.batch_execute(
        "CREATE TABLE people (id int PRIMARY KEY, name varchar(20) NOT NULL, score numeric(6,2));
         CREATE TABLE pets (id int PRIMARY KEY, owner int, email text UNIQUE)",
    )
    .await
    .unwrap();
    let tables: Vec<String> = c
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        tables,
        vec!["people", "pets"],
        "hidden UNIQUE tables stay hidden"
    );
    let cols: Vec<(String, String, String, Option<i32>)> = c
        .query(
            "SELECT column_name::text, data_type, is_nullable, character_maximum_length \
             FROM information_schema.columns WHERE table_name = 'people' ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        cols,
        vec![
            ("id".into(), "integer".into(), "NO".into(), None),
            (
                "name".into(),
                "character varying".into(),
                "NO".into(),
                Some(20)
            ),
            ("score".into(), "numeric".into(), "YES".into(), None),
        ]
    );
    // A driver-style type look-up by OID, and a join of system relations.
    let typname: String = c
        .query_one(
            "SELECT typname::text FROM pg_catalog.pg_type WHERE oid = $1",
            &[&2950i64],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(typname, "uuid");
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
}

#[tokio::test]
async fn metrics_count_routes_and_shard_requests() {
    let (_dir, _server, c) = start().await;
    c.batch_execute("CREATE TABLE m (id int PRIMARY KEY, v int)")
        .await
        .unwrap();
    async fn read(c: &tokio_postgres::Client) -> std::collections::HashMap<String, String> {
        c.simple_query("SHOW fortress.metrics")
            .await
            .unwrap()
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some((r.get(0).unwrap().to_string(), r.get(1).unwrap().to_string()))
                }
                _ => None,
            })
            .collect()
    }
    let before = read(&c).await;
    for i in 0..5 {
        c.query("SELECT * FROM m WHERE id = $1", &[&i])
            .await
            .unwrap();
    }
    c.query("SELECT * FROM m WHERE v = 1", &[]).await.unwrap();
    let after = read(&c).await;
    let delta = |k: &str| after[k].parse::<u64>().unwrap() - before[k].parse::<u64>().unwrap();
    assert_eq!(delta("reads_single_shard"), 5);
    assert_eq!(delta("reads_scatter_gather"), 1);
    let requests: u64 = (0..4).map(|s| delta(&format!("shard_{s}_requests"))).sum();
    assert_eq!(
        requests,
        5 + 4,
        "one request per single-shard read, four for the scatter"
    );
    assert_eq!(after["hot_shards"], "");
    assert_eq!(after["hot_vnodes"], "");
    // One key read over and over is a hot vnode (each read differs in a
    // parameter so the result cache does not absorb it).
    let hot = c
        .prepare("SELECT * FROM m WHERE id = 42 AND v <> $1")
        .await
        .unwrap();
    for i in 0..1_100 {
        c.query(&hot, &[&i]).await.unwrap();
    }
    let plan = explain(&c, "SELECT * FROM m WHERE id = 42").await;
    let shard = plan
        .split("at shard ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    let flagged = read(&c).await["hot_vnodes"].clone();
    assert!(
        flagged.ends_with(&format!("@{shard}")) && !flagged.contains(','),
        "{flagged}"
    );
}

#[tokio::test]
async fn result_cache_hits_on_repeat_and_never_serves_stale_rows() {
    let (_dir, server, c) = start().await;
    c.batch_execute("CREATE TABLE k (id int PRIMARY KEY, v int); INSERT INTO k VALUES (1, 10)")
        .await
        .unwrap();
    async fn counter(c: &tokio_postgres::Client, name: &str) -> u64 {
        c.simple_query("SHOW fortress.metrics")
            .await
            .unwrap()
            .into_iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some(name) => {
                    r.get(1).map(|v| v.parse().unwrap())
                }
                _ => None,
            })
            .unwrap()
    }
    // A scan is cached; a point read (one seek) is not.
    async fn v(c: &tokio_postgres::Client) -> i32 {
        c.query_one("SELECT v FROM k WHERE id > $1", &[&0i32])
            .await
            .unwrap()
            .get(0)
    }
    async fn point(c: &tokio_postgres::Client) -> i32 {
        c.query_one("SELECT v FROM k WHERE id = $1", &[&1i32])
            .await
            .unwrap()
            .get(0)
    }
    let hits = counter(&c, "cache_hits").await;
    assert_eq!(v(&c).await, 10);
    assert_eq!(v(&c).await, 10);
    assert_eq!(
        counter(&c, "cache_hits").await,
        hits + 1,
        "the repeat is a hit"
    );
    let row_hits = counter(&c, "row_cache_hits").await;
    assert_eq!(point(&c).await, 10);
    assert_eq!(point(&c).await, 10);
    assert_eq!(
        counter(&c, "cache_hits").await,
        hits + 1,
        "point reads bypass the cache"
    );
    assert!(
        counter(&c, "row_cache_hits").await > row_hits,
        "a repeated point read is answered by the shard's row cache"
    );
    assert!(counter(&c, "row_cache_bytes").await > 0);
    // Another session's write: the next read sees it, not the cached row.
    let w = server.client().await;
    w.execute("UPDATE k SET v = 11 WHERE id = 1", &[])
        .await
        .unwrap();
    assert_eq!(v(&c).await, 11);
    // Reads inside a transaction block bypass the cache.
    let mut t = server.client().await;
    let tx = t.transaction().await.unwrap();
    tx.execute("UPDATE k SET v = 12 WHERE id = 1", &[])
        .await
        .unwrap();
    let own: i32 = tx
        .query_one("SELECT v FROM k WHERE id = $1", &[&1i32])
        .await
        .unwrap()
        .get(0);
    assert_eq!(own, 12, "read-your-writes, not the cache");
    assert_eq!(v(&c).await, 11, "uncommitted writes are invisible");
    tx.commit().await.unwrap();
    assert_eq!(v(&c).await, 12);
}

#[tokio::test]
async fn proxy_work_is_bounded_with_53200_not_an_out_of_memory_crash() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_env(dir.path(), &[("FORTRESS_WORK_ROWS", "500")]);
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE a (id int PRIMARY KEY, g int); CREATE TABLE b (id int PRIMARY KEY, g int)",
    )
    .await
    .unwrap();
    let values: Vec<String> = (0..200).map(|i| format!("({i}, {})", i % 2)).collect();
    c.batch_execute(&format!(
        "INSERT INTO a VALUES {v}; INSERT INTO b VALUES {v}",
        v = values.join(", ")
    ))
    .await
    .unwrap();
    // 200 x 100 matches per group: the join's result passes the budget.
    let err = c
        .query("SELECT count(*) FROM a JOIN b ON a.g = b.g", &[])
        .await
        .unwrap_err();
    assert_eq!(code(&err), "53200");
    // Within the budget the same tables join fine, and the server serves on.
    let n: i64 = c
        .query_one("SELECT count(*) FROM a JOIN b ON a.id = b.id", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 200);
    let g: i64 = c
        .query_one("SELECT count(DISTINCT g) FROM a", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(g, 2);
}

#[tokio::test]
async fn secondary_indexes_serve_ranges() {
    let (_dir, _server, c) = start().await;
    c.batch_execute(
        "CREATE TABLE m (id int PRIMARY KEY, n int, tag text, amt numeric(8,2));
         CREATE INDEX m_n ON m (n);
         CREATE INDEX m_tag ON m (tag);
         CREATE INDEX m_amt ON m (amt)",
    )
    .await
    .unwrap();
    let rows: Vec<String> = (0..300)
        .map(|i| {
            format!(
                "({i}, {}, 'k{}', {}.{:02})",
                i % 50 - 25,
                i % 13,
                i % 40 - 20,
                i % 100
            )
        })
        .collect();
    c.batch_execute(&format!("INSERT INTO m VALUES {}", rows.join(",")))
        .await
        .unwrap();
    let plan = explain(&c, "SELECT id FROM m WHERE n BETWEEN -3 AND 4").await;
    assert!(plan.contains("Index range scan: m_n"), "{plan}");
    let one_sided = explain(&c, "SELECT id FROM m WHERE n > 3").await;
    assert!(!one_sided.contains("Index"), "{one_sided}");
    async fn ids(c: &tokio_postgres::Client, sql: &str) -> Vec<i32> {
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
    // Each range through its index, and through a scan (an expression on
    // the column hides it from the index): the same rows.
    let ranges = [
        ("n", "n + 0", ">= -3 AND {c} <= 4"),
        ("n", "n + 0", "> -3 AND {c} < 4"),
        ("n", "n + 0", "> 20 AND {c} <= 24"),
        ("tag", "tag || ''", "> 'k1' AND {c} < 'k2'"),
        ("tag", "tag || ''", ">= 'k1' AND {c} <= 'k12'"),
        ("amt", "amt + 0", ">= -1.5 AND {c} < 2.25"),
        ("amt", "amt + 0", "> -20 AND {c} <= -19.01"),
    ];
    for (col, hidden, cond) in ranges {
        let indexed = format!("SELECT id FROM m WHERE {col} {}", cond.replace("{c}", col));
        let scanned = format!(
            "SELECT id FROM m WHERE {hidden} {}",
            cond.replace("{c}", hidden)
        );
        let plan = explain(&c, &indexed).await;
        assert!(plan.contains("Index range scan"), "{plan}");
        let got = ids(&c, &indexed).await;
        assert!(!got.is_empty(), "{indexed} should match rows");
        assert_eq!(got, ids(&c, &scanned).await, "{indexed}");
    }
}
