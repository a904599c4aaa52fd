//! Archives against the real binary: a server ships its WAL and
//! checkpoints to `file://` and to `s3://` (a moto server started here),
//! its data directory is then thrown away, and `fortress restore --from`
//! rebuilds it from the archive alone, row for row; damage in the archive
//! is caught, an archive that is down is reported and caught up with.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cli::{failed, fortress, fortress_env, insert_range, ok, rows_of_t, s, Model};
use common::s3::{s3_env, Moto};
use common::{bank_under_transfers, code, free_port, wait_port, Server};
use serde_json::Value;

fn admin(server: &Server, method: &str, path: &str) -> Value {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let url = format!("{}{path}", server.admin_url());
    let mut r = match method {
        "GET" => agent.get(&url).call(),
        _ => agent.post(&url).send_empty(),
    }
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
}

/// Ships now; the one archive's status after.
fn replicate(server: &Server) -> Value {
    admin(server, "POST", "/api/v1/dr/replicate")["archives"][0].clone()
}

/// Ships until every log is archived through its durable end (records
/// become durable between rounds as the coordinator retires decisions);
/// the status then.
fn catch_up(server: &Server) -> Value {
    for _ in 0..20 {
        let st = replicate(server);
        if caught_up(&st) {
            return st;
        }
    }
    panic!("the archive never caught up: {}", replicate(server));
}

/// The check `name` of an archive's health.
fn check<'a>(health: &'a Value, name: &str) -> &'a Value {
    health["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {health}"))
}

