//! The properties fortress is fuzzed for. Each function takes arbitrary
//! bytes and panics only when fortress breaks a property (a panic inside
//! fortress counts too); errors on bad input are the expected outcome.
//! The cargo-fuzz targets in `fuzz/targets/fuzz_targets` and the proptest suite in
//! `fuzz/tests/props.rs` (run by `cargo test`) call the same functions.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use bytes::BytesMut;
use fortress_proxy::exec::execute;
use fortress_proxy::plan::Plan;
use fortress_proxy::route::placement::ring_shard;
use fortress_proxy::route::ring::Ring;
use fortress_proxy::session::Session;
use fortress_proxy::sql::bind::Binder;
use fortress_proxy::sql::{parse, types};
use fortress_proxy::wire::encode::decode_param;
use fortress_proxy::wire::frame;
use fortress_proxy::{Cluster, ClusterOptions};
use fortress_storage::wal::{self, Decoded, Record, SyncMode, Wal, WalOptions};
use fortress_storage::{ShardOptions, Value};
use pgwire::api::Type;
use pgwire::messages::{DecodeContext, PgWireFrontendMessage};

/// Routing is total, in bounds and deterministic for ring layouts of 1-16
/// shards and any key, and a value routes alike whatever integer width carries it.
pub fn router(data: &[u8]) {
    let Some((&s, rest)) = data.split_first() else {
        return;
    };
    let Some((v, key)) = rest.split_first_chunk::<2>() else {
        return;
    };
    // Layouts from a small set, so rings are built once and the fuzzer's
    // time goes to keys (building a ring dominates otherwise).
    let shards = u32::from(s % 16) + 1;
    let vnodes = VNODES[usize::from(u16::from_le_bytes(*v)) % VNODES.len()];
    RINGS.with_borrow_mut(|rings| {
        let ring = rings.entry((shards, vnodes)).or_insert_with(|| {
            let ring = Ring::new(shards, vnodes);
            let again = Ring::new(shards, vnodes);
            assert_eq!(ring.token_owners(), again.token_owners(), "rebuilt ring");
            ring
        });
        check_key(ring, shards, key);
    });
}

/// Vnode counts the router property builds rings with (150 is the default).
const VNODES: [usize; 7] = [1, 2, 3, 7, 16, 64, 150];

thread_local! {
    /// Rings by layout: building one is the slow part, and rebuilding is
    /// checked once per layout.
    static RINGS: std::cell::RefCell<std::collections::HashMap<(u32, usize), Ring>> =
        Default::default();
}

fn check_key(ring: &Ring, shards: u32, key: &[u8]) {
    let owner = ring.shard_for_key(key);
    assert!(owner < shards, "shard {owner} of {shards}");
    assert_eq!(owner, ring.shard_for_key(key), "same ring, same key");
    let (vnode, by_vnode) = ring.vnode_for_key(key);
    assert_eq!(by_vnode, owner, "vnode {vnode} owner");
    let text = Value::Text(String::from_utf8_lossy(key).into_owned());
    assert!(ring_shard(ring, &text) < shards);
    if let Some(n) = key.first_chunk::<8>().map(|b| i64::from_le_bytes(*b)) {
        let wide = ring_shard(ring, &Value::Int8(n));
        assert!(wide < shards);
        if let Ok(n) = i32::try_from(n) {
            assert_eq!(ring_shard(ring, &Value::Int4(n)), wide, "int4 {n} vs int8");
        }
        if let Ok(n) = i16::try_from(n) {
            assert_eq!(ring_shard(ring, &Value::Int2(n)), wide, "int2 {n} vs int8");
        }
    }
}

