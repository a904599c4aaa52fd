//! The admin HTTP API against the real binary: auth, every endpoint's
//! answers and errors, the Prometheus exposition (parsed by a Prometheus
//! text parser), and `fortress status` reading it.

mod common;

use std::time::Duration;

use common::{code, Server};
use serde_json::{json, Value};

const TOKEN: &str = "test-token-0123456789abcdef";

/// An HTTP client that returns error statuses as responses.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// (status, JSON body) of a request; `token` goes in as a bearer token.
fn call(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let (status, text) = call_text(server, method, path, token, body);
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
    (status, json)
}

fn call_text(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, String) {
    let url = format!("{}{path}", server.admin_url());
    let agent = agent();
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut response = match (method, body) {
        ("GET", _) => {
            let mut r = agent.get(&url);
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.call()
        }
        (_, body) => {
            let mut r = agent.post(&url);
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            match body {
                Some(b) => r.send_json(b),
                None => r.send_empty(),
            }
        }
    }
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

fn ok(server: &Server, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, v) = call(server, method, path, Some(TOKEN), body);
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {v}"
    );
    v
}

/// The sum of `field` over the objects of the array `v`.
fn sum(v: &Value, field: &str) -> u64 {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x[field].as_u64().unwrap())
        .sum()
}

/// Asserts that a statement succeeded with command tag `tag`; its body.
fn answered((status, v): (u16, Value), tag: &str) -> Value {
    assert_eq!((status, v["tag"].as_str()), (200, Some(tag)), "{v}");
    v
}

/// Asserts that a call failed with `status` and error `code`; its body.
fn refused((status, v): (u16, Value), want: u16, code: &str) -> Value {
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (want, Some(code)),
        "{v}"
    );
    v
}

fn query(server: &Server, sql: &str, params: Value) -> (u16, Value) {
    call(
        server,
        "POST",
        "/api/v1/sharding/query",
        Some(TOKEN),
        Some(json!({"sql": sql, "params": params})),
    )
}

