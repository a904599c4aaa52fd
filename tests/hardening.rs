//! Hostile and careless clients against the real binary: input that once
//! took the whole server down (deep operator chains, huge query strings),
//! each test ending by checking that a new client is still served.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{code, startup_message, Server};

/// A new client connects and runs a query: the server is still serving.
async fn still_serves(server: &Server) {
    let c = server.client().await;
    let row = c.query_one("SELECT 40 + 2", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
}

/// The server's message of a failed statement.
fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default()
}

/// A raw connection past startup (trust authentication), for messages no
/// driver would send.
fn raw_session(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    s.write_all(&startup_message(&[("user", "fortress")]))
        .unwrap();
    while common::read_message(&mut s).0 != b'Z' {}
    s
}

#[tokio::test]
async fn operator_chains_of_any_length_are_refused_or_run_never_crash() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = server.client().await;
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    c.batch_execute("INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        .await
        .unwrap();
    let or_chain = |n: usize| {
        let terms: Vec<String> = (0..n).map(|i| format!("id = {i}")).collect();
        format!("SELECT count(*) FROM t WHERE {}", terms.join(" OR "))
    };
    // What ORMs send: 1,300 terms once overflowed the stack; thousands run,
    // evaluated on the shards, through both protocols.
    for n in [1_300, 4_000] {
        let rows = c.simple_query(&or_chain(n)).await.unwrap();
        let count = rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        });
        assert_eq!(count.as_deref(), Some("3"), "{n} terms");
        let prepared = c.query_one(&or_chain(n), &[]).await.unwrap();
        assert_eq!(prepared.get::<_, i64>(0), 3);
    }
    let sum = c
        .query_one(&format!("SELECT {}", vec!["1"; 9_000].join(" + ")), &[])
        .await
        .unwrap();
    assert_eq!(sum.get::<_, i32>(0), 9_000);

    // Past the bound, at 100k terms: 54001, and the session goes on.
    let long = [
        or_chain(100_000),
        format!("SELECT {}", vec!["1"; 100_000].join("+")),
        format!(
            "SELECT 1 FROM t WHERE {}",
            vec!["id > 0"; 100_000].join(" AND ")
        ),
        format!("SELECT 'a'{}", " || 'b'".repeat(100_000)),
        format!("SELECT 1{}", "::int".repeat(100_000)),
        format!("SELECT 1{}", " UNION SELECT 1".repeat(100_000)),
        format!("SELECT {}1{}", "(".repeat(100_000), ")".repeat(100_000)),
    ];
    for sql in &long {
        let e = c.simple_query(sql).await.unwrap_err();
        assert_eq!(code(&e), "54001", "{}", &sql[..40]);
        let e = c.prepare(sql).await.unwrap_err();
        assert_eq!(code(&e), "54001", "{}", &sql[..40]);
    }
    // A chain another lexer would read as a comment is measured as the
    // parser reads it (a carriage return ends a `--` comment).
    let hidden = format!("SELECT 1 --\r{}", "+1".repeat(100_000));
    assert_eq!(code(&c.simple_query(&hidden).await.unwrap_err()), "54001");
    // An unfinished chain is refused before the parser builds (and then
    // has to drop) a tree as deep as it.
    let unfinished = format!("SELECT {} +", vec!["1"; 100_000].join("+"));
    assert_eq!(
        code(&c.simple_query(&unfinished).await.unwrap_err()),
        "54001"
    );
    still_serves(&server).await;
}