/// A cluster with a few tables, shared by every call in a process.
struct Fixture {
    runtime: tokio::runtime::Runtime,
    cluster: Arc<Cluster>,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let mut shard = ShardOptions::default();
        shard.wal.sync = SyncMode::Off;
        let cluster = Arc::new(
            Cluster::open(ClusterOptions {
                data_dir: dir.path().to_path_buf(),
                shards: 3,
                vnodes: 16,
                shard,
                cache_ttl: std::time::Duration::from_secs(60),
                work_rows: 10_000,
                work_bytes: 64 << 20,
                standby: false,
            })
            .expect("cluster"),
        );
        let session = Session::new("fuzz", "fuzz");
        runtime.block_on(async {
            for ddl in [
                "CREATE TABLE t (id int PRIMARY KEY, name text, amount numeric(8,2), day date)",
                "CREATE TABLE r (k int PRIMARY KEY, v text) WITH (strategy = 'range', split_points = '10, 20')",
                "CREATE TABLE ref (code text PRIMARY KEY, label text) WITH (replicated = true)",
                "CREATE INDEX t_name ON t (name)",
                "INSERT INTO t VALUES (1, 'a', 1.5, '2024-01-01'), (2, 'b', NULL, NULL), (30, 'c', -2, '2023-05-06')",
                "INSERT INTO r VALUES (1, 'x'), (15, 'y'), (25, 'z')",
                "INSERT INTO ref VALUES ('a', 'A')",
            ] {
                run_sql(&cluster, &session, ddl, false).await;
            }
        });
        Fixture {
            runtime,
            cluster,
            _dir: dir,
        }
    })
}

/// Parses, binds and executes `sql`: as given for the fixture's setup, or
/// (`probe`) inside a transaction block that is rolled back, skipping DDL
/// and transaction control, so every input meets the same data and catalog
/// and a crash reproduces from its input alone.
async fn run_sql(cluster: &Cluster, session: &Session, sql: &str, probe: bool) {
    let Ok(stmts) = parse(sql) else { return };
    if probe {
        control(cluster, session, "BEGIN").await;
    }
    for stmt in stmts.iter().take(8) {
        let catalog = cluster.catalog();
        let Ok(plan) = Binder::new(&catalog, session, Some(&[]), Vec::new()).bind(stmt) else {
            continue;
        };
        let skip =
            plan.is_ddl() || matches!(plan, Plan::Begin { .. } | Plan::Commit | Plan::Rollback);
        if probe && skip {
            continue;
        }
        let _ = execute(cluster, session, plan).await;
    }
    if probe {
        control(cluster, session, "ROLLBACK").await;
    }
}

/// Runs one transaction-control statement.
async fn control(cluster: &Cluster, session: &Session, sql: &str) {
    let Ok(stmts) = parse(sql) else { return };
    let catalog = cluster.catalog();
    if let Some(Ok(plan)) = stmts
        .first()
        .map(|s| Binder::new(&catalog, session, Some(&[]), Vec::new()).bind(s))
    {
        let _ = execute(cluster, session, plan).await;
    }
}

/// Any text through the shape scanner, the SQL front end, the planner and
/// the executor ends in a result or a typed error.
pub fn sql(data: &[u8]) {
    if data.len() > 4096 {
        return;
    }
    let text = String::from_utf8_lossy(data);
    // The shape scanner reads the same client text before the parser does.
    if let Some(shape) = fortress_proxy::sql::shape::of(&text) {
        if !text.contains('"') {
            let placeholders = shape.text.matches('$').count();
            assert_eq!(placeholders, shape.values.len(), "{text:?} -> {shape:?}");
        }
    }
    let f = fixture();
    let session = Session::new("fuzz", "fuzz");
    f.runtime
        .block_on(run_sql(&f.cluster, &session, &text, true));
}

