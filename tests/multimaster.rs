//! Multi-master: two fortress nodes that each take writes and pull each
//! other's (`--peer`), under each conflict resolver: concurrent updates of
//! the same rows on both converge to the same rows, and version vectors
//! report the siblings until a later write resolves them.

mod common;

use std::time::{Duration, Instant};

use common::net::Relay;
use common::{free_port, insert_chunked, wait_for_log, Server};

/// Two peers `a` and `b` under `root`, each pulling from the other
/// through a relay the test can block, resolving by `resolver`.
async fn pair(
    root: &std::path::Path,
    resolver: &str,
    more: &[&str],
) -> (Server, Server, Relay, Relay) {
    let (ra, rb) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    // a pulls from b through `to_b`, b from a through `to_a`.
    let (to_a, to_b) = (
        Relay::start(ra.clone()).await,
        Relay::start(rb.clone()).await,
    );
    let node = |name: &str, listen: &str, peer: String| {
        let mut args = vec![
            "--name",
            name,
            "--replication-listen",
            listen,
            "--peer",
            &peer,
            "--conflict",
            resolver,
        ];
        args.extend_from_slice(more);
        Server::launch_args(root.join(name), 4, &[], &args)
    };
    let a = node("a", &ra, format!("b={}", to_b.addr));
    let b = node("b", &rb, format!("a={}", to_a.addr));
    for s in [&a, &b] {
        s.client()
            .await
            .batch_execute(
                "CREATE TABLE t (id int PRIMARY KEY, v bigint, who text);
                 CREATE TABLE g (id int PRIMARY KEY, v bigint) WITH (conflict_resolver = 'greatest(v)')",
            )
            .await
            .unwrap();
    }
    (a, b, to_a, to_b)
}

