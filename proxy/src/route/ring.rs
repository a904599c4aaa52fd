//! Consistent-hash ring that maps canonical keys to shard indices.
//!
//! * **Hash.** A key's point on the ring is the first 8 bytes (big endian) of the
//!   SHA-256 digest of its canonical byte encoding, see [`key_hash`].
//! * **Lookup.** Every token owns the arc `(previous token, token]`, so point `h`
//!   belongs to the shard of the first token `>= h`, wrapping round to the lowest
//!   token when `h` is above the highest one.
//! * **Token allocation.** Tokens are placed deterministically rather than by hashing:
//!   shard 0 gets `vnodes` evenly spaced tokens from a fixed offset. Shard `s` then
//!   takes `1/(s+1)` of the ring from the shards that own more than that, each giving
//!   up a slice proportional to its excess: its `vnodes` new tokens go one per arc into
//!   the donors' largest arcs, enough arcs per donor to hold its slice. Every shard
//!   thus owns `1/n` of the ring up to integer rounding (checked for `n <= vnodes + 1`),
//!   well within the 1% target, whereas hashed vnode tokens give each shard a share
//!   with a relative std dev of about `1/sqrt(vnodes)`, 8% at 150.
//! * **Consistency.** Adding a shard never moves or removes an existing token, so
//!   the only keys that change owner are the ones that move to the new shard.
//!   `Ring::new(n, v)` is by definition `Ring::new(1, v)` followed by `n - 1` calls
//!   to [`Ring::add_shard`], so placement depends only on `(n, v)`.

use sha2::{Digest, Sha256};

/// Index of a shard on the ring; shards are numbered `0..shards`.
pub type ShardIndex = u32;

/// Number of tokens per shard used unless the configuration says otherwise.
pub const DEFAULT_VNODES: usize = 150;

/// Label whose hash sets the position of shard 0's first token.
const RING_LABEL: &[u8] = b"fortress-ring-v1";

/// Number of points on the ring, 2^64.
const RING_SIZE: u128 = 1 << 64;

/// Point on the ring for a canonical key: the first 8 bytes (big endian) of its SHA-256.
pub fn key_hash(canonical_key: &[u8]) -> u64 {
    let digest = Sha256::digest(canonical_key);
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(head)
}

/// Arc `(prev, token]` owned by `shard`; ordered by length first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct OwnedArc {
    len: u128,
    token: u64,
    prev: u64,
    shard: ShardIndex,
}

/// Consistent-hash ring with `vnodes` tokens per shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    /// `(token, owning shard)`, sorted by token; tokens are unique.
    tokens: Vec<(u64, ShardIndex)>,
    shards: u32,
    vnodes: usize,
}

impl Ring {
    /// Builds a ring of `shards` shards with `vnodes` tokens each.
    ///
    /// # Panics
    /// If `shards == 0` or `vnodes == 0`; callers are expected to validate configuration first.
    pub fn new(shards: u32, vnodes: usize) -> Ring {
        assert!(shards > 0, "Ring::new: shard count must be at least 1");
        assert!(vnodes > 0, "Ring::new: vnodes per shard must be at least 1");
        let offset = u128::from(key_hash(RING_LABEL));
        let step = RING_SIZE / vnodes as u128;
        // `as u64` keeps the low 64 bits, i.e. reduces the position modulo 2^64.
        let mut tokens: Vec<(u64, ShardIndex)> = (0..vnodes as u128)
            .map(|i| ((offset + i * step) as u64, 0))
            .collect();
        tokens.sort_unstable();
        let mut ring = Ring {
            tokens,
            shards: 1,
            vnodes,
        };
        for _ in 1..shards {
            ring.add_shard();
        }
        ring
    }

