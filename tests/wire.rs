//! Wire-level behaviour through real clients: typed round trips of every
//! type in text and binary, COPY through the extended protocol, cancel
//! requests, and malformed input that must never take the server down.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, TimeZone, Utc};
use common::rawpg::{Outcome, RawClient};
use common::{code, Server};
use futures::{SinkExt, StreamExt};
use rust_decimal::Decimal;

const SCHEMA: &str = "CREATE TABLE typed (id int PRIMARY KEY, s smallint, i int, b bigint, \
     r real, f float8, n numeric(10,3), ok boolean, t text, v varchar(8), c char(4), \
     raw bytea, d date, ts timestamp, tz timestamptz, u uuid)";

#[tokio::test]
async fn every_type_round_trips_in_binary_and_text() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = server.client().await;
    c.batch_execute(SCHEMA).await.unwrap();
    let n: Decimal = "12.345".parse().unwrap();
    let d = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
    let ts = d.and_hms_micro_opt(13, 45, 1, 250_000).unwrap();
    let tz = Utc.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap();
    let u = uuid::Uuid::parse_str("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap();
    let raw: Vec<u8> = vec![0, 1, 254, 255];
    // Binary parameters in (tokio-postgres sends binary), binary results out.
    c.execute(
        "INSERT INTO typed VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        &[
            &1i32, &-7i16, &123_456i32, &9_000_000_000i64, &1.5f32, &-2.25f64, &n, &true,
            &"héllo", &"short", &"ab", &raw, &d, &ts, &tz, &u,
        ],
    )
    .await
    .unwrap();
    let row = c
        .query_one("SELECT * FROM typed WHERE id = $1", &[&1i32])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i16>("s"), -7);
    assert_eq!(row.get::<_, i32>("i"), 123_456);
    assert_eq!(row.get::<_, i64>("b"), 9_000_000_000);
    assert_eq!(row.get::<_, f32>("r"), 1.5);
    assert_eq!(row.get::<_, f64>("f"), -2.25);
    assert_eq!(row.get::<_, Decimal>("n"), n);
    assert!(row.get::<_, bool>("ok"));
    assert_eq!(row.get::<_, String>("t"), "héllo");
    assert_eq!(row.get::<_, String>("v"), "short");
    assert_eq!(row.get::<_, String>("c"), "ab  ");
    assert_eq!(row.get::<_, Vec<u8>>("raw"), raw);
    assert_eq!(row.get::<_, NaiveDate>("d"), d);
    assert_eq!(row.get::<_, chrono::NaiveDateTime>("ts"), ts);
    assert_eq!(row.get::<_, chrono::DateTime<Utc>>("tz"), tz);
    assert_eq!(row.get::<_, uuid::Uuid>("u"), u);
    // Text results of the same row, as psql would print them.
    let msgs = c.simple_query("SELECT * FROM typed").await.unwrap();
    let tokio_postgres::SimpleQueryMessage::Row(r) = &msgs[1] else {
        panic!("expected a row, got {msgs:?}");
    };
    let text: Vec<&str> = (0..16).map(|i| r.get(i).unwrap()).collect();
    assert_eq!(
        text,
        vec![
            "1",
            "-7",
            "123456",
            "9000000000",
            "1.5",
            "-2.25",
            "12.345",
            "t",
            "héllo",
            "short",
            "ab  ",
            "\\x0001feff",
            "2024-02-29",
            "2024-02-29 13:45:01.25",
            "2024-03-01 12:00:00+00",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        ]
    );
    // Text parameters: every value as a string literal, read back in binary.
    c.batch_execute(
        "INSERT INTO typed VALUES (2, '-7', '123456', '9000000000', '1.5', '-2.25', '12.345', \
         't', 'héllo', 'short', 'ab', '\\x0001feff', '2024-02-29', '2024-02-29 13:45:01.25', \
         '2024-03-01 14:00:00+02', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11')",
    )
    .await
    .unwrap();
    let again = c
        .query_one("SELECT * FROM typed WHERE id = 2", &[])
        .await
        .unwrap();
    let raw_eq = c
        .query_one(
            "SELECT count(*) FROM typed a, typed b WHERE a.id = 1 AND b.id = 2 AND a.s = b.s \
             AND a.i = b.i AND a.b = b.b AND a.r = b.r AND a.f = b.f AND a.n = b.n AND a.ok = b.ok \
             AND a.t = b.t AND a.v = b.v AND a.c = b.c AND a.raw = b.raw AND a.d = b.d \
             AND a.ts = b.ts AND a.tz = b.tz AND a.u = b.u",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(raw_eq.get::<_, i64>(0), 1, "text and binary input agree");
    assert_eq!(again.get::<_, uuid::Uuid>("u"), u);
    // NULL in every column, both directions.
    c.execute("INSERT INTO typed (id) VALUES ($1)", &[&3i32])
        .await
        .unwrap();
    let nulls = c
        .query_one("SELECT * FROM typed WHERE id = 3", &[])
        .await
        .unwrap();
    assert!(nulls.get::<_, Option<i16>>("s").is_none());
    assert!(nulls.get::<_, Option<f32>>("r").is_none());
    assert!(nulls.get::<_, Option<Decimal>>("n").is_none());
    assert!(nulls.get::<_, Option<Vec<u8>>>("raw").is_none());
    assert!(nulls
        .get::<_, Option<chrono::DateTime<Utc>>>("tz")
        .is_none());
    assert!(nulls.get::<_, Option<uuid::Uuid>>("u").is_none());
    let all_null: i64 = c
        .query_one(
            "SELECT count(*) FROM typed WHERE id = 3 AND s IS NULL AND i IS NULL AND b IS NULL \
             AND r IS NULL AND f IS NULL AND n IS NULL AND ok IS NULL AND t IS NULL AND v IS NULL \
             AND c IS NULL AND raw IS NULL AND d IS NULL AND ts IS NULL AND tz IS NULL AND u IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(all_null, 1);
}

#[tokio::test]
async fn copy_in_and_out_through_the_extended_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = server.client().await;
    c.batch_execute("CREATE TABLE c (id int PRIMARY KEY, name text)")
        .await
        .unwrap();
    let sink = c.copy_in("COPY c FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    let mut data = String::new();
    for i in 0..500 {
        data.push_str(&format!("{i}\tname {i}\n"));
    }
    sink.send(bytes::Bytes::from(data)).await.unwrap();
    let n = sink.finish().await.unwrap();
    assert_eq!(n, 500);
    let count: i64 = c
        .query_one("SELECT count(*) FROM c", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 500);
    let stream = c
        .copy_out(
            "COPY (SELECT id, name FROM c WHERE id < 3 ORDER BY id) TO STDOUT WITH (FORMAT csv)",
        )
        .await
        .unwrap();
    let chunks: Vec<_> = stream.collect().await;
    let text: String = chunks
        .into_iter()
        .map(|b| String::from_utf8(b.unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(text, "0,name 0\n1,name 1\n2,name 2\n");
    // A bad row fails the whole COPY: nothing of it is stored.
    let sink = c.copy_in("COPY c FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from("1000\tok\n1001\n"))
        .await
        .unwrap();
    let err = sink.finish().await.unwrap_err();
    assert_eq!(code(&err), "22P04");
    let count: i64 = c
        .query_one("SELECT count(*) FROM c", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 500, "a failed COPY stores nothing");
}

#[tokio::test]
async fn cancel_request_interrupts_a_running_query() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = server.client().await;
    let token = c.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    });
    let start = Instant::now();
    let err = c.simple_query("SELECT pg_sleep(30)").await.unwrap_err();
    assert_eq!(code(&err), "57014");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "cancel took {:?}",
        start.elapsed()
    );
    canceller.await.unwrap();
    let one: i32 = c.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1, "the session survives a cancel");
}