#[tokio::test]
async fn a_huge_query_string_runs_statement_by_statement_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    still_serves(&server).await;
    let before = server.rss_kib().unwrap();

    // 100 MB of statements in one Query message, read back as it is
    // answered; the RSS is sampled all along.
    let padding = "x".repeat(1_000);
    let statement = format!("SELECT '{padding}';");
    let count = (100 << 20) / statement.len();
    let sql = statement.repeat(count);
    let mut s = raw_session(server.port);
    let mut msg = vec![b'Q'];
    msg.extend_from_slice(&((sql.len() + 5) as i32).to_be_bytes());
    msg.extend_from_slice(sql.as_bytes());
    msg.push(0);
    drop(sql);
    let mut writer = s.try_clone().unwrap();
    let send = std::thread::spawn(move || writer.write_all(&msg));
    let mut complete = 0;
    let mut peak = 0;
    loop {
        let (tag, _) = common::read_message(&mut s);
        match tag {
            b'C' => complete += 1,
            b'E' => panic!("a statement failed"),
            b'Z' => break,
            _ => {}
        }
        if complete % 1_000 == 0 {
            peak = peak.max(server.rss_kib().unwrap());
        }
    }
    send.join().unwrap().unwrap();
    assert_eq!(complete, count);
    // The message itself is held (100 MB) and copied once into a string;
    // the statements' trees are not: before, 10 MB of `SELECT 1;` alone
    // reached 7 GB.
    let grown_mib = peak.saturating_sub(before) / 1024;
    assert!(grown_mib < 600, "grew by {grown_mib} MiB");

    // 100 MB of blanks is an empty query, not gigabytes of tokens.
    let mut blank = vec![b'Q'];
    blank.extend_from_slice(&((100 << 20) + 5i32).to_be_bytes());
    blank.extend(std::iter::repeat_n(b' ', 100 << 20));
    blank.push(0);
    s.write_all(&blank).unwrap();
    let mut tags = Vec::new();
    loop {
        let (tag, _) = common::read_message(&mut s);
        tags.push(tag);
        if tag == b'Z' {
            break;
        }
    }
    assert_eq!(tags, [b'I', b'Z']);
    let grown_mib = server.rss_kib().unwrap().saturating_sub(before) / 1024;
    assert!(grown_mib < 600, "grew by {grown_mib} MiB");

    // One statement past the bound is refused whole with 54000, and the
    // statements before it ran.
    let c = server.client().await;
    let big = format!(
        "SELECT 1; SELECT '{}'",
        "y".repeat(fortress_proxy::sql::MAX_STATEMENT_BYTES)
    );
    let e = c.simple_query(&big).await.unwrap_err();
    assert_eq!(code(&e), "54000");
    drop(s);
    still_serves(&server).await;
}

/// Errors in later statements of a query string point into the whole string.
#[tokio::test]
async fn error_positions_count_from_the_start_of_the_query_string() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut s = raw_session(server.port);
    let sql = "SELECT 1;\nSELECT 'é', nope";
    let mut msg = vec![b'Q'];
    msg.extend_from_slice(&((sql.len() + 5) as i32).to_be_bytes());
    msg.extend_from_slice(sql.as_bytes());
    msg.push(0);
    s.write_all(&msg).unwrap();
    let mut position = None;
    loop {
        let (tag, body) = common::read_message(&mut s);
        if tag == b'E' {
            for field in body.split(|&b| b == 0) {
                if field.first() == Some(&b'P') {
                    position = Some(String::from_utf8_lossy(&field[1..]).to_string());
                }
            }
        }
        if tag == b'Z' {
            break;
        }
    }
    // PostgreSQL points at `nope`, counting characters from 1.
    let expected = sql.chars().count() - "nope".len() + 1;
    assert_eq!(position.as_deref(), Some(expected.to_string().as_str()));
}

/// Reads backend messages until the server closes the connection; the
/// ErrorResponses' (severity, SQLSTATE, message).
fn errors_until_closed(s: &mut TcpStream) -> Vec<(String, String, String)> {
    use std::io::Read;
    let mut bytes = Vec::new();
    let _ = s.read_to_end(&mut bytes);
    let mut out = Vec::new();
    let mut at = 0;
    while at + 5 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at + 1..at + 5].try_into().unwrap()) as usize;
        let body = &bytes[at + 5..(at + 1 + len).min(bytes.len())];
        if bytes[at] == b'E' {
            let mut fields = std::collections::HashMap::new();
            for f in body.split(|&b| b == 0).filter(|f| !f.is_empty()) {
                fields.insert(f[0], String::from_utf8_lossy(&f[1..]).to_string());
            }
            out.push((
                fields.remove(&b'S').unwrap_or_default(),
                fields.remove(&b'C').unwrap_or_default(),
                fields.remove(&b'M').unwrap_or_default(),
            ));
        }
        at += 1 + len;
    }
    out
}

