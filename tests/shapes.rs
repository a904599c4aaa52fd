//! Simple queries that differ only in constants share a plan per connection
//! (`proxy/src/sql/shape.rs`). Each statement here runs as written, which
//! from its shape's second sighting goes through the shared plan, and behind
//! a comment, which the shape scanner refuses, so it is bound afresh: the
//! two must answer alike, errors included.

mod common;

use common::Server;
use tokio_postgres::{Client, SimpleQueryMessage};

type Answer = Result<Vec<Vec<Option<String>>>, (String, String)>;

async fn answer(c: &Client, sql: &str) -> Answer {
    match c.simple_query(sql).await {
        Ok(msgs) => Ok(msgs
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                }
                SimpleQueryMessage::CommandComplete(n) => Some(vec![Some(format!("#{n}"))]),
                _ => None,
            })
            .collect()),
        Err(e) => {
            let db = e.as_db_error().expect("a server error");
            Err((db.code().code().to_string(), db.message().to_string()))
        }
    }
}

/// Runs `sql` shaped and unshaped and requires the same answer.
async fn same(c: &Client, sql: &str) -> Answer {
    let shaped = answer(c, sql).await;
    let plain = answer(c, &format!("/* plain */ {sql}")).await;
    assert_eq!(shaped, plain, "{sql}");
    shaped
}

async fn reused(c: &Client) -> u64 {
    let rows = answer(c, "SHOW fortress.metrics").await.unwrap();
    rows.iter()
        .find(|r| r[0].as_deref() == Some("simple_plans_reused"))
        .and_then(|r| r[1].as_deref()?.parse().ok())
        .expect("simple_plans_reused")
}