/// Polls the one archive's health until `done` holds (20 s at most).
fn wait_for_health(server: &Server, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let health = admin(server, "GET", "/api/v1/dr/status")["archives"][0]["health"].clone();
        if done(&health) {
            return health;
        }
        assert!(Instant::now() < deadline, "{what}: {health}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether every log is archived through its durable end.
fn caught_up(archive: &Value) -> bool {
    archive["logs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["archived_lsn"] == l["durable_lsn"] && l["lag_records"] == 0)
}

/// Serves the restored `dir` and checks that `t` holds exactly `model`.
async fn check_restored(dir: std::path::PathBuf, model: &Model, what: &str) {
    let mut server = Server::start_with(dir, 4);
    let c = server.client().await;
    let rows = rows_of_t(&c).await;
    assert_eq!(rows.len(), model.len(), "{what}: row count");
    assert!(rows == *model, "{what}: rows differ");
    drop(c);
    server.stop();
}

/// Runs `fortress restore SOURCE... --to TO` (with `env`), checks the
/// restored directory holds `model`, and returns what the restore printed.
async fn restored(
    source: &[&str],
    env: &[(String, String)],
    to: std::path::PathBuf,
    model: &Model,
    what: &str,
) -> String {
    let mut args = vec!["restore"];
    args.extend_from_slice(source);
    args.extend(["--to", s(&to)]);
    let out = ok(fortress_env(&args, env));
    check_restored(to, model, what).await;
    out
}

/// Restores `url` (with `env`) to `time` and checks it holds `at`; then
/// to its latest point, whose directory it returns.
async fn restore_time_and_latest(
    url: &str,
    env: &[(String, String)],
    root: &Path,
    (at, time): (&Model, &str),
    what: &str,
) -> std::path::PathBuf {
    let source = ["--from", url, "--time", time];
    let what_time = format!("{what} --time");
    restored(&source, env, root.join("at-time"), at, &what_time).await;
    let to_latest = root.join("latest");
    ok(fortress_env(
        &["restore", "--from", url, "--to", s(&to_latest), "--latest"],
        env,
    ));
    to_latest
}

/// Restores `url` (with `env`) into `to`, which must fail; its error.
fn restore_fails(url: &str, env: &[(String, String)], to: &Path) -> String {
    failed(fortress_env(
        &["restore", "--from", url, "--to", s(to), "--latest"],
        env,
    ))
}

/// Writes a history into `t` (a checkpoint in the middle, multi-shard
/// transactions, deletes), ships it, and returns the model at a time in
/// the middle, that time, and the final model.
async fn history(server: &Server) -> (Model, String, Model) {
    let c = server.client().await;
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let mut model = Model::new();
    insert_range(&c, &mut model, 0, 2000, "a").await;
    // One transaction over every shard.
    c.batch_execute("BEGIN; UPDATE t SET v = 'multi' WHERE id < 40; COMMIT")
        .await
        .unwrap();
    for i in 0..40 {
        model.insert(i, "multi".into());
    }
    let cp = admin(server, "POST", "/api/v1/checkpoints");
    assert!(cp["id"].is_string(), "{cp}");
    insert_range(&c, &mut model, 2000, 3000, "b").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let at = model.clone();
    let time: String = c.query_one("SELECT now()::text", &[]).await.unwrap().get(0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    c.batch_execute(
        "BEGIN; DELETE FROM t WHERE id >= 2900; UPDATE t SET v = 'late' WHERE id < 10; COMMIT",
    )
    .await
    .unwrap();
    model.retain(|&k, _| k < 2900);
    for i in 0..10 {
        model.insert(i, "late".into());
    }
    insert_range(&c, &mut model, 5000, 5100, "c").await;
    let st = catch_up(server);
    assert_eq!(st["healthy"], true, "{st}");
    assert!(st["checkpoints"].as_u64().unwrap() >= 1, "{st}");
    (at, time, model)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_archive_alone_restores_to_a_time_and_to_its_latest_point() {
    let root = tempfile::tempdir().unwrap();
    let arch = root.path().join("archive");
    let url = format!("file://{}", arch.display());
    let spec = format!("offsite={url}");
    let mut server = Server::launch_args(
        root.path().join("data"),
        4,
        &[],
        &["--archive", &spec, "--ship-interval", "200ms"],
    );
    let (at, time, last) = history(&server).await;
    let out = ok(fortress(&["dr", "status", "--admin", &server.admin_url()]));
    assert!(
        out.contains("archive offsite")
            && out.contains("healthy")
            && out.contains("shard-003")
            && out.contains("health score")
            && out.contains("% of"),
        "{out}"
    );
    server.stop();
    // The machine is lost: only the archive is left.
    std::fs::remove_dir_all(root.path().join("data")).unwrap();

    let to_time = root.path().join("at-time");
    let source = ["--from", &url, "--time", &time];
    let out = restored(&source, &[], to_time, &at, "--time").await;
    assert!(
        out.contains("from checkpoint 20"),
        "restored from the archived checkpoint: {out}"
    );
    let to_latest = root.path().join("latest");
    let source = ["--from", &url, "--latest"];
    restored(&source, &[], to_latest, &last, "--latest").await;

    // A flipped byte in any archived WAL object is caught, named, and
    // leaves nothing behind.
    let objects = files_under(&arch.join("wal/shard-001"));
    let victim = objects.last().unwrap();
    flip(victim, 40);
    let to_bad = root.path().join("bad");
    let err = failed(fortress(&[
        "restore",
        "--from",
        &url,
        "--to",
        s(&to_bad),
        "--latest",
    ]));
    let name = victim.file_name().unwrap().to_string_lossy();
    assert!(err.contains(&*name) && err.contains("damaged"), "{err}");
    assert!(
        !to_bad.join("shard-000").exists(),
        "a failed restore left files"
    );
    flip(victim, 40);
    // ... and in a checkpoint file.
    let rows = files_under(&arch.join("checkpoints"))
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "rows"))
        .unwrap();
    flip(&rows, 20);
    let err = failed(fortress(&[
        "restore",
        "--from",
        &url,
        "--to",
        s(&to_bad),
        "--force",
        "--latest",
    ]));
    assert!(err.contains("damaged") || err.contains("corrupt"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_from_an_archive_being_written_keeps_every_transfer_whole() {
    const ACCOUNTS: i32 = 24;
    const START: i64 = 1000;
    let root = tempfile::tempdir().unwrap();
    let url = format!("file://{}", root.path().join("archive").display());
    let spec = format!("a={url}");
    let mut server = Server::launch_args(
        root.path().join("data"),
        4,
        &[],
        &["--archive", &spec, "--ship-interval", "100ms"],
    );
    let c = server.client().await;
    let stop = Arc::new(AtomicBool::new(false));
    let workers = bank_under_transfers(&server, ACCOUNTS, START, stop.clone()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Restores of the archive's latest point while transfers go on.
    let mut moved = false;
    for n in 0..4 {
        let to = root.path().join(format!("r{n}"));
        let to2 = to.clone();
        let url2 = url.clone();
        let out = tokio::task::spawn_blocking(move || {
            fortress(&["restore", "--from", &url2, "--to", s(&to2), "--latest"])
        })
        .await
        .unwrap();
        ok(out);
        let mut r = Server::start_with(to, 4);
        let rc = r.client().await;
        let rows = rc.query("SELECT balance FROM acct", &[]).await.unwrap();
        let total: i64 = rows.iter().map(|r| r.get::<_, i64>(0)).sum();
        assert_eq!(rows.len(), ACCOUNTS as usize);
        moved |= rows.iter().any(|r| r.get::<_, i64>(0) != START);
        assert_eq!(
            total,
            ACCOUNTS as i64 * START,
            "restore {n}: a transfer was cut in half"
        );
        drop(rc);
        r.stop();
    }
    // The server is killed with transfers and shipping under way; after a
    // restart, shipping resumes where the archive ends (a second history
    // or a gap would fail the restore) and the archive catches up with
    // every acknowledged transfer.
    stop.store(true, Ordering::Relaxed);
    server.kill();
    let mut transfers = 0;
    for w in workers {
        transfers += w.await.unwrap();
    }
    assert!(transfers > 20, "only {transfers} transfers ran");
    assert!(
        moved,
        "no restore held a transfer: the restore points were all before them"
    );
    drop(c);
    server.restart();
    let c = server.client().await;
    let balances = |rows: Vec<tokio_postgres::Row>| -> Vec<(i32, i64)> {
        let mut b: Vec<_> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        b.sort();
        b
    };
    let primary = balances(c.query("SELECT id, balance FROM acct", &[]).await.unwrap());
    catch_up(&server);
    drop(c);
    server.stop();
    let to = root.path().join("after-crash");
    ok(fortress(&[
        "restore",
        "--from",
        &url,
        "--to",
        s(&to),
        "--latest",
    ]));
    let mut r = Server::start_with(to, 4);
    let rc = r.client().await;
    let restored = balances(rc.query("SELECT id, balance FROM acct", &[]).await.unwrap());
    assert_eq!(restored, primary, "the archive after a crash and a restart");
    drop(rc);
    r.stop();
}

#[test]
fn misconfigured_archives_stop_the_start_with_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    for (spec, says) in [
        ("no-equals-sign", "NAME=URL"),
        ("x=ftp://host/p", "unknown scheme"),
        ("x=s3://key:secret@bucket/p", "environment"),
        ("x=s3://bucket/p?secret=1", "no credentials, query"),
        ("x=file://otherhost/dir", "names a host"),
        ("bad name=file:///tmp/x", "letters, digits"),
    ] {
        let err = failed(fortress(&[
            "serve",
            "--data-dir",
            s(&data),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "off",
            "--archive",
            spec,
        ]));
        assert!(err.contains(says), "{spec}: {err}");
        assert!(
            !err.contains("secret"),
            "the secret reached the error: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_of_another_data_directory_is_refused_in_status() {
    let root = tempfile::tempdir().unwrap();
    let spec = format!("shared=file://{}", root.path().join("archive").display());
    let args = ["--archive", spec.as_str(), "--ship-interval", "100ms"];
    let mut first = Server::launch_args(root.path().join("one"), 4, &[], &args);
    assert_eq!(replicate(&first)["healthy"], true);
    first.stop();
    let mut second = Server::launch_args(root.path().join("two"), 4, &[], &args);
    let st = replicate(&second);
    assert_eq!(st["healthy"], false, "{st}");
    assert!(
        st["last_error"]
            .as_str()
            .unwrap()
            .contains("another data directory"),
        "{st}"
    );
    // The server itself goes on serving.
    let c = second.client().await;
    c.batch_execute("CREATE TABLE x (id int PRIMARY KEY)")
        .await
        .unwrap();
    drop(c);
    second.stop();
}

// --- S3, against a moto server -----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_archive_that_was_down_is_caught_up_and_restores_row_for_row() {
    let root = tempfile::tempdir().unwrap();
    let port = free_port();
    let env = s3_env(port);
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let url = "s3://backups/fortress/main";
    let spec = format!("offsite={url}");
    // Nothing listens on the endpoint yet: the server starts, reports the
    // archive down, and keeps its WAL for it.
    let fast_checks = [
        "--health-connectivity-every",
        "200ms",
        "--health-latency-every",
        "200ms",
        "--health-lag-every",
        "200ms",
        "--health-lag-max",
        "3s",
    ];
    let mut args = vec!["--archive", spec.as_str(), "--ship-interval", "200ms"];
    args.extend(fast_checks);
    let mut server = Server::launch_args(root.path().join("data"), 4, &env_refs, &args);
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE early (id int PRIMARY KEY); INSERT INTO early VALUES (1), (2), (3)",
    )
    .await
    .unwrap();
    let st = replicate(&server);
    assert_eq!(st["healthy"], false, "{st}");
    assert!(
        st["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{st}"
    );
    assert!(
        !st["last_error"].as_str().unwrap().contains("testing"),
        "a secret in status: {st}"
    );
    // Its health checks fail, the critical ones again and again, and its
    // score falls (EMA, alpha 0.3).
    let down = wait_for_health(&server, "an archive that is down", |h| {
        let connectivity = check(h, "connectivity");
        connectivity["ok"] == false
            && connectivity["consecutive_failures"].as_u64().unwrap() >= 3
            && h["score"].as_f64().unwrap() < 0.5
            // Each check runs on its own: wait for the latency one's first.
            && check(h, "latency")["runs"].as_u64().unwrap_or(0) >= 1
    });
    assert_eq!(check(&down, "latency")["ok"], false, "{down}");
    let Some(moto) = Moto::start(port) else {
        server.stop();
        return;
    };
    moto.put("backups", b"");
    let (at, time, last) = history(&server).await;
    let st = catch_up(&server);
    // Back: every check passes and the score climbs again.
    let low = down["score"].as_f64().unwrap();
    wait_for_health(&server, "an archive that is back", |h| {
        ["connectivity", "latency", "capacity", "replication_lag"]
            .iter()
            .all(|c| check(h, c)["ok"] == true)
            && h["score"].as_f64().unwrap() > low + 0.3
    });
    assert!(st["shipped_bytes"].as_u64().unwrap() > 0, "{st}");
    // Shipped compressed: the objects are zstd envelopes.
    let keys = moto.keys("backups", "fortress/main/wal/shard-000/");
    assert!(!keys.is_empty());
    let body = moto.get(&format!("backups/{}", keys[0]));
    assert_eq!(&body[..9], b"FORTARC1\x01");
    drop(c);
    server.stop();
    std::fs::remove_dir_all(root.path().join("data")).unwrap();

    let to_latest = restore_time_and_latest(url, &env, root.path(), (&at, &time), "s3").await;
    let mut r = Server::start_with(to_latest.clone(), 4);
    let rc = r.client().await;
    assert_eq!(rows_of_t(&rc).await, last, "s3 --latest");
    let early: i64 = rc
        .query_one("SELECT count(*) FROM early", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(early, 3, "what was written while the archive was down");
    drop(rc);
    r.stop();

    // A flipped byte in an object on S3 is caught.
    let key = keys.last().unwrap();
    let mut body = moto.get(&format!("backups/{key}"));
    let mid = body.len() / 2;
    body[mid] ^= 0x01;
    moto.put(&format!("backups/{key}"), &body);
    let err = restore_fails(url, &env, &root.path().join("bad"));
    assert!(err.contains("damaged"), "{err}");
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().filter_map(|e| e.ok()) {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn flip(path: &Path, offset: usize) {
    let mut b = std::fs::read(path).unwrap();
    let at = offset.min(b.len() - 1);
    b[at] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

/// The segment files of every shard's WAL in `data`.
fn segments(data: &Path) -> Vec<std::path::PathBuf> {
    (0..4)
        .flat_map(|s| files_under(&data.join(format!("shard-{s:03}/wal"))))
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_and_checkpointed_wal_is_recycled_and_older_points_restore_from_the_archive() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let url = format!("file://{}", root.path().join("archive").display());
    let spec = format!("a={url}");
    let args = [
        "--archive",
        spec.as_str(),
        "--ship-interval",
        "200ms",
        "--wal-segment-mb",
        "1",
        "--wal-keep-segments",
        "0",
        "--wal-recycle-interval",
        "300ms",
    ];
    let mut server = Server::launch_args(data.clone(), 4, &[], &args);
    let c = server.client().await;
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let pad = "x".repeat(1000);
    let mut model = Model::new();
    for chunk in (0..8000).collect::<Vec<i32>>().chunks(400) {
        let values: Vec<String> = chunk.iter().map(|i| format!("({i}, '{pad}{i}')")).collect();
        c.batch_execute(&format!("INSERT INTO t VALUES {}", values.join(",")))
            .await
            .unwrap();
        for i in chunk {
            model.insert(*i, format!("{pad}{i}"));
        }
    }
    let early = model.clone();
    let time: String = c.query_one("SELECT now()::text", &[]).await.unwrap().get(0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let before = segments(&data);
    assert!(before.len() >= 8, "1 MiB segments rotated: {before:?}");
    c.batch_execute("UPDATE t SET v = 'later' WHERE id % 10 = 0")
        .await
        .unwrap();
    for (k, v) in model.iter_mut() {
        if k % 10 == 0 {
            *v = "later".into();
        }
    }
    admin(&server, "POST", "/api/v1/checkpoints");
    catch_up(&server);
    // Recycling removes the oldest segments: checkpointed, archived, applied.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = segments(&data);
        // The pass logs once it has removed them.
        if before.iter().filter(|p| !now.contains(p)).count() >= 4
            && server.log().contains("recycled WAL segments")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no segment was recycled: {now:?}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(c);
    // A restart, even after a crash, replays from the store's marks, not
    // from the removed WAL.
    server.kill();
    server.restart();
    let c = server.client().await;
    assert!(
        rows_of_t(&c).await == model,
        "after a restart with recycled WAL"
    );
    drop(c);
    // An archive added now cannot get the recycled WAL: it starts from the
    // archived checkpoint that covers it.
    server.stop();
    let url2 = format!("file://{}", root.path().join("archive2").display());
    let spec2 = format!("b={url2}");
    server.args.extend(["--archive".to_string(), spec2]);
    server.restart();
    let st = admin(&server, "POST", "/api/v1/dr/replicate");
    let b = st["archives"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "b")
        .unwrap()
        .clone();
    assert_eq!(b["healthy"], true, "{b}");
    assert!(
        server.log().contains("continues after the checkpoint"),
        "{}",
        server.log()
    );
    server.stop();
    let to = root.path().join("from-b");
    let source = ["--from", &url2, "--latest"];
    restored(
        &source,
        &[],
        to,
        &model,
        "an archive started after recycling",
    )
    .await;
    // The local directory still restores from its newest checkpoint.
    let to = root.path().join("local");
    let source = ["--data-dir", s(&data), "--latest"];
    restored(&source, &[], to, &model, "local restore after recycling").await;
    // A point before the checkpoint comes back from the archive's WAL.
    let to = root.path().join("early");
    let source = ["--from", &url, "--time", &time];
    restored(
        &source,
        &[],
        to,
        &early,
        "before the checkpoint, from the archive",
    )
    .await;
}

// --- Azure, against Azurite --------------------------------------------

/// An Azurite blob server (npm, installed under tests/node), stopped when
/// dropped; containers are made and objects edited with Azure's SDK
/// (tests/node/azurite.js).
struct Azurite {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

fn node_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

impl Azurite {
    /// `None` if Azurite is not installed (CI installs it and sets
    /// FORTRESS_REQUIRE_AZURITE=1).
    fn start() -> Option<Azurite> {
        let bin = node_dir().join("node_modules/.bin/azurite-blob");
        if !bin.exists() {
            assert!(
                std::env::var("FORTRESS_REQUIRE_AZURITE").is_err(),
                "Azurite is required: run npm ci --prefix tests/node"
            );
            eprintln!("skipping: Azurite is not installed (npm ci --prefix tests/node)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new(bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args([
                "--location",
                s(dir.path()),
                "--silent",
                "--skipApiVersionCheck",
                "--loose",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start azurite-blob");
        let az = Azurite {
            child,
            port,
            _dir: dir,
        };
        wait_port(port, "Azurite");
        Some(az)
    }

    fn sdk(&self, args: &[&str]) -> String {
        let out = Command::new("node")
            .arg(node_dir().join("azurite.js"))
            .arg(args[0])
            .arg(self.port.to_string())
            .args(&args[1..])
            .output()
            .expect("run node");
        assert!(
            out.status.success(),
            "azurite.js {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AZURE_STORAGE_USE_EMULATOR".into(), "true".into()),
            (
                "AZURITE_BLOB_STORAGE_URL".into(),
                format!("http://127.0.0.1:{}", self.port),
            ),
        ]
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_azure_archive_restores_to_a_time_row_for_row_and_damage_is_caught() {
    let Some(az) = Azurite::start() else {
        return;
    };
    az.sdk(&["create", "backups"]);
    let env = az.env();
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let root = tempfile::tempdir().unwrap();
    let url = "az://backups/fortress";
    let spec = format!("azure={url}");
    let mut server = Server::launch_args(
        root.path().join("data"),
        4,
        &env_refs,
        &["--archive", &spec, "--ship-interval", "200ms"],
    );
    let (at, time, last) = history(&server).await;
    server.stop();
    std::fs::remove_dir_all(root.path().join("data")).unwrap();
    let to_latest = restore_time_and_latest(url, &env, root.path(), (&at, &time), "azure").await;
    check_restored(to_latest, &last, "azure --latest").await;
    let flipped = az.sdk(&["flip", "backups", "fortress/wal/shard-002/"]);
    let err = restore_fails(url, &env, &root.path().join("bad"));
    let name = flipped.rsplit('/').next().unwrap();
    assert!(err.contains(name) && err.contains("damaged"), "{err}");
}

/// (status, JSON) of an admin request with an optional JSON body.
fn admin_call(server: &Server, path: &str, body: Option<Value>) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let url = format!("{}{path}", server.admin_url());
    let mut r = match body {
        Some(b) => agent.post(&url).send_json(b),
        None => agent.post(&url).send_empty(),
    }
    .unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_added_at_runtime_ships_and_takes_a_checkpoint_on_request() {
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::start(root.path());
    let c = server.client().await;
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let mut model = Model::new();
    insert_range(&c, &mut model, 0, 500, "r").await;
    let url = format!("file://{}", root.path().join("late").display());
    let add = |name: &str, url: &str| {
        admin_call(
            &server,
            "/api/v1/dr/providers",
            Some(serde_json::json!({"name": name, "url": url})),
        )
    };
    let (status, body) = add("late", &url);
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], "late");
    let (status, body) = add("late", &url);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    let (status, body) = add("bad", "ftp://host/x");
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown scheme"),
        "{body}"
    );
    let (status, body) = admin_call(&server, "/api/v1/dr/checkpoint/nope", None);
    assert_eq!(status, 404, "{body}");
    let (status, body) = admin_call(&server, "/api/v1/dr/checkpoint/late", None);
    assert_eq!(status, 201, "{body}");
    let id = body["checkpoint"].as_str().unwrap().to_string();
    assert_eq!(body["archive"]["newest_checkpoint"], id.as_str(), "{body}");
    insert_range(&c, &mut model, 500, 600, "s").await;
    catch_up(&server);
    drop(c);
    server.stop();
    let to = root.path().join("restored");
    let source = ["--from", &url, "--latest"];
    let out = restored(&source, &[], to, &model, "an archive added at runtime").await;
    assert!(out.contains(&format!("from checkpoint {id}")), "{out}");
}

/// The write lease on an object store: a primary with standbys claims it
/// with a conditional create and renews it with conditional replaces
/// (every 200 ms here); a second node pointed at the same archive finds
/// it held, and takes no writes.
async fn lease_is_exclusive_on(spec: &str, env: &[(String, String)], root: &Path) {
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    std::fs::create_dir_all(root).unwrap();
    let launch = |dir: &str, name: &str| {
        let repl = format!("127.0.0.1:{}", free_port());
        Server::launch_args(
            root.join(dir),
            4,
            &env_refs,
            &[
                "--archive",
                spec,
                "--replication-listen",
                &repl,
                "--lease-ttl",
                "1s",
                "--name",
                name,
            ],
        )
    };
    let mut first = launch("first", "first");
    let c = first.client().await;
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    // Renewed a few times over, and still writable.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.batch_execute("INSERT INTO t VALUES (1)").await.unwrap();
    let st = admin(&first, "GET", "/api/v1/dr/status");
    let lease = &st["failover"]["lease"];
    assert_eq!(lease["holder"], "first", "{st}");
    assert_eq!(lease["writable"], true, "{st}");
    assert!(lease["error"].is_null(), "{st}");
    let mut second = launch("second", "second");
    let c2 = second.client().await;
    let e = c2
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "25006", "{e:?}");
    assert!(
        format!("{e:?}").contains("node first holds the write lease"),
        "{e:?}"
    );
    c.batch_execute("INSERT INTO t VALUES (2)").await.unwrap();
    drop((c, c2));
    second.stop();
    first.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_lease_is_held_by_one_node_on_s3_and_on_azure() {
    let root = tempfile::tempdir().unwrap();
    let port = free_port();
    if let Some(moto) = Moto::start(port) {
        moto.put("leases", b"");
        let spec = "s3=s3://leases/fortress";
        lease_is_exclusive_on(spec, &s3_env(port), &root.path().join("s3")).await;
        // The lease object is there, as JSON naming its holder.
        let body = moto.get("leases/fortress/lease");
        let lease: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(lease["holder"], "first");
        assert!(lease["renewal"].as_u64().unwrap() >= 3, "{lease}");
    }
    if let Some(az) = Azurite::start() {
        az.sdk(&["create", "leases"]);
        let spec = "azure=az://leases/fortress";
        lease_is_exclusive_on(spec, &az.env(), &root.path().join("az")).await;
    }
}