#[tokio::test]
async fn malformed_startup_and_message_lengths_are_answered_with_08p01() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());

    // A 10 MB user name: PostgreSQL's "invalid length of startup packet".
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let name = "u".repeat(10 << 20);
    let _ = s.write_all(&startup_message(&[("user", &name)]));
    let errors = errors_until_closed(&mut s);
    assert_eq!(
        errors,
        [(
            "FATAL".into(),
            "08P01".into(),
            "invalid length of startup packet".into()
        )]
    );

    // A Query whose length field says 2: not an empty query, an error
    // that ends the connection, and the bytes after it are not run.
    let mut s = raw_session(server.port);
    let mut bad = vec![b'Q', 0, 0, 0, 2];
    bad.extend_from_slice(b"Q\0\0\0\x0dSELECT 1\0");
    s.write_all(&bad).unwrap();
    let errors = errors_until_closed(&mut s);
    assert_eq!(
        errors,
        [(
            "FATAL".into(),
            "08P01".into(),
            "invalid message length".into()
        )]
    );
    still_serves(&server).await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_startup_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_env(dir.path(), &[("FORTRESS_AUTH_TIMEOUT", "1s")]);
    let startup = startup_message(&[("user", "fortress")]);
    let ssl_request = [0, 0, 0, 8, 4, 210, 22, 47];
    for (what, sent) in [
        ("nothing", &[][..]),
        ("half a startup packet", &startup[..6]),
        ("an SSLRequest, then nothing", &ssl_request[..]),
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(sent).unwrap();
        let t = std::time::Instant::now();
        let mut rest = Vec::new();
        use std::io::Read;
        let closed = s.read_to_end(&mut rest).is_ok();
        assert!(closed, "{what}: not closed");
        assert!(t.elapsed() < Duration::from_secs(15), "{what}");
    }
    still_serves(&server).await;
}

#[tokio::test]
async fn connection_101_gets_53300_and_the_others_are_unaffected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(server.client().await);
    }
    let refused = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(code(&refused), "53300");
    for c in &clients {
        assert_eq!(
            c.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0),
            1
        );
    }
    // A slot freed is a slot for the next client.
    drop(clients.pop());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio_postgres::connect(&server.url(), tokio_postgres::NoTls).await {
            Ok((c, conn)) => {
                tokio::spawn(conn);
                c.query_one("SELECT 1", &[]).await.unwrap();
                break;
            }
            Err(e) => {
                assert_eq!(code(&e), "53300");
                assert!(
                    std::time::Instant::now() < deadline,
                    "the slot never came back"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test]
async fn out_of_file_descriptors_new_clients_get_53300_and_it_is_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_env(dir.path(), &[("FORTRESS_MAX_CONNECTIONS", "10000")]);
    still_serves(&server).await;
    // Leave the server 24 descriptors more than it holds now.
    let pid = server.pid();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let limit = open + 24;
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .status()
        .expect("prlimit (util-linux)");
    assert!(status.success());

    let mut clients = Vec::new();
    let mut refused = 0;
    for _ in 0..60 {
        let t = std::time::Instant::now();
        match tokio_postgres::connect(&server.url(), tokio_postgres::NoTls).await {
            Ok((c, conn)) => {
                tokio::spawn(conn);
                clients.push(c);
            }
            Err(e) => {
                // An answer, at once: not a client left to time out.
                assert_eq!(code(&e), "53300", "{e}");
                assert!(t.elapsed() < Duration::from_secs(5));
                refused += 1;
            }
        }
    }
    assert!(refused >= 30, "only {refused} refused");
    assert!(!clients.is_empty());
    for c in &clients {
        c.query_one("SELECT 1", &[]).await.unwrap();
    }
    let log = server.log();
    assert_eq!(log.matches("out of file descriptors").count(), 1, "{log}");
    // Closing connections gives the descriptors back.
    clients.truncate(clients.len().saturating_sub(8));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
        + 4
        > limit
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the descriptors never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    still_serves(&server).await;
}

/// Every entry under `root` that its group or others may use: (path, mode).
fn shared_entries(root: &std::path::Path) -> Vec<(String, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            out.push((p.display().to_string(), mode));
        }
        if meta.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    out
}

