//! End-to-end tests: the real binary, spoken to by tokio-postgres.

mod common;

use chrono::{NaiveDate, NaiveDateTime};
use common::{code, Server};
use rust_decimal::Decimal;
use tokio_postgres::types::Type;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_and_dml_round_trip_every_type() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE items (
            id integer PRIMARY KEY,
            small smallint,
            big bigint NOT NULL DEFAULT 7,
            ratio double precision,
            flag boolean,
            name text,
            code varchar(5),
            price numeric(10,2),
            day date,
            at timestamp
        )",
    )
    .await
    .unwrap();
    let n = c
        .execute(
            "INSERT INTO items VALUES
               (1, 1, 10, 0.5, true, 'one', 'a', 1.005, '2024-01-31', '2024-01-31 10:11:12.5'),
               (2, -2, 20, -1.25, false, 'two', 'bb', 20, '1999-12-31', '2000-01-01 00:00:00'),
               (3, NULL, DEFAULT, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 3);
    c.execute("INSERT INTO items (name, id) VALUES ('four', 4)", &[])
        .await
        .unwrap();

    // Binary results through the extended protocol.
    let rows = c
        .query("SELECT * FROM items ORDER BY id", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 4);
    let r = &rows[0];
    assert_eq!(r.get::<_, i32>("id"), 1);
    assert_eq!(r.get::<_, Option<i16>>("small"), Some(1));
    assert_eq!(r.get::<_, i64>("big"), 10);
    assert_eq!(r.get::<_, Option<f64>>("ratio"), Some(0.5));
    assert_eq!(r.get::<_, Option<bool>>("flag"), Some(true));
    assert_eq!(r.get::<_, Option<String>>("name").as_deref(), Some("one"));
    assert_eq!(r.get::<_, Option<String>>("code").as_deref(), Some("a"));
    assert_eq!(
        r.get::<_, Option<Decimal>>("price"),
        Some(Decimal::new(101, 2))
    );
    assert_eq!(
        r.get::<_, Option<NaiveDate>>("day"),
        NaiveDate::from_ymd_opt(2024, 1, 31)
    );
    assert_eq!(
        r.get::<_, Option<NaiveDateTime>>("at")
            .map(|t| t.to_string()),
        Some("2024-01-31 10:11:12.500".into())
    );
    assert_eq!(
        rows[2].get::<_, i64>("big"),
        7,
        "DEFAULT keyword uses the default"
    );
    assert_eq!(
        rows[3].get::<_, i64>("big"),
        7,
        "omitted column uses the default"
    );
    assert_eq!(rows[3].get::<_, Option<i16>>("small"), None);
    assert_eq!(rows[0].columns()[7].type_(), &Type::NUMERIC);
    assert_eq!(rows[0].columns()[9].type_(), &Type::TIMESTAMP);

    // Text results through the simple protocol, formatted as PostgreSQL does.
    let msgs = c
        .simple_query("SELECT id, price, ratio, flag, day, at FROM items WHERE id = 1")
        .await
        .unwrap();
    let row = msgs
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .expect("one row");
    assert_eq!(row.get("price"), Some("1.01"));
    assert_eq!(row.get("ratio"), Some("0.5"));
    assert_eq!(row.get("flag"), Some("t"));
    assert_eq!(row.get("day"), Some("2024-01-31"));
    assert_eq!(row.get("at"), Some("2024-01-31 10:11:12.5"));

    // Predicates, NULL semantics, ORDER BY and LIMIT.
    let ids = |rows: Vec<tokio_postgres::Row>| {
        rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>()
    };
    let q = |sql: &'static str| {
        let c = &c;
        async move { ids(c.query(sql, &[]).await.unwrap()) }
    };
    assert_eq!(
        q("SELECT id FROM items WHERE big >= 10 AND NOT flag ORDER BY id").await,
        vec![2]
    );
    assert_eq!(
        q("SELECT id FROM items WHERE small < 0 OR name = 'one' ORDER BY id").await,
        vec![1, 2]
    );
    assert_eq!(
        q("SELECT id FROM items WHERE small IS NULL ORDER BY id DESC").await,
        vec![4, 3]
    );
    assert_eq!(
        q("SELECT id FROM items WHERE small IS NOT NULL ORDER BY 1").await,
        vec![1, 2]
    );
    assert_eq!(
        q("SELECT id FROM items WHERE small = NULL").await,
        Vec::<i32>::new()
    );
    assert_eq!(
        q("SELECT id FROM items WHERE small <> 1 ORDER BY id").await,
        vec![2]
    );
    assert_eq!(
        q("SELECT id FROM items WHERE id <= 2 AND id > 1").await,
        vec![2]
    );
    assert_eq!(
        q("SELECT id FROM items ORDER BY big DESC, id LIMIT 2").await,
        vec![2, 1]
    );
    assert_eq!(
        q("SELECT id FROM items ORDER BY small NULLS FIRST, id").await,
        vec![3, 4, 2, 1]
    );

    // Expressions in the projection.
    let r = c
        .query_one(
            "SELECT id * 2 AS twice, big - 1, name FROM items WHERE id = 2",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, i32>("twice"), 4);
    assert_eq!(r.get::<_, i64>(1), 19);
    assert_eq!(r.columns()[1].name(), "?column?");

    // UPDATE and DELETE report their counts and take effect.
    assert_eq!(
        c.execute(
            "UPDATE items SET big = big + 1, name = 'x' WHERE id <> 3",
            &[]
        )
        .await
        .unwrap(),
        3
    );
    assert_eq!(
        q("SELECT id FROM items WHERE name = 'x' ORDER BY id").await,
        vec![1, 2, 4]
    );
    let big: i64 = c
        .query_one("SELECT big FROM items WHERE id = 2", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(big, 21);
    assert_eq!(
        c.execute("DELETE FROM items WHERE id IN (1, 3)", &[])
            .await
            .unwrap(),
        2
    );
    assert_eq!(q("SELECT id FROM items ORDER BY id").await, vec![2, 4]);
    c.batch_execute("DROP TABLE items").await.unwrap();
    let e = c.query("SELECT * FROM items", &[]).await.unwrap_err();
    assert_eq!(code(&e), "42P01");
    c.batch_execute("DROP TABLE IF EXISTS items").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_keys_scan_sorted_across_shards() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = server.client().await;
    c.batch_execute("CREATE TABLE IF NOT EXISTS events (tenant int, seq bigint, body text, PRIMARY KEY (tenant, seq))")
        .await
        .unwrap();
    c.batch_execute("CREATE TABLE IF NOT EXISTS events (x int primary key)")
        .await
        .unwrap();
    let mut values = Vec::new();
    for tenant in 0..20 {
        for seq in (0..10).rev() {
            values.push(format!("({tenant}, {seq}, 'e{tenant}-{seq}')"));
        }
    }
    let sql = format!("INSERT INTO events VALUES {}", values.join(","));
    assert_eq!(c.execute(sql.as_str(), &[]).await.unwrap(), 200);
    let rows = c
        .query("SELECT tenant, seq FROM events WHERE tenant = 7", &[])
        .await
        .unwrap();
    let seqs: Vec<i64> = rows.iter().map(|r| r.get(1)).collect();
    assert_eq!(
        seqs,
        (0..10).collect::<Vec<_>>(),
        "a shard-key lookup comes back in key order"
    );
    let rows = c
        .query(
            "SELECT tenant, seq FROM events ORDER BY tenant DESC, seq LIMIT 3",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(i32, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![(19, 0), (19, 1), (19, 2)]);
    let all = c.query("SELECT * FROM events", &[]).await.unwrap();
    assert_eq!(all.len(), 200);
    let one = c
        .query("SELECT body FROM events WHERE tenant = 3 AND seq = 4", &[])
        .await
        .unwrap();
    assert_eq!(one[0].get::<_, String>(0), "e3-4");
    // Rows landed on more than one shard.
    let shards_with_data = (0..4)
        .filter(|s| {
            let wal = server.data_dir.join(format!("shard-{s:03}/wal"));
            std::fs::read_dir(wal)
                .unwrap()
                .map(|e| e.unwrap().metadata().unwrap().len())
                .sum::<u64>()
                > 400
        })
        .count();
    assert!(shards_with_data >= 3, "rows should spread over the shards");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_their_sqlstate_and_the_session_survives() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE acct (id int PRIMARY KEY, owner text NOT NULL, balance numeric(8,2), tag varchar(3))",
    )
    .await
    .unwrap();
    c.batch_execute("INSERT INTO acct VALUES (1, 'ann', 10, 'a')")
        .await
        .unwrap();
    let cases: &[(&str, &str)] = &[
        ("SELECT * FROM missing", "42P01"),
        ("INSERT INTO missing VALUES (1)", "42P01"),
        ("SELECT nope FROM acct", "42703"),
        ("UPDATE acct SET nope = 1", "42703"),
        ("INSERT INTO acct (id, nope) VALUES (1, 2)", "42703"),
        ("CREATE TABLE acct (id int PRIMARY KEY)", "42P07"),
        ("INSERT INTO acct VALUES (1, 'dup', 0)", "23505"),
        ("INSERT INTO acct (id) VALUES (2)", "23502"),
        ("UPDATE acct SET owner = NULL WHERE id = 1", "23502"),
        ("INSERT INTO acct VALUES ('x', 'bob', 1)", "22P02"),
        ("SELECT * FROM acct WHERE id = 'abc'", "22P02"),
        ("INSERT INTO acct VALUES (3, 'bob', 'cheap')", "22P02"),
        ("INSERT INTO acct VALUES (3, 'bob', 1, 'long')", "22001"),
        ("INSERT INTO acct VALUES (3, 'bob', 12345678)", "22003"),
        ("SELECT 1/0", "22012"),
        ("SELEC * FROM acct", "42601"),
        ("SELECT * FROM", "42601"),
        ("INSERT INTO acct VALUES (4, 'x', 1, 'a', 5)", "42601"),
        ("SELECT * FROM acct WHERE owner = 1", "42883"),
        ("CREATE VIEW v AS SELECT 1", "0A000"),
        ("WITH RECURSIVE x AS (SELECT 1) SELECT * FROM x", "0A000"),
        ("CREATE TEMPORARY TABLE tmp (a int)", "0A000"),
        ("SHOW no_such_setting", "42704"),
    ];
    for (sql, want) in cases {
        let err = c.batch_execute(sql).await.expect_err(sql);
        assert_eq!(&code(&err), want, "{sql}: {err:?}");
        // Extended protocol too (statements with parse errors fail at Parse).
        let err = c.query(*sql, &[]).await.expect_err(sql);
        assert_eq!(&code(&err), want, "{sql} (extended): {err:?}");
        let one: i32 = c.query_one("SELECT 1", &[]).await.unwrap().get(0);
        assert_eq!(one, 1, "session still usable after {sql}");
    }
    let dup = c
        .batch_execute("INSERT INTO acct VALUES (1, 'dup', 0)")
        .await
        .unwrap_err();
    let db = dup.as_db_error().unwrap();
    assert_eq!(
        db.message(),
        "duplicate key value violates unique constraint \"acct_pkey\""
    );
    assert_eq!(db.detail(), Some("Key (id)=(1) already exists."));
    let missing = c.batch_execute("SELECT * FROM missing").await.unwrap_err();
    assert!(missing
        .as_db_error()
        .unwrap()
        .message()
        .contains("\"missing\""));
    // A multi-row INSERT spanning shards with one bad row inserts nothing.
    let values: Vec<String> = (10..30).map(|i| format!("({i}, 'o{i}', 1)")).collect();
    let sql = format!(
        "INSERT INTO acct VALUES {}, (31, NULL, 1)",
        values.join(", ")
    );
    assert_eq!(code(&c.batch_execute(&sql).await.unwrap_err()), "23502");
    // ... and so does one whose duplicate key sits on another shard than
    // most of its rows: multi-shard statements commit by two-phase commit.
    let sql = format!(
        "INSERT INTO acct VALUES {}, (1, 'dup', 1)",
        values.join(", ")
    );
    assert_eq!(code(&c.batch_execute(&sql).await.unwrap_err()), "23505");
    // A multi-shard UPDATE applies everywhere or nowhere.
    let e = c
        .batch_execute("UPDATE acct SET tag = 'toolong'")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "22001");
    // Nothing was changed by the failed statements.
    let rows = c.query("SELECT id, owner FROM acct", &[]).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(1), "ann");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_infer_parameter_types() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = server.client().await;
    c.batch_execute("CREATE TABLE kv (k bigint PRIMARY KEY, v text, n numeric(12,3), d date)")
        .await
        .unwrap();
    let ins = c
        .prepare("INSERT INTO kv (k, v, n, d) VALUES ($1, $2, $3, $4)")
        .await
        .unwrap();
    assert_eq!(
        ins.params(),
        &[Type::INT8, Type::TEXT, Type::NUMERIC, Type::DATE]
    );
    for k in 0..50i64 {
        let n = Decimal::new(k * 1001, 3);
        let d = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap() + chrono::Duration::days(k);
        c.execute(&ins, &[&k, &format!("v{k}"), &n, &d])
            .await
            .unwrap();
    }
    let get = c.prepare("SELECT v, n FROM kv WHERE k = $1").await.unwrap();
    assert_eq!(get.params(), &[Type::INT8]);
    assert_eq!(get.columns()[0].name(), "v");
    for k in [0i64, 17, 49] {
        let row = c.query_one(&get, &[&k]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), format!("v{k}"));
        assert_eq!(row.get::<_, Decimal>(1), Decimal::new(k * 1001, 3));
    }
    assert!(c.query_opt(&get, &[&1000i64]).await.unwrap().is_none());
    let range = c
        .prepare("SELECT k FROM kv WHERE k >= $1 AND v <> $2 ORDER BY k DESC LIMIT $3")
        .await
        .unwrap();
    let rows = c.query(&range, &[&40i64, &"v45", &3i64]).await.unwrap();
    let ks: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ks, vec![49, 48, 47]);
    let upd = c
        .prepare("UPDATE kv SET v = $1 WHERE k = $2")
        .await
        .unwrap();
    assert_eq!(c.execute(&upd, &[&"changed", &5i64]).await.unwrap(), 1);
    let row = c.query_one(&get, &[&5i64]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "changed");
    // A duplicate through a prepared statement is an error, then the
    // statement keeps working.
    let d = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
    let e = c
        .execute(&ins, &[&5i64, &"x", &Decimal::ONE, &d])
        .await
        .unwrap_err();
    assert_eq!(code(&e), "23505");
    c.execute(&ins, &[&500i64, &"x", &Decimal::ONE, &d])
        .await
        .unwrap();
    // Unknown tables fail at prepare time, like PostgreSQL.
    assert_eq!(
        code(
            &c.prepare("SELECT * FROM nope WHERE a = $1")
                .await
                .unwrap_err()
        ),
        "42P01"
    );
}