async fn setup(c: &Client) {
    c.batch_execute(
        "CREATE TABLE t (id integer PRIMARY KEY, k bigint, name text, d date, n numeric(10,2));
         INSERT INTO t VALUES
           (1, 5000000000, 'a', '2024-01-01', 1.50),
           (2, -7, 'it''s', '2024-02-29', -2.25),
           (3, 0, '', NULL, NULL),
           (-3, 2147483648, 'x', '1999-12-31', 100)",
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_that_differ_in_constants_answer_as_if_bound_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = server.client().await;
    setup(&c).await;
    let before = reused(&c).await;
    let cases: Vec<(&str, Vec<Vec<&str>>)> = vec![
        (
            "SELECT name, k FROM t WHERE id = {}",
            vec![vec!["1"], vec!["2"], vec!["999"], vec!["-3"], vec!["3"]],
        ),
        // A position, not a constant: must not become a parameter's value.
        (
            "SELECT id, name FROM t ORDER BY {}",
            vec![vec!["1"], vec!["2"], vec!["1"], vec!["2"]],
        ),
        (
            "SELECT id FROM t WHERE name = '{}' ORDER BY id",
            vec![vec!["a"], vec!["it''s"], vec![""], vec!["nope"]],
        ),
        (
            "SELECT id FROM t WHERE k > {} ORDER BY id",
            vec![
                vec!["5000000000"],
                vec!["1"],
                vec!["-2147483649"],
                vec!["-8"],
            ],
        ),
        (
            "SELECT id FROM t WHERE d = '{}'",
            vec![
                vec!["2024-01-01"],
                vec!["2024-02-29"],
                vec!["not a date"],
                vec!["2023-02-29"],
            ],
        ),
        (
            "SELECT id FROM t WHERE id = '{}'",
            vec![vec!["1"], vec!["2"], vec!["x"], vec!["99999999999"]],
        ),
        (
            "SELECT {} + {}, 'v' || '{}'",
            vec![
                vec!["1", "2", "a"],
                vec!["2147483647", "1", "b"],
                vec!["-5", "5", ""],
            ],
        ),
        (
            "SELECT id FROM t WHERE id IN ({}, {}) ORDER BY id",
            vec![vec!["1", "2"], vec!["3", "3"], vec!["-3", "7"]],
        ),
        (
            "SELECT id FROM t WHERE id > {} ORDER BY id LIMIT {}",
            vec![vec!["0", "1"], vec!["0", "2"], vec!["-10", "3"]],
        ),
        (
            "SELECT count(*), sum(n) FROM t WHERE id < {}",
            vec![vec!["2"], vec!["3"], vec!["100"]],
        ),
        (
            "SELECT id FROM t WHERE n > {}.5 ORDER BY id",
            vec![vec!["0"], vec!["1"], vec!["-3"]],
        ),
        (
            "SELECT id, 10 / {} FROM t WHERE id = 1",
            vec![vec!["2"], vec!["5"], vec!["0"], vec!["3"]],
        ),
    ];
    for (template, sets) in &cases {
        for set in sets {
            let mut sql = template.to_string();
            for v in set {
                sql = sql.replacen("{}", v, 1);
            }
            let _ = same(&c, &sql).await;
        }
    }
    // Spot checks that the answers are the right ones, not only alike.
    assert_eq!(
        same(&c, "SELECT name, k FROM t WHERE id = 2")
            .await
            .unwrap()[0],
        vec![Some("it's".to_string()), Some("-7".to_string())]
    );
    assert_eq!(
        same(&c, "SELECT id FROM t WHERE id = 'x'")
            .await
            .unwrap_err()
            .0,
        "22P02"
    );
    assert_eq!(
        same(&c, "SELECT id, name FROM t ORDER BY 2").await.unwrap()[0][1],
        Some(String::new())
    );
    assert!(
        reused(&c).await >= before + 10,
        "repeated shapes reuse their plan"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_shared_plans_match_writes_bound_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE a (id integer PRIMARY KEY, v integer, s text);
         CREATE TABLE b (id integer PRIMARY KEY, v integer, s text)",
    )
    .await
    .unwrap();
    // Table a gets the statements as written, b behind a comment.
    let mut statements = Vec::new();
    for i in 0..12 {
        statements.push(format!("INSERT INTO {{}} VALUES ({i}, {}, 's{i}')", i * 10));
    }
    for i in 0..12 {
        statements.push(format!(
            "UPDATE {{}} SET v = v + -{i}, s = 'u''{i}' WHERE id = {}",
            i / 2
        ));
        statements.push(format!("DELETE FROM {{}} WHERE id = {}", 11 - i % 3));
        statements.push(format!("INSERT INTO {{}} VALUES ({}, 1, 'dup')", i % 4));
    }
    for s in &statements {
        let shaped = answer(&c, &s.replace("{}", "a")).await;
        let plain = answer(&c, &format!("/* plain */ {}", s.replace("{}", "b")))
            .await
            .map_err(|(code, msg)| (code, msg.replace("\"b_", "\"a_")));
        assert_eq!(shaped, plain, "{s}");
    }
    let all = |t: &str| format!("SELECT * FROM {t} ORDER BY id");
    let rows_a = answer(&c, &all("a")).await.unwrap();
    assert_eq!(rows_a, answer(&c, &all("b")).await.unwrap());
    assert_eq!(rows_a.len(), 9 + 1, "nine rows and the count: {rows_a:?}");
    assert_eq!(
        rows_a[0],
        vec![Some("0".into()), Some("-1".into()), Some("u'1".into())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_plan_follows_the_catalog_and_failed_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = server.client().await;
    setup(&c).await;
    for id in [1, 2, 3] {
        same(&c, &format!("SELECT * FROM t WHERE id = {id}"))
            .await
            .unwrap();
    }
    c.batch_execute("ALTER TABLE t ADD COLUMN extra integer")
        .await
        .unwrap();
    let rows = same(&c, "SELECT * FROM t WHERE id = 1").await.unwrap();
    assert_eq!(rows[0].len(), 6, "the new column is in the answer");
    c.batch_execute("DROP TABLE t").await.unwrap();
    assert_eq!(
        same(&c, "SELECT * FROM t WHERE id = 2")
            .await
            .unwrap_err()
            .0,
        "42P01"
    );
    setup(&c).await;
    assert_eq!(
        same(&c, "SELECT name FROM t WHERE id = 2").await.unwrap()[0][0].as_deref(),
        Some("it's")
    );
    // In a failed block a shaped statement is refused like any other.
    for id in [1, 2] {
        answer(&c, &format!("SELECT name FROM t WHERE id = {id}"))
            .await
            .unwrap();
    }
    c.batch_execute("BEGIN").await.unwrap();
    assert!(c.batch_execute("SELECT 1 / 0").await.is_err());
    let refused = answer(&c, "SELECT name FROM t WHERE id = 3").await;
    assert_eq!(refused.unwrap_err().0, "25P02");
    c.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        answer(&c, "SELECT name FROM t WHERE id = 1").await.unwrap()[0][0].as_deref(),
        Some("a")
    );
}