#[tokio::test]
async fn the_data_directory_is_private_to_its_owner_and_so_is_the_key() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let mut server = Server::start_with(data.clone(), 4);
    let c = server.client().await;
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2), (3)")
        .await
        .unwrap();
    drop(c);
    let made = std::process::Command::new(env!("CARGO_BIN_EXE_fortress"))
        .args(["checkpoint", "create", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    // PostgreSQL's rule: 0700 folders, 0600 files, the WAL, sled's files,
    // the checkpoint and the lock alike.
    assert_eq!(shared_entries(&data), Vec::new());
    server.stop();

    // A directory left readable to others (an older fortress, a copy) is
    // tightened when a server starts on it.
    let open_up = |p: &std::path::Path, mode| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    open_up(&data, 0o755);
    open_up(&data.join("fortress.lock"), 0o644);
    assert!(!shared_entries(&data).is_empty());
    server.restart();
    assert_eq!(shared_entries(&data), Vec::new());
    still_serves(&server).await;
    server.stop();

    // A key file its group or others can read is refused, naming the fix.
    let key = root.path().join("key");
    std::fs::write(
        &key,
        "8f3c0b6a1d2e4f5061728394a5b6c7d8e9f00112233445566778899aabbccdd",
    )
    .unwrap();
    open_up(&key, 0o644);
    let serve = |key: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_fortress"))
            .args([
                "serve",
                "--admin-listen",
                "off",
                "--listen",
                &format!("127.0.0.1:{}", common::free_port()),
            ])
            .arg("--data-dir")
            .arg(root.path().join("encrypted"))
            .arg("--key-file")
            .arg(key)
            .env("FORTRESS_AUTH_TIMEOUT", "1s")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let refused = serve(&key);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("chmod 600"), "{err}");
    assert!(
        !err.contains("8f3c0b6a"),
        "the key reached the error: {err}"
    );
}

/// Creates `big (id int PRIMARY KEY, v bigint)` with `rows` rows, v = 1.
async fn load_big(c: &tokio_postgres::Client, rows: usize) {
    use futures::SinkExt;
    c.batch_execute("CREATE TABLE big (id int PRIMARY KEY, v bigint)")
        .await
        .unwrap();
    for start in (0..rows).step_by(100_000) {
        let end = (start + 100_000).min(rows);
        let data: String = (start..end).map(|i| format!("{i}\t1\n")).collect();
        let sink = c.copy_in("COPY big FROM STDIN").await.unwrap();
        futures::pin_mut!(sink);
        sink.send(bytes::Bytes::from(data)).await.unwrap();
        sink.finish().await.unwrap();
    }
}

async fn sum_big(c: &tokio_postgres::Client) -> i64 {
    let row = c.query_one("SELECT sum(v) FROM big", &[]).await.unwrap();
    row.get::<_, rust_decimal::Decimal>(0).try_into().unwrap()
}