async fn rows(s: &Server) -> Vec<(i32, i64, String)> {
    s.client()
        .await
        .query("SELECT id, v, who FROM t ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// Waits (up to 30 s) until both peers hold the same rows, `want` of
/// them; returns them.
async fn converged(a: &Server, b: &Server, want: usize) -> Vec<(i32, i64, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ra, rb) = (rows(a).await, rows(b).await);
        if ra == rb && ra.len() == want {
            return ra;
        }
        assert!(
            Instant::now() < deadline,
            "the peers did not converge:\na: {ra:?}\nb: {rb:?}\n{}\n{}",
            a.log(),
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `(table, key, visible node, sibling node)` of each row of
/// `fortress_conflicts`.
async fn conflicts(s: &Server) -> Vec<(String, String, String, String)> {
    let mut out: Vec<_> = s
        .client()
        .await
        .query("SELECT * FROM fortress_conflicts", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get("table_name"),
                r.get("key"),
                r.get("visible_node"),
                r.get("sibling_node"),
            )
        })
        .collect();
    out.sort();
    out
}

async fn update(s: &Server, id: i32, v: i64, who: &str) {
    s.client()
        .await
        .execute(
            "UPDATE t SET v = $1, who = $2 WHERE id = $3",
            &[&v, &who, &id],
        )
        .await
        .unwrap();
}

/// Rows 0..20 written on a, then both peers write at once: each updates
/// every row, inserts rows of its own and deletes one; then, cut off from
/// each other, both update row 7. Returns once they converged.
async fn write_on_both(
    a: &Server,
    b: &Server,
    to_a: &Relay,
    to_b: &Relay,
) -> Vec<(i32, i64, String)> {
    let values: Vec<String> = (0..20).map(|i| format!("({i}, 0, 'a')")).collect();
    a.client()
        .await
        .batch_execute(&format!("INSERT INTO t VALUES {}", values.join(",")))
        .await
        .unwrap();
    converged(a, b, 20).await;
    let run = |s: &Server, who: &'static str, base: i32| {
        let url = s.url();
        tokio::spawn(async move {
            let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            for round in 0..5i64 {
                for id in 0..20 {
                    c.execute(
                        "UPDATE t SET v = $1, who = $2 WHERE id = $3",
                        &[&(round * 100 + id as i64), &who, &id],
                    )
                    .await
                    .unwrap();
                }
            }
            for i in 0..5 {
                c.execute("INSERT INTO t VALUES ($1, 1, $2)", &[&(base + i), &who])
                    .await
                    .unwrap();
            }
            c.execute("DELETE FROM t WHERE id = $1", &[&(base + 4)])
                .await
                .unwrap();
        })
    };
    let (wa, wb) = (run(a, "a", 100), run(b, "b", 200));
    wa.await.unwrap();
    wb.await.unwrap();
    converged(a, b, 28).await;
    // Cut off from each other, both update row 7: concurrent for sure.
    to_a.block();
    to_b.block();
    update(a, 7, 7001, "a").await;
    update(b, 7, 7002, "b").await;
    to_a.unblock();
    to_b.unblock();
    converged(a, b, 28).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_timestamp_and_lww_concurrent_updates_converge_on_the_later_write() {
    for resolver in ["timestamp", "lww"] {
        let root = tempfile::tempdir().unwrap();
        let (mut a, mut b, to_a, to_b) = pair(root.path(), resolver, &[]).await;
        let rows = write_on_both(&a, &b, &to_a, &to_b).await;
        // b's update of row 7 came last: it wins on both.
        let seven = rows.iter().find(|r| r.0 == 7).unwrap();
        assert_eq!(seven, &(7, 7002, "b".to_string()), "{resolver}");
        assert!(conflicts(&a).await.is_empty(), "{resolver}");
        // Every row a node inserted is on both; the deleted ones on neither.
        assert!(rows.iter().any(|r| r.0 == 103) && rows.iter().any(|r| r.0 == 203));
        assert!(!rows.iter().any(|r| r.0 == 104 || r.0 == 204));
        // A table naming its own resolver: the greater v wins, though
        // b's write is the later.
        let ca = a.client().await;
        let cb = b.client().await;
        ca.batch_execute("INSERT INTO g VALUES (1, 0)")
            .await
            .unwrap();
        wait_for(&cb, "SELECT v FROM g WHERE id = 1", 0).await;
        to_a.block();
        to_b.block();
        ca.batch_execute("UPDATE g SET v = 9000 WHERE id = 1")
            .await
            .unwrap();
        cb.batch_execute("UPDATE g SET v = 5 WHERE id = 1")
            .await
            .unwrap();
        to_a.unblock();
        to_b.unblock();
        wait_for(&ca, "SELECT v FROM g WHERE id = 1", 9000).await;
        wait_for(&cb, "SELECT v FROM g WHERE id = 1", 9000).await;
        let c = a.client().await;
        let shown = c.query("SHOW fortress.replication", &[]).await.unwrap();
        assert!(
            shown
                .iter()
                .any(|r| r.get::<_, String>("role") == "peer"
                    && r.get::<_, String>("mode") == resolver),
            "{resolver}"
        );
        a.stop();
        b.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_vectors_keep_concurrent_versions_as_siblings_until_a_later_write() {
    let root = tempfile::tempdir().unwrap();
    let (mut a, mut b, to_a, to_b) = pair(root.path(), "version-vector", &[]).await;
    let e = a
        .client()
        .await
        .batch_execute("CREATE TABLE h (id int PRIMARY KEY) WITH (conflict_resolver = 'newest')")
        .await
        .unwrap_err();
    assert_eq!(common::code(&e), "22023", "{e}");
    let rows = write_on_both(&a, &b, &to_a, &to_b).await;
    // Both show the same version of row 7 (the later), and both report
    // the other as its sibling.
    let seven = rows.iter().find(|r| r.0 == 7).unwrap();
    assert_eq!(seven, &(7, 7002, "b".to_string()));
    let want = (
        "t".to_string(),
        "7".to_string(),
        "b".to_string(),
        "a".to_string(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ca, cb) = (conflicts(&a).await, conflicts(&b).await);
        if ca.contains(&want) && cb.contains(&want) {
            break;
        }
        assert!(Instant::now() < deadline, "a: {ca:?}\nb: {cb:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A later write on a, which saw both, resolves it on both.
    update(&a, 7, 7003, "a").await;
    converged(&a, &b, 28).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ca, cb) = (conflicts(&a).await, conflicts(&b).await);
        if !ca.iter().any(|c| c.1 == "7") && !cb.iter().any(|c| c.1 == "7") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still reported: a: {ca:?}\nb: {cb:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rows_of(&b, 7).await, Some((7, 7003, "a".to_string())));
    a.stop();
    b.stop();
}

async fn rows_of(s: &Server, id: i32) -> Option<(i32, i64, String)> {
    rows(s).await.into_iter().find(|r| r.0 == id)
}

/// Waits (up to 30 s) until `sql` answers `want` (one bigint).
async fn wait_for(c: &tokio_postgres::Client, sql: &str, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: Option<i64> = c.query_opt(sql, &[]).await.unwrap().map(|r| r.get(0));
        if got == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: {got:?}, not {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_away_while_the_other_writes_and_recycles_catches_up_from_the_wal_kept_for_it() {
    let root = tempfile::tempdir().unwrap();
    let recycling = [
        "--wal-segment-mb",
        "1",
        "--wal-keep-segments",
        "0",
        "--wal-recycle-interval",
        "200ms",
    ];
    let (a, mut b, _to_a, _to_b) = pair(root.path(), "timestamp", &recycling).await;
    let ca = a.client().await;
    ca.batch_execute("INSERT INTO t VALUES (1, 1, 'a')")
        .await
        .unwrap();
    wait_for(&b.client().await, "SELECT v FROM t WHERE id = 1", 1).await;
    // b goes away; a writes 8 MiB and checkpoints: the WAL b has not
    // pulled stays.
    b.stop();
    let pad = "x".repeat(1000);
    insert_chunked(&ca, "t", 100..8100, |i| format!("({i}, 0, '{pad}')")).await;
    ureq::post(&format!("{}/api/v1/checkpoints", a.admin_url()))
        .send_empty()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !a.log().contains("recycled WAL segments"),
        "WAL the away peer needs was recycled"
    );
    // Back, b pulls from where it recorded, and then a recycles.
    b.restart();
    wait_for(&b.client().await, "SELECT count(*) FROM t", 8001).await;
    wait_for_log(&a, "recycled WAL segments", 30).await;
    assert!(root.path().join("a/peers/b.held.json").exists());
    assert!(root.path().join("b/peers/a.json").exists());
}