fn start(dir: &tempfile::TempDir) -> Server {
    Server::start_env(dir.path(), &[("FORTRESS_ADMIN_TOKEN", TOKEN)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_but_health_needs_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    let (status, health) = call(&server, "GET", "/api/v1/health", None, None);
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["shards"].as_array().unwrap().len(), 4);
    assert!(health["shards"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["ready"] == true));

    let guarded: &[(&str, &str, Option<Value>)] = &[
        ("GET", "/api/v1/status", None),
        (
            "POST",
            "/api/v1/sharding/query",
            Some(json!({"sql": "SELECT 1"})),
        ),
        (
            "POST",
            "/api/v1/sharding/transaction",
            Some(json!({"statements": ["SELECT 1"]})),
        ),
        ("GET", "/api/v1/sharding/metrics", None),
        ("GET", "/api/v1/checkpoints", None),
        ("POST", "/api/v1/checkpoints", None),
        ("GET", "/api/v1/openapi.json", None),
        ("GET", "/metrics", None),
    ];
    for (method, path, body) in guarded {
        for token in [
            None,
            Some("wrong-token-0123456789abcdef"),
            Some(&TOKEN[..TOKEN.len() - 1]),
        ] {
            let (status, v) = call(&server, method, path, token, body.clone());
            assert_eq!(status, 401, "{method} {path} with {token:?}: {v}");
            assert_eq!(v["error"]["code"], "unauthorized", "{v}");
            assert!(v["error"]["message"].as_str().unwrap().contains("Bearer"));
        }
        let (status, text) = call_text(&server, method, path, Some(TOKEN), body.clone());
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {text}"
        );
    }
    // A bearer scheme in any case is a bearer scheme.
    let (status, text) = {
        let mut r = agent()
            .get(format!("{}/api/v1/status", server.admin_url()))
            .header("Authorization", format!("bearer {TOKEN}"))
            .call()
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    };
    assert_eq!(status, 200, "{text}");
    // Unknown paths and methods get the same error shape.
    let (status, v) = call(&server, "GET", "/api/v1/nope", Some(TOKEN), None);
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, v) = call(&server, "POST", "/api/v1/status", Some(TOKEN), None);
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    // The token never reaches the log.
    assert!(!server.log().contains(TOKEN), "{}", server.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_and_transaction_endpoints_run_sql_with_its_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    answered(query(
        &server,
        "CREATE TABLE items (id bigint PRIMARY KEY, name text, price numeric, ok boolean, w float8)",
        json!([]),
    ), "CREATE TABLE");
    // Parameters are read as text-format parameters of the statement's types.
    answered(
        query(
            &server,
            "INSERT INTO items VALUES ($1, $2, $3, $4, $5)",
            json!([1, "one", "12345678901234567890.123", true, 0.5]),
        ),
        "INSERT 0 1",
    );
    let (_, v) = query(
        &server,
        "INSERT INTO items VALUES ($1, $2, NULL, $3, NULL) RETURNING id, name",
        json!(["2", null, "false"]),
    );
    assert_eq!(v["tag"], "INSERT 0 1", "{v}");
    assert_eq!(v["rows"], json!([[2, null]]), "{v}");

    let (status, v) = query(&server, "SELECT * FROM items WHERE id = $1", json!([1]));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["tag"], "SELECT 1");
    let names: Vec<&str> = v["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["id", "name", "price", "ok", "w"]);
    assert_eq!(v["columns"][2]["type"], "numeric");
    // Exact numerics stay exact: as strings.
    assert_eq!(
        v["rows"],
        json!([[1, "one", "12345678901234567890.123", true, 0.5]])
    );

    // What the API wrote, a PostgreSQL client reads.
    let c = server.client().await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);

    // Errors carry the SQLSTATE and the status its class calls for.
    refused(query(&server, "SELEC 1", json!([])), 400, "42601");
    refused(
        query(&server, "SELECT * FROM nope", json!([])),
        400,
        "42P01",
    );
    let v = refused(
        query(&server, "INSERT INTO items (id) VALUES (1)", json!([])),
        409,
        "23505",
    );
    assert!(
        v["error"]["detail"].as_str().unwrap().contains("(id)=(1)"),
        "{v}"
    );
    refused(query(&server, "SELECT $1::int", json!(["x"])), 400, "22P02");
    let (status, v) = query(&server, "SELECT 1; SELECT 2", json!([]));
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("42601")),
        "{v}"
    );
    refused(
        query(&server, "SELECT $1::int", json!([1, 2])),
        400,
        "08P01",
    );

    // An empty query is no error, as in PostgreSQL.
    let (status, v) = query(&server, " ; ", json!([]));
    assert_eq!((status, v["tag"].as_str()), (200, Some("")), "{v}");
    // Malformed requests: the same error shape.
    let (status, text) = {
        let mut r = agent()
            .post(format!("{}/api/v1/sharding/query", server.admin_url()))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .header("Content-Type", "application/json")
            .send("{not json")
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    };
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{v}"
    );
    refused(
        call(
            &server,
            "POST",
            "/api/v1/sharding/query",
            Some(TOKEN),
            Some(json!({"sql": "SELECT 1", "surprise": 1})),
        ),
        422,
        "bad_request",
    );
    let (status, v) = call(
        &server,
        "POST",
        "/api/v1/sharding/query",
        Some(TOKEN),
        Some(json!({"sql": "SELECT 1", "max_rows": 100_001})),
    );
    assert_eq!(status, 400, "{v}");

    // max_rows bounds what comes back, and says so.
    let v = ok(
        &server,
        "POST",
        "/api/v1/sharding/query",
        Some(json!({"sql": "SELECT id FROM items ORDER BY id", "max_rows": 1})),
    );
    assert_eq!(
        (v["rows"].clone(), v["truncated"].clone()),
        (json!([[1]]), json!(true)),
        "{v}"
    );

    // A transaction commits all of its statements...
    let v = ok(
        &server,
        "POST",
        "/api/v1/sharding/transaction",
        Some(json!({"statements": [
            "INSERT INTO items (id, name) VALUES (10, 'ten'), (11, 'eleven'), (12, 'twelve')",
            "UPDATE items SET name = 'ONE' WHERE id = 1",
            "SELECT count(*) FROM items"
        ]})),
    );
    let tags: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["tag"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["INSERT 0 3", "UPDATE 1", "SELECT 1"]);
    assert_eq!(v["results"][2]["rows"], json!([[5]]));
    // ...or none: a failing statement leaves nothing written.
    let v = refused(
        call(
            &server,
            "POST",
            "/api/v1/sharding/transaction",
            Some(TOKEN),
            Some(json!({"statements": [
                "INSERT INTO items (id, name) VALUES (20, 'twenty'), (21, 'twenty-one')",
                "DELETE FROM items WHERE id = 10",
                "INSERT INTO items (id, name) VALUES (11, 'again')"
            ]})),
        ),
        409,
        "23505",
    );
    assert_eq!(v["error"]["statement"], 2, "{v}");
    let rows = c
        .query("SELECT id FROM items ORDER BY id", &[])
        .await
        .unwrap();
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, [1, 2, 10, 11, 12]);
    // Transaction control inside is refused before anything runs.
    let (status, v) = call(
        &server,
        "POST",
        "/api/v1/sharding/transaction",
        Some(TOKEN),
        Some(json!({"statements": ["DELETE FROM items", "COMMIT"]})),
    );
    assert_eq!(
        (
            status,
            v["error"]["code"].as_str(),
            v["error"]["statement"].as_u64()
        ),
        (400, Some("25000"), Some(1)),
        "{v}"
    );
    let n: i64 = c
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_metrics_and_checkpoints_report_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    let c = server.client().await;
    c.batch_execute("CREATE TABLE kv (k int PRIMARY KEY, v text)")
        .await
        .unwrap();
    for k in 0..200 {
        c.execute("INSERT INTO kv VALUES ($1, 'x')", &[&k])
            .await
            .unwrap();
    }
    // A write over two shards (two-phase commit), and a failing statement.
    c.batch_execute("BEGIN; UPDATE kv SET v = 'y'; COMMIT")
        .await
        .unwrap();
    assert!(c.execute("SELECT * FROM missing", &[]).await.is_err());
    let dup = c.execute("INSERT INTO kv VALUES (1, 'dup')", &[]).await;
    assert_eq!(code(&dup.unwrap_err()), "23505");

    let status = ok(&server, "GET", "/api/v1/status", None);
    let shards = status["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 4, "{status}");
    let rows = sum(&status["shards"], "rows");
    assert_eq!(rows, 200, "{status}");
    assert!(shards
        .iter()
        .all(|s| s["wal_lsn"].as_u64().unwrap() > 0 && s["bytes"].as_u64().unwrap() > 0));
    assert!(
        status["connections"]["active"].as_u64().unwrap() >= 1,
        "{status}"
    );
    assert_eq!(status["connections"]["max"], 100);
    assert_eq!(status["settings"]["work_mem_mb"], 256);
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));

    let m = ok(&server, "GET", "/api/v1/sharding/metrics", None);
    assert!(m["routes"]["scatter_gather"].as_u64().unwrap() >= 1, "{m}");
    assert!(sum(&m["shard_requests"], "requests") >= 200, "{m}");
    assert!(sum(&m["vnode_requests"], "requests") >= 200, "{m}");

    // Prometheus: the exposition parses, the named series exist and move.
    let scrape = |server: &Server| {
        let (status, text) = call_text(server, "GET", "/metrics", Some(TOKEN), None);
        assert_eq!(status, 200);
        let lines = text.lines().map(|l| Ok(l.to_string()));
        prometheus_parse::Scrape::parse(lines).expect("Prometheus text format")
    };
    let value = |s: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>| -> f64 {
        s.samples
            .iter()
            .filter(|x| x.metric == name)
            .filter(|x| label.is_none_or(|(k, v)| x.labels.get(k) == Some(v)))
            .map(|x| match &x.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                prometheus_parse::Value::Histogram(h) => {
                    h.iter().map(|b| b.count).fold(0.0, f64::max)
                }
                prometheus_parse::Value::Summary(_) => 0.0,
            })
            .sum()
    };
    let before = scrape(&server);
    for name in [
        "fortress_statements_total",
        "fortress_statement_errors_total",
        "fortress_statement_duration_seconds_count",
        "fortress_commits_total",
        "fortress_commit_duration_seconds_count",
        "fortress_reads_total",
        "fortress_shard_requests_total",
        "fortress_wal_bytes_total",
        "fortress_wal_fsyncs_total",
        "fortress_wal_lsn",
        "fortress_connections",
        "fortress_cache_hits_total",
        "fortress_cache_misses_total",
        "fortress_checkpoint_age_seconds",
        "fortress_2pc_decisions_held",
    ] {
        assert!(
            before.samples.iter().any(|s| s.metric == name),
            "{name} missing from /metrics"
        );
    }
    assert!(value(&before, "fortress_statements_total", None) >= 202.0);
    // By route and outcome: the 200 point inserts went to one shard each,
    // the UPDATE without a filter to every shard, the duplicate key to one.
    let queries = |s: &prometheus_parse::Scrape, route: &str, outcome: &str| {
        s.samples
            .iter()
            .filter(|x| x.metric == "fortress_queries_total")
            .filter(|x| x.labels.get("route") == Some(route))
            .filter(|x| x.labels.get("outcome") == Some(outcome))
            .map(|x| match x.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum::<f64>()
    };
    assert!(queries(&before, "single_shard", "ok") >= 200.0);
    assert!(queries(&before, "all_shards", "ok") >= 1.0);
    assert!(queries(&before, "single_shard", "error") >= 1.0);
    assert!(
        value(
            &before,
            "fortress_statement_errors_total",
            Some(("class", "42"))
        ) >= 1.0
    );
    assert!(
        value(
            &before,
            "fortress_commits_total",
            Some(("kind", "two_phase"))
        ) >= 1.0
    );
    assert!(value(&before, "fortress_connections", None) >= 1.0);
    c.execute("INSERT INTO kv VALUES (1000, 'z')", &[])
        .await
        .unwrap();
    c.query("SELECT * FROM kv WHERE k = 5", &[]).await.unwrap();
    let after = scrape(&server);
    for name in [
        "fortress_statements_total",
        "fortress_wal_bytes_total",
        "fortress_wal_fsyncs_total",
        "fortress_shard_requests_total",
    ] {
        assert!(
            value(&after, name, None) > value(&before, name, None),
            "{name} did not move"
        );
    }
    assert!(
        value(
            &after,
            "fortress_reads_total",
            Some(("route", "single_shard"))
        ) > value(
            &before,
            "fortress_reads_total",
            Some(("route", "single_shard"))
        )
    );

    // Checkpoints over HTTP: taken, then listed with what they hold.
    let made = ok(&server, "POST", "/api/v1/checkpoints", None);
    assert_eq!(made["rows"], 201, "{made}");
    assert_eq!(made["ours"], true);
    let list = ok(&server, "GET", "/api/v1/checkpoints", None);
    let found = list["checkpoints"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{list}");
    assert_eq!(found[0]["id"], made["id"]);
    let age = value(&scrape(&server), "fortress_checkpoint_age_seconds", None);
    assert!((0.0..60.0).contains(&age), "{age}");

    // The OpenAPI document names every endpoint it serves.
    let doc = ok(&server, "GET", "/api/v1/openapi.json", None);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    for path in [
        "/api/v1/health",
        "/api/v1/status",
        "/api/v1/sharding/query",
        "/api/v1/sharding/transaction",
        "/api/v1/sharding/metrics",
        "/api/v1/checkpoints",
        "/api/v1/openapi.json",
        "/metrics",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the document"
        );
    }

    // `fortress status` prints the same as a table (rows are recounted
    // at most every 2 s while writes go on).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let cli = |token: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_fortress"))
            .args(["status", "--admin", &server.admin_url()])
            .env("FORTRESS_ADMIN_TOKEN", token)
            .output()
            .unwrap()
    };
    let out = cli(TOKEN);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = text
        .lines()
        .find(|l| l.trim_start().starts_with("all"))
        .expect("a totals line");
    assert!(all.contains(" 201 "), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.contains(" yes ")).count(),
        4,
        "{text}"
    );
    let out = cli("not-the-token-0123456789");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401") && err.contains("unauthorized"), "{err}");
    assert!(!err.contains("not-the-token"), "{err}");
}