#[tokio::test]
async fn statement_timeout_stops_reads_and_rolls_writes_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_env(dir.path(), &[("FORTRESS_STATEMENT_TIMEOUT", "2s")]);
    let c = server.client().await;
    // The server's default, and what RESET returns to.
    let show = c.query_one("SHOW statement_timeout", &[]).await.unwrap();
    assert_eq!(show.get::<_, String>(0), "2000ms");

    let t = Instant::now();
    let e = c.simple_query("SELECT pg_sleep(10)").await.unwrap_err();
    assert_eq!(code(&e), "57014");
    assert!(message(&e).contains("statement timeout"), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(8));

    c.batch_execute("SET statement_timeout = '300ms'")
        .await
        .unwrap();
    let t = Instant::now();
    let e = c.query("SELECT pg_sleep(5)", &[]).await.unwrap_err();
    assert_eq!(code(&e), "57014");
    assert!(t.elapsed() < Duration::from_secs(4));
    let e = c
        .batch_execute("SET statement_timeout = 'soon'")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "22023");
    c.batch_execute("RESET statement_timeout").await.unwrap();
    let show = c.query_one("SHOW statement_timeout", &[]).await.unwrap();
    assert_eq!(show.get::<_, String>(0), "2000ms");

    // A write past its timeout is rolled back whole: every shard's part
    // of an UPDATE of 300k rows, in autocommit and in a block.
    c.batch_execute("SET statement_timeout = 0").await.unwrap();
    load_big(&c, 300_000).await;
    assert_eq!(sum_big(&c).await, 300_000);
    c.batch_execute("SET statement_timeout = '20ms'")
        .await
        .unwrap();
    let e = c
        .simple_query("UPDATE big SET v = v + 1")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "57014", "{e:?}");
    let e = c
        .query("DELETE FROM big WHERE v = 1", &[])
        .await
        .unwrap_err();
    assert_eq!(code(&e), "57014", "{e:?}");
    c.batch_execute("SET statement_timeout = 0").await.unwrap();
    assert_eq!(sum_big(&c).await, 300_000);
    c.batch_execute("BEGIN").await.unwrap();
    c.batch_execute("SET statement_timeout = '20ms'")
        .await
        .unwrap();
    let e = c.simple_query("UPDATE big SET v = 5").await.unwrap_err();
    assert_eq!(code(&e), "57014");
    let e = c.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(code(&e), "25P02", "the block is aborted");
    c.batch_execute("ROLLBACK; SET statement_timeout = 0")
        .await
        .unwrap();
    assert_eq!(sum_big(&c).await, 300_000);
    still_serves(&server).await;
}

#[tokio::test]
async fn a_cancelled_update_of_many_rows_commits_none_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = server.client().await;
    load_big(&c, 300_000).await;
    let token = c.cancel_token();
    let cancel = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    });
    let e = c
        .simple_query("UPDATE big SET v = v + 1")
        .await
        .unwrap_err();
    cancel.await.unwrap();
    assert_eq!(code(&e), "57014", "{e:?}");
    assert!(message(&e).contains("user request"), "{e:?}");
    assert_eq!(sum_big(&c).await, 300_000);
    // The same through the extended protocol (pgwire's own Execute would
    // drop the statement half way).
    let token = c.cancel_token();
    let cancel = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    });
    let e = c
        .execute("UPDATE big SET v = v + 2", &[])
        .await
        .unwrap_err();
    cancel.await.unwrap();
    assert_eq!(code(&e), "57014", "{e:?}");
    assert_eq!(sum_big(&c).await, 300_000);
    // The session goes on, and the same UPDATE uncancelled commits whole.
    c.simple_query("UPDATE big SET v = v + 1").await.unwrap();
    assert_eq!(sum_big(&c).await, 600_000);
    still_serves(&server).await;
}

#[tokio::test]
async fn lock_timeout_and_idle_in_transaction_timeout_end_waits_on_held_rows() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let holder = server.client().await;
    holder
        .batch_execute("CREATE TABLE r (id int PRIMARY KEY, v int); INSERT INTO r VALUES (1, 0)")
        .await
        .unwrap();
    holder
        .batch_execute("BEGIN; UPDATE r SET v = 1 WHERE id = 1")
        .await
        .unwrap();

    // A writer waiting on the held row gives up at its lock_timeout.
    let waiter = server.client().await;
    waiter
        .batch_execute("SET lock_timeout = '300ms'; BEGIN")
        .await
        .unwrap();
    let t = Instant::now();
    let e = waiter
        .simple_query("UPDATE r SET v = 2 WHERE id = 1")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "55P03", "{e}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    waiter.batch_execute("ROLLBACK").await.unwrap();
    // statement_timeout also ends a lock wait.
    waiter
        .batch_execute("SET lock_timeout = 0; SET statement_timeout = '300ms'; BEGIN")
        .await
        .unwrap();
    let e = waiter
        .simple_query("UPDATE r SET v = 2 WHERE id = 1")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "57014", "{e:?}");
    waiter
        .batch_execute("ROLLBACK; SET statement_timeout = 0")
        .await
        .unwrap();

    // The holder goes idle in its block past its timeout: its connection
    // ends, its update is gone and its row lock freed.
    holder
        .batch_execute("SET idle_in_transaction_session_timeout = '300ms'")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(holder.simple_query("SELECT 1").await.is_err());
    assert!(holder.is_closed());
    let t = Instant::now();
    waiter
        .batch_execute("UPDATE r SET v = 3 WHERE id = 1")
        .await
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
    let v = waiter
        .query_one("SELECT v FROM r WHERE id = 1", &[])
        .await
        .unwrap();
    assert_eq!(v.get::<_, i32>(0), 3);
    still_serves(&server).await;
}

