//! Failover against the real binary: a primary and a standby sharing an
//! archive that holds the write lease. Killed with SIGKILL under load, the
//! primary is replaced by the standby on its own; the new primary takes
//! writes, in sync mode with every acknowledged write, in async mode with
//! the lost window reported by the old primary when it comes back, fenced.
//! A planned handover loses nothing, and a primary cut off from its lease
//! stops taking writes until it can renew it.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cli::{failed, fortress, ok};
use common::net::Relay;
use common::{bank_under_transfers, code, free_port, Server};

const ACCOUNTS: i32 = 16;
const START: i64 = 1000;

/// A primary named `primary` under `root` with the archive `arch` (which
/// holds the lease) and a replication port (`--rejoin manual` unless
/// `more` says otherwise); its replication address.
fn primary(root: &std::path::Path, arch: &str, more: &[&str]) -> (Server, String) {
    let repl = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["--replication-listen", &repl, "--archive", arch];
    // Replaced, it stays fenced for the test to look at, unless asked.
    if !more.contains(&"--rejoin") {
        args.extend(["--rejoin", "manual"]);
    }
    args.extend_from_slice(more);
    let p = Server::launch_args(root.join("primary"), 4, &[], &args);
    (p, repl)
}

fn standby(root: &std::path::Path, repl: &str, arch: &str, more: &[&str]) -> Server {
    let mut args = vec!["--archive", arch];
    args.extend_from_slice(more);
    Server::standby(root.join("standby"), repl, "dr1", &[], &args)
}

fn dr_status(server: &Server) -> serde_json::Value {
    let url = format!("{}/api/v1/dr/status", server.admin_url());
    let mut r = ureq::get(&url).call().unwrap();
    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
}

/// One client inserting 0, 1, 2, ... into `acked (k)`, one row per
/// transaction, until `stop` or an error; the keys acknowledged.
async fn acked_writer(server: &Server, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<i32>> {
    let c = server.client().await;
    c.batch_execute("CREATE TABLE acked (k int PRIMARY KEY)")
        .await
        .unwrap();
    tokio::spawn(async move {
        let mut acked = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(40);
        for k in 0.. {
            if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                break;
            }
            match c.execute("INSERT INTO acked VALUES ($1)", &[&k]).await {
                Ok(_) => acked.push(k),
                Err(_) => break,
            }
        }
        acked
    })
}