/// The status line of a raw HTTP/1.1 request with these headers.
fn raw_status(port: u16, method: &str, path: &str, headers: &[&str]) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n");
    for h in headers {
        req += &format!("{h}\r\n");
    }
    req += "\r\n";
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.lines().next().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_of_other_sites_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // No token: the API answers only to loopback host names (a page of
    // another site rebound to 127.0.0.1 sends its own host name).
    let open = Server::start(dir.path());
    let port = open.admin_port;
    let own = format!("Host: 127.0.0.1:{port}");
    assert!(raw_status(port, "GET", "/api/v1/status", &[&own]).contains(" 200 "));
    assert!(raw_status(port, "GET", "/api/v1/status", &["Host: localhost"]).contains(" 200 "));
    let rebound = raw_status(port, "GET", "/api/v1/status", &["Host: evil.example:7070"]);
    assert!(rebound.contains(" 403 "), "{rebound}");
    // A cross-site form POST carries its Origin: refused, with or without a token.
    let forged = raw_status(
        port,
        "POST",
        "/api/v1/checkpoints",
        &[&own, "Origin: http://evil.example"],
    );
    assert!(forged.contains(" 403 "), "{forged}");
    let list: serde_json::Value = agent()
        .get(format!("{}/api/v1/checkpoints", open.admin_url()))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert_eq!(
        list["checkpoints"],
        json!([]),
        "the forged POST took a checkpoint"
    );
    // The page's own origin is served.
    let same = raw_status(
        port,
        "POST",
        "/api/v1/checkpoints",
        &[&own, &format!("Origin: http://127.0.0.1:{port}")],
    );
    assert!(same.contains(" 201 "), "{same}");
}

/// Starts `fortress serve` with the admin API on `admin` and `token`,
/// expecting it to refuse to start; its stderr.
fn admin_refused(admin: &str, token: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_fortress"));
    cmd.args(["serve", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--listen", &format!("127.0.0.1:{}", common::free_port())])
        .args(["--admin-listen", admin])
        .env_remove("FORTRESS_ADMIN_TOKEN");
    if let Some(t) = token {
        cmd.env("FORTRESS_ADMIN_TOKEN", t);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "it started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_admin_api_beyond_loopback_needs_a_token() {
    let err = admin_refused(&format!("0.0.0.0:{}", common::free_port()), None);
    assert!(
        err.contains("FORTRESS_ADMIN_TOKEN") && err.contains("--admin-listen off"),
        "{err}"
    );
    // A short token is refused too, without being echoed.
    let err = admin_refused(&format!("127.0.0.1:{}", common::free_port()), Some("short"));
    assert!(err.contains("shorter than 16"), "{err}");
    assert!(!err.contains("short\n"), "{err}");
}
