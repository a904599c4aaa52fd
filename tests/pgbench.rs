//! What `pgbench` needs, through real clients: tables without a primary key
//! (sharded on their first column, duplicates kept), ALTER TABLE ADD PRIMARY
//! KEY checking the rows it re-keys, TRUNCATE inside a transaction block,
//! VACUUM / ANALYZE, and pgbench itself (PostgreSQL 15's) initializing and
//! running its scripts unchanged.

mod common;

use std::process::Command;

use common::{code, Server};

async fn start() -> (tempfile::TempDir, Server, tokio_postgres::Client) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = server.client().await;
    (dir, server, c)
}

async fn int(c: &impl tokio_postgres::GenericClient, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn keyless_table_keeps_equal_rows_and_takes_a_primary_key_later() {
    let (_dir, mut server, c) = start().await;
    c.batch_execute(
        "CREATE TABLE h (tid int, delta int, note text);
         INSERT INTO h VALUES (1, 10, 'a'), (1, 10, 'a'), (2, 5, NULL), (NULL, 1, 'n')",
    )
    .await
    .unwrap();
    // pgbench's spelling of COPY: a boolean option as `on`, data ending
    // with the `\.` marker.
    let sink = c
        .copy_in::<_, bytes::Bytes>("COPY h FROM STDIN WITH (FREEZE on)")
        .await
        .unwrap();
    futures::pin_mut!(sink);
    use futures::SinkExt;
    sink.send(bytes::Bytes::from_static(b"3\t7\tx\n3\t7\tx\n\\.\n"))
        .await
        .unwrap();
    assert_eq!(sink.finish().await.unwrap(), 2);
    assert_eq!(int(&c, "SELECT count(*) FROM h").await, 6);
    assert_eq!(int(&c, "SELECT count(*) FROM h WHERE tid = 1").await, 2);
    // The row id is invisible: `*` shows the three declared columns.
    let row = c
        .query_one("SELECT * FROM h WHERE tid = 2", &[])
        .await
        .unwrap();
    assert_eq!(row.len(), 3);
    let e = c.query("SELECT rowid FROM h", &[]).await.unwrap_err();
    assert_eq!(code(&e), "42703");
    // Updates and deletes reach each of the equal rows, also when the
    // shard-key column changes (the row moves).
    assert_eq!(
        c.execute("UPDATE h SET delta = delta + 1 WHERE tid = 1", &[])
            .await
            .unwrap(),
        2
    );
    c.execute("UPDATE h SET tid = 4 WHERE tid = 2", &[])
        .await
        .unwrap();
    assert_eq!(
        int(&c, "SELECT sum(delta)::int8 FROM h WHERE tid = 1").await,
        22
    );
    assert_eq!(int(&c, "SELECT count(*) FROM h WHERE tid = 4").await, 1);

    // A primary key over NULLs or duplicates is refused (NULLs first, as
    // PostgreSQL checks), and the table stays writable afterwards.
    let e = c
        .batch_execute("ALTER TABLE h ADD PRIMARY KEY (tid)")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "23502", "{e:?}");
    c.batch_execute("DELETE FROM h WHERE tid IS NULL")
        .await
        .unwrap();
    let e = c
        .batch_execute("ALTER TABLE h ADD PRIMARY KEY (tid)")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "23505", "{e:?}");
    let detail = e.as_db_error().and_then(|d| d.detail()).unwrap_or_default();
    assert!(detail.starts_with("Key (tid)=("), "{detail}");
    c.batch_execute("DELETE FROM h WHERE tid IN (1, 3); INSERT INTO h VALUES (1, 1, 'one')")
        .await
        .unwrap();
    c.batch_execute("ALTER TABLE h ADD PRIMARY KEY (tid)")
        .await
        .unwrap();
    let e = c
        .batch_execute("ALTER TABLE h ADD PRIMARY KEY (delta)")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42P16");
    let e = c
        .batch_execute("INSERT INTO h VALUES (1, 2, 'again')")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "23505");
    assert_eq!(
        c.query_one("SELECT note FROM h WHERE tid = 1", &[])
            .await
            .unwrap()
            .get::<_, Option<String>>(0)
            .as_deref(),
        Some("one")
    );
    // The rewrite is in the log: a restart replays it to the same rows.
    drop(c);
    server.stop();
    server.restart();
    let c = server.client().await;
    let rows = c
        .query("SELECT tid, delta, note FROM h ORDER BY tid", &[])
        .await
        .unwrap();
    let got: Vec<(i32, i32)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, [(1, 1), (4, 5)]);
    let e = c
        .batch_execute("INSERT INTO h VALUES (4, 0, 'dup')")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "23505");
}

#[tokio::test]
async fn primary_key_may_leave_out_the_shard_key_only_while_empty() {
    let (_dir, _server, c) = start().await;
    c.batch_execute(
        "CREATE TABLE e (a int, b int);
         ALTER TABLE e ADD PRIMARY KEY (b);
         INSERT INTO e VALUES (1, 1), (1, 2);
         CREATE TABLE f (a int, b int);
         INSERT INTO f VALUES (1, 1)",
    )
    .await
    .unwrap();
    assert_eq!(int(&c, "SELECT count(*) FROM e WHERE b = 2").await, 1);
    let e = c
        .batch_execute("ALTER TABLE f ADD PRIMARY KEY (b)")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "0A000", "{e:?}");
    c.batch_execute("INSERT INTO f VALUES (2, 2)")
        .await
        .unwrap();
}

