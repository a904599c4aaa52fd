//! `fortress standby` against the real binary: a hot standby kept LSN for
//! LSN over --replication-listen while clients write. Every read it
//! serves holds whole transactions (the bank's total is exact), writes get
//! 25006, it catches up after its connection is cut and after a restart,
//! and promoted (`fortress serve` on the copy) after the primary is killed
//! it holds everything the primary acknowledged before a quiet moment.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::net::Relay;
use common::{
    bank_under_transfers, code, free_port, insert_chunked, wait_for_log, wait_for_table, Server,
};
use tokio::task::JoinHandle;

const TOKEN: &str = "replication-token-0123456789";
const ACCOUNTS: i32 = 16;
const START: i64 = 1000;

async fn balances(server: &Server) -> Vec<(i32, i64)> {
    let c = server.client().await;
    let mut b: Vec<(i32, i64)> = c
        .query("SELECT id, balance FROM acct", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    b.sort();
    b
}

/// Reads the standby's balances until `stop`: every read must hold the
/// bank's whole total. Returns how many reads ran and how many distinct
/// states they saw.
fn read_whole(standby: &Server, stop: Arc<AtomicBool>) -> JoinHandle<(u64, usize)> {
    let url = standby.url();
    tokio::spawn(async move {
        let mut seen = std::collections::HashSet::new();
        let mut reads = 0u64;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            // A restart of the standby drops the connection: connect again.
            let Ok((c, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            tokio::spawn(conn);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let Ok(rows) = c.query("SELECT id, balance FROM acct", &[]).await else {
                    // Not replicated yet, or the standby went away.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    break;
                };
                let mut b: Vec<(i32, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
                b.sort();
                let total: i64 = b.iter().map(|(_, v)| v).sum();
                if !b.is_empty() {
                    assert_eq!(
                        b.len(),
                        ACCOUNTS as usize,
                        "a read saw part of the accounts"
                    );
                    assert_eq!(
                        total,
                        ACCOUNTS as i64 * START,
                        "a read saw half a transfer: {b:?}"
                    );
                    seen.insert(b);
                }
                reads += 1;
            }
        }
        (reads, seen.len())
    })
}

/// Writes 8 MiB of rows into `t` on `primary`, checkpoints, and waits
/// until WAL is recycled.
async fn write_checkpoint_and_recycle(primary: &Server, p: &tokio_postgres::Client) {
    let pad = "x".repeat(1000);
    insert_chunked(p, "t", 0..8000, |i| format!("({i}, '{pad}')")).await;
    let url = format!("{}/api/v1/checkpoints", primary.admin_url());
    ureq::post(&url).send_empty().unwrap();
    wait_for_log(primary, "recycled WAL segments", 30).await;
}

/// Flags that make a primary recycle WAL at once (1 MiB segments, none
/// kept, a pass every 200 ms).
const RECYCLING: [&str; 6] = [
    "--wal-segment-mb",
    "1",
    "--wal-keep-segments",
    "0",
    "--wal-recycle-interval",
    "200ms",
];

/// Stops the transfer workers, checking they made more than 20 transfers.
async fn stop_transfers(stop: &AtomicBool, workers: Vec<JoinHandle<u64>>) {
    stop.store(true, Ordering::Relaxed);
    let mut transfers = 0;
    for w in workers {
        transfers += w.await.unwrap();
    }
    assert!(transfers > 20, "only {transfers} transfers ran");
}

/// The rows of `SHOW fortress.replication`: (name, state, lag_bytes).
async fn replication(server: &Server) -> Vec<(String, String, i64)> {
    let c = server.client().await;
    c.query("SHOW fortress.replication", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("name"), r.get("state"), r.get("lag_bytes")))
        .collect()
}

/// Waits up to `secs` until `table` on `server` holds `want` rows (a
/// table not there yet counts as empty); `what` failed otherwise.
async fn count_reaches(server: &Server, table: &str, want: i64, secs: u64, what: &str) {
    let c = server.client().await;
    let sql = format!("SELECT count(*) FROM {table}");
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let n: i64 = match c.query_one(&sql, &[]).await {
            Ok(r) => r.get(0),
            Err(_) => 0,
        };
        if n == want {
            return;
        }
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to 15 s) until the standby's balances equal `want`.
async fn caught_up(standby: &Server, want: &[(i32, i64)]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = balances(standby).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the standby did not catch up: {got:?} != {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_standby_serves_whole_transactions_under_load_and_catches_up_after_cuts_and_restarts()
{
    let root = tempfile::tempdir().unwrap();
    let repl = format!("127.0.0.1:{}", free_port());
    let mut primary = Server::launch_args(
        root.path().join("primary"),
        4,
        &[("FORTRESS_REPLICATION_TOKEN", TOKEN)],
        &["--replication-listen", &repl],
    );
    let copy = root.path().join("standby");
    // A wrong token is refused: the standby stops, and no copy is made.
    let refused = Command::new(env!("CARGO_BIN_EXE_fortress"))
        .args(["standby", "--primary", &repl, "--admin-listen", "off"])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--data-dir")
        .arg(&copy)
        .env("FORTRESS_REPLICATION_TOKEN", "not-the-token-at-all")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains("token does not match"), "{said}");
    assert!(!copy.join("fortress.cluster").exists());

    let relay = Relay::start(repl.clone()).await;
    let mut standby = Server::standby(
        copy.clone(),
        &relay.addr,
        "dr1",
        &[("FORTRESS_REPLICATION_TOKEN", TOKEN)],
        &[],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let workers = bank_under_transfers(&primary, ACCOUNTS, START, stop.clone()).await;
    let stop_reads = Arc::new(AtomicBool::new(false));
    let reader = read_whole(&standby, stop_reads.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Writes are refused with 25006, in and out of a transaction block.
    let c = standby.client().await;
    let e = c
        .batch_execute("UPDATE acct SET balance = 0 WHERE id = 1")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "25006", "{e}");
    let e = c
        .batch_execute("BEGIN; SELECT 1; CREATE TABLE nope (k int PRIMARY KEY)")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "25006", "{e}");
    c.batch_execute("ROLLBACK").await.unwrap();
    drop(c);
    let rows = replication(&primary).await;
    assert!(
        rows.iter().any(|(n, s, _)| n == "dr1" && s == "streaming"),
        "{rows:?}"
    );
    let rows = replication(&standby).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, relay.addr);

    // The connection is cut mid-load: the standby reconnects and goes on.
    relay.cut();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // The standby restarts mid-load and catches up from where it was.
    standby.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    standby.restart();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // A quiet moment: everything acknowledged reaches the standby.
    stop_transfers(&stop, workers).await;
    let acknowledged = balances(&primary).await;
    caught_up(&standby, &acknowledged).await;
    stop_reads.store(true, Ordering::Relaxed);
    let (reads, states) = reader.await.unwrap();
    assert!(reads > 20, "only {reads} reads ran on the standby");
    assert!(states > 2, "the standby's reads saw only {states} states");
    // The primary hears the standby's acknowledgements: nothing in flight.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = replication(&primary).await;
        if rows
            .iter()
            .any(|(n, s, lag)| n == "dr1" && s == "streaming" && *lag == 0)
        {
            break;
        }
        assert!(Instant::now() < deadline, "{rows:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The primary dies: the standby still serves what it had, and says
    // it is reconnecting.
    primary.kill();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(balances(&standby).await, acknowledged);
    let rows = replication(&standby).await;
    assert!(rows[0].1.starts_with("reconnecting"), "{rows:?}");
    standby.stop();
    // Promotion: the copy started as a server takes writes.
    let mut promoted = Server::launch_args(copy.clone(), 4, &[], &[]);
    assert_eq!(balances(&promoted).await, acknowledged);
    let c = promoted.client().await;
    c.batch_execute("UPDATE acct SET balance = balance + 1 WHERE id = 0")
        .await
        .unwrap();
    drop(c);
    promoted.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_promoted_after_a_kill_under_load_holds_no_half_transfer() {
    let root = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut primary = Server::launch_args(
        root.path().join("primary"),
        4,
        &[],
        &["--replication-listen", &listen],
    );
    let copy = root.path().join("standby");
    let mut standby = Server::standby(copy.clone(), &listen, "dr1", &[], &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let workers = bank_under_transfers(&primary, ACCOUNTS, START, stop.clone()).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    // Killed with transfers in flight.
    stop.store(true, Ordering::Relaxed);
    primary.kill();
    for w in workers {
        w.await.unwrap();
    }
    standby.stop();
    let mut promoted = Server::launch_args(copy, 4, &[], &[]);
    let got = balances(&promoted).await;
    assert_eq!(got.len(), ACCOUNTS as usize);
    let total: i64 = got.iter().map(|(_, b)| b).sum();
    assert_eq!(total, ACCOUNTS as i64 * START, "a transfer was cut in half");
    assert!(
        got.iter().any(|(_, b)| *b != START),
        "the standby followed none of the transfers"
    );
    promoted.stop();
}

/// `GET /api/v1/dr/status` of `server`.
fn dr_status(server: &Server) -> serde_json::Value {
    let url = format!("{}/api/v1/dr/status", server.admin_url());
    let mut r = ureq::get(&url).call().unwrap();
    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
}

/// The mode column of the standby `name` in `SHOW fortress.replication`.
async fn mode_of(server: &Server, name: &str) -> String {
    let c = server.client().await;
    let rows = c.query("SHOW fortress.replication", &[]).await.unwrap();
    rows.iter()
        .find(|r| r.get::<_, String>("name") == name)
        .map(|r| r.get("mode"))
        .unwrap_or_default()
}

/// A primary on a fresh directory under `root` accepting standbys, with
/// `--standby-mode MODES --sync-timeout TIMEOUT` and `more` flags; and its
/// replication address.
fn sync_primary(
    root: &std::path::Path,
    modes: &str,
    timeout: &str,
    more: &[&str],
) -> (Server, String) {
    let repl = format!("127.0.0.1:{}", free_port());
    let mut args = vec![
        "--replication-listen",
        &repl,
        "--standby-mode",
        modes,
        "--sync-timeout",
        timeout,
    ];
    args.extend_from_slice(more);
    let primary = Server::launch_args(root.join("primary"), 4, &[], &args);
    (primary, repl)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_standby_holds_every_acknowledged_commit_and_degrades_when_gone() {
    let root = tempfile::tempdir().unwrap();
    let (mut primary, repl) = sync_primary(
        root.path(),
        "dr1=sync,dr2=sync",
        "1s",
        &["--sync-fallback", "degrade"],
    );
    let copy = root.path().join("standby");
    let mut standby = Server::standby(copy.clone(), &repl, "dr1", &[], &[]);
    let mut second = Server::standby(root.path().join("dr2"), &repl, "dr2", &[], &[]);
    let p = primary.client().await;
    p.batch_execute("CREATE TABLE seq (id int PRIMARY KEY)")
        .await
        .unwrap();
    for id in 0..30 {
        p.execute("INSERT INTO seq VALUES ($1)", &[&id])
            .await
            .unwrap();
    }
    assert_eq!(mode_of(&primary, "dr1").await, "sync");
    // The API and `fortress dr status` say the same.
    let st = dr_status(&primary);
    assert_eq!(st["role"], "primary", "{st}");
    assert_eq!(st["replication"][0]["name"], "dr1", "{st}");
    assert_eq!(st["replication"][0]["mode"], "sync", "{st}");
    assert_eq!(st["replication"][0]["state"], "streaming", "{st}");
    let st = dr_status(&standby);
    assert_eq!(st["role"], "standby", "{st}");
    assert_eq!(st["replication"][0]["role"], "primary", "{st}");
    assert_eq!(st["replication"][0]["mode"], "sync", "{st}");
    // A standby takes no checkpoint of its own, and ships to no archive.
    let url = format!("{}/api/v1/checkpoints", standby.admin_url());
    assert!(ureq::post(&url).send_empty().is_err());
    let url = format!("{}/api/v1/dr/providers", standby.admin_url());
    let archive = format!("file://{}", root.path().join("a").display());
    let added = ureq::post(&url).send_json(serde_json::json!({"name": "a", "url": archive}));
    assert!(added.is_err());
    let out = Command::new(env!("CARGO_BIN_EXE_fortress"))
        .args(["dr", "status", "--admin", &primary.admin_url()])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains("this node is a primary"), "{printed}");
    assert!(
        printed
            .lines()
            .any(|l| l.starts_with("dr1") && l.contains("sync") && l.contains("streaming")),
        "{printed}"
    );

    // The standby dies: after the timeout commits go on without it, and
    // the primary says so.
    standby.kill();
    p.execute("INSERT INTO seq VALUES (100)", &[])
        .await
        .unwrap();
    assert_eq!(mode_of(&primary, "dr1").await, "sync (degraded to async)");
    for id in 101..110 {
        p.execute("INSERT INTO seq VALUES ($1)", &[&id])
            .await
            .unwrap();
    }
    // Only the standby that is gone is degraded: the other one's
    // acknowledgements do not end its degradation.
    assert_eq!(mode_of(&primary, "dr1").await, "sync (degraded to async)");
    assert_eq!(mode_of(&primary, "dr2").await, "sync");
    // Back and caught up, it is synchronous again.
    standby.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    while mode_of(&primary, "dr1").await != "sync" {
        assert!(Instant::now() < deadline, "the standby never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in 200..210 {
        p.execute("INSERT INTO seq VALUES ($1)", &[&id])
            .await
            .unwrap();
    }
    // Both die the moment the last commit is acknowledged: the standby's
    // copy, promoted, has every acknowledged row (RPO 0).
    primary.kill();
    standby.kill();
    second.kill();
    let mut promoted = Server::launch_args(copy, 4, &[], &[]);
    let c = promoted.client().await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM seq", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        n, 50,
        "an acknowledged commit is missing from the sync standby"
    );
    drop(c);
    promoted.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_wait_fallback_a_commit_waits_for_its_sync_standby() {
    let root = tempfile::tempdir().unwrap();
    let (primary, repl) = sync_primary(root.path(), "dr1=sync", "300ms", &[]);
    let mut standby = Server::standby(root.path().join("standby"), &repl, "dr1", &[], &[]);
    let mut p = primary.client().await;
    p.batch_execute("CREATE TABLE seq (id int PRIMARY KEY)")
        .await
        .unwrap();
    // The standby goes away: a transaction block's COMMIT is made here but
    // not acknowledged until it is back.
    standby.kill();
    // statement_timeout ends a commit's wait, not the commit: done, with
    // PostgreSQL's warning (psql prints it), and there on the primary.
    let out = Command::new("psql")
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            &primary.port.to_string(),
            "-U",
            "postgres",
            "-c",
            "SET statement_timeout = 700",
            "-c",
            "INSERT INTO seq VALUES (2)",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("canceling wait for synchronous replication"),
        "{said}"
    );
    let n: i64 = p
        .query_one("SELECT count(*) FROM seq WHERE id = 2", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let insert = tokio::spawn(async move {
        let t = p.transaction().await.unwrap();
        t.execute("INSERT INTO seq VALUES (1)", &[]).await.unwrap();
        t.commit().await.unwrap();
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !insert.is_finished(),
        "a commit did not wait for its sync standby"
    );
    assert_eq!(mode_of(&primary, "dr1").await, "sync");
    standby.restart();
    tokio::time::timeout(Duration::from_secs(20), insert)
        .await
        .expect("the commit was not acknowledged once the standby came")
        .unwrap();
    // Applied just after it was acknowledged as durable.
    count_reaches(
        &standby,
        "seq",
        2,
        10,
        "the standby never applied the commits",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recycling_keeps_what_a_sync_standby_lacks_and_an_async_one_away_must_be_rebuilt() {
    let root = tempfile::tempdir().unwrap();
    let (primary, repl) = sync_primary(
        root.path(),
        "dr1=sync",
        "300ms",
        &[&["--sync-fallback", "degrade"], &RECYCLING[..]].concat(),
    );
    let mut sync = Server::standby(root.path().join("dr1"), &repl, "dr1", &[], &[]);
    let mut away = Server::standby(root.path().join("dr2"), &repl, "dr2", &[], &[]);
    let p = primary.client().await;
    p.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    // Both standbys go away (the async one once it has the table); 8 MiB
    // of WAL is written and checkpointed.
    wait_for_table(&away, "t").await;
    sync.kill();
    away.kill();
    let pad = "x".repeat(1000);
    insert_chunked(&p, "t", 0..8000, |i| format!("({i}, '{pad}')")).await;
    let url = format!("{}/api/v1/checkpoints", primary.admin_url());
    ureq::post(&url).send_empty().unwrap();
    // The sync standby, away, holds every segment back.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !primary.log().contains("recycled WAL segments"),
        "segments a sync standby lacks were recycled"
    );
    // Back, it catches up from the primary's WAL; then recycling goes on,
    // past what the asynchronous standby (still away) had.
    sync.restart();
    count_reaches(&sync, "t", 8000, 30, "the sync standby did not catch up").await;
    wait_for_log(&primary, "recycled WAL segments", 30).await;
    // The async standby comes back to a primary that no longer has what it
    // needs: it says so, and keeps serving what it had.
    away.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = replication(&away).await;
        if rows[0]
            .1
            .contains("give this standby its primary's archive")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = away.client().await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

/// `count(*)`, the rows updated and the total text length of `t`.
async fn summary(server: &Server) -> (i64, i64, i64) {
    let c = server.client().await;
    let r = c
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE v = 'y'), coalesce(sum(length(v)), 0)::bigint FROM t",
            &[],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_a_standby_takes_what_its_primary_recycled_from_the_archive_and_a_new_one_starts_from_a_checkpoint(
) {
    let root = tempfile::tempdir().unwrap();
    let archive = format!("a=file://{}", root.path().join("archive").display());
    let (primary, repl) = sync_primary(
        root.path(),
        "dr1=async",
        "10s",
        &[
            &["--archive", archive.as_str(), "--ship-interval", "200ms"],
            &RECYCLING[..],
        ]
        .concat(),
    );
    let with_archive = ["--archive", archive.as_str()];
    let mut away = Server::standby(root.path().join("dr1"), &repl, "dr1", &[], &with_archive);
    let p = primary.client().await;
    p.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let workers = bank_under_transfers(&primary, ACCOUNTS, START, stop.clone()).await;
    let stop_reads = Arc::new(AtomicBool::new(false));
    let away_reads = read_whole(&away, stop_reads.clone());
    wait_for_table(&away, "t").await;
    // Away while 8 MiB of WAL is written, checkpointed, archived and
    // recycled, then more after the checkpoint; transfers go on.
    away.kill();
    write_checkpoint_and_recycle(&primary, &p).await;
    p.batch_execute("UPDATE t SET v = 'y' WHERE id < 100; CREATE TABLE u (id int PRIMARY KEY)")
        .await
        .unwrap();
    // Back, the standby finds its primary without the records it lacks,
    // takes them from the archive and streams again; a new standby starts
    // from the archive's checkpoint and logs, not from its primary's first
    // record (recycled). Every read on either holds the bank's total.
    away.restart();
    let fresh = Server::standby(root.path().join("dr2"), &repl, "dr2", &[], &with_archive);
    let fresh_reads = read_whole(&fresh, stop_reads.clone());
    p.batch_execute("INSERT INTO u VALUES (1)").await.unwrap();
    count_reaches(&fresh, "u", 1, 60, "the new standby does not stream").await;
    count_reaches(&away, "u", 1, 60, "the standby never caught up").await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop_transfers(&stop, workers).await;
    let acknowledged = balances(&primary).await;
    caught_up(&away, &acknowledged).await;
    caught_up(&fresh, &acknowledged).await;
    stop_reads.store(true, Ordering::Relaxed);
    for (who, reader) in [
        ("the standby", away_reads),
        ("the new standby", fresh_reads),
    ] {
        let (reads, states) = reader.await.unwrap();
        assert!(reads > 20, "only {reads} reads ran on {who}");
        assert!(states > 1, "{who}'s reads saw only {states} states");
    }
    assert!(
        away.log().contains("caught up from the archive"),
        "{}",
        away.log()
    );
    assert!(
        fresh
            .log()
            .contains("made this standby's copy from the archive's checkpoint"),
        "{}",
        fresh.log()
    );
    let want = summary(&primary).await;
    assert_eq!(want.0, 8000);
    assert_eq!(summary(&fresh).await, want);
    assert_eq!(summary(&away).await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_promoted_in_place_after_a_kill_takes_writes_and_holds_no_half_transfer() {
    let root = tempfile::tempdir().unwrap();
    let repl = format!("127.0.0.1:{}", free_port());
    let mut primary = Server::launch_args(
        root.path().join("primary"),
        4,
        &[],
        &["--replication-listen", &repl],
    );
    let mut standby = Server::standby(root.path().join("standby"), &repl, "dr1", &[], &[]);
    // Promoting a primary is refused.
    let url = format!("{}/api/v1/dr/promote", primary.admin_url());
    let refused = ureq::post(&url).send_empty().unwrap_err();
    assert!(refused.to_string().contains("409"), "{refused}");
    let stop = Arc::new(AtomicBool::new(false));
    let workers = bank_under_transfers(&primary, ACCOUNTS, START, stop.clone()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    primary.kill();
    for w in workers {
        w.await.unwrap();
    }
    // `fortress dr promote`: the standby, still running, becomes a primary.
    let out = Command::new(env!("CARGO_BIN_EXE_fortress"))
        .args(["dr", "promote", "--admin", &standby.admin_url()])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("this node is a primary"), "{printed}");
    let got = balances(&standby).await;
    let total: i64 = got.iter().map(|(_, b)| b).sum();
    assert_eq!(total, ACCOUNTS as i64 * START, "a transfer was cut in half");
    assert!(
        got.iter().any(|(_, b)| *b != START),
        "no transfer reached the standby"
    );
    // It takes writes, and keeps them across a restart.
    let mut c = standby.client().await;
    common::transfer(&mut c, 0, 1, 5).await.unwrap();
    c.batch_execute("CREATE TABLE after (k int PRIMARY KEY)")
        .await
        .unwrap();
    c.batch_execute("INSERT INTO after VALUES (1)")
        .await
        .unwrap();
    let rows = replication(&standby).await;
    assert!(rows.is_empty(), "{rows:?}");
    let want = balances(&standby).await;
    drop(c);
    standby.stop();
    let mut again = Server::launch_args(root.path().join("standby"), 4, &[], &[]);
    assert_eq!(balances(&again).await, want);
    let c = again.client().await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM after", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    drop(c);
    again.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_in_place_completes_a_commit_its_primary_left_half_done() {
    let root = tempfile::tempdir().unwrap();
    let repl = format!("127.0.0.1:{}", free_port());
    // Phase two of the first two-phase commit stops after its first
    // participant: the decision (commit) is logged, one shard has it
    // applied, the other holds the transaction prepared.
    let mut primary = Server::launch_args(
        root.path().join("primary"),
        4,
        &[("FORTRESS_FAULTS", "2pc.mid_phase_two=error@1")],
        &["--replication-listen", &repl],
    );
    let mut standby = Server::standby(root.path().join("standby"), &repl, "dr1", &[], &[]);
    let mut c = primary.client().await;
    c.batch_execute("CREATE TABLE acct (id int PRIMARY KEY, balance bigint NOT NULL)")
        .await
        .unwrap();
    for id in 0..ACCOUNTS {
        c.execute("INSERT INTO acct VALUES ($1, $2)", &[&id, &START])
            .await
            .unwrap();
    }
    // Transfers from account 0 until one spans two shards and stops half way.
    let mut faulted = false;
    for to in 1..ACCOUNTS {
        if common::transfer(&mut c, 0, to, 1).await.is_err() {
            faulted = true;
            break;
        }
    }
    assert!(faulted, "no transfer spanned two shards");
    drop(c);
    // The standby receives all of that; the primary dies.
    tokio::time::sleep(Duration::from_millis(500)).await;
    primary.kill();
    let url = format!("{}/api/v1/dr/promote", standby.admin_url());
    ureq::post(&url).send_empty().unwrap();
    // Promoted, it decides as its primary's log says: committed, whole.
    let got = balances(&standby).await;
    let total: i64 = got.iter().map(|(_, b)| b).sum();
    assert_eq!(total, ACCOUNTS as i64 * START, "half a transfer: {got:?}");
    standby.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_declares_a_silent_primary_lost_and_follows_it_again_when_it_wakes() {
    let root = tempfile::tempdir().unwrap();
    let repl = format!("127.0.0.1:{}", free_port());
    let primary = Server::launch_args(
        root.path().join("primary"),
        4,
        &[],
        &["--replication-listen", &repl],
    );
    let standby = Server::standby(
        root.path().join("standby"),
        &repl,
        "dr1",
        &[],
        &["--primary-timeout", "1s"],
    );
    let c = primary.client().await;
    c.batch_execute("CREATE TABLE t (k int PRIMARY KEY)")
        .await
        .unwrap();
    drop(c);
    let state = |rows: Vec<(String, String, i64)>| rows[0].1.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while state(replication(&standby).await) != "streaming" {
        assert!(Instant::now() < deadline, "the standby never streamed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The primary hangs (its socket stays open, nothing comes): the
    // missing heartbeats give it away.
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &primary.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    };
    signal("-STOP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = state(replication(&standby).await);
        // Declared lost, then (reconnecting) not answering.
        if s.contains("primary lost") || s.contains("did not answer") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the silent primary was not noticed: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    signal("-CONT");
    let deadline = Instant::now() + Duration::from_secs(10);
    while state(replication(&standby).await) != "streaming" {
        assert!(
            Instant::now() < deadline,
            "the standby did not follow again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let c = primary.client().await;
    c.batch_execute("INSERT INTO t VALUES (1)").await.unwrap();
    count_reaches(&standby, "t", 1, 10, "the write never reached the standby").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_standby_of_a_primary_that_recycled_its_first_records_starts_from_a_checkpoint_taken_for_it(
) {
    let root = tempfile::tempdir().unwrap();
    let (primary, repl) = sync_primary(root.path(), "dr1=async", "10s", &RECYCLING);
    let p = primary.client().await;
    p.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    write_checkpoint_and_recycle(&primary, &p).await;
    p.batch_execute("UPDATE t SET v = 'y' WHERE id < 100")
        .await
        .unwrap();
    // No archive, and the primary's first records are gone: the copy is
    // made from a checkpoint the primary takes for it, then streams.
    let standby = Server::standby(root.path().join("dr1"), &repl, "dr1", &[], &[]);
    let want = summary(&primary).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while summary(&standby).await != want {
        assert!(
            Instant::now() < deadline,
            "the standby never caught up:\n{}",
            standby.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        standby
            .log()
            .contains("made this standby's copy from a checkpoint its primary took for it"),
        "{}",
        standby.log()
    );
    p.batch_execute("DELETE FROM t WHERE id < 10")
        .await
        .unwrap();
    count_reaches(&standby, "t", 7990, 30, "the standby does not stream").await;
    let e = standby
        .client()
        .await
        .batch_execute("DELETE FROM t")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "25006");
}