    /// Adds shard number `self.shards()` and returns its index; existing tokens never move.
    ///
    /// # Panics
    /// If the ring already has `u32::MAX` shards.
    pub fn add_shard(&mut self) -> ShardIndex {
        let new = self.shards;
        let count = new
            .checked_add(1)
            .expect("Ring::add_shard: shard count overflows u32");
        let target = RING_SIZE / u128::from(count);

        // Each shard's arcs, largest first.
        let mut arcs: Vec<Vec<OwnedArc>> = vec![Vec::new(); new as usize];
        for arc in self.arcs() {
            arcs[arc.shard as usize].push(arc);
        }
        for owned in &mut arcs {
            owned.sort_unstable_by(|a, b| b.cmp(a));
        }

        // What each shard owns above the new fair share; the total is at least `target`.
        let excess: Vec<u128> = arcs
            .iter()
            .map(|owned| {
                let load: u128 = owned.iter().map(|a| a.len).sum();
                load.saturating_sub(target)
            })
            .collect();
        let total_excess: u128 = excess.iter().sum();
        // Part of `target` each donor gives up, proportional to its excess.
        // Overflow-free: excess <= 2^64 and target <= 2^63 once there are two shards.
        let budget: Vec<u128> = excess.iter().map(|&e| e * target / total_excess).collect();

        let quota = token_quota(self.vnodes, &budget, &arcs);
        for (donor, owned) in arcs.iter().enumerate() {
            let chosen = &owned[..quota[donor]];
            let caps: Vec<u128> = chosen
                .iter()
                .map(|arc| {
                    assert!(
                        arc.len >= 2,
                        "Ring::add_shard: ring too dense to place another token"
                    );
                    arc.len - 1
                })
                .collect();
            // One new token per chosen arc, strictly inside it, taking `take` points from its start.
            for (arc, take) in chosen.iter().zip(water_fill(budget[donor], &caps)) {
                self.insert_token(arc.prev.wrapping_add(take as u64), new);
            }
        }
        self.shards = count;
        new
    }

    /// Shard owning point `h`: the owner of the first token `>= h`, wrapping to the lowest token.
    pub fn shard_for_hash(&self, h: u64) -> ShardIndex {
        let i = self.tokens.partition_point(|&(token, _)| token < h);
        match self.tokens.get(i) {
            Some(&(_, shard)) => shard,
            None => self.tokens[0].1,
        }
    }

    /// The vnode owning a canonical key: the index of its token in ring
    /// order (`0..token_count()`), with the shard that token belongs to.
    pub fn vnode_for_key(&self, canonical_key: &[u8]) -> (usize, ShardIndex) {
        let h = key_hash(canonical_key);
        let i = self.tokens.partition_point(|&(token, _)| token < h);
        let i = if i == self.tokens.len() { 0 } else { i };
        (i, self.tokens[i].1)
    }

    /// The shard of each token, in ring order.
    pub fn token_owners(&self) -> Vec<ShardIndex> {
        self.tokens.iter().map(|&(_, s)| s).collect()
    }

    /// Shard owning a canonical key, i.e. `shard_for_hash(key_hash(canonical_key))`.
    pub fn shard_for_key(&self, canonical_key: &[u8]) -> ShardIndex {
        self.shard_for_hash(key_hash(canonical_key))
    }

    /// Same as the free function [`key_hash`].
    pub fn key_hash(canonical_key: &[u8]) -> u64 {
        key_hash(canonical_key)
    }

    /// Number of shards on the ring.
    pub fn shards(&self) -> u32 {
        self.shards
    }

    /// Number of tokens each shard owns.
    pub fn vnodes(&self) -> usize {
        self.vnodes
    }

    /// Fraction of the 2^64 points owned by each shard, indexed by shard; sums to 1.
    pub fn ownership(&self) -> Vec<f64> {
        let mut loads = vec![0u128; self.shards as usize];
        for arc in self.arcs() {
            loads[arc.shard as usize] += arc.len;
        }
        loads
            .into_iter()
            .map(|l| l as f64 / RING_SIZE as f64)
            .collect()
    }

    /// Every token's arc, in token order; a lone token owns the whole ring.
    fn arcs(&self) -> impl Iterator<Item = OwnedArc> + '_ {
        let single = self.tokens.len() == 1;
        let last = self.tokens.last().map_or(0, |&(token, _)| token);
        let prevs = std::iter::once(last).chain(self.tokens.iter().map(|&(token, _)| token));
        self.tokens
            .iter()
            .zip(prevs)
            .map(move |(&(token, shard), prev)| OwnedArc {
                len: if single {
                    RING_SIZE
                } else {
                    u128::from(token.wrapping_sub(prev))
                },
                token,
                prev,
                shard,
            })
    }

    /// Inserts a new token, keeping the vector sorted; the caller guarantees it is not taken.
    fn insert_token(&mut self, point: u64, shard: ShardIndex) {
        let i = self.tokens.partition_point(|&(token, _)| token < point);
        debug_assert!(
            self.tokens.get(i).is_none_or(|&(token, _)| token != point),
            "duplicate ring token"
        );
        self.tokens.insert(i, (point, shard));
    }
}

