//! A bounded cache of each row's newest stored version, so that a point read
//! (and a commit's first-committer check) is a hash lookup instead of a sled
//! seek. An entry says what the table tree's newest version of a key is; a
//! reader whose snapshot is at or past it takes it, an older reader reads
//! the tree. Applied writes update entries in place, so hot rows stay.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use indexmap::{Equivalent, IndexMap};
use sled::IVec;

use crate::error::Result;
use crate::fastmap::FastHash;
use crate::schema::TableId;

/// Stripes per cache: independent locks, so readers of different keys
/// rarely meet.
const STRIPES: usize = 64;

/// Bytes an entry is charged on top of its key and version: the map's slot,
/// the key's and version's headers.
const ENTRY_OVERHEAD: usize = 96;

/// The newest version a table tree holds for one key.
#[derive(Clone, Debug, PartialEq)]
pub struct Head {
    /// Its commit timestamp (0 when the key has no version at all).
    pub ts: u64,
    /// The stored version (see `mvcc::encode_version`); `None` when the key
    /// has no version at all.
    pub version: Option<IVec>,
}

impl Head {
    /// A key with no stored version: absent at every snapshot.
    pub const ABSENT: Head = Head {
        ts: 0,
        version: None,
    };

    /// True if the newest version is a row, not a delete.
    pub fn is_live(&self) -> bool {
        self.version.as_deref().is_some_and(crate::mvcc::is_row)
    }

    fn bytes(&self) -> usize {
        self.version.as_ref().map_or(0, |v| v.len())
    }
}

#[derive(PartialEq, Eq)]
struct Key {
    table: TableId,
    pk: Box<[u8]>,
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        KeyRef {
            table: self.table,
            pk: &self.pk,
        }
        .hash(state)
    }
}

/// A borrowed [`Key`], for lookups that allocate nothing.
#[derive(Hash)]
struct KeyRef<'a> {
    table: TableId,
    pk: &'a [u8],
}

impl Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.table == key.table && self.pk == &key.pk[..]
    }
}

#[derive(Default)]
struct Stripe {
    map: IndexMap<Key, Head, FastHash>,
    bytes: usize,
    /// Bumped by every write: a fill that read the tree before a write
    /// must not install what it read after it.
    generation: u64,
    /// State of the eviction's random pick.
    rng: u64,
}

impl Stripe {
    fn charge(pk: &[u8], head: &Head) -> usize {
        pk.len() + head.bytes() + ENTRY_OVERHEAD
    }

    fn install(&mut self, table: TableId, pk: &[u8], head: Head, budget: usize) {
        let cost = Self::charge(pk, &head);
        if cost > budget {
            return;
        }
        while self.bytes + cost > budget && !self.map.is_empty() {
            self.evict_one();
        }
        let key = Key {
            table,
            pk: pk.into(),
        };
        if let Some(old) = self.map.insert(key, head) {
            self.bytes -= Self::charge(pk, &old);
        }
        self.bytes += cost;
    }

    /// Drops a random entry: cheap, and for the uniform point reads it
    /// serves no worse than LRU.
    fn evict_one(&mut self) {
        // xorshift64
        let mut x = self.rng | 1;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        let i = (x % self.map.len() as u64) as usize;
        if let Some((key, head)) = self.map.swap_remove_index(i) {
            self.bytes -= Self::charge(&key.pk, &head);
        }
    }
}

