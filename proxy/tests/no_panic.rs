//! Property test: no statement text, however odd, panics the front end or the
//! executor. Generated statements go through parse, bind and execute against
//! a real two-shard cluster; each must end in `Ok` or a typed error. The
//! same statements check that a prepared statement's reused plan, filled
//! with parameters, is the plan binding them as literals gives.

use std::sync::Arc;

use fortress_proxy::exec::execute;
use fortress_proxy::session::Session;
use fortress_proxy::sql::bind::Binder;
use fortress_proxy::sql::parse;
use fortress_proxy::sql::template::Template;
use fortress_proxy::{Cluster, ClusterOptions};
use fortress_storage::{DataType, ShardOptions, Value};
use proptest::prelude::*;

fn atom() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("id".to_string()),
        Just("name".to_string()),
        Just("amount".to_string()),
        Just("day".to_string()),
        Just("t.id".to_string()),
        Just("nope".to_string()),
        Just("NULL".to_string()),
        Just("true".to_string()),
        Just("'x'".to_string()),
        Just("'2024-02-30'".to_string()),
        Just("'12.5'".to_string()),
        Just("$1".to_string()),
        Just("$2".to_string()),
        Just("version()".to_string()),
        Just("current_setting('timezone')".to_string()),
        Just("count(*)".to_string()),
        (-3i64..3).prop_map(|n| n.to_string()),
        Just("2147483647".to_string()),
        Just("9223372036854775807".to_string()),
        Just("99999999999999999999999999999".to_string()),
        Just("1e400".to_string()),
        Just("0.0000001".to_string()),
    ]
}

fn expr() -> impl Strategy<Value = String> {
    atom().prop_recursive(4, 24, 3, |inner| {
        let ops = prop_oneof![
            Just("+"),
            Just("-"),
            Just("*"),
            Just("/"),
            Just("%"),
            Just("="),
            Just("<>"),
            Just("<"),
            Just(">="),
            Just("AND"),
            Just("OR"),
            Just("||"),
        ];
        prop_oneof![
            (inner.clone(), ops, inner.clone()).prop_map(|(a, o, b)| format!("({a} {o} {b})")),
            inner.clone().prop_map(|a| format!("NOT {a}")),
            inner.clone().prop_map(|a| format!("-{a}")),
            inner.clone().prop_map(|a| format!("{a} IS NULL")),
            inner.clone().prop_map(|a| format!("CAST({a} AS smallint)")),
            inner.clone().prop_map(|a| format!("{a}::numeric(3,1)")),
            inner.clone().prop_map(|a| format!("{a}::date")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} IN ({b}, 1)")),
            (inner.clone(), inner.clone(), inner)
                .prop_map(|(a, b, c)| format!("{a} BETWEEN {b} AND {c}")),
        ]
    })
}

/// Well-typed integer expressions, so that many statements get past binding.
fn int_expr() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        (-5i64..40).prop_map(|n| n.to_string()),
        Just("id".to_string()),
        Just("$1".to_string()),
        Just("32767".to_string()),
        Just("NULL".to_string()),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        let ops = prop_oneof![Just("+"), Just("-"), Just("*"), Just("/"), Just("%")];
        (inner.clone(), ops, inner).prop_map(|(a, o, b)| format!("({a} {o} {b})"))
    })
}

fn statement() -> impl Strategy<Value = String> {
    prop_oneof![
        // VALUES cannot name columns: constants only.
        (int_expr(), int_expr()).prop_map(|(a, b)| format!(
            "INSERT INTO t VALUES ({a}, 'ab', {b}, '2024-01-01'), ({b}, NULL, 1.5, NULL)"
        ).replace("id", "7")),
        (int_expr(), int_expr()).prop_map(|(a, b)| format!(
            "UPDATE t SET amount = amount * {a}, name = name || 'z' WHERE id = {b} OR id > {a}"
        )),
        (int_expr(), int_expr()).prop_map(|(a, b)| format!(
            "SELECT id, amount / {a}, name FROM t WHERE id >= {b} ORDER BY amount DESC NULLS LAST, id LIMIT 5 OFFSET 1"
        )),
        int_expr().prop_map(|a| format!("DELETE FROM t WHERE id = {a}")),
        (expr(), expr()).prop_map(|(a, b)| format!("SELECT {a}, * FROM t WHERE {b} ORDER BY {a} LIMIT 3")),
        expr().prop_map(|a| format!("SELECT {a}")),
        (expr(), expr()).prop_map(|(a, b)| format!("INSERT INTO t VALUES ({a}, {b}, {a}, {b})")),
        (expr(), expr()).prop_map(|(a, b)| format!("INSERT INTO t (name, id) VALUES ({a}, {b}), (DEFAULT, {a})")),
        (expr(), expr()).prop_map(|(a, b)| format!("UPDATE t SET amount = {a}, day = {b} WHERE {b}")),
        expr().prop_map(|a| format!("DELETE FROM t WHERE {a}")),
        expr().prop_map(|a| format!("SELECT * FROM t LIMIT {a} OFFSET {a}")),
        "[a-zA-Z0-9 ,;()'*=<>$:.-]{0,60}",
    ]
}

fn cluster(dir: &std::path::Path) -> Arc<Cluster> {
    Arc::new(
        Cluster::open(ClusterOptions {
            data_dir: dir.to_path_buf(),
            shards: 2,
            vnodes: 16,
            shard: ShardOptions::default(),
            cache_ttl: std::time::Duration::from_secs(300),
            work_rows: 100_000,
            work_bytes: 64 << 20,
            standby: false,
        })
        .unwrap(),
    )
}