/// Arbitrary bytes as WAL: decoding never panics and never yields a record
/// that does not re-encode to the very bytes it came from; opening such a
/// log either fails or keeps exactly a prefix of valid records, and a
/// read-only pass sees the same records.
pub fn wal(data: &[u8]) {
    if let Decoded::Record(rec, n) = wal::decode(data) {
        let mut again = Vec::new();
        rec.encode_into(&mut again);
        assert_eq!(again, data[..n], "a decoded record is its bytes");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let wal_dir = dir.path().join("wal");
    std::fs::create_dir_all(&wal_dir).expect("wal dir");
    std::fs::write(wal_dir.join("00000000000000000001.seg"), data).expect("segment");
    let mut read = Vec::new();
    let read_ok = wal::read_from(&wal_dir, 0, None, |r| {
        read.push(r.clone());
        Ok(true)
    });
    let mut replayed: Vec<Record> = Vec::new();
    let opened = Wal::open(&wal_dir, WalOptions::default(), 0, |r| {
        replayed.push(r.clone());
        Ok(())
    });
    match opened {
        Ok(log) => {
            let mut bytes = Vec::new();
            for r in &replayed {
                r.encode_into(&mut bytes);
            }
            assert_eq!(bytes, data[..bytes.len()], "replay is a prefix of the log");
            assert_eq!(log.last_lsn(), replayed.len() as u64);
            assert!(
                read_ok.is_ok(),
                "read-only pass failed where open succeeded"
            );
            assert_eq!(read, replayed, "read-only pass and open agree");
        }
        Err(_) => assert!(
            read_ok.is_err(),
            "open failed where the read-only pass did not"
        ),
    }
    check_block_file(dir.path(), data);
    // The same bytes as an encrypted log: an error or records, no panic.
    let sealed_dir = dir.path().join("sealed");
    std::fs::create_dir_all(&sealed_dir).expect("sealed dir");
    std::fs::write(sealed_dir.join("00000000000000000001.seg"), data).expect("segment");
    let opts = WalOptions {
        cipher: Some(Arc::new(fortress_storage::cipher::Cipher::new(&[9; 32]))),
        ..WalOptions::default()
    };
    let _ = Wal::open(&sealed_dir, opts, 0, |_| Ok(()));
}

/// Arbitrary bytes as a checkpoint file: an error, never a panic.
fn check_block_file(dir: &Path, data: &[u8]) {
    let path = dir.join("f.rows");
    std::fs::write(&path, data).expect("file");
    let _ = fortress_storage::checkpoint::read_file(&path, "f.rows", None, |_, _| Ok(()));
}

/// Parameter types the wire property decodes Bind values as.
const PARAM_TYPES: [Type; 12] = [
    Type::BOOL,
    Type::INT2,
    Type::INT4,
    Type::INT8,
    Type::FLOAT4,
    Type::FLOAT8,
    Type::NUMERIC,
    Type::TEXT,
    Type::DATE,
    Type::TIMESTAMP,
    Type::TIMESTAMPTZ,
    Type::BYTEA,
];

/// Arbitrary frontend bytes: decoded as pgwire messages (startup first when
/// the first byte is even), then queries, parses and bind values go through
/// fortress's SQL front end and parameter decoding. Errors, never panics.
pub fn wire(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut ctx = DecodeContext::default();
    if mode % 2 == 1 {
        ctx.awaiting_frontend_ssl = false;
        ctx.awaiting_frontend_startup = false;
    }
    let mut buf = BytesMut::from(rest);
    for _ in 0..32 {
        // Past startup, a body that fails fortress's structure check is one
        // pgwire 0.42 may panic on (the server contains that per
        // connection, see tests/wire.rs): the check must catch every such
        // body, so only checked messages reach pgwire's decoder.
        if !ctx.awaiting_frontend_startup {
            if let Some((&tag, rest)) = buf.split_first() {
                let Some(len) = rest.first_chunk::<4>().map(|l| u32::from_be_bytes(*l)) else {
                    break;
                };
                let end = (len as usize).saturating_add(1).max(5);
                let Some(body) = buf.get(5..end) else {
                    break;
                };
                if frame::check(tag, len, body).is_err() {
                    break;
                }
            }
        }
        let msg = match PgWireFrontendMessage::decode(&mut buf, &ctx) {
            Ok(Some(m)) => m,
            _ => break,
        };
        match msg {
            PgWireFrontendMessage::SslNegotiation(_) => ctx.awaiting_frontend_ssl = false,
            PgWireFrontendMessage::Startup(_) => {
                ctx.awaiting_frontend_ssl = false;
                ctx.awaiting_frontend_startup = false;
            }
            PgWireFrontendMessage::Query(q) => sql(q.query.as_bytes()),
            PgWireFrontendMessage::Parse(p) => {
                for oid in p.type_oids {
                    if let Some(t) = Type::from_oid(oid) {
                        let _ = types::from_pg(&t);
                    }
                }
                sql(p.query.as_bytes());
            }
            PgWireFrontendMessage::Bind(b) => {
                for (i, value) in b.parameters.iter().enumerate() {
                    let pg = &PARAM_TYPES[i % PARAM_TYPES.len()];
                    let Some(ty) = types::from_pg(pg) else {
                        continue;
                    };
                    let format = b
                        .parameter_format_codes
                        .get(i)
                        .or(b.parameter_format_codes.first())
                        .copied()
                        .unwrap_or(0);
                    let _ = decode_param(value.as_ref(), format == 1, &ty, pg);
                }
            }
            _ => {}
        }
    }
}