#[tokio::test]
async fn truncate_in_a_block_commits_or_rolls_back_with_it() {
    let (_dir, _server, mut c) = start().await;
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 1), (2, 2), (3, 3)",
    )
    .await
    .unwrap();
    let tx = c.transaction().await.unwrap();
    tx.batch_execute("TRUNCATE t").await.unwrap();
    assert_eq!(int(&tx, "SELECT count(*) FROM t").await, 0);
    tx.rollback().await.unwrap();
    assert_eq!(int(&c, "SELECT count(*) FROM t").await, 3);
    let tx = c.transaction().await.unwrap();
    tx.batch_execute("TRUNCATE TABLE t; INSERT INTO t VALUES (2, 20)")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(int(&c, "SELECT sum(v)::int8 FROM t").await, 20);
    assert_eq!(int(&c, "SELECT count(*) FROM t").await, 1);
}

#[tokio::test]
async fn vacuum_and_analyze_check_their_tables() {
    let (_dir, _server, c) = start().await;
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    c.batch_execute("VACUUM ANALYZE t; VACUUM; ANALYZE t; vacuum (verbose) t")
        .await
        .unwrap();
    let e = c.batch_execute("VACUUM nope").await.unwrap_err();
    assert_eq!(code(&e), "42P01");
    let e = c
        .batch_execute("BEGIN; VACUUM t; COMMIT")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "25001");
    c.batch_execute("ROLLBACK").await.unwrap();
    let e = c.batch_execute("VACUUM t t").await.unwrap_err();
    assert_eq!(code(&e), "42601");
    // VACUUM collects old versions now: what is visible stays, through
    // the table, its index and its UNIQUE index table alike.
    let values: Vec<String> = (1..=50).map(|i| format!("({i}, {i}, {i})")).collect();
    c.batch_execute(&format!(
        "CREATE TABLE u (id int PRIMARY KEY, v int, w int UNIQUE); CREATE INDEX u_v ON u (v);
         INSERT INTO u VALUES {};
         UPDATE u SET v = v + 100, w = w + 100; DELETE FROM u WHERE id > 40;
         VACUUM u; VACUUM",
        values.join(", ")
    ))
    .await
    .unwrap();
    assert_eq!(int(&c, "SELECT count(*) FROM u").await, 40);
    assert_eq!(int(&c, "SELECT id::int8 FROM u WHERE v = 107").await, 7);
    assert_eq!(int(&c, "SELECT count(*) FROM u WHERE v < 100").await, 0);
    let e = c
        .batch_execute("INSERT INTO u VALUES (99, 0, 120)")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "23505", "the UNIQUE index survives VACUUM");
}

/// PostgreSQL 15's pgbench, if installed (CI installs it).
fn pgbench() -> Option<std::path::PathBuf> {
    let bin = common::postgres::pg15_bin().map(|d| d.join("pgbench"));
    let found = bin.filter(|b| b.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("FORTRESS_REQUIRE_PG").is_none(),
            "pgbench is required (FORTRESS_REQUIRE_PG is set) but not installed"
        );
        eprintln!("SKIPPED: pgbench (postgresql-15) is not installed");
    }
    found
}

#[tokio::test]
async fn pgbench_initializes_and_runs_its_scripts_unchanged() {
    let Some(pgbench) = pgbench() else { return };
    let (_dir, server, c) = start().await;
    let run = |args: &[&str]| {
        let out = Command::new(&pgbench)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &server.port.to_string(),
                "-U",
                "bench",
            ])
            .args(args)
            .arg("bench")
            .output()
            .expect("run pgbench");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "pgbench {args:?}:\n{text}");
        text
    };
    run(&["-i", "-s", "1", "-q"]);
    assert_eq!(
        int(&c, "SELECT count(*) FROM pgbench_accounts").await,
        100_000
    );
    assert_eq!(int(&c, "SELECT count(*) FROM pgbench_tellers").await, 10);
    assert_eq!(int(&c, "SELECT count(*) FROM pgbench_branches").await, 1);
    for mode in ["simple", "extended", "prepared"] {
        let out = run(&["-S", "-M", mode, "-c", "4", "-j", "2", "-t", "200"]);
        assert!(
            out.contains("number of transactions actually processed: 800/800"),
            "{out}"
        );
    }
    // TPC-B-like: the balances move together and every transaction leaves
    // a history row. The first run empties the history as it starts; `-n`
    // keeps it. Four clients on one branch all update the same row: under
    // READ COMMITTED they queue on its lock and none fails.
    let out = run(&["-M", "simple", "-v", "-c", "1", "-t", "100"]);
    assert!(out.contains("actually processed: 100/100"), "{out}");
    let out = run(&["-M", "prepared", "-n", "-c", "4", "-j", "2", "-t", "50"]);
    assert!(out.contains("actually processed: 200/200"), "{out}");
    assert!(out.contains("number of failed transactions: 0 "), "{out}");
    assert_eq!(int(&c, "SELECT count(*) FROM pgbench_history").await, 300);
    let sums = c
        .query_one(
            "SELECT (SELECT sum(abalance)::int8 FROM pgbench_accounts),
                    (SELECT sum(tbalance)::int8 FROM pgbench_tellers),
                    (SELECT sum(bbalance)::int8 FROM pgbench_branches),
                    (SELECT sum(delta)::int8 FROM pgbench_history)",
            &[],
        )
        .await
        .unwrap();
    let s: Vec<i64> = (0..4).map(|i| sums.get(i)).collect();
    assert!(s.iter().all(|&x| x == s[0]), "{s:?}");
}