/// Number of new tokens each donor places; sums to `vnodes`.
///
/// Each donor first gets the fewest tokens whose arcs (its largest, one token per arc) can
/// hold its budget; spare tokens then go one at a time to the donor with the largest
/// budget per token. If the minimums exceed `vnodes`, all tokens are handed out that way.
fn token_quota(vnodes: usize, budget: &[u128], arcs: &[Vec<OwnedArc>]) -> Vec<usize> {
    let needed: Vec<usize> = budget
        .iter()
        .zip(arcs)
        .map(|(&b, owned)| {
            let mut room = 0u128;
            owned
                .iter()
                .position(|arc| {
                    room += arc.len.saturating_sub(1);
                    room >= b
                })
                .map_or(owned.len(), |i| if b == 0 { 0 } else { i + 1 })
        })
        .collect();
    let mut quota = if needed.iter().sum::<usize>() <= vnodes {
        needed
    } else {
        vec![0; budget.len()]
    };
    for _ in quota.iter().sum::<usize>()..vnodes {
        // Largest budget / quota (a zero quota counts as infinite), then larger budget, then lower index.
        let mut best: Option<usize> = None;
        for (j, &b) in budget.iter().enumerate() {
            if b == 0 || quota[j] >= arcs[j].len() {
                continue;
            }
            let better = best.is_none_or(|i| {
                let (lhs, rhs) = (b * quota[i] as u128, budget[i] * quota[j] as u128);
                lhs > rhs || (lhs == rhs && b > budget[i])
            });
            if better {
                best = Some(j);
            }
        }
        let best = best.expect("a donor with room for another token");
        quota[best] += 1;
    }
    quota
}

