//! Scatter-gather merge: four shards' sorted rows (25k each) merged into one
//! ordered stream, as `SELECT ... ORDER BY` over all shards does.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fortress_proxy::stream::{merge, Finish, ShardRows};
use fortress_storage::{Expr, Row, SortKey, Value};

const SHARDS: i64 = 4;
const PER_SHARD: i64 = 25_000;

fn merge_four(c: &mut Criterion) {
    // Shard s holds ids s, s+4, s+8, ... in order: the merge interleaves them.
    let inputs: Vec<Vec<Row>> = (0..SHARDS)
        .map(|s| {
            (0..PER_SHARD)
                .map(|i| vec![Value::Int8(i * SHARDS + s), Value::Text(format!("row {i}"))])
                .collect()
        })
        .collect();
    let mut group = c.benchmark_group("merge");
    group.throughput(Throughput::Elements((SHARDS * PER_SHARD) as u64));
    group.bench_function("4_sorted_streams_100k_rows", |b| {
        b.iter_batched(
            || inputs.clone(),
            |inputs| {
                let parts = inputs.into_iter().map(ShardRows::Ready).collect();
                let finish = Finish {
                    order_by: vec![SortKey {
                        expr: Expr::Column(0),
                        descending: false,
                        nulls_first: false,
                    }],
                    offset: 0,
                    limit: None,
                    visible: 2,
                };
                let rows = futures::executor::block_on(merge(parts, finish).collect()).unwrap();
                assert_eq!(rows.len() as i64, SHARDS * PER_SHARD);
                black_box(rows)
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, merge_four);
criterion_main!(benches);