/// Writes to `server` until one is accepted (up to `secs`); when.
async fn first_write(server: &Server, secs: u64) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(c) = tokio::time::timeout(Duration::from_secs(2), server.client()).await {
            match c
                .batch_execute("INSERT INTO after_failover VALUES (1)")
                .await
            {
                Ok(()) => return Instant::now(),
                Err(e) if code(&e) == "42P01" => {
                    let _ = c
                        .batch_execute("CREATE TABLE after_failover (k int PRIMARY KEY)")
                        .await;
                }
                Err(e) => last = format!("{e:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "no write accepted within {secs} s (last: {last}):\n{}",
        server.log()
    );
}

async fn keys(server: &Server) -> Vec<i32> {
    let c = server.client().await;
    c.query("SELECT k FROM acked ORDER BY k", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// [`keys`], or `None` while the table is not there yet.
async fn try_keys(server: &Server) -> Option<Vec<i32>> {
    let c = server.client().await;
    let rows = c.query("SELECT k FROM acked ORDER BY k", &[]).await.ok()?;
    Some(rows.iter().map(|r| r.get(0)).collect())
}

/// Standby `name` of the primary at `primary`, with the archive `arch`, a
/// 2 s primary timeout and a replication port of its own (its address).
fn serving_standby(
    root: &std::path::Path,
    primary: &str,
    name: &str,
    arch: &str,
) -> (Server, String) {
    serving_standby_after(root, primary, name, arch, "2s")
}

/// [`serving_standby`] declaring its primary lost after `timeout`.
fn serving_standby_after(
    root: &std::path::Path,
    primary: &str,
    name: &str,
    arch: &str,
    timeout: &str,
) -> (Server, String) {
    let own = format!("127.0.0.1:{}", free_port());
    let args = [
        "--archive",
        arch,
        "--primary-timeout",
        timeout,
        "--replication-listen",
        &own,
    ];
    let s = Server::standby(root.join(name), primary, name, &[], &args);
    (s, own)
}

/// Waits (up to `secs`) until `server`'s `acked` keys are `want`.
async fn keys_reach(server: &Server, want: &[i32], secs: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while try_keys(server).await.as_deref() != Some(want) {
        assert!(Instant::now() < deadline, "{what}:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn bank_total(server: &Server) -> (i64, bool) {
    let c = server.client().await;
    let rows = c.query("SELECT balance FROM acct", &[]).await.unwrap();
    let moved = rows.iter().any(|r| r.get::<_, i64>(0) != START);
    (rows.iter().map(|r| r.get::<_, i64>(0)).sum(), moved)
}

/// The failover record of epoch 2 on `server`, once it has its RTO.
async fn failover_record(server: &Server) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = dr_status(server);
        let found = s["failover"]["failovers"]
            .as_array()
            .and_then(|a| a.iter().find(|f| f["epoch"] == 2).cloned());
        if let Some(f) = found.filter(|f| f["rto_seconds"].is_f64()) {
            return f;
        }
        assert!(Instant::now() < deadline, "no failover recorded: {s:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A write on `server` fails with 25006 (fenced), naming why.
async fn refuses_writes(server: &Server, why: &str) {
    let c = server.client().await;
    let e = c
        .batch_execute("INSERT INTO acked VALUES (-1)")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "25006", "{e:?}");
    let text = format!("{e:?}");
    assert!(text.contains(why), "{text}");
}

/// Kills the primary under load; the standby takes over by itself. Then
/// the old primary comes back fenced, with what was lost reported.
/// Kills the primary under load and checks the takeover; the old primary,
/// restarted, rejoins as a standby: by itself with `--rejoin auto` (the
/// default), else by hand with `fortress standby --rebuild`.
async fn kill_and_fail_over(sync: bool, rejoin_by_itself: bool) {
    let root = tempfile::tempdir().unwrap();
    let arch = format!("a=file://{}", root.path().join("arch").display());
    let timing = ["--lease-ttl", "2s"];
    let mut more: Vec<&str> = timing.to_vec();
    if sync {
        more.extend(["--standby-mode", "dr1=sync"]);
    }
    if rejoin_by_itself {
        more.extend(["--rejoin", "auto"]);
    }
    let (mut p, repl) = primary(root.path(), &arch, &more);
    // The standby will serve standbys of its own once promoted.
    let repl2 = format!("127.0.0.1:{}", free_port());
    let s = standby(
        root.path(),
        &repl,
        &arch,
        &["--primary-timeout", "2s", "--replication-listen", &repl2],
    );
    let st = dr_status(&p);
    assert_eq!(st["failover"]["lease"]["holder"], "primary", "{st:#}");
    assert_eq!(st["failover"]["lease"]["writable"], true, "{st:#}");
    // The standby checks its primary each second: healthy.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health = dr_status(&s)["failover"]["primary"].clone();
        if health["consecutive_failures"] == 0 && health["score"].as_f64().unwrap() > 0.5 {
            break;
        }
        assert!(Instant::now() < deadline, "{health}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The standby may not take over while the primary renews its lease.
    let url = format!("{}/api/v1/dr/failover", s.admin_url());
    let e = ureq::post(&url)
        .send_json(serde_json::json!({}))
        .unwrap_err();
    assert!(e.to_string().contains("409"), "{e}");

    let stop = Arc::new(AtomicBool::new(false));
    let workers = bank_under_transfers(&p, ACCOUNTS, START, stop.clone()).await;
    // The writer runs until the kill cuts it off.
    let writer = acked_writer(&p, Arc::new(AtomicBool::new(false))).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let killed = Instant::now();
    p.kill();
    let acked = writer.await.unwrap();
    for w in workers {
        w.await.unwrap();
    }
    assert!(acked.len() > 10, "the writer barely ran: {}", acked.len());

    // The standby promotes itself and takes writes.
    let accepted = first_write(&s, 40).await;
    let took = accepted - killed;
    let record = failover_record(&s).await;
    assert_eq!(record["kind"], "automatic", "{record:#}");
    assert_eq!(record["from"], "primary", "{record:#}");
    assert_eq!(record["to"], "dr1", "{record:#}");
    let rto = record["rto_seconds"].as_f64().unwrap();
    assert!(rto >= 0.0 && rto < took.as_secs_f64(), "{rto} vs {took:?}");
    let st = dr_status(&s);
    assert_eq!(st["role"], "primary", "{st:#}");
    let metrics = ureq::get(&format!("{}/metrics", s.admin_url()))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(metrics.contains("fortress_lease_writable 1"), "{metrics}");
    assert!(
        metrics.contains("fortress_failover_rto_seconds "),
        "{metrics}"
    );
    assert_eq!(st["failover"]["lease"]["holder"], "dr1", "{st:#}");
    // Whole transfers only.
    let (total, moved) = bank_total(&s).await;
    assert_eq!(total, ACCOUNTS as i64 * START, "a transfer was cut in half");
    assert!(moved, "no transfer reached the standby");
    let have = keys(&s).await;
    let missing: Vec<i32> = acked
        .iter()
        .filter(|k| !have.contains(k))
        .copied()
        .collect();
    if sync {
        assert!(missing.is_empty(), "acknowledged and lost: {missing:?}");
    }

    // The new primary ships into its own timeline of the archive (from a
    // checkpoint taken at promotion): a restore from the archive alone
    // has everything it took, the write after the failover included.
    let timeline = root.path().join("arch/timelines/0000000002");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !timeline.join("positions").exists() {
        assert!(
            Instant::now() < deadline,
            "nothing shipped by the new primary:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ureq::post(&format!("{}/api/v1/dr/replicate", s.admin_url()))
        .send_empty()
        .unwrap();
    let restored = root.path().join("restored");
    let from = format!("file://{}", root.path().join("arch").display());
    let printed = ok(fortress(&[
        "restore",
        "--from",
        &from,
        "--to",
        restored.to_str().unwrap(),
        "--latest",
    ]));
    assert!(printed.contains("restored"), "{printed}");
    let mut r = Server::launch_args(restored, 4, &[], &[]);
    assert_eq!(keys(&r).await, keys(&s).await);
    let n: i64 = r
        .client()
        .await
        .query_one("SELECT count(*) FROM after_failover", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "the write after the failover is not in the archive");
    r.stop();

    // The old primary comes back: fenced, and it reports what it had that
    // the new primary lacks.
    p.restart();
    let report = std::path::Path::new("failover-0000000002-lost.json");
    let (n, saved) = if rejoin_by_itself {
        // It rejoins as a standby of the new primary by itself: its copy,
        // which followed another history, is set aside (the report in it)
        // and made anew.
        let want = keys(&s).await;
        keys_reach(&p, &want, 60, "the old primary did not rejoin").await;
        let saved: serde_json::Value =
            serde_json::from_slice(&std::fs::read(kept_copy(root.path()).join(report)).unwrap())
                .unwrap();
        (saved["transactions"].as_u64().unwrap(), saved)
    } else {
        refuses_writes(&p, "took over").await;
        let st = dr_status(&p);
        let lost = &st["failover"]["replaced"];
        assert_eq!(lost["epoch"], 2, "{st:#}");
        let n = lost["transactions"]
            .as_u64()
            .unwrap_or_else(|| panic!("{st:#}"));
        let saved: serde_json::Value = serde_json::from_slice(
            &std::fs::read(root.path().join("primary").join(report)).unwrap(),
        )
        .unwrap();
        assert_eq!(saved["transactions"].as_u64(), Some(n));
        // `fortress dr status` says so.
        let printed = ok(fortress(&["dr", "status", "--admin", &p.admin_url()]));
        assert!(printed.contains("TAKES NO WRITES"), "{printed}");
        assert!(printed.contains("held by dr1 (epoch 2)"), "{printed}");
        (n, saved)
    };
    assert!(
        n >= missing.len() as u64,
        "{} acknowledged writes missing, {n} reported",
        missing.len()
    );
    // The file lists each lost transaction's id (none: no list).
    let listed = saved["txids"].as_array().map_or(0, |a| a.len() as u64);
    assert_eq!(listed, n, "{saved:#}");
    if !sync {
        let rpo = saved["rpo_seconds"].as_f64().unwrap();
        assert!(rpo < 1.0, "async RPO {rpo} s");
    }
    // The archive has the report, and the new primary shows it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rec = failover_record(&s).await;
        if rec["lost"]["transactions"].as_u64() == Some(n) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the report did not reach the new primary: {rec:#}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut rejoined = if rejoin_by_itself {
        p
    } else {
        p.stop();
        let rejoined = Server::standby(
            root.path().join("primary"),
            &repl2,
            "primary",
            &[],
            &["--archive", &arch, "--rebuild"],
        );
        kept_copy(root.path());
        rejoined
    };
    let want = keys(&s).await;
    keys_reach(&rejoined, &want, 30, "the old primary did not catch up").await;
    assert_eq!(bank_total(&rejoined).await.0, ACCOUNTS as i64 * START);
    let e = rejoined
        .client()
        .await
        .batch_execute("INSERT INTO acked VALUES (-2)")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "25006", "{e:?}");
    let st = dr_status(&s);
    let peers = st["replication"].as_array().unwrap();
    assert!(
        peers
            .iter()
            .any(|r| r["name"] == "primary" && r["state"] == "streaming"),
        "{st:#}"
    );
    rejoined.stop();
    drop(s);
}

/// The old copy a rebuild set aside beside `root/primary`.
fn kept_copy(root: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(root)
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with("primary.old-"))
        .expect("the old copy was not kept")
        .path()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_standby_takes_over_from_a_killed_primary_and_the_old_one_rejoins_by_itself() {
    kill_and_fail_over(false, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_standby_takes_over_from_a_killed_primary_with_every_acknowledged_write() {
    kill_and_fail_over(true, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_handover_loses_nothing_and_fences_the_old_primary() {
    let root = tempfile::tempdir().unwrap();
    let arch = format!("a=file://{}", root.path().join("arch").display());
    let (mut p, repl) = primary(root.path(), &arch, &[]);
    let mut s = standby(root.path(), &repl, &arch, &["--failover", "manual"]);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = acked_writer(&p, stop.clone()).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    // A standby that is not the one named refuses; the primary hands over.
    failed(fortress(&[
        "dr",
        "failover",
        "--to",
        "dr9",
        "--admin",
        &s.admin_url(),
    ]));
    let printed = ok(fortress(&[
        "dr",
        "failover",
        "--to",
        "dr1",
        "--admin",
        &p.admin_url(),
    ]));
    assert!(printed.contains("TAKES NO WRITES"), "{printed}");
    // The writer stops at the first refusal.
    let acked = writer.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    assert!(acked.len() > 5, "{}", acked.len());
    refuses_writes(&p, "handed the write lease over to dr1").await;
    first_write(&s, 20).await;
    let have = keys(&s).await;
    assert_eq!(have, acked, "a handover lost or invented a write");
    let record = failover_record(&s).await;
    assert_eq!(record["kind"], "handover", "{record:#}");
    // Restarted, the old primary stays fenced and loses nothing.
    p.stop();
    p.restart();
    refuses_writes(&p, "took over").await;
    let st = dr_status(&p);
    assert_eq!(st["failover"]["replaced"]["transactions"], 0, "{st:#}");
    p.stop();
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_that_cannot_renew_its_lease_stops_taking_writes_until_it_can() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("arch");
    let arch = format!("a=file://{}", dir.display());
    let (mut p, _repl) = primary(root.path(), &arch, &["--lease-ttl", "1s"]);
    let c = p.client().await;
    c.batch_execute(
        "CREATE TABLE acked (k int PRIMARY KEY); CREATE TABLE probe (k int PRIMARY KEY)",
    )
    .await
    .unwrap();
    c.batch_execute("INSERT INTO acked VALUES (1)")
        .await
        .unwrap();
    // A block that wrote before the lease went, committed after.
    let block = p.client().await;
    block
        .batch_execute("BEGIN; INSERT INTO acked VALUES (5)")
        .await
        .unwrap();
    // Renewals start failing (where the lease's new version is staged,
    // a directory stands; even root cannot write there), and within the
    // lease's time to live writes stop; reads go on.
    let blocker = dir.join("lease.tmp");
    std::fs::create_dir_all(&blocker).unwrap();
    let fenced = {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut k = 0;
        loop {
            k += 1;
            match c.execute("INSERT INTO probe VALUES ($1)", &[&k]).await {
                Err(e) if code(&e) == "25006" => break format!("{e:?}"),
                Ok(_) => {}
                Err(e) => panic!("{e:?}"),
            }
            assert!(
                Instant::now() < deadline,
                "writes went on without the lease"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert!(fenced.contains("could not be renewed"), "{fenced}");
    // The block's COMMIT is refused and the block rolled back.
    let e = block.batch_execute("COMMIT").await.unwrap_err();
    assert_eq!(code(&e), "25006", "{e:?}");
    block.batch_execute("SELECT 1").await.unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM acked", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // Renewable again: the next renewal takes, and writes resume.
    std::fs::remove_dir(&blocker).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while c
        .batch_execute("INSERT INTO acked VALUES (4)")
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "writes did not resume:\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop((c, block));
    p.stop();
}

/// Writes to `server` every 20 ms until `stop`; when each was accepted.
fn probe_writes(
    server: &Server,
    table: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Instant>> {
    let url = server.url();
    tokio::spawn(async move {
        let mut accepted = Vec::new();
        let mut client = None;
        let mut k = 0i32;
        while !stop.load(Ordering::Relaxed) {
            if client.is_none() {
                client = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .ok()
                    .map(|(c, conn)| {
                        tokio::spawn(conn);
                        c
                    });
            }
            if let Some(c) = &client {
                k += 1;
                let sql = format!("INSERT INTO {table} VALUES ($1)");
                let r = tokio::time::timeout(Duration::from_secs(5), c.execute(&sql, &[&k])).await;
                match r {
                    Ok(Ok(_)) => accepted.push(Instant::now()),
                    Ok(Err(e)) if e.is_closed() => client = None,
                    _ => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        accepted
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_primary_stops_writing_before_its_standby_takes_over() {
    // The primary reaches the archive (S3) and its standby only through
    // relays, which the test blocks at once: its machine is cut off, alive.
    let port = free_port();
    let Some(_moto) = common::s3::Moto::start(port) else {
        return;
    };
    _moto.put("leases", b"");
    let root = tempfile::tempdir().unwrap();
    let direct = common::s3::s3_env(port);
    let to_s3 = Relay::start(format!("127.0.0.1:{port}")).await;
    let via_relay: Vec<(String, String)> = direct
        .iter()
        .map(|(k, v)| match k.as_str() {
            "AWS_ENDPOINT_URL" => (k.clone(), format!("http://{}", to_s3.addr)),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    let refs = |env: &[(String, String)]| -> Vec<(String, String)> { env.to_vec() };
    let (penv, senv) = (refs(&via_relay), refs(&direct));
    let penv: Vec<(&str, &str)> = penv.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let senv: Vec<(&str, &str)> = senv.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let arch = "a=s3://leases/fortress";
    let repl = format!("127.0.0.1:{}", free_port());
    let mut p = Server::launch_args(
        root.path().join("primary"),
        4,
        &penv,
        &[
            "--replication-listen",
            &repl,
            "--archive",
            arch,
            "--lease-ttl",
            "2s",
        ],
    );
    let to_primary = Relay::start(repl.clone()).await;
    let mut s = Server::standby(
        root.path().join("standby"),
        &to_primary.addr,
        "dr1",
        &senv,
        &["--archive", arch, "--primary-timeout", "2s"],
    );
    let c = p.client().await;
    c.batch_execute("CREATE TABLE on_p (k int PRIMARY KEY); CREATE TABLE on_s (k int PRIMARY KEY); CREATE TABLE acked (k int PRIMARY KEY)")
        .await
        .unwrap();
    drop(c);
    let stop = Arc::new(AtomicBool::new(false));
    let on_p = probe_writes(&p, "on_p", stop.clone());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let cut = Instant::now();
    to_s3.block();
    to_primary.block();
    // The standby takes over; then the probes stop.
    let first_s = first_write_to(&s, "on_s", 30).await;
    let on_s = probe_writes(&s, "on_s", stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (on_p, on_s) = (on_p.await.unwrap(), on_s.await.unwrap());
    let last_p = *on_p.last().expect("the primary took writes before the cut");
    assert!(!on_s.is_empty(), "the standby stopped taking writes");
    assert!(
        last_p < first_s,
        "both took writes: the primary until {:?} after the cut, the standby from {:?}",
        last_p - cut,
        first_s - cut
    );
    // The primary, alive all along, stopped on its own.
    refuses_writes(&p, "could not be renewed").await;
    // Healed: it learns it was replaced, and stays fenced.
    to_s3.unblock();
    to_primary.unblock();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = dr_status(&p);
        if st["failover"]["replaced"]["epoch"] == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{st:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    refuses_writes(&p, "took").await;
    p.stop();
    s.stop();
}

/// Writes one row to `table` on `server` until accepted; when the write
/// accepted was sent.
async fn first_write_to(server: &Server, table: &str, secs: u64) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let c = server.client().await;
    let sql = format!("INSERT INTO {table} VALUES (0)");
    loop {
        // The write could have been accepted no earlier than it was sent.
        let sent = Instant::now();
        if c.batch_execute(&sql).await.is_ok() {
            return sent;
        }
        assert!(
            Instant::now() < deadline,
            "no write accepted:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_other_standby_follows_the_new_primary() {
    let root = tempfile::tempdir().unwrap();
    let arch = format!("a=file://{}", root.path().join("arch").display());
    let (mut p, repl) = primary(root.path(), &arch, &["--lease-ttl", "2s"]);
    let (a, _) = serving_standby(root.path(), &repl, "dr1", &arch);
    let (b, _) = serving_standby(root.path(), &repl, "dr2", &arch);
    let c = p.client().await;
    c.batch_execute(
        "CREATE TABLE acked (k int PRIMARY KEY); INSERT INTO acked VALUES (1), (2), (3)",
    )
    .await
    .unwrap();
    drop(c);
    // Both hold everything before the primary goes: neither is ahead.
    for s in [&a, &b] {
        keys_reach(s, &[1, 2, 3], 15, "a standby did not catch up").await;
    }
    p.kill();
    // One of them takes over, the other follows it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (new, other) = loop {
        if dr_status(&a)["role"] == "primary" {
            break (&a, &b);
        }
        if dr_status(&b)["role"] == "primary" {
            break (&b, &a);
        }
        assert!(Instant::now() < deadline, "no standby took over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let c = new.client().await;
    c.batch_execute("INSERT INTO acked VALUES (4), (5)")
        .await
        .unwrap();
    keys_reach(
        other,
        &[1, 2, 3, 4, 5],
        20,
        "the other standby did not follow the new primary",
    )
    .await;
    assert_eq!(dr_status(other)["role"], "standby");
    let e = other
        .client()
        .await
        .batch_execute("INSERT INTO acked VALUES (6)")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "25006");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_holding_the_most_of_the_log_takes_over() {
    let root = tempfile::tempdir().unwrap();
    let arch = format!("a=file://{}", root.path().join("arch").display());
    let (mut p, repl) = primary(root.path(), &arch, &["--lease-ttl", "2s"]);
    // dr1 falls behind (its link blocked) and would be the first to call
    // the primary lost; dr2 keeps up and calls it lost later.
    let relay = Relay::start(repl.clone()).await;
    let (behind, _) = serving_standby_after(root.path(), &relay.addr, "dr1", &arch, "1s");
    let (ahead, _) = serving_standby_after(root.path(), &repl, "dr2", &arch, "3s");
    let c = p.client().await;
    c.batch_execute("CREATE TABLE acked (k int PRIMARY KEY); INSERT INTO acked VALUES (1)")
        .await
        .unwrap();
    for s in [&behind, &ahead] {
        keys_reach(s, &[1], 15, "a standby did not catch up").await;
    }
    relay.block();
    c.batch_execute("INSERT INTO acked VALUES (2), (3)")
        .await
        .unwrap();
    keys_reach(&ahead, &[1, 2, 3], 15, "dr2 did not catch up").await;
    // Both have reported where they stand.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(c);
    p.kill();
    let deadline = Instant::now() + Duration::from_secs(30);
    while dr_status(&ahead)["role"] != "primary" {
        assert_ne!(
            dr_status(&behind)["role"],
            "primary",
            "the standby behind took over:\n{}",
            behind.log()
        );
        assert!(
            Instant::now() < deadline,
            "dr2 did not take over:\n{}",
            ahead.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        behind.log().contains("deferring the takeover"),
        "{}",
        behind.log()
    );
    assert!(root.path().join("arch/standbys/dr1.json").exists());
    // Nothing acknowledged was lost, and dr1 follows dr2 once it can.
    assert_eq!(keys(&ahead).await, vec![1, 2, 3]);
    relay.unblock();
    let c = ahead.client().await;
    c.batch_execute("INSERT INTO acked VALUES (4)")
        .await
        .unwrap();
    keys_reach(&behind, &[1, 2, 3, 4], 30, "dr1 did not follow dr2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_ahead_of_the_new_primary_is_refused_and_rebuilt() {
    let root = tempfile::tempdir().unwrap();
    let arch = format!("a=file://{}", root.path().join("arch").display());
    let (mut p, repl) = primary(root.path(), &arch, &["--lease-ttl", "2s"]);
    // dr1 reaches the primary through a relay the test blocks; dr2 only
    // follows (no automatic failover).
    let relay = Relay::start(repl.clone()).await;
    let (a, own1) = serving_standby(root.path(), &relay.addr, "dr1", &arch);
    let b_args = [
        "--archive",
        &arch,
        "--primary-timeout",
        "2s",
        "--failover",
        "manual",
    ];
    let mut b = Server::standby(root.path().join("dr2"), &repl, "dr2", &[], &b_args);
    let c = p.client().await;
    c.batch_execute(
        "CREATE TABLE acked (k int PRIMARY KEY); INSERT INTO acked VALUES (1), (2), (3)",
    )
    .await
    .unwrap();
    for s in [&a, &b] {
        keys_reach(s, &[1, 2, 3], 15, "a standby did not catch up").await;
    }
    // dr2 gets writes dr1 never sees; then the primary dies.
    relay.block();
    c.batch_execute("INSERT INTO acked VALUES (4), (5)")
        .await
        .unwrap();
    keys_reach(&b, &[1, 2, 3, 4, 5], 15, "dr2 did not catch up").await;
    drop(c);
    p.kill();
    first_write_to(&a, "acked", 30).await;
    // dr2 turns to the new primary, which refuses it: its copy holds 4 and
    // 5, which the new primary's does not.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = dr_status(&b)["replication"].clone();
        if rows.to_string().contains("past where this one took over") {
            break;
        }
        assert!(Instant::now() < deadline, "{rows:#}\n{}", b.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(try_keys(&b).await, Some(vec![1, 2, 3, 4, 5]));
    // Rebuilt, it follows the new primary.
    b.stop();
    let rebuilt = Server::standby(
        root.path().join("dr2"),
        &own1,
        "dr2",
        &[],
        &["--archive", &arch, "--failover", "manual", "--rebuild"],
    );
    keys_reach(
        &rebuilt,
        &[0, 1, 2, 3],
        30,
        "the rebuilt copy did not catch up",
    )
    .await;
}