/// Splits `budget` over arcs with capacities `caps` (descending) as evenly as capacities allow.
///
/// Every share is at least 1 and at most its capacity; the shares sum to `budget` when the
/// capacities allow it (and `budget >= caps.len()`).
fn water_fill(budget: u128, caps: &[u128]) -> Vec<u128> {
    let mut takes = caps.to_vec();
    let mut left = budget;
    // Fill from the smallest capacity up; once one would overflow, the rest share evenly.
    for i in (0..caps.len()).rev() {
        let remaining = i as u128 + 1;
        if caps[i] * remaining <= left {
            left -= caps[i];
            continue;
        }
        let (each, extra) = (left / remaining, left % remaining);
        for (j, take) in takes[..=i].iter_mut().enumerate() {
            *take = each + u128::from((j as u128) < extra);
        }
        break;
    }
    for take in &mut takes {
        *take = (*take).max(1);
    }
    takes
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEYS: u64 = 100_000;

    /// 100k distinct 16-byte canonical keys: seed and index, both big endian.
    fn keys(seed: u64) -> impl Iterator<Item = [u8; 16]> {
        (0..KEYS).map(move |i| {
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&seed.to_be_bytes());
            key[8..].copy_from_slice(&i.to_be_bytes());
            key
        })
    }

    fn key_counts(ring: &Ring, seed: u64) -> Vec<u64> {
        let mut counts = vec![0u64; ring.shards() as usize];
        for key in keys(seed) {
            counts[ring.shard_for_key(&key) as usize] += 1;
        }
        counts
    }

    /// Reference lookup by linear scan.
    fn owner_by_scan(ring: &Ring, h: u64) -> ShardIndex {
        ring.tokens
            .iter()
            .find(|&&(token, _)| token >= h)
            .unwrap_or(&ring.tokens[0])
            .1
    }

    fn assert_well_formed(ring: &Ring) {
        assert_eq!(
            ring.tokens.len(),
            ring.shards() as usize * ring.vnodes(),
            "token count"
        );
        assert!(
            ring.tokens.windows(2).all(|w| w[0].0 < w[1].0),
            "tokens sorted and unique"
        );
        for shard in 0..ring.shards() {
            let owned = ring.tokens.iter().filter(|t| t.1 == shard).count();
            assert_eq!(owned, ring.vnodes(), "tokens of shard {shard}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(8))]

        #[test]
        fn keys_per_shard_within_ten_percent_of_mean(shards in 4u32..=16, seed in any::<u64>()) {
            let ring = Ring::new(shards, DEFAULT_VNODES);
            let mean = KEYS as f64 / f64::from(shards);
            for (shard, &count) in key_counts(&ring, seed).iter().enumerate() {
                let deviation = (count as f64 - mean).abs() / mean;
                prop_assert!(
                    deviation <= 0.10,
                    "shard {} of {} got {} keys, mean {}, deviation {}",
                    shard, shards, count, mean, deviation
                );
            }
        }

        #[test]
        fn adding_a_shard_moves_keys_only_to_it(shards in 4u32..16, seed in any::<u64>()) {
            let before = Ring::new(shards, DEFAULT_VNODES);
            let mut after = before.clone();
            let new = after.add_shard();
            prop_assert_eq!(new, shards);
            let mut moved = 0u64;
            for key in keys(seed) {
                let h = key_hash(&key);
                let (old_owner, new_owner) = (before.shard_for_hash(h), after.shard_for_hash(h));
                if old_owner != new_owner {
                    prop_assert_eq!(new_owner, new);
                    moved += 1;
                }
            }
            let fraction = moved as f64 / KEYS as f64;
            let fair = 1.0 / f64::from(shards + 1);
            prop_assert!(
                (0.8 * fair..=1.2 * fair).contains(&fraction),
                "moved {} of keys going from {} to {} shards, fair share {}",
                fraction, shards, shards + 1, fair
            );
        }

        #[test]
        fn lookup_matches_linear_scan(
            shards in 1u32..=8,
            vnodes in 1usize..=40,
            hashes in proptest::collection::vec(any::<u64>(), 64),
        ) {
            let ring = Ring::new(shards, vnodes);
            for h in hashes {
                prop_assert_eq!(ring.shard_for_hash(h), owner_by_scan(&ring, h));
            }
        }

        #[test]
        fn lookup_at_token_boundaries_and_wrap(shards in 1u32..=8, vnodes in 1usize..=40) {
            let ring = Ring::new(shards, vnodes);
            let tokens = &ring.tokens;
            let (first, last) = (tokens[0], tokens[tokens.len() - 1]);
            for (i, &(token, owner)) in tokens.iter().enumerate() {
                // A hash equal to a token belongs to that token's shard ...
                prop_assert_eq!(ring.shard_for_hash(token), owner);
                // ... and one past it belongs to the next token, wrapping after the last.
                if let Some(&(_, next_owner)) = tokens.get(i + 1) {
                    prop_assert_eq!(ring.shard_for_hash(token + 1), next_owner);
                }
            }
            if last.0 < u64::MAX {
                prop_assert_eq!(ring.shard_for_hash(last.0 + 1), first.1);
                prop_assert_eq!(ring.shard_for_hash(u64::MAX), first.1);
            }
            prop_assert_eq!(ring.shard_for_hash(0), first.1);
        }

        #[test]
        fn small_rings_stay_well_formed_and_consistent(shards in 1u32..=20, vnodes in 1usize..=20) {
            let before = Ring::new(shards, vnodes);
            assert_well_formed(&before);
            let mut after = before.clone();
            after.add_shard();
            assert_well_formed(&after);
            // Every old token survives with its owner.
            for token in &before.tokens {
                prop_assert!(after.tokens.binary_search(token).is_ok());
            }
            let sum: f64 = after.ownership().iter().sum();
            prop_assert!((sum - 1.0).abs() < 1e-9);
        }
    }

    proptest! {
        #[test]
        fn water_fill_respects_capacities(
            mut caps in proptest::collection::vec(1u128..1000, 1..20),
            budget in 0u128..30_000,
        ) {
            caps.sort_unstable_by(|a, b| b.cmp(a));
            let takes = water_fill(budget, &caps);
            prop_assert_eq!(takes.len(), caps.len());
            for (&take, &cap) in takes.iter().zip(&caps) {
                prop_assert!((1..=cap).contains(&take));
            }
            let room: u128 = caps.iter().sum();
            if budget >= caps.len() as u128 {
                prop_assert_eq!(takes.iter().sum::<u128>(), budget.min(room));
            }
        }
    }

    #[test]
    fn water_fill_spreads_evenly_under_caps() {
        assert_eq!(water_fill(10, &[9, 2]), vec![8, 2]);
        assert_eq!(water_fill(20, &[9, 2]), vec![9, 2]);
        assert_eq!(water_fill(7, &[5, 5, 5]), vec![3, 2, 2]);
        assert_eq!(water_fill(1, &[5, 5]), vec![1, 1]);
    }

    #[test]
    fn ownership_sums_to_one_and_is_within_two_percent() {
        let mut ring = Ring::new(1, DEFAULT_VNODES);
        for n in 1..=32u32 {
            if n > 1 {
                ring.add_shard();
            }
            let shares = ring.ownership();
            assert_eq!(shares.len(), n as usize);
            let sum: f64 = shares.iter().sum();
            assert!((sum - 1.0).abs() < 1e-9, "{n} shards: shares sum to {sum}");
            let fair = 1.0 / f64::from(n);
            for (shard, &share) in shares.iter().enumerate() {
                let deviation = (share - fair).abs() / fair;
                assert!(
                    deviation <= 0.02,
                    "{n} shards: shard {shard} owns {share}, fair {fair}"
                );
            }
        }
    }

    #[test]
    fn ownership_is_exact_while_shards_do_not_outnumber_vnodes() {
        for vnodes in [4, 16] {
            for n in 1..=vnodes as u32 + 1 {
                let fair = 1.0 / f64::from(n);
                for share in Ring::new(n, vnodes).ownership() {
                    assert!((share - fair).abs() < 1e-12, "{n} shards, {vnodes} vnodes");
                }
            }
        }
    }

    /// Token placement decides where data lives, so it must not change by accident.
    #[test]
    fn placement_is_pinned() {
        let ring = Ring::new(16, DEFAULT_VNODES);
        let mut bytes = Vec::with_capacity(ring.tokens.len() * 12);
        for &(token, shard) in &ring.tokens {
            bytes.extend_from_slice(&token.to_be_bytes());
            bytes.extend_from_slice(&shard.to_be_bytes());
        }
        assert_eq!(key_hash(&bytes), 0x06a8_0860_c375_d13f);
    }

    #[test]
    fn new_equals_incremental_construction() {
        for vnodes in [1, 7, DEFAULT_VNODES] {
            let mut incremental = Ring::new(1, vnodes);
            for n in 2..=16 {
                incremental.add_shard();
                let direct = Ring::new(n, vnodes);
                assert_eq!(direct, incremental, "{n} shards, {vnodes} vnodes");
                assert_well_formed(&direct);
            }
        }
    }

    #[test]
    fn first_shard_tokens_are_evenly_spaced_from_label_offset() {
        let ring = Ring::new(1, 4);
        let offset = key_hash(RING_LABEL);
        let mut expected: Vec<(u64, ShardIndex)> = (0..4u64)
            .map(|i| (offset.wrapping_add(i << 62), 0))
            .collect();
        expected.sort_unstable();
        assert_eq!(ring.tokens, expected);
        assert_eq!(ring.ownership(), vec![1.0]);
    }

    #[test]
    fn single_token_ring_owns_everything() {
        let ring = Ring::new(1, 1);
        for h in [0, 1, key_hash(RING_LABEL), u64::MAX] {
            assert_eq!(ring.shard_for_hash(h), 0);
        }
        assert_eq!(ring.ownership(), vec![1.0]);
    }

    #[test]
    fn key_hash_is_sha256_prefix_big_endian() {
        assert_eq!(key_hash(b""), 0xe3b0_c442_98fc_1c14);
        assert_eq!(key_hash(b"abc"), 0xba78_16bf_8f01_cfea);
        assert_eq!(Ring::key_hash(b"abc"), key_hash(b"abc"));
        let ring = Ring::new(4, DEFAULT_VNODES);
        for key in keys(7).take(1000) {
            assert_eq!(
                ring.shard_for_key(&key),
                ring.shard_for_hash(key_hash(&key))
            );
        }
    }

    #[test]
    fn accessors() {
        let ring = Ring::new(3, 10);
        assert_eq!((ring.shards(), ring.vnodes()), (3, 10));
        let mut grown = ring.clone();
        assert_eq!(grown.add_shard(), 3);
        assert_eq!(grown.shards(), 4);
    }

    #[test]
    #[should_panic(expected = "shard count must be at least 1")]
    fn zero_shards_panics() {
        Ring::new(0, DEFAULT_VNODES);
    }

    #[test]
    #[should_panic(expected = "vnodes per shard must be at least 1")]
    fn zero_vnodes_panics() {
        Ring::new(4, 0);
    }
}
