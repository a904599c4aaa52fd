//! Storage hot paths: key encoding, WAL append with group commit (1 and 8
//! writers, fdatasync per group as `--sync always` does), a point get on
//! a shard holding 100k rows (latest, and at a snapshot as the proxy reads),
//! and a filter's evaluation on one row (each node with operands passes
//! the stack check of `stack::deep`).

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fortress_storage::keycodec::encode_key;
use fortress_storage::wal::{Wal, WalOptions};
use fortress_storage::{
    Catalog, ColumnDef, DataType, Fragment, Shard, ShardOptions, ShardStore, TableDef, Value,
};

fn key_encoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("key_encoding");
    let int = [Value::Int8(1_234_567)];
    group.bench_function("int8", |b| b.iter(|| encode_key(black_box(&int))));
    let pair = [Value::Int4(42), Value::Text("customer-000042".into())];
    group.bench_function("int4_text", |b| b.iter(|| encode_key(black_box(&pair))));
    group.finish();
}

/// Each writer appends a 100-byte record and waits until it is durable;
/// concurrent writers share fdatasyncs (group commit).
fn wal_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal_append_durable");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    let payload = vec![7u8; 100];
    for writers in [1usize, 8] {
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(Wal::open(dir.path(), WalOptions::default(), 0, |_| Ok(())).unwrap());
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::from_parameter(writers), &writers, |b, &n| {
            // Time per append, all writers together: `iters` appends split
            // over `n` threads.
            b.iter_custom(|iters| {
                let per = iters.div_ceil(n as u64);
                let start = Arc::new(Barrier::new(n + 1));
                let handles: Vec<_> = (0..n)
                    .map(|_| {
                        let (wal, start, payload) = (wal.clone(), start.clone(), payload.clone());
                        std::thread::spawn(move || {
                            start.wait();
                            for _ in 0..per {
                                let lsn = wal.append(1, 1, 1, &payload).unwrap();
                                wal.wait_durable(lsn).unwrap();
                            }
                        })
                    })
                    .collect();
                start.wait();
                let t = Instant::now();
                for h in handles {
                    h.join().unwrap();
                }
                t.elapsed().mul_f64(iters as f64 / (per * n as u64) as f64)
            });
        });
    }
    group.finish();
}

fn point_get(c: &mut Criterion) {
    const ROWS: i64 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let opts = ShardOptions::default();
    let clock = opts.clock.clone();
    let shard = ShardStore::open(0, dir.path(), opts).unwrap();
    let mut table = TableDef::new(
        1,
        "accounts",
        vec![
            ColumnDef::new("aid", DataType::Int8),
            ColumnDef::new("abalance", DataType::Int4),
            ColumnDef::new("filler", DataType::Text),
        ],
        vec![0],
    );
    table.columns[0].nullable = false;
    let mut catalog = Catalog {
        version: 1,
        next_table_id: 1,
        ..Catalog::default()
    };
    catalog.tables.insert(table.name.clone(), table);
    shard.execute(0, &Fragment::ApplyCatalog(catalog)).unwrap();
    for chunk in (0..ROWS).collect::<Vec<_>>().chunks(10_000) {
        let rows = chunk
            .iter()
            .map(|&i| vec![Value::Int8(i), Value::Int4(0), Value::Text(" ".repeat(84))])
            .collect();
        shard
            .execute(0, &Fragment::Insert { table: 1, rows })
            .unwrap();
    }
    // Keys in a scattered order, one point scan each.
    let mut i = 0i64;
    let mut next = |snapshot| {
        i = (i * 7919 + 13) % ROWS;
        Fragment::Scan {
            table: 1,
            key_prefix: vec![Value::Int8(i)],
            filter: None,
            projection: Vec::new(),
            order_by: Vec::new(),
            limit: None,
            snapshot,
        }
    };
    c.bench_function("point_get_100k_rows", |b| {
        b.iter(|| shard.execute(0, black_box(&next(None))).unwrap())
    });
    // As the proxy reads a point: at a snapshot, through the non-waiting
    // path that checks the key is ready first.
    c.bench_function("point_get_100k_rows_at_snapshot", |b| {
        b.iter(|| {
            let frag = next(Some(clock.now()));
            shard.try_read(black_box(&frag)).unwrap().unwrap()
        })
    });
}

/// `(c1 + 1) * 2 > 10 AND c2 = 'x'` on one row: four nodes with operands.
fn filter_eval(c: &mut Criterion) {
    use fortress_storage::{BinaryOp, Expr};
    let lit = |v| Expr::Literal(v);
    let arith = Expr::binary(
        BinaryOp::Multiply,
        Expr::binary(BinaryOp::Plus, Expr::Column(1), lit(Value::Int8(1))),
        lit(Value::Int8(2)),
    );
    let filter = Expr::binary(
        BinaryOp::And,
        Expr::binary(BinaryOp::Gt, arith, lit(Value::Int8(10))),
        Expr::binary(BinaryOp::Eq, Expr::Column(2), lit(Value::Text("x".into()))),
    );
    let row = vec![Value::Int8(1), Value::Int8(7), Value::Text("x".into())];
    c.bench_function("filter_eval_4_nodes", |b| {
        b.iter(|| black_box(&filter).matches(black_box(&row)).unwrap())
    });
}

criterion_group!(benches, key_encoding, wal_append, point_get, filter_eval);
criterion_main!(benches);