/// Runs `fortress serve` on `data` and expects it to refuse to start:
/// its stderr (it is killed, and the test fails, if it serves instead).
fn serve_refuses(data: &std::path::Path, shards: u32) -> String {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fortress"))
        .args([
            "serve",
            "--admin-listen",
            "off",
            "--listen",
            &format!("127.0.0.1:{}", common::free_port()),
        ])
        .args(["--shards", &shards.to_string()])
        .arg("--data-dir")
        .arg(data)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("fortress started on a damaged data directory");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success(), "{err}");
    err
}

async fn count_rows(server: &Server) -> i64 {
    let c = server.client().await;
    c.query_one("SELECT count(*) FROM d", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_damaged_shard_store_is_rebuilt_from_its_wal_at_start() {
    use futures::SinkExt;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let mut server = Server::start_with(data.clone(), 1);
    let c = server.client().await;
    c.batch_execute("CREATE TABLE d (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let rows: String = (0..30_000).map(|i| format!("{i}\trow-{i:030}\n")).collect();
    let sink = c.copy_in("COPY d FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from(rows)).await.unwrap();
    sink.finish().await.unwrap();
    drop(c);
    server.stop();
    // One flipped bit where sled reads a segment header: before, sled
    // panicked at open ("tried to serialize Uninitialized") and the server
    // never started; deleting the store by hand was the only way back.
    let file = data.join("shard-000/db/db");
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(&file, &bytes).unwrap();
    server.restart();
    assert_eq!(count_rows(&server).await, 30_000);
    let log = server.log();
    assert!(log.contains("rebuilt from its WAL"), "{log}");
    assert!(!data.join("shard-000/db.damaged").exists(), "left behind");
    still_serves(&server).await;
}

#[tokio::test]
async fn a_damaged_last_wal_record_the_store_holds_is_refused_not_truncated() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let mut server = Server::start_with(data.clone(), 1);
    let c = server.client().await;
    c.batch_execute("CREATE TABLE d (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    for i in 0..50 {
        c.execute("INSERT INTO d VALUES ($1, 'acknowledged')", &[&i])
            .await
            .unwrap();
    }
    drop(c);
    server.stop();
    // One byte of the last record (its payload, just before its CRC).
    let wal = data.join("shard-000/wal");
    let mut segments: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    let last = segments.last().unwrap().clone();
    let mut bytes = std::fs::read(&last).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap();
    bytes[end - 6] ^= 0x01;
    std::fs::write(&last, &bytes).unwrap();
    let err = serve_refuses(&data, 1);
    assert!(err.contains("corruption in"), "{err}");
    assert!(
        err.contains(&last.display().to_string()),
        "names the file: {err}"
    );
    assert!(err.contains("offset"), "{err}");
    assert!(
        err.contains("fortress restore"),
        "says how to recover: {err}"
    );
    // Nothing was truncated: the damaged record is still there to recover.
    assert_eq!(std::fs::read(&last).unwrap(), bytes);
}

/// Samples the server's RSS (MiB) every 20 ms until `work` ends; the peak.
async fn peak_rss_during<T>(
    server: &Server,
    work: impl std::future::Future<Output = T>,
) -> (T, u64) {
    let pid = server.pid();
    let rss = move || common::rss_kib_of(pid).unwrap_or(0) / 1024;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss());
                std::thread::sleep(Duration::from_millis(20));
            }
            peak.max(rss())
        })
    };
    let out = work.await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    (out, sampler.join().unwrap())
}