/// A small deterministic generator for malformed inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Mutates valid statements: truncation, inserted and deleted characters,
/// repeated fragments, stray quotes and operators.
fn malformed_sql(rng: &mut Rng) -> String {
    const BASE: &[&str] = &[
        "SELECT a, b FROM t WHERE a = 1 ORDER BY b LIMIT 3",
        "INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y') ON CONFLICT (a) DO UPDATE SET b = excluded.b",
        "UPDATE t SET b = b || 'z' WHERE a IN (SELECT a FROM t WHERE b LIKE 'x%')",
        "SELECT count(DISTINCT b), sum(a) FROM t GROUP BY b HAVING count(*) > 1",
        "SELECT t.a, u.c FROM t LEFT JOIN u ON t.a = u.a WHERE u.c IS NULL",
        "CREATE TABLE z (id int PRIMARY KEY, v numeric(5,2) DEFAULT 1.5)",
        "SELECT CASE WHEN a > 1 THEN 'x' ELSE NULL END, coalesce(b, 'n') FROM t",
        "DELETE FROM t WHERE a BETWEEN 1 AND 10 RETURNING *",
        "COPY t TO STDOUT WITH (FORMAT csv)",
        "SELECT '2024-01-01'::date + 1, 1/0, 'abc'::int, 99999999999999999999::int",
        "WITH x AS (SELECT a, count(*) FILTER (WHERE b > 'a') AS n FROM t GROUP BY a) SELECT * FROM x",
        "SELECT a FROM t UNION ALL SELECT a FROM u INTERSECT SELECT 1 ORDER BY 1 LIMIT 2",
        "SELECT * FROM (SELECT a, b FROM t) s JOIN u ON s.a = u.a CROSS JOIN t t2 WHERE EXISTS (SELECT 1)",
        "EXPLAIN SELECT DISTINCT b FROM t WHERE a IN (1, 2) ORDER BY b NULLS FIRST",
        "CREATE INDEX t_b ON t (b); DROP INDEX t_b; ALTER TABLE t ADD COLUMN c int DEFAULT 3",
        "SELECT table_name FROM information_schema.columns WHERE data_type = 'text' ORDER BY 1",
        "INSERT INTO t SELECT * FROM t RETURNING a; TRUNCATE t; COPY t FROM STDIN WITH (FORMAT csv)",
    ];
    const NOISE: &[&str] = &[
        "'", "\"", "(", ")", ",", ";", "$1", "$99999", "::", "*", "--", "/*", "\\", "\0", "ñ",
        "SELECT", "FROM", "NULL", "1e999", "-", "||", "E'\\x'", "$$", "[", "]", "%", "~~",
    ];
    let mut s: Vec<char> = BASE[rng.below(BASE.len())].chars().collect();
    for _ in 0..1 + rng.below(4) {
        match rng.below(4) {
            0 => {
                let at = rng.below(s.len() + 1);
                s.truncate(at);
            }
            1 => {
                let at = rng.below(s.len() + 1);
                let noise: Vec<char> = NOISE[rng.below(NOISE.len())].chars().collect();
                s.splice(at..at, noise);
            }
            2 if !s.is_empty() => {
                let at = rng.below(s.len());
                let len = rng.below(6).min(s.len() - at);
                s.drain(at..at + len);
            }
            _ => {
                let copy = s.clone();
                s.extend(copy.iter().take(rng.below(copy.len() + 1)));
            }
        }
    }
    s.into_iter().filter(|&c| c != '\0').collect()
}