/// The newest version of recently used rows of one shard, bounded in bytes.
pub struct HeadCache {
    stripes: Box<[Mutex<Stripe>]>,
    /// Bytes each stripe may hold; 0 turns the cache off.
    stripe_budget: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl HeadCache {
    /// A cache holding about `budget` bytes of keys and versions.
    pub fn new(budget: u64) -> HeadCache {
        HeadCache {
            stripes: (0..STRIPES)
                .map(|i| {
                    Mutex::new(Stripe {
                        rng: 0x9E37_79B9_7F4A_7C15 ^ i as u64,
                        ..Stripe::default()
                    })
                })
                .collect(),
            stripe_budget: usize::try_from(budget).unwrap_or(usize::MAX) / STRIPES,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn stripe(&self, table: TableId, pk: &[u8]) -> &Mutex<Stripe> {
        // FNV-1a over the key, then murmur3's finalizer to spread its bits.
        let mut h = pk
            .iter()
            .fold(0xcbf2_9ce4_8422_2325 ^ u64::from(table), |h, &b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        &self.stripes[h as usize % STRIPES]
    }

    /// The newest version of `pk` in `table`: the cached one, or what
    /// `read` finds in the tree, which is then kept unless a write to the
    /// stripe came in between.
    pub fn head(
        &self,
        table: TableId,
        pk: &[u8],
        read: impl FnOnce() -> Result<Head>,
    ) -> Result<Head> {
        if self.stripe_budget == 0 {
            return read();
        }
        let stripe = self.stripe(table, pk);
        let generation = {
            let s = stripe.lock().expect("head cache");
            if let Some(head) = s.map.get(&KeyRef { table, pk }) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(head.clone());
            }
            s.generation
        };
        self.misses.fetch_add(1, Ordering::Relaxed);
        let head = read()?;
        let mut s = stripe.lock().expect("head cache");
        if s.generation == generation {
            s.install(table, pk, head.clone(), self.stripe_budget);
        }
        Ok(head)
    }

    /// Records that the tree now holds `version` of `pk` at `ts`. Call it
    /// after the tree write. A cached entry moves forward to it; an entry
    /// newer than it stays, since it is still the newest.
    pub fn wrote(&self, table: TableId, pk: &[u8], ts: u64, version: &IVec) {
        if self.stripe_budget == 0 {
            return;
        }
        let mut s = self.stripe(table, pk).lock().expect("head cache");
        s.generation += 1;
        let newer = match s.map.get(&KeyRef { table, pk }) {
            Some(head) => head.ts <= ts,
            None => false,
        };
        if newer {
            let head = Head {
                ts,
                version: Some(version.clone()),
            };
            s.install(table, pk, head, self.stripe_budget);
        }
    }

    /// Caches `head` for a key nothing else can be writing (a table being
    /// built), unless an entry is there already.
    pub fn prime(&self, table: TableId, pk: &[u8], head: Head) {
        if self.stripe_budget == 0 {
            return;
        }
        let mut s = self.stripe(table, pk).lock().expect("head cache");
        if s.map.get(&KeyRef { table, pk }).is_none() {
            s.install(table, pk, head, self.stripe_budget);
        }
    }

    /// Keeps only the entries of tables `keep` accepts (the catalog
    /// changed: dropped tables' rows must not hold memory).
    pub fn retain(&self, keep: impl Fn(TableId) -> bool) {
        for stripe in self.stripes.iter() {
            let mut s = stripe.lock().expect("head cache");
            s.generation += 1;
            let mut freed = 0;
            s.map.retain(|k, head| {
                let kept = keep(k.table);
                if !kept {
                    freed += Stripe::charge(&k.pk, head);
                }
                kept
            });
            s.bytes -= freed;
        }
    }

    /// Lookups answered from the cache, and those that read the tree.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Bytes charged for the entries held.
    pub fn bytes(&self) -> usize {
        self.stripes
            .iter()
            .map(|s| s.lock().expect("head cache").bytes)
            .sum()
    }
}

/// Reads the newest version of `pk` from `tree`.
pub fn read_head(tree: &sled::Tree, pk: &[u8]) -> Result<Head> {
    Ok(match crate::mvcc::version_at(tree, pk, u64::MAX)? {
        Some((ts, v)) => Head {
            ts,
            version: Some(v),
        },
        None => Head::ABSENT,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(b: &[u8]) -> IVec {
        IVec::from(b)
    }

    fn at(ts: u64, b: &[u8]) -> Head {
        Head {
            ts,
            version: Some(v(b)),
        }
    }

    #[test]
    fn a_fill_that_raced_a_write_is_not_kept() {
        let cache = HeadCache::new(1 << 20);
        // The tree read saw version 1; a write of version 2 landed before
        // the fill could install it.
        let got = cache
            .head(1, b"k", || {
                cache.wrote(1, b"k", 2, &v(b"two"));
                Ok(at(1, b"one"))
            })
            .unwrap();
        assert_eq!(got, at(1, b"one"));
        // Not cached: the next lookup reads the tree again.
        let got = cache.head(1, b"k", || Ok(at(2, b"two"))).unwrap();
        assert_eq!(got, at(2, b"two"));
        assert_eq!(cache.hits_and_misses(), (0, 2));
        let got = cache.head(1, b"k", || panic!("cached")).unwrap();
        assert_eq!(got, at(2, b"two"));
    }

    #[test]
    fn writes_move_entries_forward_only() {
        let cache = HeadCache::new(1 << 20);
        cache.head(7, b"a", || Ok(at(10, b"ten"))).unwrap();
        cache.wrote(7, b"a", 20, &v(b"twenty"));
        assert_eq!(cache.head(7, b"a", || panic!()).unwrap(), at(20, b"twenty"));
        // A replayed older version does not hide the newer one.
        cache.wrote(7, b"a", 5, &v(b"five"));
        assert_eq!(cache.head(7, b"a", || panic!()).unwrap(), at(20, b"twenty"));
        // A write to a key not cached leaves it uncached.
        cache.wrote(7, b"b", 30, &v(b"x"));
        assert_eq!(
            cache.head(7, b"b", || Ok(Head::ABSENT)).unwrap(),
            Head::ABSENT
        );
        // Tables do not share keys.
        assert_eq!(
            cache.head(8, b"a", || Ok(Head::ABSENT)).unwrap(),
            Head::ABSENT
        );
    }

    #[test]
    fn sequential_keys_spread_over_every_stripe() {
        // Integer keys differ in their last bytes only; a weak hash put
        // them all in a few stripes, which then held a few stripes' budget.
        let cache = HeadCache::new(1 << 20);
        let mut used = std::collections::HashSet::new();
        for i in 0u32..4096 {
            let pk = crate::keycodec::encode_key(&[crate::value::Value::Int4(i as i32)]);
            used.insert(cache.stripe(1, &pk) as *const _);
        }
        assert_eq!(used.len(), STRIPES);
    }

    #[test]
    fn priming_fills_gaps_and_retain_drops_whole_tables() {
        let cache = HeadCache::new(1 << 20);
        cache.head(1, b"a", || Ok(at(5, b"five"))).unwrap();
        cache.prime(1, b"a", at(3, b"three"));
        cache.prime(2, b"a", at(3, b"three"));
        assert_eq!(cache.head(1, b"a", || panic!()).unwrap(), at(5, b"five"));
        assert_eq!(cache.head(2, b"a", || panic!()).unwrap(), at(3, b"three"));
        cache.retain(|t| t == 2);
        assert_eq!(
            cache.head(1, b"a", || Ok(Head::ABSENT)).unwrap(),
            Head::ABSENT
        );
        assert_eq!(cache.head(2, b"a", || panic!()).unwrap(), at(3, b"three"));
    }

    #[test]
    fn the_budget_bounds_what_is_held() {
        let budget = 64 * 1024;
        let cache = HeadCache::new(budget);
        for i in 0u32..10_000 {
            let pk = i.to_be_bytes();
            cache.head(1, &pk, || Ok(at(1, &[0u8; 40]))).unwrap();
        }
        assert!(cache.bytes() <= budget as usize);
        assert!(cache.bytes() > budget as usize / 2);
        cache.retain(|t| t != 1);
        assert_eq!(cache.bytes(), 0);
        let off = HeadCache::new(0);
        off.head(1, b"k", || Ok(Head::ABSENT)).unwrap();
        off.head(1, b"k", || Ok(Head::ABSENT)).unwrap();
        assert_eq!(off.bytes(), 0);
    }
}
