//! Transactions through real clients: blocks, read-your-writes, snapshot
//! reads, 25P02 after an error, ReadyForQuery status, no lost updates.

mod common;

use std::io::Write;

use common::{code, snapshot_txn, Server};

/// Accounts of one branch: the shard key is `branch`, so every row lives on
/// one shard and transactions over them commit on that shard alone.
async fn setup(server: &Server) -> tokio_postgres::Client {
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE acct (branch int DEFAULT 1, id int, owner text, balance bigint NOT NULL, PRIMARY KEY (branch, id))",
    )
    .await
    .unwrap();
    c.batch_execute("INSERT INTO acct (id, owner, balance) VALUES (1, 'ann', 100), (2, 'bob', 50)")
        .await
        .unwrap();
    c
}

async fn balance(c: &tokio_postgres::Client, id: i32) -> Option<i64> {
    c.query_opt("SELECT balance FROM acct WHERE id = $1", &[&id])
        .await
        .unwrap()
        .map(|r| r.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_publishes_and_rollback_discards() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut a = setup(&server).await;
    let b = server.client().await;

    let t = a.transaction().await.unwrap();
    t.execute("UPDATE acct SET balance = balance - 30 WHERE id = 1", &[])
        .await
        .unwrap();
    t.execute(
        "INSERT INTO acct (id, owner, balance) VALUES (3, 'cyd', 7)",
        &[],
    )
    .await
    .unwrap();
    // Read-your-writes inside, nothing visible outside.
    let own: i64 = t
        .query_one("SELECT balance FROM acct WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(own, 70);
    let all = t
        .query("SELECT id FROM acct ORDER BY id DESC", &[])
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>(),
        vec![3, 2, 1]
    );
    assert_eq!(balance(&b, 1).await, Some(100));
    assert_eq!(balance(&b, 3).await, None);
    t.commit().await.unwrap();
    assert_eq!(balance(&b, 1).await, Some(70));
    assert_eq!(balance(&b, 3).await, Some(7));

    let t = a.transaction().await.unwrap();
    t.execute("DELETE FROM acct WHERE id = 2", &[])
        .await
        .unwrap();
    t.execute("UPDATE acct SET owner = 'x'", &[]).await.unwrap();
    assert!(t
        .query_opt("SELECT * FROM acct WHERE id = 2", &[])
        .await
        .unwrap()
        .is_none());
    t.rollback().await.unwrap();
    assert_eq!(balance(&b, 2).await, Some(50));
    let owner: String = b
        .query_one("SELECT owner FROM acct WHERE id = 2", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, "bob");

    // Insert, delete and re-insert of one key inside a block.
    let t = a.transaction().await.unwrap();
    t.execute(
        "INSERT INTO acct (id, owner, balance) VALUES (9, 'tmp', 1)",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(
        code(
            &t.execute(
                "INSERT INTO acct (id, owner, balance) VALUES (9, 'dup', 1)",
                &[]
            )
            .await
            .unwrap_err()
        ),
        "23505"
    );
    drop(t); // rolled back by the driver
    let t = a.transaction().await.unwrap();
    t.execute("DELETE FROM acct WHERE id = 3", &[])
        .await
        .unwrap();
    t.execute(
        "INSERT INTO acct (id, owner, balance) VALUES (3, 'new', 8)",
        &[],
    )
    .await
    .unwrap();
    t.commit().await.unwrap();
    assert_eq!(balance(&b, 3).await, Some(8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_reads_one_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut a = setup(&server).await;
    let b = server.client().await;
    let t = snapshot_txn(&mut a).await.unwrap();
    let sum = |rows: Vec<tokio_postgres::Row>| rows.iter().map(|r| r.get::<_, i64>(0)).sum::<i64>();
    assert_eq!(
        sum(t.query("SELECT balance FROM acct", &[]).await.unwrap()),
        150
    );
    b.batch_execute(
        "UPDATE acct SET balance = 0 WHERE id = 2; INSERT INTO acct (id, owner, balance) VALUES (5, 'e', 1000)",
    )
    .await
    .unwrap();
    assert_eq!(
        sum(t.query("SELECT balance FROM acct", &[]).await.unwrap()),
        150,
        "repeatable"
    );
    t.commit().await.unwrap();
    assert_eq!(
        sum(a.query("SELECT balance FROM acct", &[]).await.unwrap()),
        1100
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_committer_wins() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut a = setup(&server).await;
    let mut b = server.client().await;
    let ta = snapshot_txn(&mut a).await.unwrap();
    let tb = snapshot_txn(&mut b).await.unwrap();
    ta.execute(
        "UPDATE acct SET balance = balance + 1 WHERE branch = 1 AND id = 1",
        &[],
    )
    .await
    .unwrap();
    tb.execute("UPDATE acct SET balance = balance + 10 WHERE id = 1", &[])
        .await
        .unwrap();
    ta.commit().await.unwrap();
    let e = tb.commit().await.unwrap_err();
    assert_eq!(code(&e), "40001");
    assert_eq!(balance(&a, 1).await, Some(101));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_abort_the_block_until_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = setup(&server).await;
    c.batch_execute("BEGIN").await.unwrap();
    c.batch_execute("UPDATE acct SET balance = 1 WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(
        code(&c.batch_execute("SELECT * FROM nope").await.unwrap_err()),
        "42P01"
    );
    for sql in [
        "SELECT 1",
        "SELECT * FROM nope",
        "UPDATE acct SET balance = 2",
    ] {
        assert_eq!(
            code(&c.batch_execute(sql).await.unwrap_err()),
            "25P02",
            "{sql}"
        );
        assert_eq!(
            code(&c.query(sql, &[]).await.unwrap_err()),
            "25P02",
            "{sql} (extended)"
        );
    }
    c.batch_execute("COMMIT").await.unwrap(); // ends the failed block as a ROLLBACK
    assert_eq!(balance(&c, 1).await, Some(100));
    c.batch_execute("START TRANSACTION ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; END")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_over_several_shards_commits_whole() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut c = setup(&server).await;
    let t = c.transaction().await.unwrap();
    for id in 10..30 {
        t.execute("INSERT INTO acct VALUES ($1, $1, 'm', 1)", &[&id])
            .await
            .unwrap();
    }
    t.commit().await.unwrap();
    let n = c
        .query("SELECT id FROM acct WHERE id >= 10", &[])
        .await
        .unwrap()
        .len();
    assert_eq!(n, 20);
    // A rolled-back one leaves nothing anywhere.
    let t = c.transaction().await.unwrap();
    t.execute("DELETE FROM acct WHERE id >= 10", &[])
        .await
        .unwrap();
    t.rollback().await.unwrap();
    assert_eq!(
        c.query("SELECT id FROM acct WHERE id >= 10", &[])
            .await
            .unwrap()
            .len(),
        20
    );
    // A conflict on one participant aborts every participant.
    let mut other = server.client().await;
    let t1 = snapshot_txn(&mut c).await.unwrap();
    let t2 = snapshot_txn(&mut other).await.unwrap();
    t1.execute("UPDATE acct SET balance = balance + 1 WHERE id >= 10", &[])
        .await
        .unwrap();
    t2.execute("UPDATE acct SET balance = balance + 5 WHERE id = 17", &[])
        .await
        .unwrap();
    t2.commit().await.unwrap();
    assert_eq!(code(&t1.commit().await.unwrap_err()), "40001");
    let total: i64 = c
        .query("SELECT balance FROM acct WHERE id >= 10", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .sum();
    assert_eq!(
        total,
        20 + 5,
        "the losing transaction left no partial effect"
    );
}

/// Sends one simple query on a raw connection and returns the
/// ReadyForQuery status that ends it.
fn status_after(s: &mut std::net::TcpStream, sql: &str) -> u8 {
    let mut msg = vec![b'Q'];
    msg.extend_from_slice(&((sql.len() + 5) as i32).to_be_bytes());
    msg.extend_from_slice(sql.as_bytes());
    msg.push(0);
    s.write_all(&msg).unwrap();
    ready_status(s)
}

/// Reads messages up to ReadyForQuery and returns its status byte.
fn ready_status(s: &mut std::net::TcpStream) -> u8 {
    loop {
        let (ty, body) = common::read_message(s);
        if ty == b'Z' {
            return body[0];
        }
    }
}

#[test]
fn ready_for_query_reports_idle_in_block_and_failed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(&common::startup_message(&[("user", "u")]))
        .unwrap();
    assert_eq!(ready_status(&mut s), b'I', "after start-up");
    assert_eq!(status_after(&mut s, ""), b'I');
    assert_eq!(
        status_after(&mut s, "CREATE TABLE k (id int PRIMARY KEY)"),
        b'I'
    );
    assert_eq!(status_after(&mut s, "BEGIN"), b'T');
    assert_eq!(status_after(&mut s, "INSERT INTO k VALUES (1)"), b'T');
    assert_eq!(status_after(&mut s, "SELECT * FROM missing"), b'E');
    assert_eq!(status_after(&mut s, "SELECT 1"), b'E');
    assert_eq!(status_after(&mut s, "ROLLBACK"), b'I');
    assert_eq!(
        status_after(&mut s, "SELECT * FROM missing"),
        b'I',
        "an error outside a block stays idle"
    );
    assert_eq!(
        status_after(&mut s, "BEGIN; INSERT INTO k VALUES (2); COMMIT"),
        b'I'
    );
    assert_eq!(status_after(&mut s, "BEGIN"), b'T');
    assert_eq!(status_after(&mut s, "COMMIT"), b'I');
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = setup(&server).await;
    c.batch_execute("UPDATE acct SET balance = 0 WHERE id = 1")
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let mut client = server.client().await;
        tasks.push(tokio::spawn(async move {
            let (mut committed, mut retries) = (0u32, 0u32);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while committed < 25 && std::time::Instant::now() < deadline {
                let t = client.transaction().await.unwrap();
                let r = async {
                    t.execute(
                        "UPDATE acct SET balance = balance + 1 WHERE branch = 1 AND id = 1",
                        &[],
                    )
                    .await?;
                    t.commit().await
                }
                .await;
                match r {
                    Ok(()) => committed += 1,
                    Err(e) if code(&e) == "40001" => retries += 1,
                    Err(e) => panic!("unexpected error {e:?}"),
                }
            }
            (committed, retries)
        }));
    }
    let mut acked = 0;
    let mut retries = 0;
    for t in tasks {
        let (c, r) = t.await.unwrap();
        acked += c;
        retries += r;
    }
    assert_eq!(
        balance(&c, 1).await,
        Some(acked as i64),
        "every acknowledged commit counted once"
    );
    assert!(acked > 0);
    eprintln!("{acked} increments committed, {retries} serialization retries");
}

/// READ COMMITTED, the default: a second writer of a row waits for the
/// first to finish and then updates the committed row, so neither fails
/// and no update is lost; a wait that closes a cycle fails with 40P01.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_writers_wait_for_row_locks() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut a = setup(&server).await;
    let mut b = server.client().await;
    let level: String = a
        .query_one("SHOW default_transaction_isolation", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(level, "read committed");
    // now() stays the transaction's start time while snapshots move on.
    let t = a.transaction().await.unwrap();
    let first: String = t.query_one("SELECT now()::text", &[]).await.unwrap().get(0);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let later: String = t.query_one("SELECT now()::text", &[]).await.unwrap().get(0);
    assert_eq!(first, later);
    t.commit().await.unwrap();
    let ta = a.transaction().await.unwrap();
    ta.execute("UPDATE acct SET balance = balance + 1 WHERE id = 1", &[])
        .await
        .unwrap();
    let waiter = tokio::spawn(async move {
        let tb = b.transaction().await.unwrap();
        // A range filter: rows found, locked, then read again.
        let n = tb
            .execute("UPDATE acct SET balance = balance + 10 WHERE id >= 1", &[])
            .await
            .unwrap();
        let seen: i64 = tb
            .query_one("SELECT balance FROM acct WHERE id = 1", &[])
            .await
            .unwrap()
            .get(0);
        tb.commit().await.unwrap();
        (n, seen)
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !waiter.is_finished(),
        "the second writer waits for the lock"
    );
    // Meanwhile readers are not blocked and see the committed value.
    let reader = server.client().await;
    assert_eq!(balance(&reader, 1).await, Some(100));
    ta.commit().await.unwrap();
    let (n, seen) = waiter.await.unwrap();
    assert_eq!(n, 2);
    assert_eq!(seen, 111, "the waiter updated the committed row");
    assert_eq!(balance(&a, 1).await, Some(111));
    assert_eq!(balance(&a, 2).await, Some(60));

    // Opposite lock orders: one of the two is told it deadlocked.
    let mut c = server.client().await;
    let t1 = a.transaction().await.unwrap();
    t1.execute("UPDATE acct SET balance = balance + 1 WHERE id = 1", &[])
        .await
        .unwrap();
    let second = tokio::spawn(async move {
        let t2 = c.transaction().await.unwrap();
        t2.execute("UPDATE acct SET balance = balance + 1 WHERE id = 2", &[])
            .await
            .unwrap();
        let r = t2
            .execute("UPDATE acct SET balance = balance + 1 WHERE id = 1", &[])
            .await;
        match r {
            Ok(_) => t2.commit().await.map(|_| ()),
            Err(e) => Err(e),
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let first = async move {
        t1.execute("UPDATE acct SET balance = balance + 1 WHERE id = 2", &[])
            .await?;
        t1.commit().await
    }
    .await;
    let second = second.await.unwrap();
    let deadlocks = [&first, &second]
        .iter()
        .filter(|r| matches!(r, Err(e) if code(e) == "40P01"))
        .count();
    assert_eq!(deadlocks, 1, "{first:?} {second:?}");
    assert!(first.is_ok() || second.is_ok());
    assert_eq!(balance(&a, 1).await, Some(112));
    assert_eq!(balance(&a, 2).await, Some(61));
}
