//! Hostile and careless clients against the real binary: input that once
//! took the whole server down (deep operator chains, huge query strings),
//! each test ending by checking that a new client is still served.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::{code, startup_message, Server};

/// A new client connects and runs a query: the server is still serving.
async fn still_serves(server: &Server) {
    let c = server.client().await;
    let row = c.query_one("SELECT 40 + 2", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
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