/// A prepared INSERT's plan is reused, so what the statement computes must
/// be computed per execution: row ids, now() and defaults, expressions of
/// parameters, and their errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_insert_computes_its_values_per_execution() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE log (a int, at timestamptz DEFAULT now(), note text DEFAULT 'n');
         CREATE TABLE kv (k int PRIMARY KEY, v text NOT NULL)",
    )
    .await
    .unwrap();
    // A keyless table: every execution gets a fresh row id.
    let ins = c.prepare("INSERT INTO log (a) VALUES ($1)").await.unwrap();
    for a in 0..20i32 {
        if a == 10 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(c.execute(&ins, &[&a]).await.unwrap(), 1);
    }
    let rows = c
        .query("SELECT a, at, note FROM log ORDER BY a", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 20);
    let at: Vec<std::time::SystemTime> = rows.iter().map(|r| r.get(1)).collect();
    assert!(at.windows(2).all(|w| w[0] <= w[1]), "{at:?}");
    assert!(
        at[0] < at[19],
        "each statement outside a block has its own now()"
    );
    assert!(rows.iter().all(|r| r.get::<_, String>(2) == "n"));
    // Inside a block now() is the transaction's start, default or written.
    let now_ins = c
        .prepare("INSERT INTO log (a, at) VALUES ($1, now())")
        .await
        .unwrap();
    c.batch_execute("BEGIN").await.unwrap();
    c.execute(&ins, &[&100i32]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    c.execute(&now_ins, &[&101i32]).await.unwrap();
    let start: std::time::SystemTime = c.query_one("SELECT now()", &[]).await.unwrap().get(0);
    c.batch_execute("COMMIT").await.unwrap();
    let block = c
        .query("SELECT at FROM log WHERE a >= 100", &[])
        .await
        .unwrap();
    assert_eq!(block.len(), 2);
    assert!(block
        .iter()
        .all(|r| r.get::<_, std::time::SystemTime>(0) == start));
    // Expressions of parameters, and their errors, per execution.
    let kv = c
        .prepare("INSERT INTO kv (k, v) VALUES (100 / $1, upper($2))")
        .await
        .unwrap();
    assert_eq!(c.execute(&kv, &[&4i32, &"ab"]).await.unwrap(), 1);
    assert_eq!(
        code(&c.execute(&kv, &[&0i32, &"x"]).await.unwrap_err()),
        "22012"
    );
    let null: Option<&str> = None;
    assert_eq!(
        code(&c.execute(&kv, &[&5i32, &null]).await.unwrap_err()),
        "23502"
    );
    assert_eq!(
        code(&c.execute(&kv, &[&4i32, &"cd"]).await.unwrap_err()),
        "23505"
    );
    assert_eq!(c.execute(&kv, &[&5i32, &"cd"]).await.unwrap(), 1);
    let got: Vec<(i32, String)> = c
        .query("SELECT k, v FROM kv ORDER BY k", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(got, vec![(20, "CD".to_string()), (25, "AB".to_string())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_and_server_functions() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = server.client().await;
    let v: String = c.query_one("SELECT version()", &[]).await.unwrap().get(0);
    assert!(v.starts_with("PostgreSQL 15.0 (fortress "), "{v}");
    c.batch_execute("SET application_name = 'tests'")
        .await
        .unwrap();
    c.batch_execute("SET search_path TO public").await.unwrap();
    let row = c.simple_query("SHOW application_name").await.unwrap();
    let value = row.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    });
    assert_eq!(value.as_deref(), Some("tests"));
    let db: String = c
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(db, "app");
    let enc: String = c
        .query_one("SELECT current_setting('server_encoding')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(enc, "UTF8");
    // Drivers (psycopg) send DEALLOCATE ALL after a failed transaction.
    c.batch_execute("DEALLOCATE ALL").await.unwrap();
    let iso: String = c
        .query_one("SHOW transaction isolation level", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(iso, "read committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_survive_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    {
        let c = server.client().await;
        c.batch_execute("CREATE TABLE r (id int PRIMARY KEY, v text)")
            .await
            .unwrap();
        for chunk in 0..10 {
            let values: Vec<String> = (0..50)
                .map(|i| format!("({}, 'v{}')", chunk * 50 + i, chunk * 50 + i))
                .collect();
            c.batch_execute(&format!("INSERT INTO r VALUES {}", values.join(",")))
                .await
                .unwrap();
        }
        c.batch_execute("DELETE FROM r WHERE id >= 490; UPDATE r SET v = 'u' WHERE id = 7")
            .await
            .unwrap();
    }
    server.stop();
    server.restart();
    let c = server.client().await;
    let rows = c
        .query("SELECT id, v FROM r ORDER BY id", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 490);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.get::<_, i32>(0), i as i32);
        let want = if i == 7 {
            "u".to_string()
        } else {
            format!("v{i}")
        };
        assert_eq!(r.get::<_, String>(1), want);
    }
    // The catalog survived too: the table cannot be created again.
    let e = c
        .batch_execute("CREATE TABLE r (id int PRIMARY KEY)")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42P07");
    // A data directory keeps its shard count: opening it with another fails.
    drop(c);
    server.stop();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fortress"))
        .args([
            "serve",
            "--admin-listen",
            "off",
            "--shards",
            "2",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&server.data_dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("created with 4 shards"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_wire_input_leaves_the_server_serving() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = server.client().await;
    c.batch_execute("CREATE TABLE w (id int PRIMARY KEY)")
        .await
        .unwrap();
    c.batch_execute("INSERT INTO w VALUES (1)").await.unwrap();
    let startup = common::startup_message(&[("user", "x")]);
    let payloads: Vec<Vec<u8>> = vec![
        b"\x00\x00\x00\x08\x04\xd2\x16\x2f".to_vec(), // SSLRequest, then hang up
        vec![0xff; 64],                               // noise before startup
        b"\x00\x00\x00\x03".to_vec(),                 // impossible length
        b"\x7f\xff\xff\xff\x00\x03\x00\x00".to_vec(), // huge startup length
        [startup.clone(), b"Q\x00\x00\x00\x05\x00".to_vec()].concat(), // empty query
        [startup.clone(), b"Q\x00\x00\x00\x04".to_vec()].concat(), // query without terminator
        [startup.clone(), b"Z\x00\x00\x00\x04garbage".to_vec()].concat(), // unknown message type
        [
            startup.clone(),
            b"P\x00\x00\x00\x08\x00\x00\x00\x00".to_vec(),
        ]
        .concat(), // short Parse
        [startup, b"Q\x7f\xff\xff\xffSELECT".to_vec()].concat(), // oversized query length
    ];
    for p in payloads {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_millis(300)))
            .unwrap();
        let _ = s.write_all(&p);
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
    }
    // Existing and new sessions still work and the data is intact.
    let n: i32 = c.query_one("SELECT id FROM w", &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
    let c2 = server.client().await;
    c2.batch_execute("INSERT INTO w VALUES (2)").await.unwrap();
    assert_eq!(c2.query("SELECT * FROM w", &[]).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_wal_stops_start_up_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    {
        let c = server.client().await;
        c.batch_execute("CREATE TABLE d (id int PRIMARY KEY, v text)")
            .await
            .unwrap();
        for i in 0..200 {
            c.execute("INSERT INTO d VALUES ($1, 'some payload')", &[&i])
                .await
                .unwrap();
        }
    }
    server.stop();
    let wal_dir = server.data_dir.join("shard-000/wal");
    let seg = std::fs::read_dir(&wal_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&seg).unwrap();
    // The middle of the records: the segment being written ends in zeros.
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    let middle = end / 2;
    bytes[middle] ^= 0xFF;
    std::fs::write(&seg, &bytes).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fortress"))
        .args([
            "serve",
            "--admin-listen",
            "off",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&server.data_dir)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "start-up must fail on mid-log corruption"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&seg.display().to_string()), "{stderr}");
    assert!(stderr.contains("at offset"), "{stderr}");
}

#[test]
fn startup_refuses_ssl_and_reports_postgres_parameters() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).unwrap();
    let mut answer = [0u8; 1];
    s.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"N", "SSLRequest is answered N");
    s.write_all(&common::startup_message(&[
        ("user", "alice"),
        ("database", "shop"),
    ]))
    .unwrap();
    let mut params = std::collections::HashMap::new();
    loop {
        let (ty, body) = common::read_message(&mut s);
        match ty {
            b'R' => assert_eq!(&body[..4], &[0, 0, 0, 0], "trust: AuthenticationOk"),
            b'S' => {
                let mut parts = body.split(|b| *b == 0);
                let k = String::from_utf8(parts.next().unwrap().to_vec()).unwrap();
                let v = String::from_utf8(parts.next().unwrap().to_vec()).unwrap();
                params.insert(k, v);
            }
            b'K' => {}
            b'Z' => {
                assert_eq!(body, b"I");
                break;
            }
            other => panic!("unexpected message {:?}", other as char),
        }
    }
    assert_eq!(
        params["server_version"],
        format!("15.0 (fortress {})", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(params["client_encoding"], "UTF8");
    assert!(params["DateStyle"].starts_with("ISO"));
    assert_eq!(params["integer_datetimes"], "on");
    assert_eq!(params["standard_conforming_strings"], "on");
    // Terminate closes the session cleanly.
    s.write_all(&[b'X', 0, 0, 0, 4]).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty());
}