#[tokio::test]
async fn caches_sessions_and_joins_are_bounded_in_bytes_and_freed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_env(dir.path(), &[("FORTRESS_WORK_MEM_MB", "64")]);
    let c = server.client().await;
    c.batch_execute("CREATE TABLE wide (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    for i in 0..3 {
        c.execute("INSERT INTO wide VALUES ($1, repeat('w', 10000000))", &[&i])
            .await
            .unwrap();
    }
    let base = server.rss_kib().unwrap() / 1024;

    // Ten different 30 MB results: the cache once kept them all (it
    // counted rows, and never freed what expired).
    let (_, peak) = peak_rss_during(&server, async {
        for k in 0..10 {
            let rows = c
                .query(
                    &format!("SELECT v FROM wide WHERE id >= 0 AND {k} = {k}"),
                    &[],
                )
                .await
                .unwrap();
            assert_eq!(rows.len(), 3);
        }
    })
    .await;
    let after = server.rss_kib().unwrap() / 1024;
    eprintln!("results: base {base} peak {peak} after {after} MiB");
    assert!(after < base + 200, "the cache kept {} MiB", after - base);

    // A session holds at most 10,000 prepared statements (53200 past it;
    // Close frees a place), and their memory goes with the connection.
    let s = server.client().await;
    let before = server.rss_kib().unwrap() / 1024;
    let text = |i: usize| format!("SELECT id FROM wide WHERE id = $1 AND v <> 'x{i}'");
    let mut prepared = Vec::new();
    for i in 0..fortress_proxy::limits::MAX_PREPARED_PER_SESSION {
        prepared.push(s.prepare(&text(i)).await.unwrap());
    }
    let e = s.prepare(&text(usize::MAX)).await.unwrap_err();
    assert_eq!(code(&e), "53200", "{e:?}");
    drop(prepared.pop());
    s.prepare(&text(usize::MAX)).await.unwrap();
    let held = server.rss_kib().unwrap() / 1024;
    drop(prepared);
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut now = server.rss_kib().unwrap() / 1024;
    while now > before + 100 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        now = server.rss_kib().unwrap() / 1024;
    }
    eprintln!("prepared: before {before} held {held} after close {now} MiB");
    assert!(
        now <= before + 100,
        "{} MiB stayed after the session",
        now - before
    );

    // Three concurrent cross joins of 10 MB rows end in 53200 within the
    // work memory each, not after filling the machine.
    c.batch_execute("CREATE TABLE other (id int PRIMARY KEY)")
        .await
        .unwrap();
    for i in 0..50 {
        c.execute("INSERT INTO other VALUES ($1)", &[&i])
            .await
            .unwrap();
    }
    let before = server.rss_kib().unwrap() / 1024;
    let (codes, peak) = peak_rss_during(&server, async {
        let joins = (0..3).map(|_| async {
            let c = server.client().await;
            let e = c
                .query("SELECT w.id, o.id, w.v FROM wide w, other o", &[])
                .await
                .unwrap_err();
            code(&e)
        });
        futures::future::join_all(joins).await
    })
    .await;
    eprintln!("joins: before {before} peak {peak} MiB");
    assert_eq!(codes, ["53200", "53200", "53200"]);
    assert!(
        peak < before + 3 * 64 + 400,
        "peak {peak} MiB from {before}"
    );
    still_serves(&server).await;
}