async fn run(c: &Cluster, session: &Session, sql: &str, params: Option<&[Value]>) {
    let Ok(stmts) = parse(sql) else { return };
    for stmt in &stmts {
        let catalog = c.catalog();
        let mut binder = Binder::new(&catalog, session, params, Vec::new());
        if let Ok(plan) = binder.bind(stmt) {
            let _ = execute(c, session, plan).await;
        }
    }
}

/// A runtime on the test's own thread.
fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A cluster in `dir` holding the table the generated statements name, and
/// a session on it.
fn with_table(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> (Arc<Cluster>, Session) {
    let c = cluster(dir);
    let session = Session::new("fuzz", "fuzz");
    rt.block_on(run(
        &c,
        &session,
        "CREATE TABLE t (id int PRIMARY KEY, name varchar(4), amount numeric(6,2), day date)",
        Some(&[]),
    ));
    (c, session)
}

#[test]
fn random_statements_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (c, session) = with_table(&rt, dir.path());
    let params = [Value::Int8(3), Value::Text("2024-01-01".into())];
    proptest!(ProptestConfig::with_cases(400), |(sql in statement())| {
        rt.block_on(async {
            run(&c, &session, &sql, Some(&[])).await;
            run(&c, &session, &sql, Some(&params)).await;
            run(&c, &session, &sql, None).await;
        });
    });
    // The cluster still works afterwards.
    rt.block_on(async {
        let catalog = c.catalog();
        let stmt = &parse("SELECT id FROM t WHERE id = 1").unwrap()[0];
        let plan = Binder::new(&catalog, &session, Some(&[]), Vec::new())
            .bind(stmt)
            .unwrap();
        execute(&c, &session, plan).await.unwrap();
    });
}

#[test]
fn reused_plans_are_the_plans_bound_with_literals() {
    let dir = tempfile::tempdir().unwrap();
    let rt = current_thread();
    let (c, session) = with_table(&rt, dir.path());
    let catalog = c.catalog();
    let declared = vec![Some(DataType::Int8), Some(DataType::Text)];
    let first = [Value::Int8(3), Value::Text("2024-01-01".into())];
    let others = [
        [Value::Int8(-40_000), Value::Text("ab".into())],
        [Value::Null, Value::Null],
        [Value::Int8(7), Value::Text("12.5".into())],
    ];
    let reused = std::cell::Cell::new(0);
    let cases = std::cell::Cell::new(0);
    // Found by this test: one parameter read twice (the select list and
    // ORDER BY) must bind to one slot, or the two stop matching.
    let found = "SELECT (0 + $1), * FROM t WHERE 0 IS NULL ORDER BY (0 + $1) LIMIT 3";
    let sqls = prop_oneof![1 => Just(found.to_string()), 20 => statement()];
    proptest!(ProptestConfig::with_cases(400), |(sql in sqls)| {
        let Ok(stmts) = parse(&sql) else { return Ok(()) };
        for stmt in &stmts {
            cases.set(cases.get() + 1);
            let Some(t) = Template::bind(&catalog, &session, stmt, &first, declared.clone()) else {
                continue;
            };
            reused.set(reused.get() + 1);
            for params in std::iter::once(&first).chain(&others) {
                let literal = Binder::new(&catalog, &session, Some(params), declared.clone())
                    .bind(stmt)
                    .map(|p| format!("{p:?}"))
                    .map_err(|e| e.sql_state().to_string());
                let filled = t
                    .instantiate(params, || session.statement_now())
                    .map(|p| format!("{p:?}"))
                    .map_err(|e| e.sql_state().to_string());
                prop_assert_eq!(filled, literal, "{} with {:?}", sql, params);
            }
        }
    });
    // The generator reaches both kinds: plans reused and plans bound anew.
    let (reused, cases) = (reused.get(), cases.get());
    assert!(reused > 20, "{reused} of {cases} statements reused a plan");
    assert!(
        reused < cases,
        "{reused} of {cases} statements reused a plan"
    );
}

/// A reused INSERT plan computes, per execution, its parameters, now() (a
/// written one as well as a column default) and a keyless table's row id.
#[test]
fn a_reused_insert_computes_its_values_per_execution() {
    let dir = tempfile::tempdir().unwrap();
    let rt = current_thread();
    let (c, session) = with_table(&rt, dir.path());
    let create = "CREATE TABLE log (a int, at timestamptz DEFAULT now())";
    rt.block_on(run(&c, &session, create, Some(&[])));
    let catalog = c.catalog();
    let rowid = catalog.get("log").and_then(|t| t.rowid).expect("keyless");
    for sql in [
        "INSERT INTO log (a) VALUES ($1)",
        "INSERT INTO log (a, at) VALUES ($1, now())",
    ] {
        let stmt = &parse(sql).unwrap()[0];
        let declared = vec![Some(DataType::Int4)];
        let t = Template::bind(&catalog, &session, stmt, &[Value::Int4(1)], declared)
            .unwrap_or_else(|| panic!("{sql} reuses its plan"));
        let row = |a: i32, now: i64| match t.instantiate(&[Value::Int4(a)], || now).unwrap() {
            fortress_proxy::plan::Plan::Insert { mut rows, .. } => rows.remove(0),
            other => panic!("{other:?}"),
        };
        let (first, second) = (row(1, 1_000), row(2, 2_000));
        assert_eq!(
            first[..2],
            [Value::Int4(1), Value::Timestamptz(1_000)],
            "{sql}"
        );
        assert_eq!(
            second[..2],
            [Value::Int4(2), Value::Timestamptz(2_000)],
            "{sql}"
        );
        assert_ne!(
            first[rowid], second[rowid],
            "{sql}: a fresh row id each time"
        );
    }
}