#[test]
fn malformed_input_gets_errors_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut setup = RawClient::connect(server.port, "fortress", "app");
    setup.query("CREATE TABLE t (a int PRIMARY KEY, b text)", None);
    setup.query("CREATE TABLE u (a int PRIMARY KEY, c text)", None);

    // 1,000 generated malformed statements on one session: each gets a
    // reply (an error or a result) and the session stays usable.
    let mut rng = Rng(0x5EED_F00D);
    let mut errors = 0;
    for i in 0..1500 {
        let sql = malformed_sql(&mut rng);
        let out = setup.query(&sql, Some(""));
        errors += out
            .iter()
            .filter(|o| matches!(o, Outcome::Error { .. }))
            .count();
        if i % 100 == 0 {
            let ok = setup.query("SELECT 1", None);
            assert!(
                matches!(&ok[..], [Outcome::Rows { .. }]),
                "session broken after {sql:?}: {ok:?}"
            );
        }
    }
    assert!(
        errors > 500,
        "most mutations are invalid, got {errors} errors"
    );

    // Garbage and truncated frontend messages on fresh connections.
    let garbage: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0, 0, 0, 8, 0, 3, 0, 0], // startup with no parameters
        vec![0, 0, 0, 4],             // length shorter than a header
        vec![0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0], // absurd length
        vec![0, 0, 0, 9, 0, 3, 0, 0, b'u'], // unterminated parameter
    ];
    for g in &garbage {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ = s.write_all(g);
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 256];
        let _ = std::io::Read::read(&mut s, &mut buf);
    }
    // After startup: unknown message types, a truncated Query, a Bind for a
    // statement that does not exist, and a bogus length.
    let after_startup: Vec<Vec<u8>> = vec![
        vec![b'!', 0, 0, 0, 4],
        vec![b'Q', 0, 0, 0, 20, b'S', b'E'],
        vec![b'B', 0, 0, 0, 12, b'n', b'o', 0, 0, 0, 0, 0, 0],
        vec![b'Q', 0, 0, 0, 2],
        vec![b'P', 0, 0, 0, 5, 0],
    ];
    for g in &after_startup {
        let mut c = RawClient::connect(server.port, "fortress", "app");
        let _ = c.send_raw(g);
        let _ = c.drain();
    }
    // Other sessions were never affected.
    let mut other = RawClient::connect(server.port, "fortress", "app");
    let ok = other.query("SELECT count(*) FROM t", None);
    assert!(matches!(&ok[..], [Outcome::Rows { .. }]), "{ok:?}");
    // The cut-short Parse is one pgwire's decoder panics on: the server
    // ended that connection alone and said why.
    assert!(
        server
            .log()
            .contains("closed a connection whose message the protocol decoder could not read"),
        "{}",
        server.log()
    );
}