/// A tmpfs of `mib` MiB mounted at `at`, unmounted when dropped; `None`
/// where this machine does not let the test mount one.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: &std::path::Path, mib: u64) -> Option<SmallDisk> {
        std::fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(at.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Inserts 200 rows of 1 KB at a time until one insert fails: the rows
/// acknowledged, and the failure.
async fn fill(c: &tokio_postgres::Client, from: &mut i32) -> tokio_postgres::Error {
    for _ in 0..5_000 {
        let rows: Vec<String> = (0..200)
            .map(|i| format!("({}, repeat('z', 1000))", *from + i))
            .collect();
        let sql = format!("INSERT INTO f VALUES {}", rows.join(", "));
        match c.batch_execute(&sql).await {
            Ok(()) => *from += 200,
            Err(e) => return e,
        }
    }
    panic!("the disk never filled");
}

#[tokio::test]
async fn a_full_disk_refuses_writes_with_53100_serves_reads_and_recovers() {
    let root = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(&root.path().join("disk"), 64) else {
        // Only a test that can make a small filesystem can fill one.
        eprintln!("SKIPPED: mounting a tmpfs is not allowed here");
        return;
    };
    // Room that can be given back later, as an operator would.
    let ballast = disk.0.join("ballast");
    std::fs::write(&ballast, vec![1u8; 16 << 20]).unwrap();
    let data = disk.0.join("data");
    let mut server = Server::launch(data.clone(), 2, &[("FORTRESS_DISK_RESERVE_MB", "8")]);
    let c = server.client().await;
    c.batch_execute("CREATE TABLE f (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let mut acked = 0;
    let e = fill(&c, &mut acked).await;
    assert_eq!(code(&e), "53100", "{e:?}");
    assert!(message(&e).contains("disk is full"), "{e:?}");
    assert!(acked > 1_000, "only {acked} rows before the disk filled");
    // Reads go on; so does a small write's refusal, and the server.
    let n: i64 = c
        .query_one("SELECT count(*) FROM f", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, acked as i64);
    // Each shard reads the free space anew at most every 100 ms
    // (space::RECHECK): past that, every shard refuses.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let e = c
        .execute("INSERT INTO f VALUES (-1, 'small')", &[])
        .await
        .unwrap_err();
    assert_eq!(code(&e), "53100");
    still_serves(&server).await;

    // Space comes back: writes work again by themselves.
    std::fs::remove_file(&ballast).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = c.execute("INSERT INTO f VALUES (-1, 'back')", &[]).await {
        assert_eq!(code(&e), "53100");
        assert!(Instant::now() < deadline, "writes never resumed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    acked += 1;

    // Full again, then a restart on the full disk: it starts, serves every
    // acknowledged row, and leaves nothing moved aside.
    let mut more = 1_000_000;
    let e = fill(&c, &mut more).await;
    assert_eq!(code(&e), "53100");
    let acked = acked as i64 + (more - 1_000_000) as i64;
    drop(c);
    server.stop();
    server.restart();
    let c = server.client().await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM f", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, acked);
    for shard in ["shard-000", "shard-001"] {
        let names: Vec<String> = std::fs::read_dir(data.join(shard))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert!(
            names.iter().all(|n| n == "db" || n == "wal"),
            "{shard}: {names:?}"
        );
    }
    drop(c);
    server.stop();
    drop(disk);
}

#[tokio::test]
async fn a_query_string_stops_at_its_first_error_and_runs_nothing_if_one_does_not_parse() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = server.client().await;
    c.batch_execute("CREATE TABLE q (id int PRIMARY KEY, x int)")
        .await
        .unwrap();
    c.batch_execute("INSERT INTO q VALUES (1, 5), (2, 5)")
        .await
        .unwrap();
    let count = || async {
        let r = c.query_one("SELECT count(*) FROM q", &[]).await.unwrap();
        r.get::<_, i64>(0)
    };
    // Parsed whole first, as PostgreSQL does: a syntax error anywhere
    // means no statement of the string runs.
    let e = c
        .simple_query("INSERT INTO q VALUES (3, 5); SELEC 2; DELETE FROM q")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42601");
    assert_eq!(count().await, 2);
    // A statement failing while its rows stream stops the string there.
    let e = c
        .simple_query("SELECT 10 / (x - x) FROM q; DELETE FROM q")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "22012");
    assert_eq!(count().await, 2, "the DELETE after the error ran");
    still_serves(&server).await;
}
