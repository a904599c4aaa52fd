//! Checkpoints, restore and point-in-time recovery through the `fortress`
//! CLI, checked by serving each restored directory and reading it back.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cli::{failed, fortress, fortress_env, insert_range, ok, rows_of_t, s, Model};
use common::{bank_under_transfers, Server};

/// Checkpoint IDs under `data/checkpoints`, oldest first.
fn checkpoint_ids(data: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(data.join("checkpoints"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with(".tmp"))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

async fn apply(
    c: &tokio_postgres::Client,
    model: &mut Model,
    sql: &str,
    effect: impl Fn(&mut Model),
) {
    c.batch_execute(sql).await.unwrap();
    effect(model);
}

/// Creates `t (id int PRIMARY KEY, v text)` holding ids `0..rows` tagged
/// `tag`, and returns what it holds.
async fn table_t(c: &tokio_postgres::Client, rows: i32, tag: &str) -> Model {
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let mut model = Model::new();
    insert_range(c, &mut model, 0, rows, tag).await;
    model
}

async fn wal_lsn(c: &tokio_postgres::Client) -> String {
    c.query("SHOW fortress.metrics", &[])
        .await
        .unwrap()
        .iter()
        .find(|r| r.get::<_, String>(0) == "wal_lsn")
        .map(|r| r.get(1))
        .expect("wal_lsn metric")
}

/// `SELECT count(*) FROM t`.
async fn count_t(c: &tokio_postgres::Client) -> i64 {
    c.query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0)
}

/// Serves `dir` and checks it holds exactly `model`, by scan and by index.
async fn check_restored(dir: PathBuf, model: &Model, what: &str) {
    let mut server = Server::start_with(dir, 4);
    let c = server.client().await;
    let rows = rows_of_t(&c).await;
    assert_eq!(rows.len(), model.len(), "{what}: row count");
    assert!(rows == *model, "{what}: rows differ");
    let updated: i64 = c
        .query_one("SELECT count(*) FROM t WHERE v = 'updated'", &[])
        .await
        .unwrap()
        .get(0);
    let expected = model.values().filter(|v| *v == "updated").count() as i64;
    assert_eq!(updated, expected, "{what}: index lookup");
    // The restored directory takes writes and keeps them across a restart.
    c.batch_execute("INSERT INTO t VALUES (-1, 'new')")
        .await
        .unwrap();
    drop(c);
    server.stop();
    server.restart();
    let c = server.client().await;
    let n = count_t(&c).await;
    assert_eq!(n, model.len() as i64 + 1, "{what}: write after restore");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_to_the_checkpoint_an_lsn_a_time_and_the_end() {
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::start(root.path());
    let data = server.data_dir.clone();
    let c = server.client().await;
    let mut model = table_t(&c, 0, "a").await;
    c.batch_execute("CREATE INDEX t_v ON t (v)").await.unwrap();
    insert_range(&c, &mut model, 0, 3000, "a").await;

    // A: the checkpoint, taken through the running server.
    let out = ok(fortress(&["checkpoint", "create", "--data-dir", s(&data)]));
    assert!(out.contains("(3000 rows"), "{out}");
    let at_checkpoint = model.clone();

    // B: an LSN.
    insert_range(&c, &mut model, 3000, 4000, "b").await;
    apply(
        &c,
        &mut model,
        "UPDATE t SET v = 'updated' WHERE id < 50",
        |m| {
            (0..50).for_each(|i| {
                m.insert(i, "updated".into());
            })
        },
    )
    .await;
    let lsn = wal_lsn(&c).await;
    let at_lsn = model.clone();

    // C: a time, in PostgreSQL's timestamptz text.
    apply(&c, &mut model, "DELETE FROM t WHERE id >= 3500", |m| {
        m.retain(|k, _| *k < 3500)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let time = chrono::Utc::now()
        .format("%Y-%m-%d %H:%M:%S%.6f+00")
        .to_string();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let at_time = model.clone();

    // D: the end of the log, DDL included.
    insert_range(&c, &mut model, 5000, 5200, "d").await;
    apply(&c, &mut model, "DELETE FROM t WHERE id < 10", |m| {
        m.retain(|k, _| *k >= 10)
    })
    .await;
    c.batch_execute("CREATE TABLE other (k int PRIMARY KEY)")
        .await
        .unwrap();
    let at_end = model.clone();

    let list = ok(fortress(&["checkpoint", "list", "--data-dir", s(&data)]));
    assert_eq!(list.lines().count(), 2, "{list}");
    let verify = ok(fortress(&["checkpoint", "verify", "--data-dir", s(&data)]));
    assert!(verify.contains("intact: 3000 rows"), "{verify}");

    let cases: [(&str, Vec<&str>, &Model); 4] = [
        ("checkpoint", vec![], &at_checkpoint),
        ("lsn", vec!["--lsn", &lsn], &at_lsn),
        ("time", vec!["--time", &time], &at_time),
        ("latest", vec!["--latest"], &at_end),
    ];
    let mut restored = Vec::new();
    for (name, extra, _) in &cases {
        let to = root.path().join(format!("restored-{name}"));
        let mut args = vec!["restore", "--data-dir", s(&data), "--to", s(&to)];
        args.extend(extra);
        let out = ok(fortress(&args));
        assert!(out.contains("restored"), "{out}");
        restored.push(to);
    }
    // The source keeps serving throughout; then each copy is checked alone.
    let n = count_t(&c).await;
    assert_eq!(n, at_end.len() as i64);
    drop(c);
    server.stop();
    for ((name, _, model), dir) in cases.iter().zip(restored) {
        check_restored(dir, model, name).await;
    }
    // The latest restore has the table created after the checkpoint.
    let mut again = Server::start_with(root.path().join("restored-latest"), 4);
    let c = again.client().await;
    c.batch_execute("INSERT INTO other VALUES (1)")
        .await
        .unwrap();
    drop(c);
    again.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_taken_during_bank_transfers_restore_exact_totals() {
    const ACCOUNTS: i32 = 32;
    const START: i64 = 1000;
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::start(root.path());
    let data = server.data_dir.clone();
    let c = server.client().await;
    let stop = Arc::new(AtomicBool::new(false));
    let workers = bank_under_transfers(&server, ACCOUNTS, START, stop.clone()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut times = Vec::new();
    for _ in 0..3 {
        ok(fortress(&["checkpoint", "create", "--data-dir", s(&data)]));
        times.push(chrono::Utc::now().to_rfc3339());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut transfers = 0;
    for w in workers {
        transfers += w.await.unwrap();
    }
    assert!(transfers > 20, "only {transfers} transfers ran");
    drop(c);
    server.stop();
    let ids = checkpoint_ids(&data);
    assert_eq!(ids.len(), 3);
    let mut targets: Vec<Vec<String>> = ids
        .iter()
        .map(|id| vec!["--checkpoint".to_string(), id.clone()])
        .collect();
    targets.push(vec!["--time".into(), times[1].clone()]);
    for (n, extra) in targets.iter().enumerate() {
        let to = root.path().join(format!("r{n}"));
        let mut args = vec!["restore", "--data-dir", s(&data), "--to", s(&to)];
        args.extend(extra.iter().map(String::as_str));
        ok(fortress(&args));
        let mut r = Server::start_with(to, 4);
        let c = r.client().await;
        let rows = c.query("SELECT balance FROM acct", &[]).await.unwrap();
        let total: i64 = rows.iter().map(|r| r.get::<_, i64>(0)).sum();
        assert_eq!(rows.len(), ACCOUNTS as usize, "{extra:?}");
        assert_eq!(total, ACCOUNTS as i64 * START, "{extra:?}: the total moved");
        drop(c);
        r.stop();
    }
}

/// Flips one byte of `path` at `offset`.
fn flip(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_is_named_and_nothing_is_restored_silently() {
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::start(root.path());
    let data = server.data_dir.clone();
    let c = server.client().await;
    let mut model = table_t(&c, 4000, "x").await;
    drop(c);
    server.stop();

    // Offline: no server holds the directory, so the command opens it.
    ok(fortress(&["checkpoint", "create", "--data-dir", s(&data)]));
    let id = checkpoint_ids(&data).pop().unwrap();
    let ckpt = data.join("checkpoints").join(&id);

    // After the checkpoint, more writes land in the WAL.
    server.restart();
    let c = server.client().await;
    insert_range(&c, &mut model, 4000, 6000, "y").await;
    drop(c);

    // A live server's directory is never a restore target.
    let err = failed(fortress(&[
        "restore",
        "--data-dir",
        s(&data),
        "--to",
        s(&data),
        "--latest",
    ]));
    assert!(err.contains("overlaps"), "{err}");
    let other = root.path().join("other");
    let mut held = Server::start_with(other.clone(), 4);
    let err = failed(fortress(&[
        "restore",
        "--data-dir",
        s(&data),
        "--to",
        s(&other),
    ]));
    assert!(err.contains("held by a running server"), "{err}");
    held.stop();
    let err = failed(fortress(&[
        "restore",
        "--data-dir",
        s(&data),
        "--to",
        s(&other),
    ]));
    assert!(err.contains("not empty"), "{err}");
    ok(fortress(&[
        "restore",
        "--data-dir",
        s(&data),
        "--to",
        s(&other),
        "--force",
    ]));
    server.stop();

    // A flipped byte in a checkpoint block: verify and restore name the file.
    let rows_file = std::fs::read_dir(ckpt.join("shard-001"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let len = std::fs::metadata(&rows_file).unwrap().len() as usize;
    flip(&rows_file, len / 2);
    let err = failed(fortress(&["checkpoint", "verify", "--data-dir", s(&data)]));
    assert!(
        err.contains(s(&rows_file)) && err.contains("offset"),
        "{err}"
    );
    let to = root.path().join("bad");
    let err = failed(fortress(&[
        "restore",
        "--data-dir",
        s(&data),
        "--to",
        s(&to),
    ]));
    assert!(err.contains(s(&rows_file)), "{err}");
    assert!(!to.join("shard-000").exists(), "nothing is written");
    flip(&rows_file, len / 2);
    ok(fortress(&["checkpoint", "verify", "--data-dir", s(&data)]));

    // A flipped byte in the WAL after the checkpoint: replay names it, while
    // the checkpoint alone still restores.
    let wal = data.join("shard-002").join("wal");
    let seg = std::fs::read_dir(&wal)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .max()
        .unwrap();
    // Inside the records: the segment being written ends in zeros.
    let bytes = std::fs::read(&seg).unwrap();
    let len = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    flip(&seg, len * 3 / 4);
    let err = failed(fortress(&[
        "restore",
        "--data-dir",
        s(&data),
        "--to",
        s(&to),
        "--latest",
    ]));
    assert!(err.contains(s(&seg)) && err.contains("offset"), "{err}");
    assert!(
        !to.join("fortress.cluster").exists() && !to.join("shard-000").exists(),
        "a failed restore leaves nothing to serve"
    );
    let to2 = root.path().join("checkpoint-only");
    ok(fortress(&[
        "restore",
        "--data-dir",
        s(&data),
        "--to",
        s(&to2),
    ]));
    let mut r = Server::start_with(to2, 4);
    let c = r.client().await;
    let n = count_t(&c).await;
    assert_eq!(n, 4000);
    drop(c);
    r.stop();
    flip(&seg, len * 3 / 4);

    // Checkpoints are tied to the directory they were taken of.
    let ckpts = data.join("checkpoints");
    let err = failed(fortress(&[
        "restore",
        "--data-dir",
        s(&other),
        "--checkpoint-dir",
        s(&ckpts),
        "--to",
        s(&to),
    ]));
    assert!(err.contains("no checkpoint of"), "{err}");
    let err = failed(fortress(&[
        "restore",
        "--data-dir",
        s(&other),
        "--checkpoint-dir",
        s(&ckpts),
        "--to",
        s(&to),
        "--checkpoint",
        &id,
    ]));
    assert!(err.contains("another data directory"), "{err}");
    let list = ok(fortress(&[
        "checkpoint",
        "list",
        "--data-dir",
        s(&other),
        "--checkpoint-dir",
        s(&ckpts),
    ]));
    assert!(list.contains("(of another data directory)"), "{list}");

    // Retention: prune keeps the newest.
    ok(fortress(&["checkpoint", "create", "--data-dir", s(&data)]));
    ok(fortress(&["checkpoint", "create", "--data-dir", s(&data)]));
    assert_eq!(checkpoint_ids(&data).len(), 3);
    let out = ok(fortress(&[
        "checkpoint",
        "prune",
        "--data-dir",
        s(&data),
        "--keep",
        "1",
    ]));
    assert_eq!(out.lines().count(), 2, "{out}");
    let left = checkpoint_ids(&data);
    assert_eq!(left.len(), 1);
    assert!(left[0] > id);
    let out = ok(fortress(&[
        "checkpoint",
        "prune",
        "--data-dir",
        s(&data),
        "--older-than",
        "0s",
    ]));
    assert_eq!(out, "", "the newest checkpoint is always kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_checkpoints_keep_the_configured_number() {
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::start_env(
        root.path(),
        &[
            ("FORTRESS_CHECKPOINT_INTERVAL", "1s"),
            ("FORTRESS_CHECKPOINT_KEEP", "2"),
        ],
    );
    let c = server.client().await;
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    c.batch_execute("INSERT INTO t VALUES (1), (2), (3)")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.log().matches("checkpoint created").count() < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        server.log().matches("checkpoint created").count() >= 4,
        "{}",
        server.log()
    );
    drop(c);
    server.stop();
    let ids = checkpoint_ids(&server.data_dir);
    assert_eq!(ids.len(), 2, "{ids:?}");
    let verify = ok(fortress(&[
        "checkpoint",
        "verify",
        "--data-dir",
        s(&server.data_dir),
    ]));
    assert_eq!(verify.matches("intact: 3 rows").count(), 2, "{verify}");
}

/// Whether any file under `dir` (recursively) contains `needle`.
fn contains_bytes(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| {
            let p = e.path();
            if p.is_dir() {
                contains_bytes(&p, needle)
            } else {
                let bytes = std::fs::read(&p).unwrap_or_default();
                bytes.windows(needle.len()).any(|w| w == needle)
            }
        })
}

/// Starts `fortress serve` expecting it to refuse; returns its stderr.
fn serve_fails(data: &Path, env: &[(&str, &str)]) -> String {
    let listen = format!("127.0.0.1:{}", common::free_port());
    failed(fortress_env(
        &[
            "serve",
            "--admin-listen",
            "off",
            "--data-dir",
            s(data),
            "--listen",
            &listen,
        ],
        env,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_wal_and_checkpoints_need_the_right_key() {
    const KEY: &str = "8f3c0b6a1d2e4f5061728394a5b6c7d8e9f00112233445566778899aabbccdde";
    const WRONG: &str = "0000000000000000000000000000000000000000000000000000000000000001";
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let mut server = Server::launch(data.clone(), 4, &[("FORTRESS_KEY", KEY)]);
    let c = server.client().await;
    let model = table_t(&c, 500, "plaintext-marker-").await;
    drop(c);
    server.stop();
    ok(fortress_env(
        &["checkpoint", "create", "--data-dir", s(&data)],
        &[("FORTRESS_KEY", KEY)],
    ));
    // Neither the logs nor the checkpoint hold the rows in the clear.
    for shard in 0..4 {
        let wal = data.join(format!("shard-{shard:03}/wal"));
        assert!(
            !contains_bytes(&wal, b"plaintext-marker-"),
            "shard {shard} WAL"
        );
    }
    assert!(!contains_bytes(
        &data.join("checkpoints"),
        b"plaintext-marker-"
    ));

    // Without the key, or with another, nothing starts or reads.
    let err = serve_fails(&data, &[]);
    assert!(err.contains("no key was given"), "{err}");
    let err = serve_fails(&data, &[("FORTRESS_KEY", WRONG)]);
    assert!(err.contains("not the key"), "{err}");
    let err = failed(fortress(&["checkpoint", "verify", "--data-dir", s(&data)]));
    assert!(err.contains("no key was given"), "{err}");
    let key_file = root.path().join("wrong.key");
    std::fs::write(&key_file, WRONG).unwrap();
    private(&key_file);
    let to = root.path().join("restored");
    let err = failed(fortress(&[
        "restore",
        "--data-dir",
        s(&data),
        "--to",
        s(&to),
        "--key-file",
        s(&key_file),
    ]));
    assert!(err.contains("not the key"), "{err}");

    // With it, restore works and the copy is encrypted with the same key.
    let good_file = root.path().join("good.key");
    std::fs::write(&good_file, KEY).unwrap();
    private(&good_file);
    ok(fortress(&[
        "restore",
        "--data-dir",
        s(&data),
        "--to",
        s(&to),
        "--latest",
        "--key-file",
        s(&good_file),
    ]));
    let err = serve_fails(&to, &[]);
    assert!(err.contains("no key was given"), "{err}");
    let mut r = Server::launch(to, 4, &[("FORTRESS_KEY", KEY)]);
    let c = r.client().await;
    assert!(rows_of_t(&c).await == model, "restored rows differ");
    drop(c);
    r.stop();
}

/// Makes a key file private to its owner, as fortress requires.
fn private(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Each shard's LSN from `SHOW fortress.metrics`'s `0:12,1:9,...`.
fn parse_positions(text: &str) -> Vec<u64> {
    text.split(',')
        .map(|p| p.split_once(':').unwrap().1.parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_lsn_target_that_splits_a_transaction_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::start(root.path());
    let data = server.data_dir.clone();
    let mut c = server.client().await;
    let model = table_t(&c, 64, "v").await;
    let before = parse_positions(&wal_lsn(&c).await);
    // One transaction over every row: every shard prepares and commits it.
    let t = c.transaction().await.unwrap();
    t.execute("UPDATE t SET v = 'both'", &[]).await.unwrap();
    t.commit().await.unwrap();
    let after = parse_positions(&wal_lsn(&c).await);
    let moved: Vec<usize> = (0..4).filter(|&s| after[s] > before[s]).collect();
    assert!(
        moved.len() > 1,
        "a multi-shard transaction: {before:?} -> {after:?}"
    );
    drop(c);
    server.stop();
    // Stop one participant just before its commit record.
    let mut cut = after.clone();
    cut[moved[0]] -= 1;
    let target: Vec<String> = cut
        .iter()
        .enumerate()
        .map(|(s, n)| format!("{s}:{n}"))
        .collect();
    let to = root.path().join("split");
    let err = failed(fortress(&[
        "restore",
        "--data-dir",
        s(&data),
        "--to",
        s(&to),
        "--lsn",
        &target.join(","),
    ]));
    assert!(err.contains("cuts multi-shard transactions"), "{err}");
    // Before the transaction on every shard, or after it, is fine.
    let whole: Vec<String> = before
        .iter()
        .enumerate()
        .map(|(s, n)| format!("{s}:{n}"))
        .collect();
    ok(fortress(&[
        "restore",
        "--data-dir",
        s(&data),
        "--to",
        s(&to),
        "--lsn",
        &whole.join(","),
    ]));
    check_restored(to, &model, "before the transaction").await;
}
