//! Lookup cost of the hash ring: `shard_for_key` (SHA-256 + binary search) and
//! `shard_for_hash` (binary search only), on 4- and 16-shard rings with 150 vnodes.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use fortress_proxy::route::ring::{key_hash, Ring, DEFAULT_VNODES};

/// Number of pre-generated keys; a power of two so the index wraps with a mask.
const KEY_COUNT: usize = 4096;

const SHARD_COUNTS: [u32; 2] = [4, 16];

/// Deterministic 16-byte keys from a splitmix64 sequence.
fn keys() -> Vec<[u8; 16]> {
    let mut state = 0x5eed_f0f7_5e55_0001u64;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    (0..KEY_COUNT)
        .map(|_| {
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&next().to_be_bytes());
            key[8..].copy_from_slice(&next().to_be_bytes());
            key
        })
        .collect()
}

fn ring_lookup(c: &mut Criterion) {
    let keys = keys();
    let mut group = c.benchmark_group("ring_lookup");
    for shards in SHARD_COUNTS {
        let ring = Ring::new(shards, DEFAULT_VNODES);
        group.bench_with_input(
            BenchmarkId::new("shard_for_key", shards),
            &ring,
            |b, ring| {
                let mut i = 0usize;
                b.iter(|| {
                    let key = &keys[i & (KEY_COUNT - 1)];
                    i = i.wrapping_add(1);
                    ring.shard_for_key(black_box(key))
                });
            },
        );
    }
    group.finish();
}

fn ring_lookup_hash_only(c: &mut Criterion) {
    let hashes: Vec<u64> = keys().iter().map(|key| key_hash(key)).collect();
    let mut group = c.benchmark_group("ring_lookup_hash_only");
    for shards in SHARD_COUNTS {
        let ring = Ring::new(shards, DEFAULT_VNODES);
        group.bench_with_input(
            BenchmarkId::new("shard_for_hash", shards),
            &ring,
            |b, ring| {
                let mut i = 0usize;
                b.iter(|| {
                    let h = hashes[i & (KEY_COUNT - 1)];
                    i = i.wrapping_add(1);
                    ring.shard_for_hash(black_box(h))
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, ring_lookup, ring_lookup_hash_only);
criterion_main!(benches);
